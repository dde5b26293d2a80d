"""Normalizations (family ``norm``): ``none``, ``bn``, ``ln``, ``in``, ``gn`` here; ``brn``
and ``mobn`` in :mod:`trainlab.nn.renorm`; ``wn``, ``cwn``, ``wn_mobn`` in
:mod:`trainlab.nn.weight_norm`; ``normprop`` in :mod:`trainlab.nn.normprop`.

Every layer here is a thin Module over torch's fused kernel (``F.batch_norm``,
``F.layer_norm``, ``F.group_norm``, ``F.instance_norm``); trainlab adds one name per technique,
one input convention, and errors that say what went wrong. All layers take
``num_features`` (the channel count ``C``) first and accept channels-first inputs ``(N, C)``
(MLPs) or ``(N, C, *spatial)`` (CNNs), so the same name works in both.

For a channel ``c`` the layers compute ``y = gamma_c * (x - mu) / sqrt(var + eps) + beta_c``,
with the biased variance and ``mu, var`` taken over:

====  =======================================================  ==============================
name  statistics over                                          reference
====  =======================================================  ==============================
bn    the batch and spatial positions, per channel             Ioffe & Szegedy 2015
ln    the channels and spatial positions, per sample            Ba, Kiros & Hinton 2016
in    the spatial positions, per sample and channel             Ulyanov et al. 2016
gn    groups of C/G channels and spatial positions, per sample  Wu & He 2018
====  =======================================================  ==============================

**BN's running statistics and the momentum convention.** In training, BN normalizes with the
batch statistics and updates running estimates used in eval mode. PyTorch and Keras use the
word *momentum* for opposite weights::

    PyTorch: running = (1 - momentum) * running + momentum * batch     (default momentum=0.1)
    Keras:   running = momentum * running + (1 - momentum) * batch     (default momentum=0.99)

so PyTorch's ``momentum=m`` is Keras' ``momentum=1-m`` (:func:`momentum_from_keras`). Two more
differences when porting: PyTorch's running variance is updated with the *unbiased* batch
variance (``n/(n-1)`` times the biased one, ``n`` = values per channel) while the batch itself
is normalized with the biased one; and the default ``eps`` is ``1e-5`` in PyTorch, ``1e-3``
in Keras. ``momentum=None`` gives the cumulative average of all batches seen (PyTorch only).

**LN on images.** For ``(N, C)`` inputs ``ln`` is ``nn.LayerNorm(C)``. For ``(N, C, H, W)``
it normalizes each sample over ``(C, H, W)`` with a *per-channel* affine — i.e.
``GroupNorm(1, C)``, the form Wu & He 2018 compare with — so its parameters do not depend on
the image size. At init (gamma = 1, beta = 0) it equals ``nn.LayerNorm([C, H, W])``.

**IN on vectors.** Instance norm needs spatial positions: on ``(N, C)`` each (sample,
channel) holds one value and the output would be ``beta`` for every input, so ``in`` raises a
``ValueError`` there. Unlike ``nn.InstanceNorm2d``, ``in`` is affine by default (as the
other norms here, and as in Wu & He's comparison).

**GN's group count.** An explicit ``groups`` must divide ``C`` (else ``ValueError``). The
default (``groups=None``) is :func:`default_groups`: Wu & He's 32 groups, lowered to the
largest divisor of ``C`` that leaves at least two channels per group (64 -> 32, 32 -> 16,
16 -> 8, 10 -> 5, 7 -> 1), so ``"gn"`` works at any width and never turns into IN silently.

**Plugging in more norms.** An entry's ``meta["kind"]`` says where it acts: ``"activation"``
(a layer on the pre- or post-activation, placed before or after the nonlinearity; BN, LN, GN,
IN, batch renormalization) or ``"weight"`` (a reparametrization of the preceding
Linear/Conv such as weight normalization: its factory is called as ``factory(layer, **kw)``
and returns the layer to use; builders then put ``Identity`` at ``norm``). ``meta`` also says
``needs_batch_stats`` (the output of one sample depends on the others in training),
``running_stats`` and ``min_rank`` (smallest accepted input rank); a ``"weight"`` entry may
add ``slot`` (the norm the builders put in the ``norm`` slot instead of ``Identity``),
``placement`` (a placement the technique requires), ``activations`` (the only nonlinearities
it is defined for) and ``models`` (the builders it is defined for).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from trainlab.registry import Registry

__all__ = [
    "NORMS",
    "PLACEMENTS",
    "BatchNorm",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "batch_norm",
    "check_placement",
    "default_groups",
    "momentum_from_keras",
    "norm_layer",
]

NORMS = Registry("norm")

#: Where a norm sits in a block, relative to the nonlinearity.
PLACEMENTS = ("before", "after")


# -- checks shared by every layer --------------------------------------------------------------
def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _check_input(x: torch.Tensor, num_features: int, name: str, min_rank: int = 2) -> None:
    """Rank and channel count of a channels-first input, with a readable message."""
    if x.dim() < min_rank:
        want = "(N, C) or (N, C, *spatial)" if min_rank == 2 else "(N, C, *spatial)"
        raise ValueError(
            f"{name} expects a channels-first input of shape {want} (rank >= {min_rank}). "
            f"Received: input of shape {_shape(x)}."
        )
    if x.shape[1] != num_features:
        raise ValueError(
            f"{name} was built for num_features={num_features} channels (input dim 1). "
            f"Received: input of shape {_shape(x)} with {x.shape[1]} channels."
        )


def _check_batch_stats(x: torch.Tensor, name: str = "BatchNorm ('bn')") -> None:
    """Batch statistics need more than one value per channel (torch's message is cryptic)."""
    values_per_channel = x.numel() // max(x.shape[1], 1) if x.dim() >= 2 else x.numel()
    if values_per_channel <= 1:
        raise ValueError(
            f"{name} in training mode normalizes each channel with the mean and variance over "
            f"the batch (and spatial positions), but the input of shape {_shape(x)} has only one "
            f"value per channel (batch size {x.shape[0]}), which cannot give batch statistics. "
            "Call model.eval() to use the running statistics, train with a batch size above 1, "
            "or use a norm that does not need batch statistics: 'ln', 'gn', 'wn', 'cwn' or "
            "'normprop'."
        )


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}.")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# -- functional forms ----------------------------------------------------------------------
def batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.batch_norm`` with a clear error when batch statistics cannot be computed.

    ``y = weight * (x - mu) / sqrt(var + eps) + bias`` per channel (dim 1), where ``mu, var``
    are the batch's (biased) statistics when ``training`` (or no running statistics are
    given), else ``running_mean, running_var``. In training the running buffers are updated
    in place with PyTorch's convention ``running = (1 - momentum) running + momentum batch``
    (unbiased batch variance for ``running_var``).
    """
    if training or running_mean is None:
        _check_batch_stats(x)
    return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


def momentum_from_keras(keras_momentum: float) -> float:
    """PyTorch's BN ``momentum`` equal to Keras' ``momentum`` (``1 - keras_momentum``).

    Keras keeps ``momentum`` of the old running value (default 0.99); PyTorch takes
    ``momentum`` of the new batch value (default 0.1). Also note eps (Keras 1e-3, torch 1e-5).
    """
    if not 0.0 <= float(keras_momentum) <= 1.0:
        raise ValueError(
            f"keras_momentum must be in [0, 1]. Received: keras_momentum={keras_momentum!r}."
        )
    return 1.0 - float(keras_momentum)


def default_groups(num_features: int, max_groups: int = 32) -> int:
    """GN's default group count: the largest divisor ``G <= max_groups`` of ``C`` with
    ``C / G >= 2`` (Wu & He 2018 use 32; fewer where ``C`` asks for it); 1 when ``C == 1``."""
    _check_positive("num_features", num_features)
    _check_positive("max_groups", max_groups)
    ok = [g for g in _divisors(num_features) if g <= max_groups and num_features // g >= 2]
    return max(ok) if ok else 1


def check_placement(placement: str) -> str:
    """Validate a norm placement (``"before"`` or ``"after"`` the nonlinearity)."""
    p = placement.strip().lower() if isinstance(placement, str) else placement
    if p not in PLACEMENTS:
        raise ValueError(
            f"placement must be one of {PLACEMENTS} (the norm's place relative to the "
            f"nonlinearity). Received: placement={placement!r}."
        )
    return p


# -- layers --------------------------------------------------------------------------------
class BatchNorm(_BatchNorm):
    """Batch normalization for ``(N, C)`` and ``(N, C, *spatial)`` inputs (Ioffe & Szegedy 2015).

    One class for MLPs and CNNs over torch's fused ``F.batch_norm``; the parameters and
    buffers (``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``) have the names and shapes of ``nn.BatchNorm1d/2d``, whose
    state_dicts load into it and back. Statistics per channel over the batch and spatial
    positions; running statistics with PyTorch's momentum convention (see the module
    docstring for Keras'). In training mode an input with a single value per channel raises
    a ``ValueError`` that says so.

    Args:
        num_features: channel count ``C`` (input dim 1).
        eps: added to the variance.
        momentum: weight of the new batch in the running statistics; ``None`` for the
            cumulative average.
        affine: learn ``gamma`` (``weight``) and ``beta`` (``bias``).
        track_running_stats: keep running statistics for eval mode; without them, eval mode
            uses batch statistics too.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        _check_positive("num_features", num_features)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _check_input(input, self.num_features, "BatchNorm ('bn')")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if self.training or self.running_mean is None:
            _check_batch_stats(x)
        return super().forward(x)


class LayerNorm(nn.Module):
    """Layer normalization: per sample, over channels and spatial positions (Ba et al. 2016).

    ``(N, C)``: ``F.layer_norm`` over ``C`` (equals ``nn.LayerNorm(C)``). ``(N, C, *spatial)``:
    over ``(C, *spatial)`` with a per-channel affine, i.e. ``F.group_norm`` with one group
    (Wu & He 2018); the parameter count does not depend on the input size.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        _check_positive("num_features", num_features)
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        if affine:
            kw = {"device": device, "dtype": dtype}
            self.weight = nn.Parameter(torch.empty(num_features, **kw))
            self.bias = nn.Parameter(torch.empty(num_features, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.num_features, "LayerNorm ('ln')")
        if x.dim() == 2:
            if self.num_features == 1:
                raise ValueError(
                    "LayerNorm ('ln') on an (N, 1) input normalizes a single value per sample, "
                    f"so every output would equal beta. Received: input of shape {_shape(x)}."
                )
            return F.layer_norm(x, (self.num_features,), self.weight, self.bias, self.eps)
        return F.group_norm(x, 1, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class GroupNorm(nn.Module):
    """Group normalization: per sample, over groups of ``C/G`` channels and spatial positions.

    Wu & He 2018; ``F.group_norm`` underneath, per-channel affine. ``groups`` must divide
    ``num_features``; ``None`` picks :func:`default_groups`. One group is LN over
    ``(C, *spatial)``; ``C`` groups is IN. Note the argument order differs from
    ``nn.GroupNorm(num_groups, num_channels)``: channels come first, as in every trainlab norm.
    """

    def __init__(
        self,
        num_features: int,
        groups: int | None = None,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        _check_positive("num_features", num_features)
        if groups is None:
            groups = default_groups(num_features)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be a positive integer. Received: groups={groups!r}.")
        if num_features % groups != 0:
            raise ValueError(
                f"groups must divide num_features. Received: groups={groups}, "
                f"num_features={num_features}. Allowed: groups in "
                f"{_divisors(num_features)} (the divisors of {num_features})."
            )
        self.num_features = num_features
        self.groups = groups
        self.eps = eps
        self.affine = affine
        if affine:
            kw = {"device": device, "dtype": dtype}
            self.weight = nn.Parameter(torch.empty(num_features, **kw))
            self.bias = nn.Parameter(torch.empty(num_features, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.num_features, "GroupNorm ('gn')")
        per_group = (self.num_features // self.groups) * math.prod(x.shape[2:])
        if per_group <= 1:
            raise ValueError(
                f"GroupNorm ('gn') with groups={self.groups} on an input of shape {_shape(x)} "
                "normalizes a single value per group, so every output would equal beta. "
                "Use fewer groups (at least two channels per group for (N, C) inputs)."
            )
        return F.group_norm(x, self.groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, eps={self.eps}, affine={self.affine}"


class InstanceNorm(_InstanceNorm):
    """Instance normalization: per sample and channel, over spatial positions (Ulyanov 2016).

    ``F.instance_norm`` underneath; inputs ``(N, C, *spatial)`` with more than one spatial
    position. On ``(N, C)`` inputs it would output ``beta`` for every input, so it raises a
    ``ValueError``. Affine by default (``nn.InstanceNorm2d`` is not); no running statistics
    unless ``track_running_stats=True``.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        _check_positive("num_features", num_features)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() == 2:
            raise ValueError(
                "InstanceNorm ('in') normalizes each channel of each sample over its spatial "
                f"positions; an (N, C) input (received shape {_shape(input)}) has one value "
                "per sample and channel, so every output would equal beta. Use 'ln', 'gn' or "
                "'bn' for MLPs."
            )
        _check_input(input, self.num_features, "InstanceNorm ('in')", min_rank=3)
        if math.prod(input.shape[2:]) <= 1:
            raise ValueError(
                "InstanceNorm ('in') needs more than one spatial position per channel. "
                f"Received: input of shape {_shape(input)}."
            )

    def _get_no_batch_dim(self) -> int:  # unbatched inputs are not supported: always batched
        return -1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        use_input_stats = self.training or not self.track_running_stats
        return F.instance_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_input_stats,
            self.momentum if self.momentum is not None else 0.0,
            self.eps,
        )


# -- registry ------------------------------------------------------------------------------
def _none(num_features: int | None = None, **kwargs: Any) -> nn.Identity:
    """No normalization (``nn.Identity``); ``num_features`` and options are ignored."""
    return nn.Identity()


NORMS.add(
    "none",
    _none,
    description="no normalization (identity)",
    aliases=("identity",),
    meta={"kind": "activation", "needs_batch_stats": False, "running_stats": False, "min_rank": 2},
)
NORMS.add(
    "bn",
    BatchNorm,
    description="batch norm: per channel over batch and positions; running stats for eval",
    reference="Ioffe & Szegedy 2015",
    aliases=("batchnorm", "batch_norm"),
    meta={"kind": "activation", "needs_batch_stats": True, "running_stats": True, "min_rank": 2},
)
NORMS.add(
    "ln",
    LayerNorm,
    description="layer norm: per sample over channels (and positions, per-channel affine)",
    reference="Ba, Kiros & Hinton 2016",
    aliases=("layernorm", "layer_norm"),
    meta={"kind": "activation", "needs_batch_stats": False, "running_stats": False, "min_rank": 2},
)
NORMS.add(
    "in",
    InstanceNorm,
    description="instance norm: per sample and channel over spatial positions (images only)",
    reference="Ulyanov, Vedaldi & Lempitsky 2016",
    aliases=("instancenorm", "instance_norm"),
    meta={"kind": "activation", "needs_batch_stats": False, "running_stats": False, "min_rank": 3},
)
NORMS.add(
    "gn",
    GroupNorm,
    description="group norm: per sample over groups of channels and positions",
    reference="Wu & He 2018",
    aliases=("groupnorm", "group_norm"),
    meta={"kind": "activation", "needs_batch_stats": False, "running_stats": False, "min_rank": 2},
)


def norm_kind(spec: Any) -> str:
    """``"activation"`` or ``"weight"`` (see the module docstring) for a norm spec.

    Names (and ``(name, kwargs)`` / ``{"name": ...}`` specs) read their registry entry;
    classes and callables say so with a ``norm_kind`` attribute (default ``"activation"``).
    """
    if spec is None:
        return "activation"
    resolved = NORMS.resolve(spec)
    if resolved is not None:
        return resolved[0].meta.get("kind", "activation")
    return getattr(spec, "norm_kind", "activation")


def norm_layer(name: Any, num_features: int, **kwargs: Any) -> nn.Module:
    """Build an activation norm over ``num_features`` channels from a name or spec.

    ``name`` is a registered name (``"bn"``, ``"gn"`` ...), ``None`` (= ``"none"``), a
    ``(name, kwargs)`` pair, a ``{"name": ..., **kwargs}`` dict, or a class/callable called
    as ``factory(num_features, **kwargs)``. Unknown names raise ``ValueError`` with close
    matches. For ``"weight"``-kind norms (which wrap a layer) use the entry's factory instead.

    >>> norm_layer("gn", 64, groups=8)
    GroupNorm(64, groups=8, eps=1e-05, affine=True)
    """
    if name is None:
        name = "none"
    if norm_kind(name) != "activation":
        raise ValueError(
            f"norm_layer builds norms that act on activations; {name!r} reparametrizes the "
            "preceding layer's weights (kind 'weight'): call its factory on that layer."
        )
    return NORMS.build(name, num_features, **kwargs)
