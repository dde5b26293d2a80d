"""Batch renormalization (``brn``) and mean-only batch normalization (``mobn``).

**Batch renormalization** (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch
Dependence in Batch-Normalized Models", Algorithm 1). Per channel, with batch statistics
``mu_B``, ``sigma_B = sqrt(var_B + eps)`` (biased variance, over the batch and spatial
positions) and moving averages ``mu``, ``sigma``::

    r = stop_gradient(clip(sigma_B / sigma, 1/r_max, r_max))
    d = stop_gradient(clip((mu_B - mu) / sigma, -d_max, d_max))
    y = gamma * ((x - mu_B) / sigma_B * r + d) + beta              (training)
    mu    <- mu    + alpha (mu_B    - mu)                            (after r, d are computed)
    sigma <- sigma + alpha (sigma_B - sigma)
    y = gamma * (x - mu) / sigma + beta                            (inference: BN's)

With ``r_max = 1`` and ``d_max = 0`` the training output and its gradient are batch
normalization's. The paper moves the average of the *standard deviation* ``sigma`` (not of
the variance, as torch's BN and most ports do); trainlab keeps it in the BN buffer
``running_var`` as ``sigma^2 - eps``, so that ``sqrt(running_var + eps) = sigma`` and eval mode,
``state_dict`` keys and :func:`trainlab.nn.fold.fold_bn` are exactly BN's.

**Defaults and their source.** Ioffe 2017 §4 (ImageNet experiments): ``r_max = 1, d_max = 0``
(plain batchnorm) for the first 5000 training steps, then relaxed gradually to reach
``r_max = 3`` at 40k steps and ``d_max = 5`` at 25k steps. These are the defaults here
(``warmup_steps=5000, r_max=3, r_max_steps=40000, d_max=5, d_max_steps=25000``), with linear
ramps between (the paper says "gradually" and gives no shape; linear is what the reference
ports use). A step is one training-mode forward pass (``num_batches_tracked``). Ports differ:
Keras-contrib ties both limits to one ``t_delta`` ramp, some start relaxed at once; pass
``warmup_steps=0, r_max_steps=0, d_max_steps=0`` for constant limits. The moving-average rate
``momentum`` (the paper's ``alpha``) defaults to 0.01, the paper's §4 value as we read it, not
torch BN's 0.1.

**Mean-only batch normalization** (Salimans & Kingma 2016 §2.2): ``y = x - mu_B + beta`` in
training, ``y = x - mu + beta`` at inference (``mu`` a running mean, torch's momentum
convention): centring without scaling, to be combined with weight normalization.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from trainlab.nn.norms import NORMS, _check_batch_stats, _check_input, _check_positive

__all__ = [
    "BatchRenorm",
    "MeanOnlyBatchNorm",
    "batch_renorm",
    "mean_only_batch_norm",
    "renorm_limits",
]


def _check_number(name: str, value: Any, low: float, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low \
            or value != value or value == float("inf"):  # fmt: skip
        raise ValueError(f"{name} must be {allowed}. Received: {name}={value!r}.")
    return float(value)


def _check_steps(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0. Received: {name}={value!r}.")
    return value


def renorm_limits(
    step: int,
    r_max: float = 3.0,
    d_max: float = 5.0,
    warmup_steps: int = 5000,
    r_max_steps: int = 40000,
    d_max_steps: int = 25000,
) -> tuple[float, float]:
    """``(r_max, d_max)`` in force at training step ``step`` (0-based): ``(1, 0)`` for the
    first ``warmup_steps`` steps, then linear ramps reaching ``r_max`` at step ``r_max_steps``
    and ``d_max`` at ``d_max_steps`` (Ioffe 2017 §4: 5000, 40k, 25k with 3 and 5)."""

    def ramp(final: float, start_value: float, end: int) -> float:
        if step < warmup_steps:
            return start_value
        if end <= warmup_steps or step >= end:
            return final
        return start_value + (final - start_value) * (step - warmup_steps) / (end - warmup_steps)

    return ramp(r_max, 1.0, r_max_steps), ramp(d_max, 0.0, d_max_steps)


def batch_renorm(
    x: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    training: bool,
    r_max: float,
    d_max: float,
    momentum: float = 0.01,
    eps: float = 1e-5,
) -> Tensor:
    """Batch renormalization of a channels-first ``x`` (see the module docstring).

    In training, ``running_mean`` and ``running_var`` (= ``sigma^2 - eps``) are updated in
    place with the paper's rule for ``mu`` and ``sigma``; ``r`` and ``d`` carry no gradient.
    In eval mode this is ``F.batch_norm`` with the running statistics.
    """
    if not training:
        return F.batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)
    _check_batch_stats(x, "BatchRenorm ('brn')")
    dims = [0, *range(2, x.dim())]
    view = [1, -1] + [1] * (x.dim() - 2)
    mu_b = x.mean(dim=dims)
    sigma_b = (x.var(dim=dims, unbiased=False) + eps).sqrt()
    with torch.no_grad():
        sigma = (running_var + eps).sqrt()
        r = (sigma_b / sigma).clamp(1.0 / r_max, r_max)
        d = ((mu_b - running_mean) / sigma).clamp(-d_max, d_max)
    y = (x - mu_b.view(view)) / sigma_b.view(view) * r.view(view) + d.view(view)
    if weight is not None:
        y = y * weight.view(view)
    if bias is not None:
        y = y + bias.view(view)
    with torch.no_grad():
        running_mean.add_(momentum * (mu_b.detach() - running_mean))
        new_sigma = sigma + momentum * (sigma_b.detach() - sigma)
        running_var.copy_((new_sigma * new_sigma - eps).clamp_min(0.0))
    return y


class BatchRenorm(_BatchNorm):
    """Batch renormalization (Ioffe 2017) for ``(N, C)`` and ``(N, C, *spatial)`` inputs.

    A ``_BatchNorm`` with BN's parameters and buffers (``weight``, ``bias``,
    ``running_mean``, ``running_var``, ``num_batches_tracked``), so eval mode, folding and
    state dicts are BN's; training mode corrects the batch statistics toward the moving ones
    with ``r`` and ``d`` clipped to the limits of :func:`renorm_limits` at the current step.

    Args:
        num_features: channel count ``C``.
        r_max, d_max: the final limits (paper: 3 and 5); ``r_max >= 1``, ``d_max >= 0``.
        warmup_steps: steps of plain BN (``r_max = 1, d_max = 0``) first (paper: 5000).
        r_max_steps, d_max_steps: the steps at which the linear ramps reach ``r_max`` and
            ``d_max`` (paper: 40000 and 25000); ``<= warmup_steps`` means at once.
        momentum: the moving averages' rate ``alpha`` (default 0.01).
        eps: added to the variance.
        affine: learn ``gamma`` and ``beta``.
    """

    def __init__(
        self,
        num_features: int,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 5000,
        r_max_steps: int = 40000,
        d_max_steps: int = 25000,
        momentum: float = 0.01,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        _check_positive("num_features", num_features)
        self_r = _check_number("r_max", r_max, 1.0, "a finite number >= 1 (r is clipped to "
                               "[1/r_max, r_max]; 1 gives batch norm)")
        self_d = _check_number("d_max", d_max, 0.0, "a finite number >= 0 (d is clipped to "
                               "[-d_max, d_max]; 0 gives batch norm)")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
                or not 0.0 < momentum <= 1.0:  # fmt: skip
            raise ValueError(
                f"momentum must be a number in (0, 1]. Received: momentum={momentum!r}."
            )
        steps = {n: _check_steps(n, v) for n, v in
                 (("warmup_steps", warmup_steps), ("r_max_steps", r_max_steps),
                  ("d_max_steps", d_max_steps))}  # fmt: skip
        super().__init__(num_features, eps, momentum, affine, True, device, dtype)
        self.r_max, self.d_max = self_r, self_d
        self.warmup_steps = steps["warmup_steps"]
        self.r_max_steps, self.d_max_steps = steps["r_max_steps"], steps["d_max_steps"]

    def _check_input_dim(self, input: Tensor) -> None:
        _check_input(input, self.num_features, "BatchRenorm ('brn')")

    def current_limits(self) -> tuple[float, float]:
        """``(r_max, d_max)`` for the next training step."""
        count = self.num_batches_tracked
        # Inside torch.func.vmap (a vectorized pack of models, trainlab.engine.pack) the count
        # is a batched tensor whose members all hold the same step: read the first one, as
        # `int()` of a batched tensor is not allowed.
        from torch._C import _functorch

        while _functorch.is_batchedtensor(count):
            count = _functorch.get_unwrapped(count).reshape(-1)[0]
        return renorm_limits(int(count), self.r_max, self.d_max,
                             self.warmup_steps, self.r_max_steps, self.d_max_steps)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not self.training:
            return batch_renorm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 1.0, 0.0, self.momentum, self.eps)
        r_max, d_max = self.current_limits()
        y = batch_renorm(x, self.running_mean, self.running_var, self.weight, self.bias, True,
                         r_max, d_max, self.momentum, self.eps)
        self.num_batches_tracked.add_(1)
        return y

    def extra_repr(self) -> str:
        return (f"{self.num_features}, r_max={self.r_max}, d_max={self.d_max}, "
                f"warmup_steps={self.warmup_steps}, r_max_steps={self.r_max_steps}, "
                f"d_max_steps={self.d_max_steps}, momentum={self.momentum}, eps={self.eps}, "
                f"affine={self.affine}")


def mean_only_batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    bias: Tensor | None,
    training: bool,
    momentum: float = 0.1,
) -> Tensor:
    """``y = x - mu + beta`` per channel: ``mu`` the batch mean in training (and the running
    mean is updated, torch's convention), else ``running_mean`` (Salimans & Kingma 2016)."""
    view = [1, -1] + [1] * (x.dim() - 2)
    if training or running_mean is None:
        _check_batch_stats(x, "MeanOnlyBatchNorm ('mobn')")
        mu = x.mean(dim=[0, *range(2, x.dim())])
        if training and running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * mu.detach())
    else:
        mu = running_mean
    y = x - mu.view(view)
    return y if bias is None else y + bias.view(view)


class MeanOnlyBatchNorm(nn.Module):
    """Mean-only batch normalization (Salimans & Kingma 2016 §2.2): subtract the minibatch
    mean per channel (the running mean at inference) and add a learned ``bias``; no scale.

    Buffers ``running_mean`` and ``num_batches_tracked`` (BN's names); ``momentum`` as in
    torch's BN (weight of the new batch, default 0.1).
    """

    def __init__(
        self,
        num_features: int,
        momentum: float = 0.1,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        _check_positive("num_features", num_features)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
                or not 0.0 < momentum <= 1.0:  # fmt: skip
            raise ValueError(
                f"momentum must be a number in (0, 1]. Received: momentum={momentum!r}."
            )
        kw = {"device": device, "dtype": dtype}
        self.num_features, self.momentum, self.affine = num_features, float(momentum), affine
        self.bias = nn.Parameter(torch.zeros(num_features, **kw)) if affine else None
        self.register_buffer("running_mean", torch.zeros(num_features, **kw))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_parameters(self) -> None:
        self.running_mean.zero_()
        self.num_batches_tracked.zero_()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features, "MeanOnlyBatchNorm ('mobn')")
        y = mean_only_batch_norm(x, self.running_mean, self.bias, self.training, self.momentum)
        if self.training:
            self.num_batches_tracked.add_(1)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, affine={self.affine}"


NORMS.add(
    "brn",
    BatchRenorm,
    description="batch renorm: BN corrected toward moving stats by clipped r, d; BN at eval",
    reference="Ioffe 2017 (defaults: §4, r_max 1->3 by 40k steps, d_max 0->5 by 25k)",
    aliases=("batch_renorm", "batchrenorm", "renorm"),
    meta={"kind": "activation", "needs_batch_stats": True, "running_stats": True, "min_rank": 2},
)
NORMS.add(
    "mobn",
    MeanOnlyBatchNorm,
    description="mean-only batch norm: subtract the batch mean, add a bias (no scaling)",
    reference="Salimans & Kingma 2016, §2.2",
    aliases=("mean_only_bn", "mean_only_batch_norm"),
    meta={"kind": "activation", "needs_batch_stats": True, "running_stats": True, "min_rank": 2},
)
