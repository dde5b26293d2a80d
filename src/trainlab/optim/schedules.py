"""Learning-rate schedules by name: the SCHEDULES registry and :func:`build_schedule`
(``torch.optim.lr_scheduler`` underneath; warm-up then the main schedule)."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
    StepLR,
)

from trainlab.optim.optimizers import _is_number, _resolve
from trainlab.registry import Registry

__all__ = [
    "SCHEDULES",
    "build_schedule",
    "constant_schedule",
    "cosine_schedule",
    "exponential_schedule",
    "step_schedule",
]

SCHEDULES = Registry("schedule")

# ------------------------------------------------------------------------------------------
# learning-rate schedules
# ------------------------------------------------------------------------------------------
def _one(step: int) -> float:
    # a module-level function (not a lambda) so that the scheduler can be pickled
    return 1.0


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}. Received: {name}={value!r}."
        )
    return int(value)


def constant_schedule(optimizer: torch.optim.Optimizer, total_steps: int | None = None):
    """``lr_t = lr``: ``LambdaLR`` with the factor 1."""
    return LambdaLR(optimizer, _one)


def step_schedule(
    optimizer: torch.optim.Optimizer,
    step_size: int | None = None,
    gamma: float = 0.1,
    total_steps: int | None = None,
):
    """``lr_t = lr · gamma^floor(t / step_size)``: ``StepLR``."""
    if step_size is None:
        raise ValueError(
            "schedule 'step' needs step_size (steps between decays), an integer >= 1. "
            "Received: step_size=None."
        )
    step_size = _check_int("step_size", step_size, 1)
    if not _is_number(gamma) or not float(gamma) > 0:
        raise ValueError(f"gamma must be a number > 0. Received: gamma={gamma!r}.")
    return StepLR(optimizer, step_size=step_size, gamma=float(gamma))


def exponential_schedule(
    optimizer: torch.optim.Optimizer, gamma: float | None = None, total_steps: int | None = None
):
    """``lr_t = lr · gamma^t``: ``ExponentialLR``."""
    if gamma is None or not _is_number(gamma) or not float(gamma) > 0:
        raise ValueError(
            "schedule 'exponential' needs gamma, the factor per step, a number > 0 "
            f"(e.g. 0.999). Received: gamma={gamma!r}."
        )
    return ExponentialLR(optimizer, gamma=float(gamma))


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int | None = None, eta_min: float = 0.0
):
    """``lr_t = eta_min + (lr - eta_min)(1 + cos(π t / T)) / 2``, ``T = total_steps``.

    ``CosineAnnealingLR`` (Loshchilov & Hutter 2017 without restarts): ``lr`` at ``t = 0``,
    ``eta_min`` at ``t = T``. Stepped past ``T``, torch's cosine rises again; give the
    number of training steps.
    """
    if total_steps is None:
        raise ValueError(
            "schedule 'cosine' needs total_steps, the number of training steps it spans "
            "(an integer >= 1). Received: total_steps=None."
        )
    total_steps = _check_int("total_steps", total_steps, 1)
    if not _is_number(eta_min) or not float(eta_min) >= 0:
        raise ValueError(f"eta_min must be a number >= 0. Received: eta_min={eta_min!r}.")
    return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=float(eta_min))


SCHEDULES.add(
    "constant",
    constant_schedule,
    description="lr_t = lr",
    reference="",
    meta={"requires": (), "example": {}},
)
SCHEDULES.add(
    "step",
    step_schedule,
    description="lr_t = lr · gamma^floor(t / step_size)",
    reference="step decay (torch StepLR)",
    meta={"requires": ("step_size",), "example": {"step_size": 3, "gamma": 0.5}},
)
SCHEDULES.add(
    "exponential",
    exponential_schedule,
    aliases=("exp",),
    description="lr_t = lr · gamma^t",
    reference="exponential decay (torch ExponentialLR)",
    meta={"requires": ("gamma",), "example": {"gamma": 0.9}},
)
SCHEDULES.add(
    "cosine",
    cosine_schedule,
    description="lr_t = eta_min + (lr - eta_min)(1 + cos(π t / T)) / 2 over total_steps",
    reference="Loshchilov & Hutter 2017, SGDR (one cycle, no restart)",
    meta={"requires": ("total_steps",), "example": {"eta_min": 0.0}},
)
SCHEDULES.add(
    "warmup",
    constant_schedule,  # build_schedule adds the warm-up in front
    description="linear warm-up lr·(t+1)/warmup_steps, then constant (or then=another schedule)",
    reference="Goyal et al. 2017, 'Accurate, Large Minibatch SGD' (gradual warm-up)",
    meta={"requires": ("warmup_steps",), "example": {"warmup_steps": 4}},
)


def build_schedule(
    spec: Any, optimizer: torch.optim.Optimizer, total_steps: int | None = None, **kw: Any
) -> LRScheduler:
    """Build a learning-rate schedule, stepped once per training step (after ``opt.step()``).

    Args:
        spec: a name from :data:`SCHEDULES` (``constant``, ``step``, ``exponential``,
            ``cosine``, ``warmup``), a ``(name, kwargs)`` pair, a dict with ``name``, an
            ``LRScheduler`` subclass or callable ``f(optimizer, **kw)``, or ``None``
            (constant).
        optimizer: the optimizer whose ``lr`` is scheduled.
        total_steps: the number of training steps (needed by ``cosine``).
        **kw: the schedule's arguments (``step_size``, ``gamma``, ``eta_min`` ...) and
            ``warmup_steps``: with any schedule, a linear warm-up ``lr·(t+1)/W`` for
            ``t < W``, after which the schedule runs from its own step 0 (a cosine then spans
            ``total_steps - W``). ``warmup`` also takes ``then=`` (a schedule spec).

    The learning rate used by the ``t``-th ``optimizer.step()`` (``t = 0, 1, ...``) is the
    schedule's ``lr_t`` above.

    Example::

        >>> build_schedule("cosine", opt, total_steps=1000, warmup_steps=100)
        >>> build_schedule("warmup", opt, warmup_steps=100, then="cosine", total_steps=1000)
    """
    if spec is None:
        spec = "constant"
    resolved = _resolve(SCHEDULES, spec)
    if resolved is None:
        if isinstance(spec, LRScheduler):
            raise TypeError(
                "build_schedule got an already-built scheduler; pass its class or a name. "
                f"Received: {spec!r}."
            )
        if not callable(spec):
            raise TypeError(
                f"Cannot build a schedule from {spec!r} of type {type(spec).__name__}; give a "
                "name, a (name, kwargs) pair, a dict with 'name', or an LRScheduler class."
            )
        entry, kwargs = None, dict(kw)
    else:
        entry, spec_kw = resolved
        kwargs = {**entry.defaults, **spec_kw, **kw}

    if total_steps is not None:
        total_steps = _check_int("total_steps", total_steps, 1)
    warmup_steps = kwargs.pop("warmup_steps", None)
    then = kwargs.pop("then", None) if entry is not None and entry.name == "warmup" else None
    if entry is not None and entry.name == "warmup" and warmup_steps is None:
        raise ValueError(
            "schedule 'warmup' needs warmup_steps, an integer >= 0. Received: warmup_steps=None."
        )
    warmup_steps = 0 if warmup_steps is None else _check_int("warmup_steps", warmup_steps, 0)
    if total_steps is not None and warmup_steps >= total_steps and warmup_steps > 0:
        raise ValueError(
            f"warmup_steps must be smaller than total_steps. "
            f"Received: warmup_steps={warmup_steps}, total_steps={total_steps}."
        )
    rest = None if total_steps is None else total_steps - warmup_steps

    if then is not None:
        return build_schedule(then, optimizer, total_steps, warmup_steps=warmup_steps, **kwargs)
    if entry is None:
        main = spec(optimizer, **kwargs)
    else:
        main = entry.factory(optimizer, total_steps=rest, **kwargs)
    if warmup_steps <= 1:  # W = 1 means lr·1/1 at t = 0: no warm-up at all
        return main
    # LinearLR's factor at step t is 1/W + (1 - 1/W) min(t, W-1)/(W-1) = (t+1)/W for t < W.
    warm = LinearLR(optimizer, start_factor=1.0 / warmup_steps, total_iters=warmup_steps - 1)
    if entry is not None and entry.factory is constant_schedule:
        # LinearLR holds factor 1 after its last iteration: warm-up then constant, one object.
        return warm
    return SequentialLR(optimizer, [warm, main], milestones=[warmup_steps])


