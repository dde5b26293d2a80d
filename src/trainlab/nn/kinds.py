"""What kind of module is this? One answer each, for the whole package.

- :func:`is_norm` — a normalization layer: a module that normalizes the activations passing
  through it. torch's (:data:`TORCH_NORM_TYPES`) and every norm trainlab registers in
  :data:`~trainlab.nn.norms.NORMS` and :data:`~trainlab.nn.recurrent.RECURRENT_NORMS`,
  read from the registries (:func:`norm_types`), so a norm registered later counts too.
- :func:`is_weight_layer` / :func:`weight_layers` — a layer whose own ``weight`` is one matrix
  or filter bank (:data:`WEIGHT_LAYER_TYPES`).

What an activation is (its init gain, saturation and dead rules, ``replaces_linear`` ...) is
the entry's ``meta["info"]`` in :data:`~trainlab.nn.activations.ACTIVATIONS`, read by
:func:`~trainlab.nn.activations.activation_info`.

The initializers (:func:`trainlab.init.init_model`), the penalties
(:func:`trainlab.losses.penalized_parameters`), the probes' default layers
(:func:`trainlab.probes.base.weight_layers`) and the doctor ask these functions::

    >>> from trainlab.nn.kinds import is_norm, weight_layers
    >>> from trainlab.nn import LayerNorm, Maxout
    >>> is_norm(nn.BatchNorm2d(8)), is_norm(LayerNorm(8)), is_norm(nn.Linear(2, 2))
    (True, True, False)
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), Maxout(8, 4), nn.LSTM(4, 4))
    >>> [n for n, _ in weight_layers(model)]           # the LSTM's gate matrices: no layer
    ['0', '2.linear']
"""

from __future__ import annotations

import typing
from typing import Any

from torch import Tensor, nn

from trainlab.nn import normprop, renorm, weight_norm  # noqa: F401  (their norms register)
from trainlab.nn.natural import WhitenedLinear
from trainlab.nn.norms import NORMS
from trainlab.nn.recurrent import RECURRENT_NORMS
from trainlab.registry import Registry

__all__ = [
    "TORCH_NORM_TYPES",
    "WEIGHT_LAYER_TYPES",
    "WEIGHT_LAYERS_TEXT",
    "is_norm",
    "is_weight_layer",
    "norm_types",
    "weight_layers",
]


# -- norms --------------------------------------------------------------------------------
#: torch's normalization layers: ``_NormBase`` (BatchNorm1d/2d/3d, SyncBatchNorm,
#: InstanceNorm1d/2d/3d and their lazy forms), LayerNorm, GroupNorm, LocalResponseNorm and,
#: where torch has it, RMSNorm.
TORCH_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)

_NORM_REGISTRIES: tuple[Registry, ...] = (NORMS, RECURRENT_NORMS)
_norm_cache: dict[tuple[int, ...], tuple[type[nn.Module], ...]] = {}


def _module_class(obj: Any) -> type[nn.Module] | None:
    """The Module class ``obj`` is (a class) or builds (its return annotation), if specific:
    ``nn.Module`` itself and ``nn.Identity`` (the "none" placeholder) say nothing."""
    cls = obj
    if not isinstance(obj, type):
        try:
            cls = typing.get_type_hints(obj).get("return")
        except Exception:  # noqa: BLE001 - an unresolvable annotation just says nothing
            return None
    if isinstance(cls, type) and issubclass(cls, nn.Module) and cls not in (nn.Module,
                                                                          nn.Identity):
        return cls
    return None


def _registered_norm_classes(registry: Registry) -> list[type[nn.Module]]:
    """The Module classes a norm registry's entries put in a model as their norm.

    - ``"none"`` entries (no normalization) give none;
    - an entry of kind ``"weight"`` (``wn``, ``cwn``, ``normprop``: it reparametrizes the
      preceding layer, which stays a weight layer) gives its ``meta["slot"]`` when that is a
      class (NormProp's standardization); a slot given by name is a registered norm already;
    - any other entry gives its factory when that is a class, or the class its factory
      function returns (its return annotation: ``_ln_factory(...) -> RecurrentLayerNorm``).
    """
    out: list[type[nn.Module]] = []
    for entry in registry:
        if entry.name == "none":
            continue
        if entry.meta.get("kind") == "weight":
            slot = entry.meta.get("slot")
            cls = _module_class(slot) if isinstance(slot, type) else None
        else:
            cls = _module_class(entry.factory)
        if cls is not None and cls not in out:
            out.append(cls)
    return out


def norm_types() -> tuple[type[nn.Module], ...]:
    """Every class :func:`is_norm` recognizes by type: :data:`TORCH_NORM_TYPES`, then the
    classes of the norms registered in ``NORMS`` and ``RECURRENT_NORMS`` (read again when an
    entry is added)."""
    key = tuple(len(r) for r in _NORM_REGISTRIES)
    if key not in _norm_cache:
        _norm_cache.clear()
        found = list(TORCH_NORM_TYPES)
        for registry in _NORM_REGISTRIES:
            found += [c for c in _registered_norm_classes(registry)
                      if not issubclass(c, tuple(found))]
        _norm_cache[key] = tuple(found)
    return _norm_cache[key]


def is_norm(module: Any) -> bool:
    """Whether ``module`` is a normalization layer (it normalizes the activations through it).

    True for torch's norms (:data:`TORCH_NORM_TYPES`) and every norm trainlab registers
    (``NORMS``: bn, ln, in, gn, brn, mobn and NormProp's standardization; ``RECURRENT_NORMS``:
    the frame-wise and sequence-wise BN and the recurrent LN), subclasses included; see
    :func:`norm_types`. A module from outside trainlab whose class name contains "norm" (any
    case: a user's ``RMSNorm``, torchvision's ``FrozenBatchNorm2d``, ``BatchRenorm``) counts
    too, unless it is a weight layer.

    False for weight layers, weight-normalized ones included (``WeightNormLinear``: its
    *weight* is normalized, see :func:`trainlab.nn.weight_norm.is_weight_normalized`), for
    ``nn.Identity`` (the ``"none"`` norm) and trainlab's ``NoRecurrentNorm``, activations and
    containers.
    """
    if not isinstance(module, nn.Module):
        return False
    if isinstance(module, norm_types()):
        return True
    cls = type(module)
    if cls.__module__.split(".")[0] == "trainlab":  # trainlab's own: the registries said
        return False
    return "norm" in cls.__name__.lower() and not is_weight_layer(module)


# -- weight layers ------------------------------------------------------------------------
#: The classes of weight layers (subclasses included): see :func:`is_weight_layer`.
WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,  # Conv1d/2d/3d, ConvTranspose1d/2d/3d, lazy forms
    nn.Embedding,
    WhitenedLinear,
)

#: :data:`WEIGHT_LAYER_TYPES` for messages.
WEIGHT_LAYERS_TEXT = (
    "nn.Linear, nn.Bilinear, nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d, nn.Embedding and "
    "trainlab's WhitenedLinear"
)


def is_weight_layer(module: Any) -> bool:
    """Whether ``module`` is a weight layer: its own ``weight`` is one matrix or filter bank.

    The rule: an instance of :data:`WEIGHT_LAYER_TYPES` — ``nn.Linear``, ``nn.Bilinear``,
    ``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``, ``nn.Embedding`` (a lookup table: a
    matrix without a fan-in) and trainlab's ``WhitenedLinear``, with their subclasses (lazy
    layers; weight-normalized layers: trainlab's ``WeightNormLinear``/``WeightNormConv*``,
    torch's ``parametrizations.weight_norm``; attention's ``out_proj``) — whose ``weight`` is
    a tensor.

    Not weight layers: recurrent layers and cells (``nn.RNN``/``LSTM``/``GRU``, trainlab's
    ``LSTM``/``RNN``: several stacked gate matrices), ``nn.MultiheadAttention`` itself (its
    packed ``in_proj_weight``; its ``out_proj`` is an ``nn.Linear`` and counts), modules
    that hold a weight layer (``Maxout``: its pieces are the ``nn.Linear`` named ``linear``
    inside it, counted once), norms and activations with parameters.
    """
    return isinstance(module, WEIGHT_LAYER_TYPES) and isinstance(
        getattr(module, "weight", None), Tensor)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every weight layer of ``model`` (:func:`is_weight_layer`), in
    ``named_modules()`` order (``model`` itself is named ``""``)."""
    return [(n, m) for n, m in model.named_modules() if is_weight_layer(m)]
