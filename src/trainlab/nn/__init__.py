"""Layers: activations, normalizations, recurrent cells, residual blocks, BN folding.

- :mod:`trainlab.nn.activations` — the ``activation`` registry :data:`ACTIVATIONS`, the
  activation Modules, :class:`Maxout` and :func:`activation_info` (saturation and dead rules,
  init gains); their formulas are pure functions in :mod:`trainlab.nn.functional`.
- :mod:`trainlab.nn.norms` — the ``norm`` registry :data:`NORMS` (``none``, ``bn``, ``ln``,
  ``in``, ``gn``), :func:`norm_layer`, placement before/after the nonlinearity, and BN's
  momentum convention against Keras'.
- :mod:`trainlab.nn.blocks` — the units a builder assembles (an activation, a norm or weight
  reparametrization) and :class:`PreActBlock`; the builders themselves (``mlp``,
  ``convnet``, ``preact_resnet``, ``seq_classifier``) are in :mod:`trainlab.models`.
- :mod:`trainlab.nn.weight_norm` — weight normalization and centered weight normalization
  (``wn``, ``cwn``, ``wn_mobn``): :func:`weight_norm_`, data-dependent
  :func:`weight_norm_init_`, torch state-dict layouts.
- :mod:`trainlab.nn.renorm` — batch renormalization (``brn``) and mean-only BN (``mobn``).
- :mod:`trainlab.nn.normprop` — normalization propagation (``normprop``).
- :mod:`trainlab.nn.fold` — :func:`fold_bn` (BN, BRN, mean-only BN folded into the preceding
  Linear/Conv) and :func:`fold_norms` (also bakes WN/CWN/NormProp into plain weights), each
  checked on a probe batch.
- :mod:`trainlab.nn.recurrent` — the ``recurrent_norm`` registry :data:`RECURRENT_NORMS`
  (``none``, ``bn_frame``, ``bn_seq``, ``ln``), :class:`LSTM`, :class:`RNN` and their cells
  (the ``seq_classifier`` builder uses them).
- :mod:`trainlab.nn.natural` — natural neural networks: :class:`WhitenedLinear`,
  :func:`to_natural`, :func:`reestimate_whitening`, :class:`WhiteningCallback`.

Example::

    >>> from trainlab.models import mlp
    >>> from trainlab.nn import fold_bn
    >>> model = mlp(784, [100] * 3, 10, activation="tanh", norm="bn", placement="before")
    >>> model.block3.norm, model.block3.act
    >>> fast = fold_bn(model)           # eval-mode copy, same outputs
"""

from trainlab.nn import norms, renorm, weight_norm, normprop  # noqa: I001  (registry order)
from trainlab.nn import activations, blocks, fold, functional, natural, recurrent
from trainlab.nn.activations import *  # noqa: F403
from trainlab.nn.blocks import *  # noqa: F403
from trainlab.nn.fold import *  # noqa: F403
from trainlab.nn.natural import *  # noqa: F403
from trainlab.nn.norms import *  # noqa: F403
from trainlab.nn.normprop import *  # noqa: F403
from trainlab.nn.recurrent import *  # noqa: F403
from trainlab.nn.renorm import *  # noqa: F403
from trainlab.nn.weight_norm import *  # noqa: F403

__all__ = [
    *activations.__all__,
    *norms.__all__,
    *blocks.__all__,
    *fold.__all__,
    *renorm.__all__,
    *weight_norm.__all__,
    *normprop.__all__,
    *recurrent.__all__,
    *natural.__all__,
    "activations",
    "blocks",
    "fold",
    "functional",
    "natural",
    "normprop",
    "norms",
    "recurrent",
    "renorm",
    "weight_norm",
]
