"""Fold batch normalization into the preceding Linear or Conv layer, for inference.

In eval mode BN is a fixed affine map per channel (lecture 001, "during testing batchnorm
becomes a linear operator! Can be fused with the previous fully-connected or conv layer").
For a layer ``z = W x + b`` followed by BN with running statistics ``mu, var``, scale
``gamma``, shift ``beta`` and ``eps``::

    s  = gamma / sqrt(var + eps)             (per output channel)
    W' = s * W                               (row / output channel c scaled by s_c)
    b' = s * (b - mu) + beta                 (b = 0 when the layer has no bias)

so ``W' x + b' == BN(W x + b)`` and the BN can be removed. :func:`fold_bn` returns a folded
eval-mode copy; the model passed in is left unchanged.

Which pairs are folded: a ``nn.Linear`` or ``nn.Conv1d/2d/3d`` immediately followed by a
BatchNorm (trainlab's ``BatchNorm`` or torch's ``nn.BatchNorm1d/2d/3d``) with running
statistics, as consecutive children of an ``nn.Sequential`` — whose children run in the order
they are listed, so the BN is known to take the layer's output. Every trainlab builder block
is such a Sequential: with ``placement="before"`` each ``block{i}.linear``/``conv`` and
``block{i}.norm`` pair folds, and ``norm`` becomes ``nn.Identity`` (names stay stable). A BN
after the nonlinearity (``placement="after"``), a BN before its layer (pre-activation ResNets),
or a BN inside a module with a custom ``forward`` is left in place, in eval mode, so the
folded model always computes what the eval-mode original computes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

__all__ = ["fold_bn", "fold_bn_into_", "foldable_pairs"]

_FOLDABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _is_foldable_bn(m: nn.Module) -> bool:
    return isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None


def _weight_settable(layer: nn.Module) -> bool:
    """A plain weight Parameter, or a parametrized one that can be set (``right_inverse``).

    A weight recomputed by a forward hook (old-style ``torch.nn.utils.weight_norm``) cannot.
    """
    if parametrize.is_parametrized(layer, "weight"):
        return all(hasattr(p, "right_inverse") for p in layer.parametrizations["weight"])
    return isinstance(layer._parameters.get("weight"), nn.Parameter)


def foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(layer_name, bn_name)`` for every BN :func:`fold_bn` would fold into its layer."""
    pairs = []
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        prefix = f"{parent_name}." if parent_name else ""
        for (ln, layer), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(layer, _FOLDABLE_LAYERS) and _is_foldable_bn(bn):
                if not _weight_settable(layer):
                    continue
                if bn.num_features == layer.weight.shape[0]:
                    pairs.append((prefix + ln, prefix + bn_name))
    return pairs


@torch.no_grad()
def fold_bn_into_(layer: nn.Module, bn: _BatchNorm) -> nn.Module:
    """Fold ``bn`` (eval-mode semantics) into ``layer`` in place; return ``layer``.

    The arithmetic is done in float64 and cast back to the layer's dtype. A layer without
    bias gets one. A parametrized weight (e.g. weight normalization) is set through its
    parametrization's ``right_inverse``.
    """
    if not isinstance(layer, _FOLDABLE_LAYERS):
        raise TypeError(
            "fold_bn_into_ folds into nn.Linear or nn.Conv1d/2d/3d. "
            f"Received: layer of type {type(layer).__name__}."
        )
    if not _is_foldable_bn(bn):
        raise ValueError(
            "fold_bn_into_ needs a BatchNorm with running statistics (track_running_stats=True); "
            f"without them eval mode uses batch statistics. Received: {bn!r}."
        )
    out = layer.weight.shape[0]
    if bn.num_features != out:
        raise ValueError(
            f"the BN has num_features={bn.num_features} but the layer has {out} outputs. "
            f"Received: layer={layer!r}, bn={bn!r}."
        )
    w = layer.weight
    d64 = torch.float64
    scale = torch.rsqrt(bn.running_var.to(d64) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(d64)
    shift = bn.bias.to(d64) if bn.bias is not None else torch.zeros_like(scale)
    b = layer.bias.to(d64) if layer.bias is not None else torch.zeros_like(scale)
    new_w = w.to(d64) * scale.reshape(-1, *([1] * (w.dim() - 1)))
    new_b = (b - bn.running_mean.to(d64)) * scale + shift
    if parametrize.is_parametrized(layer, "weight"):
        # Set through the parametrization (weight norm: g and v), which stays in place.
        # (remove_parametrizations would edit the class, which a deepcopy shares.)
        if not _weight_settable(layer):
            raise ValueError(
                f"cannot fold into {type(layer).__name__}: a parametrization of its weight has "
                "no right_inverse, so the folded weight cannot be set."
            )
        layer.weight = new_w.to(w.dtype)
    else:
        w.copy_(new_w.to(w.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_b.to(device=w.device, dtype=w.dtype))
    else:
        layer.bias.copy_(new_b.to(layer.bias.dtype))
    return layer


def fold_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BN that follows a Linear/Conv folded into it.

    See the module docstring for which pairs fold. The folded BN's slot holds
    ``nn.Identity`` so module names do not change; outputs equal those of
    ``model.eval()`` up to rounding (about 1e-6 relative in float32). The copy is meant for
    inference: training it no longer normalizes the folded layers.

    >>> folded = fold_bn(mlp(784, [100], 10, norm="bn"))
    >>> folded.block1.norm
    Identity()
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fold_bn needs an nn.Module. Received: {type(model).__name__}.")
    folded = copy.deepcopy(model).eval()
    for layer_name, bn_name in foldable_pairs(folded):
        layer = folded.get_submodule(layer_name)
        fold_bn_into_(layer, folded.get_submodule(bn_name))
        parent_name, _, child = bn_name.rpartition(".")
        parent = folded.get_submodule(parent_name) if parent_name else folded
        setattr(parent, child, nn.Identity())
    return folded
