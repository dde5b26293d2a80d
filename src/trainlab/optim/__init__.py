"""Optimizers and learning-rate schedules by name, gradient clipping and gradient noise.

- :mod:`~trainlab.optim.optimizers`: the OPTIMIZERS registry, the first-order optimizers of
  lecture 003 (SGD, momentum, Nesterov, Adagrad, RMSProp, Adadelta, Adam, AdamW) and
  :func:`build_optimizer`;
- :mod:`~trainlab.optim.second_order`: L-BFGS, damped Newton and the natural gradient
  (lectures 002/003), registered in the same OPTIMIZERS;
- :mod:`~trainlab.optim.schedules`: SCHEDULES and :func:`build_schedule`;
- :mod:`~trainlab.optim.gradients`: :func:`clip_gradients` and :class:`GradientNoise`.

Example::

    >>> opt = build_optimizer("adam", model.parameters())          # lr=1e-3, the entry default
    >>> opt = build_optimizer(("momentum", {"lr": 0.05}), model)   # a module works too
    >>> sched = build_schedule("cosine", opt, total_steps=1000, warmup_steps=100)
    >>> noise = GradientNoise(eta=0.3, generator=torch.Generator().manual_seed(0))
    >>> for step in range(1000):
    ...     loss_fn(model(x), y).backward()
    ...     clip_gradients(model.parameters(), max_norm=1.0)
    ...     noise.add_(model.parameters(), step)
    ...     opt.step(); opt.zero_grad(); sched.step()
"""

from __future__ import annotations

from trainlab.optim import second_order  # noqa: F401  (registers lbfgs, newton, natural_gradient)
from trainlab.optim.gradients import GradientNoise, clip_gradients
from trainlab.optim.optimizers import (
    OPTIMIZERS,
    _params,  # noqa: F401  (used by trainlab.optim.second_order's callers)
    adadelta,
    adagrad,
    adam,
    adamw,
    build_optimizer,
    check_lr,
    momentum,
    nesterov,
    rmsprop,
    sgd,
)
from trainlab.optim.schedules import (
    SCHEDULES,
    build_schedule,
    constant_schedule,
    cosine_schedule,
    exponential_schedule,
    step_schedule,
)
from trainlab.optim.second_order import NaturalGradient, Newton, lbfgs, natural_gradient, newton

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "GradientNoise",
    "NaturalGradient",
    "Newton",
    "adadelta",
    "adagrad",
    "adam",
    "adamw",
    "build_optimizer",
    "build_schedule",
    "check_lr",
    "clip_gradients",
    "constant_schedule",
    "cosine_schedule",
    "exponential_schedule",
    "lbfgs",
    "momentum",
    "natural_gradient",
    "nesterov",
    "newton",
    "rmsprop",
    "sgd",
    "step_schedule",
]
