"""Initialization schemes, by their lecture names.

- :mod:`trainlab.init.schemes`: the in-place initializers (``he_normal_``,
  ``xavier_uniform_``, ``orthogonal_`` …), all presets of one :func:`variance_scaling_`,
  the fan convention (:func:`compute_fans`) and the ``"init"`` registry :data:`INITS`.
- :mod:`trainlab.init.apply`: :func:`init_model`, which applies a scheme to every Linear,
  Conv and maxout layer of any ``nn.Module``, with per-layer overrides.

- :mod:`trainlab.init.data_dependent`: the model-level schemes, applied by
  ``init_model(model, name, ...)``: ``"lsuv"`` (Mishkin & Matas 2016) and
  ``"data_dependent"`` (Kraehenbuehl et al. 2016) and ``"wn_data"`` (weight normalization's
  data init, Salimans & Kingma 2016), which need ``data=`` a batch of inputs
  (``meta["data_dependent"] = True``), and ``"fixup"`` (Zhang et al. 2019, residual nets);
  plus the per-tensor ``"random_walk"`` (Sussillo & Abbott 2014). :func:`lsuv_`,
  :func:`data_dependent_` and :func:`fixup_` return an :class:`InitReport`.

Example::

    >>> import torch
    >>> from trainlab.init import init_model, he_normal_
    >>> w = he_normal_(torch.empty(256, 784), generator=torch.Generator().manual_seed(0))
    >>> model = init_model(torch.nn.Sequential(torch.nn.Linear(784, 10)), "xavier_uniform")
"""

from trainlab.init.apply import (
    WEIGHT_LAYER_TYPES,
    ResolvedInit,
    init_model,
    model_level_entry,
    resolve_init,
    weight_layers,
)
from trainlab.init.data_dependent import (
    MIN_EXAMPLES,
    InitReport,
    data_dependent_,
    fixup_,
    fixup_scale,
    lsuv_,
    random_walk_,
    random_walk_gain,
    wn_data_,
)
from trainlab.init.schemes import (
    DISTRIBUTIONS,
    FAN_MODES,
    INITS,
    TRUNCATED_NORMAL_STD_FACTOR,
    TRUNCATION,
    compute_fans,
    constant_,
    glorot_standard_,
    he_normal_,
    he_uniform_,
    lecun_normal_,
    lecun_uniform_,
    normal_,
    orthogonal_,
    uniform_,
    variance_scaling_,
    xavier_normal_,
    xavier_uniform_,
    zeros_,
)

__all__ = [
    "DISTRIBUTIONS",
    "FAN_MODES",
    "INITS",
    "InitReport",
    "MIN_EXAMPLES",
    "TRUNCATED_NORMAL_STD_FACTOR",
    "TRUNCATION",
    "WEIGHT_LAYER_TYPES",
    "ResolvedInit",
    "compute_fans",
    "constant_",
    "data_dependent_",
    "fixup_",
    "fixup_scale",
    "glorot_standard_",
    "he_normal_",
    "he_uniform_",
    "init_model",
    "lecun_normal_",
    "lecun_uniform_",
    "lsuv_",
    "model_level_entry",
    "normal_",
    "orthogonal_",
    "random_walk_",
    "random_walk_gain",
    "resolve_init",
    "uniform_",
    "variance_scaling_",
    "weight_layers",
    "wn_data_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
