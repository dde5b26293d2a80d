"""Fold normalizations into plain layers, for inference; every fold is checked.

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

**More than BN.** Batch renormalization is BN at inference (same buffers), so it folds the
same way; mean-only BN is ``y = z - mu + beta`` (``s = 1``). Transposed convolutions fold per
*output* channel (their weight is ``(C_in, C_out/groups, *k)``); grouped convolutions too. A
BN after a weight-normalized layer (``wn``, ``cwn``) folds through the layer's ``weight``
setter (``v = W'``, ``g = ||W'_i||``). :func:`fold_norms` also *bakes* every weight-normalized layer
(WN, CWN, NormProp) into a plain ``nn.Linear``/``nn.ConvNd`` whose ``weight`` is the computed
``g v / ||v||`` (CWN: of the centred ``v``), so inference pays nothing for the
reparametrization.

**Every fold is checked.** :func:`fold_bn` and :func:`fold_norms` run a probe batch through the
eval-mode original and the folded copy and raise :class:`FoldError` when the outputs differ by
more than rounding (``rtol``/``atol``; defaults by dtype: 1e-4/1e-5 in float32, 1e-9/1e-10 in
float64, relative to the output's scale). ``probe`` is a batch of inputs; without one, a
trainlab-built model (``model.spec``) gets a seeded random batch of the right shape, and any
other model is folded with a warning that it was not checked.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from trainlab.nn.renorm import MeanOnlyBatchNorm
from trainlab.nn.weight_norm import (
    _from_rows,
    is_weight_normalized,
    remove_weight_norm_,
    weight_rows,
)

__all__ = ["FoldError", "check_fold", "fold_bn", "fold_bn_into_", "fold_norms", "foldable_pairs"]

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_FOLDABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, *_TRANSPOSED)


class FoldError(ValueError):
    """The folded model does not compute what the eval-mode original computes."""


def _is_foldable_bn(m: nn.Module) -> bool:
    if isinstance(m, MeanOnlyBatchNorm):
        return True
    return isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None


def _num_features(bn: nn.Module) -> int:
    return int(bn.num_features)


def _out_channels(layer: nn.Module) -> int:
    return int(layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)


def _weight_settable(layer: nn.Module) -> bool:
    """A plain weight Parameter, a parametrized one that can be set (``right_inverse``), or a
    trainlab weight-normalized layer (its ``weight`` setter).

    A weight recomputed by a forward hook (old-style ``torch.nn.utils.weight_norm``) cannot.
    """
    if getattr(layer, "settable_weight", False):
        return True
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
                if _num_features(bn) == _out_channels(layer):
                    pairs.append((prefix + ln, prefix + bn_name))
    return pairs


def _eval_affine(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """``(a, c)`` in float64 with ``bn_eval(z) = a z + c`` per channel."""
    d64 = torch.float64
    mu = bn.running_mean.to(d64)
    if isinstance(bn, MeanOnlyBatchNorm):
        a = torch.ones_like(mu)
        shift = bn.bias.to(d64) if bn.bias is not None else torch.zeros_like(mu)
        return a, shift - mu
    a = torch.rsqrt(bn.running_var.to(d64) + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight.to(d64)
    shift = bn.bias.to(d64) if bn.bias is not None else torch.zeros_like(a)
    return a, shift - mu * a


@torch.no_grad()
def fold_bn_into_(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """Fold ``bn`` (eval-mode semantics) into ``layer`` in place; return ``layer``.

    ``bn`` is a BatchNorm with running statistics (torch's or trainlab's, batch renorm
    included) or a mean-only BN. The arithmetic is done in float64 and cast back to the
    layer's dtype. A layer without bias gets one. A parametrized weight (torch's weight
    normalization) is set through its ``right_inverse``, a trainlab weight-normalized layer
    through its ``weight`` setter. This function does not check the result: :func:`fold_bn`
    and :func:`fold_norms` do.
    """
    if not isinstance(layer, _FOLDABLE_LAYERS):
        raise TypeError(
            "fold_bn_into_ folds into nn.Linear, nn.Conv1d/2d/3d or nn.ConvTranspose1d/2d/3d. "
            f"Received: layer of type {type(layer).__name__}."
        )
    if not _is_foldable_bn(bn):
        raise ValueError(
            "fold_bn_into_ needs a BatchNorm with running statistics (track_running_stats=True); "
            f"without them eval mode uses batch statistics. Received: {bn!r}."
        )
    out = _out_channels(layer)
    if _num_features(bn) != out:
        raise ValueError(
            f"the BN has num_features={_num_features(bn)} but the layer has {out} outputs. "
            f"Received: layer={layer!r}, bn={bn!r}."
        )
    if not _weight_settable(layer):
        raise ValueError(
            f"cannot fold into {type(layer).__name__}: a parametrization of its weight has "
            "no right_inverse, so the folded weight cannot be set."
        )
    w = layer.weight
    transposed, groups = isinstance(layer, _TRANSPOSED), int(getattr(layer, "groups", 1))
    a, c = _eval_affine(bn)
    rows = weight_rows(w.to(torch.float64), transposed, groups) * a.reshape(-1, 1)
    new_w = _from_rows(rows, w.shape, transposed, groups)
    b = layer.bias.to(torch.float64) if layer.bias is not None else torch.zeros_like(a)
    new_b = a * b + c
    if parametrize.is_parametrized(layer, "weight") or getattr(layer, "settable_weight", False):
        # Set through the parametrization (torch's weight norm: g and v) or trainlab's weight
        # setter, which stay in place. (remove_parametrizations would edit the class, which a
        # deepcopy shares.)
        layer.weight = new_w.to(w.dtype)
    else:
        w.copy_(new_w.to(w.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_b.to(device=w.device, dtype=w.dtype))
    else:
        layer.bias.copy_(new_b.to(layer.bias.dtype))
    return layer


# -- the check ----------------------------------------------------------------------------------
def _default_probe(model: nn.Module) -> Tensor | None:
    """A seeded batch of inputs for a trainlab-built model (from ``model.spec``), else None."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict) or not spec:
        return None
    p = next(iter(model.parameters()), None)
    kw = {"dtype": p.dtype, "device": p.device} if p is not None else {}
    g = torch.Generator().manual_seed(0)
    if "in_features" in spec and isinstance(spec["in_features"], int):
        shape: tuple[int, ...] = (8, spec["in_features"])
    elif "in_channels" in spec and isinstance(spec["in_channels"], int):
        shape = (4, spec["in_channels"]) + ((32,) if spec.get("dims", 2) == 1 else (16, 16))
    else:
        return None
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(**kw)


def _tolerances(dtype: torch.dtype, rtol: float | None, atol: float | None) -> tuple[float, float]:
    if dtype == torch.float64:
        return (1e-9 if rtol is None else rtol), (1e-10 if atol is None else atol)
    if dtype in (torch.float16, torch.bfloat16):
        return (1e-2 if rtol is None else rtol), (1e-3 if atol is None else atol)
    return (1e-4 if rtol is None else rtol), (1e-5 if atol is None else atol)


@torch.no_grad()
def check_fold(
    original: nn.Module,
    folded: nn.Module,
    probe: Any,
    what: str = "fold",
    rtol: float | None = None,
    atol: float | None = None,
) -> float:
    """Run ``probe`` through ``original`` (in eval mode; its modes are restored after) and
    ``folded``; raise :class:`FoldError` when the outputs differ beyond ``rtol``/``atol``
    (``atol`` relative to the largest output magnitude). Return the largest difference."""
    modes = {m: m.training for m in original.modules()}
    try:
        original.eval()
        want = original(probe)
    finally:
        for m, t in modes.items():
            m.train(t)
    got = folded(probe)
    if not isinstance(want, Tensor) or not isinstance(got, Tensor):
        raise TypeError(
            f"{what} checks models that return a tensor. Received: {type(want).__name__}."
        )
    r, a = _tolerances(want.dtype, rtol, atol)
    scale = float(want.abs().max()) if want.numel() else 0.0
    diff = float((got.to(want.dtype) - want).abs().max()) if want.numel() else 0.0
    if got.shape != want.shape or not torch.allclose(got.to(want.dtype), want, rtol=r,
                                                     atol=a * max(scale, 1.0)):
        raise FoldError(
            f"{what}: the folded model does not compute what the eval-mode original computes "
            f"on the probe batch: max |difference| = {diff:.3g} (output scale {scale:.3g}; "
            f"allowed rtol={r:g}, atol={a:g} x scale). A layer's weight could not be set "
            "exactly (a parametrization whose right_inverse is not its inverse?)."
        )
    return diff


def _checked(model: nn.Module, folded: nn.Module, probe: Any, what: str,
             rtol: float | None, atol: float | None) -> nn.Module:
    if probe is None:
        probe = _default_probe(model)
    if probe is None:
        warnings.warn(
            f"{what}: the folded model was not checked against the original (no probe batch, "
            "and the model has no trainlab spec to make one). Pass probe=<a batch of inputs>.",
            stacklevel=3,
        )
        return folded
    check_fold(model, folded, probe, what, rtol, atol)
    return folded


def _fold_bn_pairs(folded: nn.Module) -> None:
    for layer_name, bn_name in foldable_pairs(folded):
        layer = folded.get_submodule(layer_name)
        fold_bn_into_(layer, folded.get_submodule(bn_name))
        parent_name, _, child = bn_name.rpartition(".")
        parent = folded.get_submodule(parent_name) if parent_name else folded
        setattr(parent, child, nn.Identity())


def fold_bn(
    model: nn.Module, probe: Any = None, *, rtol: float | None = None, atol: float | None = None
) -> nn.Module:
    """An eval-mode copy of ``model`` with every BN that follows a Linear/Conv folded into it.

    See the module docstring for which pairs fold (BN, batch renorm, mean-only BN). The folded
    BN's slot holds ``nn.Identity`` so module names do not change; outputs equal those of
    ``model.eval()`` up to rounding (about 1e-6 relative in float32), which is checked on
    ``probe`` (see :func:`check_fold`; :class:`FoldError` when it does not hold). The copy is
    meant for inference: training it no longer normalizes the folded layers.

    >>> folded = fold_bn(mlp(784, [100], 10, norm="bn"))
    >>> folded.block1.norm
    Identity()
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fold_bn needs an nn.Module. Received: {type(model).__name__}.")
    folded = copy.deepcopy(model).eval()
    _fold_bn_pairs(folded)
    return _checked(model, folded, probe, "fold_bn", rtol, atol)


def fold_norms(
    model: nn.Module, probe: Any = None, *, rtol: float | None = None, atol: float | None = None
) -> nn.Module:
    """:func:`fold_bn`, then every weight-normalized layer (WN, CWN, NormProp) baked into a
    plain torch layer with the computed weight; checked on ``probe`` like :func:`fold_bn`.

    >>> fast = fold_norms(mlp(784, [100], 10, norm="cwn"))
    >>> type(fast.block1.linear).__name__
    'Linear'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fold_norms needs an nn.Module. Received: {type(model).__name__}.")
    folded = copy.deepcopy(model).eval()
    _fold_bn_pairs(folded)
    for m in list(folded.modules()):
        if is_weight_normalized(m):
            remove_weight_norm_(m)
    return _checked(model, folded, probe, "fold_norms", rtol, atol)
