"""The units a model is built from: one activation, one norm (or a weight reparametrization
and the norm in its slot), and the pre-activation residual block (He et al. 2016).

The builders of :mod:`trainlab.models` assemble these into networks; they live with the
layers because initializations need them too (Fixup finds :class:`PreActBlock` s).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from trainlab.nn.activations import ACTIVATIONS, activation_info
from trainlab.nn.norms import NORMS, norm_kind, norm_layer
from trainlab.registry import split_spec

__all__ = ["PreActBlock"]


# -- activations and norms -----------------------------------------------------------------
def _replaces_linear(activation: Any) -> bool:
    """Whether the activation spec is a unit that replaces the linear layer (maxout)."""
    name = _spec_name(activation)
    info = activation_info(name if name is not None else activation, strict=False)
    return bool(getattr(info, "replaces_linear", False))


def _build_activation(activation: Any, *args: Any, **kwargs: Any) -> nn.Module:
    """Build one activation (a fresh copy when given an already-built Module)."""
    if isinstance(activation, nn.Module):
        if args or kwargs:
            raise ValueError(
                f"activation {activation!r} is an already-built module; a unit that replaces "
                "the linear layer must be given by name or class so it can be built per layer."
            )
        return copy.deepcopy(activation)
    return ACTIVATIONS.build(activation, *args, **kwargs)


def _linear_unit(activation: Any, in_f: int, out_f: int, bias: bool) -> tuple[nn.Module, nn.Module]:
    """``(linear, act)`` for one block: a Linear and the activation, or the activation's own
    linear unit (maxout, built as ``factory(in_f, out_f)``) and ``Identity``."""
    if _replaces_linear(activation):
        kw = {} if bias else {"bias": False}
        return _build_activation(activation, in_f, out_f, **kw), nn.Identity()
    return nn.Linear(in_f, out_f, bias=bias), _build_activation(activation)


def _spec_name(spec: Any) -> str | None:
    parsed = split_spec(spec)
    return None if parsed is None else parsed[0]


def _spec_kwargs(spec: Any) -> dict[str, Any]:
    parsed = split_spec(spec)
    return {} if parsed is None else parsed[1]


def _check_norm_for_vectors(norm: Any) -> None:
    """An MLP's norms see ``(N, C)``: reject a registered norm that needs spatial positions."""
    name = "none" if norm is None else _spec_name(norm)
    if name is None:
        return
    entry = NORMS.get(name)
    if entry.meta.get("min_rank", 2) > 2:
        usable = [e.name for e in NORMS if e.meta.get("min_rank", 2) <= 2]
        raise ValueError(
            f"norm {entry.name!r} needs inputs with spatial positions (N, C, *spatial), but an "
            f"mlp's layers give (N, C). Received: norm={norm!r}. Allowed in mlp: "
            f"{', '.join(usable)}."
        )


def _apply_weight_norm(norm: Any, layer: nn.Module) -> nn.Module:
    """Wrap ``layer`` with a norm of kind ``"weight"`` (``factory(layer, **kwargs)``)."""
    name = _spec_name(norm)
    if name is not None:
        return NORMS.get(name).build(layer, **_spec_kwargs(norm))
    return norm(layer)


def _norm_meta(norm: Any) -> Mapping[str, Any]:
    """The registry meta of a norm spec (``{}`` for classes and callables)."""
    name = "none" if norm is None else _spec_name(norm)
    return NORMS.get(name).meta if name is not None else {}


def _layer_and_norm(norm: Any, layer: nn.Module, channels: int) -> tuple[nn.Module, nn.Module]:
    """The (possibly reparametrized) layer and the module for its ``norm`` slot: for a
    ``"weight"`` norm, the norm its meta names as ``slot`` (WN + mean-only BN, NormProp's
    standardization) or ``Identity``."""
    if norm_kind(norm) == "weight":
        slot = _norm_meta(norm).get("slot")
        return _apply_weight_norm(norm, layer), (
            norm_layer(slot, channels) if slot is not None else nn.Identity())
    return layer, norm_layer(norm, channels)


def _norm_placement(norm: Any, placement: str, activation: Any, model: str) -> str:
    """Apply what a norm's meta requires of the block: ``placement`` (NormProp's
    standardization follows the ReLU by definition), ``activations`` and ``models``."""
    meta = _norm_meta(norm)
    name = _spec_name(norm)
    models = meta.get("models")
    if models is not None and model not in models:
        raise ValueError(
            f"norm {name!r} is defined for {', '.join(models)} only (see its reference: "
            f"{NORMS.get(name).reference}). Received: norm={norm!r} in {model}."
        )
    acts = meta.get("activations")
    if acts is not None:
        act_name = _spec_name(activation)
        info = activation_info(act_name if act_name is not None else activation, strict=False)
        got = getattr(info, "name", act_name)
        if got not in acts:
            raise ValueError(
                f"norm {name!r} uses closed-form statistics of {', '.join(acts)} only. "
                f"Received: activation={activation!r}. Allowed with {name!r}: "
                f"{', '.join(acts)}."
            )
    return meta.get("placement", placement)



class PreActBlock(nn.Module):
    """A pre-activation residual block (He, Zhang, Ren & Sun 2016, "Identity Mappings"):

    ``h = act1(norm1(x))``; ``y = conv2(act2(norm2(conv1(h)))) + shortcut(...)`` where the
    shortcut is the identity on ``x``, or a 1x1 strided convolution of ``h`` when the shape
    changes (a projection, as in the paper's code). Children are listed in forward order.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        activation: Any,
        norm: Any,
        dropout: float,
        bias: bool,
    ) -> None:
        super().__init__()
        conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        conv1, norm2 = _layer_and_norm(norm, conv1, out_channels)
        conv2, _ = _layer_and_norm(norm, conv2, out_channels)
        self.norm1 = norm_layer(norm, in_channels) if norm_kind(norm) != "weight" else nn.Identity()
        self.act1 = _build_activation(activation)
        self.conv1 = conv1
        self.norm2 = norm2
        self.act2 = _build_activation(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else None
        self.conv2 = conv2
        self.projects = stride != 1 or in_channels != out_channels
        if self.projects:
            self.shortcut: nn.Module = nn.Conv2d(
                in_channels, out_channels, 1, stride=stride, bias=bias
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.act1(self.norm1(x))
        out = self.act2(self.norm2(self.conv1(h)))
        if self.drop is not None:
            out = self.drop(out)
        out = self.conv2(out)
        # The projection reads the pre-activated input (as in He et al.'s code).
        return out + (self.shortcut(h) if self.projects else x)
