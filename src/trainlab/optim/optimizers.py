"""First-order optimizers by name: the OPTIMIZERS registry and :func:`build_optimizer`.

Lecture 003 ("Improving descent for DNNs") teaches SGD, momentum, Nesterov accelerated
gradient, Adagrad, RMSProp, Adadelta and Adam; AdamW (Loshchilov & Hutter 2019) is added
because it is the usual modern default. Every optimizer is a ``torch.optim`` class underneath;
trainlab only chooses its defaults and checks its arguments. Each factory's docstring gives
the lecture's update rule, torch's rule, and every place where the two differ, and
``tests/test_optim.py`` re-implements each lecture rule in float64 and checks the torch-based
optimizer against it step by step.

Notation (the lecture's): ``w`` weights, ``g = ∂L(w)/∂w``, ``μ`` learning rate (torch's
``lr``), ``γ`` momentum or averaging constant, ``ε`` smoothing term, ``k`` the step.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import torch

from trainlab.registry import Registry, check_keywords

__all__ = [
    "OPTIMIZERS",
    "adadelta",
    "adagrad",
    "adam",
    "adamw",
    "build_optimizer",
    "check_lr",
    "momentum",
    "nesterov",
    "rmsprop",
    "sgd",
]



OPTIMIZERS = Registry("optim")

_LECTURE = "Lecture 003, 'Improving descent for DNNs'"


# ------------------------------------------------------------------------------------------
# argument checks shared by the factories and by build_optimizer(torch class)
# ------------------------------------------------------------------------------------------
def _is_number(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.numel() == 1
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_lr(lr: Any, name: str = "lr") -> float:
    """The one rule for a learning rate everywhere in trainlab (optimizers, the Trainer,
    configs): a finite number > 0. ``lr = 0`` trains nothing and ``nan``/``inf`` destroy the
    weights on the first step, so all three are errors rather than torch's ``lr >= 0``."""
    if not _is_number(lr) or not float(lr) > 0 or not math.isfinite(float(lr)):
        raise ValueError(f"{name} must be a finite number > 0. Received: {name}={lr!r}.")
    return float(lr)


def _check_hparams(**kw: Any) -> None:
    """Raise ValueError for hyperparameters no optimizer can use; warn for suspect ones."""
    if "lr" in kw:
        check_lr(kw["lr"])
    if "eps" in kw:
        eps = kw["eps"]
        if not _is_number(eps) or not float(eps) > 0:
            raise ValueError(
                f"eps must be a number > 0 (the smoothing term that avoids division by zero). "
                f"Received: eps={eps!r}."
            )
    if "momentum" in kw:
        m = kw["momentum"]
        if not _is_number(m) or not float(m) >= 0:
            raise ValueError(
                f"momentum must be a number >= 0 (the lecture uses 0.9). Received: momentum={m!r}."
            )
        if float(m) >= 1:
            warnings.warn(
                f"momentum={m!r} >= 1: the velocity never decays and SGD usually diverges.",
                stacklevel=3,
            )
    if "betas" in kw:
        b = kw["betas"]
        ok = isinstance(b, (tuple, list)) and len(b) == 2 and all(_is_number(x) for x in b)
        if not ok or not all(0.0 <= float(x) < 1.0 for x in b):
            raise ValueError(
                f"betas must be a pair of numbers in [0, 1) (the lecture's γ1, γ2). "
                f"Received: betas={b!r}."
            )
    for name in ("alpha", "rho"):
        if name in kw:
            v = kw[name]
            if not _is_number(v) or not 0.0 <= float(v) < 1.0:
                raise ValueError(
                    f"{name} must be a number in [0, 1) (the averaging constant γ). "
                    f"Received: {name}={v!r}."
                )
    for name in ("weight_decay", "dampening", "initial_accumulator_value", "lr_decay"):
        if name in kw:
            v = kw[name]
            if not _is_number(v) or not float(v) >= 0:
                raise ValueError(f"{name} must be a number >= 0. Received: {name}={v!r}.")


def _params(params: Any) -> Any:
    """Accept a module as well as an iterable of tensors or of param-group dicts."""
    if isinstance(params, torch.nn.Module):
        return params.parameters()
    return params


# ------------------------------------------------------------------------------------------
# optimizers
# ------------------------------------------------------------------------------------------
_DEFAULT_LR = {
    "sgd": 0.1,
    "momentum": 0.01,  # long-run step lr/(1-γ) = 0.1, the same as plain SGD's default
    "nesterov": 0.01,
    "adagrad": 0.01,  # the lecture: "most implementations use a default value of 0.01"
    "rmsprop": 1e-3,  # Hinton's suggestion (Ruder 2016); torch's default is 1e-2
    "adadelta": 1.0,  # "no learning rate is required": lr = 1 is Zeiler's rule exactly
    "adam": 1e-3,  # Kingma & Ba 2015
    "adamw": 1e-3,  # Loshchilov & Hutter 2019
}


def sgd(
    params: Any,
    lr: float = _DEFAULT_LR["sgd"],
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    **kwargs: Any,
) -> torch.optim.SGD:
    r"""Stochastic gradient descent: ``torch.optim.SGD``.

    Lecture 003, "Stochastic gradient descent (reminder)"::

        w^(k+1) = w^(k) - μ ∂L(w^(k))/∂w

    torch's rule with ``momentum=0`` is the same, with ``lr = μ``. ``weight_decay=λ`` adds
    ``λ w`` to the gradient (an L2 penalty ``λ/2 ‖w‖²`` folded into ``g``). ``momentum`` and
    ``nesterov`` are passed through; see :func:`momentum` and :func:`nesterov` for the rules.
    Default ``lr`` 0.1 (torch has 1e-3).
    """
    _check_hparams(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    if nesterov and (float(momentum) <= 0 or float(dampening) != 0):
        raise ValueError(
            "nesterov=True needs momentum > 0 and dampening = 0. "
            f"Received: momentum={momentum!r}, dampening={dampening!r}."
        )
    return torch.optim.SGD(
        _params(params),
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
        **kwargs,
    )


def momentum(
    params: Any,
    lr: float = _DEFAULT_LR["momentum"],
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.SGD:
    r"""SGD with (heavy-ball) momentum: ``torch.optim.SGD(momentum=0.9)``.

    Lecture 003, "Momentum" (γ "usually set to 0.9")::

        v^(k+1) = γ v^(k) + μ ∂L(w^(k))/∂w
        w^(k+1) = w^(k) - v^(k+1),            v^(0) = 0

    torch's rule (``dampening=0``) keeps an un-scaled buffer ``b`` and multiplies by ``lr``
    at the update::

        b^(k+1) = γ b^(k) + ∂L(w^(k))/∂w        (b^(1) = g^(0), i.e. b^(0) = 0)
        w^(k+1) = w^(k) - lr b^(k+1)

    **Equivalence.** With a constant learning rate ``lr = μ`` the two are the same algorithm
    under ``v = μ b``: the iterates ``w^(k)`` coincide exactly (tested in float64).

    **Difference under a schedule.** When ``lr`` changes, torch rescales the whole velocity
    at once (``w -= lr_k b``, so an lr drop takes effect immediately), while the lecture's
    ``v`` keeps the old ``μ_j g^(j)`` terms and forgets them over ~1/(1-γ) steps. trainlab
    follows torch; the test shows both facts.

    Default ``lr`` 0.01: the long-run step ``lr/(1-γ)`` equals plain SGD's default 0.1.
    """
    _check_hparams(lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.SGD(
        _params(params), lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs
    )


def nesterov(
    params: Any,
    lr: float = _DEFAULT_LR["nesterov"],
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.SGD:
    r"""Nesterov accelerated gradient: ``torch.optim.SGD(momentum=0.9, nesterov=True)``.

    Lecture 003, "Nesterov accelerated gradient" (γ "usually set to 0.9")::

        v^(k+1) = γ v^(k) + μ ∂L(w^(k) - v^(k))/∂w
        w^(k+1) = w^(k) - v^(k+1),            v^(0) = 0

    **The look-ahead point.** The slide evaluates the gradient at ``w - v``; its source
    (Ruder 2016, after Sutskever et al. 2013, eq. 3-4) and Nesterov's method evaluate it at
    ``w - γ v``, the point the momentum alone would reach. trainlab follows the paper::

        v^(k+1) = γ v^(k) + μ ∂L(w^(k) - γ v^(k))/∂w,    w^(k+1) = w^(k) - v^(k+1)

    torch's rule (``dampening=0``)::

        b^(k+1) = γ b^(k) + ∂L(θ^(k))/∂θ
        θ^(k+1) = θ^(k) - lr (∂L(θ^(k))/∂θ + γ b^(k+1))

    **Equivalence.** With a constant ``lr = μ``, torch's parameter is the lecture's
    look-ahead point, ``θ^(k) = w^(k) - γ v^(k)`` with ``v = μ b``: substituting gives
    ``θ^(k+1) = θ^(k) - μ g(θ^(k)) - γ v^(k+1)``, which is torch's update. Since
    ``v^(0) = 0`` both start at the same point; the test checks ``θ^(k) = w^(k) - γ v^(k)``
    at every step in float64. So the model torch holds is evaluated at the look-ahead point,
    and under a changing lr the same caveat as :func:`momentum` applies.
    """
    _check_hparams(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if float(momentum) <= 0:
        raise ValueError(f"nesterov needs momentum > 0. Received: momentum={momentum!r}.")
    return torch.optim.SGD(
        _params(params),
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=True,
        **kwargs,
    )


def adagrad(
    params: Any,
    lr: float = _DEFAULT_LR["adagrad"],
    eps: float = 1e-10,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    lr_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.Adagrad:
    r"""Adagrad (Duchi et al. 2011): ``torch.optim.Adagrad`` set up to follow the lecture.

    Lecture 003, "Adagrad" (default learning rate 0.01)::

        G_ii^(k) = Σ_{j<=k} (g_i^(j))²
        w_i^(k+1) = w_i^(k) - μ / sqrt(G_ii^(k) + ε) · g_i^(k)

    torch's rule puts ε outside the square root and starts the sum at
    ``initial_accumulator_value`` (0 by default, ``eps=1e-10``)::

        s^(k) = s^(0) + Σ_{j<=k} (g^(j))²,   w^(k+1) = w^(k) - lr g^(k) / (sqrt(s^(k)) + eps)

    **trainlab follows the lecture exactly** by passing ``initial_accumulator_value = ε``
    (plus the caller's ``initial_accumulator_value``) and ``eps = 0`` to torch, so that
    ``sqrt(s) = sqrt(G + ε)``. Consequently the torch optimizer's ``param_groups`` read
    ``eps=0`` and ``initial_accumulator_value=ε``. ``eps`` here is the lecture's ε (inside the
    root, default 1e-10, torch's number: a floor of 1e-5 on the root). ``lr_decay`` (torch's
    ``lr / (1 + (k-1) lr_decay)``, 0 by default) is not in the lecture.
    """
    _check_hparams(
        lr=lr,
        eps=eps,
        weight_decay=weight_decay,
        initial_accumulator_value=initial_accumulator_value,
        lr_decay=lr_decay,
    )
    return torch.optim.Adagrad(
        _params(params),
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        initial_accumulator_value=float(initial_accumulator_value) + float(eps),
        eps=0.0,
        **kwargs,
    )


def rmsprop(
    params: Any,
    lr: float = _DEFAULT_LR["rmsprop"],
    alpha: float = 0.9,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.RMSprop:
    r"""RMSProp (Tieleman & Hinton 2012): ``torch.optim.RMSprop`` with the lecture's γ = 0.9.

    Lecture 003, "RMSProp" ("set γ to be 0.9")::

        E^(k)[g_i²] = γ E^(k-1)[g_i²] + (1 - γ) (g_i^(k))²,     E^(0) = 0
        w_i^(k+1) = w_i^(k) - μ / sqrt(E^(k)[g_i²] + ε) · g_i^(k)

    torch's rule, with ``alpha = γ``::

        w^(k+1) = w^(k) - lr g^(k) / (sqrt(E^(k)[g²]) + eps)

    **Differences.** (1) torch's default ``alpha`` is 0.99; trainlab's is the lecture's 0.9.
    (2) torch puts ε outside the square root; no setting of torch's kernel moves it inside
    (the running average forgets any initial offset). The two agree to O(ε / sqrt(E)) per
    step; the test checks exact agreement with the lecture's rule as ε → 0 and with the
    ε-outside rule at the default ε = 1e-8. (3) Default ``lr`` 1e-3 (Hinton's suggestion, as
    in Ruder 2016); torch's is 1e-2. ``momentum`` and ``centered`` (torch options) are not in
    the lecture and are passed through.
    """
    _check_hparams(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay)
    if "momentum" in kwargs:
        _check_hparams(momentum=kwargs["momentum"])
    return torch.optim.RMSprop(
        _params(params), lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, **kwargs
    )


def adadelta(
    params: Any,
    lr: float = _DEFAULT_LR["adadelta"],
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.Adadelta:
    r"""Adadelta (Zeiler 2012): ``torch.optim.Adadelta`` with ``lr = 1``.

    Lecture 003, "Adadelta" (2/3 and 3/3)::

        E^(k)[g_i²]  = γ E^(k-1)[g_i²] + (1 - γ) (g_i^(k))²
        RMS^(k)[g_i] = sqrt(E^(k)[g_i²] + ε)
        Δw_i^(k)     = - RMS^(k-1)[Δw_i] / RMS^(k)[g_i] · g_i^(k)
        w_i^(k+1)    = w_i^(k) + Δw_i^(k)
        E^(k)[Δw_i²] = γ E^(k-1)[Δw_i²] + (1 - γ) (Δw_i^(k))²,   RMS[Δw] = sqrt(E[Δw²] + ε)

    with both averages starting at 0 ("no learning rate is required").

    torch's rule, with ``rho = γ``: the same, except that the final update is multiplied
    by ``lr`` (``w += lr Δw``) while the ``E[Δw²]`` accumulator keeps the un-scaled ``Δw``.
    **With lr = 1 (trainlab's and torch's default) it is the lecture's rule exactly.** With
    another ``lr`` it is the lecture's "in practice, learning rate is still added" in torch's
    form (the accumulator does not see ``lr``); the test checks that form too. ε is inside
    the root in both (default 1e-6, Zeiler's value); γ = 0.9 as for RMSProp (Zeiler used
    0.95).
    """
    _check_hparams(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)
    return torch.optim.Adadelta(
        _params(params), lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, **kwargs
    )


_ADAM_RULE = r"""
    Lecture 003, "Adam (Adaptive Moment Estimation)" (γ1, γ2 are torch's ``betas``)::

        m^(k) = γ1 m^(k-1) + (1 - γ1) g^(k)
        b^(k) = γ2 b^(k-1) + (1 - γ2) (g^(k))²,      m^(0) = b^(0) = 0
        m̂^(k) = m^(k) / (1 - γ1^k),   b̂^(k) = b^(k) / (1 - γ2^k)      (k = 1, 2, ...)
        w^(k+1) = w^(k) - μ / sqrt(b̂^(k) + ε) · m̂^(k)

    The slide prints ``sqrt(b̂² + ε)``; ``b̂`` is already a mean of squares, so the square is
    a typo (Kingma & Ba 2015, Algorithm 1, and the slide's own RMSProp use ``sqrt(b̂)``).

    torch's rule is Kingma & Ba's Algorithm 1, with the same bias correction::

        w^(k+1) = w^(k) - lr m̂^(k) / (sqrt(b̂^(k)) + eps)

    **Differences.** ε sits outside the square root in torch (as in the paper) and inside
    on the slide; no torch setting moves it (the bias correction rescales any initial offset
    of ``b``). They agree to O(ε / sqrt(b̂)) per step; the test checks exact agreement with
    the lecture's rule as ε → 0 and with the paper's rule at the default ε = 1e-8.
    Defaults are the paper's: lr 1e-3, betas (0.9, 0.999), eps 1e-8.
"""


def adam(
    params: Any,
    lr: float = _DEFAULT_LR["adam"],
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.Adam:
    _check_hparams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return torch.optim.Adam(
        _params(params), lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, **kwargs
    )


adam.__doc__ = (
    "Adam (Kingma & Ba 2015): ``torch.optim.Adam``.\n"
    + _ADAM_RULE
    + """
    ``weight_decay=λ`` adds ``λ w`` to the gradient (coupled L2), which Adam then rescales;
    for decoupled decay use :func:`adamw`.
    """
)


def adamw(
    params: Any,
    lr: float = _DEFAULT_LR["adamw"],
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    **kwargs: Any,
) -> torch.optim.AdamW:
    _check_hparams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return torch.optim.AdamW(
        _params(params), lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, **kwargs
    )


adamw.__doc__ = (
    "AdamW, Adam with decoupled weight decay (Loshchilov & Hutter 2019): ``torch.optim.AdamW``."
    "\n\n    Not in the lecture. Each step first shrinks the weights, then takes the Adam step"
    "\n    below computed from the gradient of the loss alone::\n"
    "\n        w <- (1 - μ λ) w,   then the Adam update\n"
    "\n    torch's ``weight_decay`` λ is multiplied by ``lr``: the paper's decay term"
    "\n    ``η_t λ_paper w`` (η_t the schedule multiplier) is torch's ``lr_t λ w``, i.e."
    "\n    ``λ_paper = lr λ`` and the decay follows the learning-rate schedule. Default λ = 1e-2"
    "\n    (torch's).\n" + _ADAM_RULE
)


def _add_optimizer(name: str, factory: Any, cls: type, description: str, reference: str) -> None:
    OPTIMIZERS.add(
        name,
        factory,
        description=description,
        reference=reference,
        defaults={"lr": _DEFAULT_LR[name]},
        meta={"default_lr": _DEFAULT_LR[name], "torch_class": cls},
    )


_add_optimizer("sgd", sgd, torch.optim.SGD, "w -= lr g", f"{_LECTURE}, SGD (reminder)")
_add_optimizer(
    "momentum",
    momentum,
    torch.optim.SGD,
    "SGD with heavy-ball momentum 0.9: v = γv + μg, w -= v",
    f"{_LECTURE}, Momentum; Polyak 1964",
)
_add_optimizer(
    "nesterov",
    nesterov,
    torch.optim.SGD,
    "Nesterov accelerated gradient, momentum 0.9: gradient at the look-ahead point",
    f"{_LECTURE}, NAG; Sutskever et al. 2013",
)
_add_optimizer(
    "adagrad",
    adagrad,
    torch.optim.Adagrad,
    "per-weight step μ/sqrt(Σg² + ε), ε inside the root as in the lecture",
    f"{_LECTURE}, Adagrad; Duchi et al. 2011",
)
_add_optimizer(
    "rmsprop",
    rmsprop,
    torch.optim.RMSprop,
    "step μ/sqrt(E[g²]) with a running mean of g², γ = 0.9",
    f"{_LECTURE}, RMSProp; Tieleman & Hinton 2012",
)
_add_optimizer(
    "adadelta",
    adadelta,
    torch.optim.Adadelta,
    "step RMS[Δw]/RMS[g]·g, no learning rate (lr = 1)",
    f"{_LECTURE}, Adadelta; Zeiler 2012",
)
_add_optimizer(
    "adam",
    adam,
    torch.optim.Adam,
    "bias-corrected running means of g and g²: step μ m̂/(sqrt(b̂) + ε)",
    f"{_LECTURE}, Adam; Kingma & Ba 2015",
)
_add_optimizer(
    "adamw",
    adamw,
    torch.optim.AdamW,
    "Adam with decoupled weight decay w <- (1 - μλ) w",
    "Loshchilov & Hutter 2019, 'Decoupled Weight Decay Regularization'",
)


def _resolve(registry: Registry, spec: Any) -> tuple[Any, dict[str, Any]] | None:
    """(entry, spec kwargs) for a name / (name, kwargs) / dict spec; None otherwise."""
    return registry.resolve(spec)


def build_optimizer(spec: Any, params: Any, lr: float | None = None, **kw: Any):
    """Build a ``torch.optim.Optimizer`` from a spec.

    Args:
        spec: a registered name (``"adam"``), a ``(name, kwargs)`` pair, a
            ``{"name": ..., **kwargs}`` dict, or a ``torch.optim.Optimizer`` subclass (or any
            callable ``f(params, **kw)``).
        params: an ``nn.Module``, an iterable of tensors, or of param-group dicts.
        lr: learning rate; ``None`` takes the entry's default (``OPTIMIZERS.get(name)
            .meta["default_lr"]``) or, for a class, the class's default.
        **kw: further hyperparameters; they override the spec's kwargs, and ``lr`` overrides
            both.

    Raises:
        ValueError: unknown name (with close matches), ``lr <= 0``, ``momentum < 0``,
            ``betas`` outside [0, 1), ``eps <= 0`` and the like, naming the value received.
    """
    resolved = _resolve(OPTIMIZERS, spec)
    if resolved is None:
        if not callable(spec):
            raise TypeError(
                f"Cannot build an optimizer from {spec!r} of type {type(spec).__name__}; give a "
                "name, a (name, kwargs) pair, a dict with 'name', or a torch.optim.Optimizer class."
            )
        kwargs = dict(kw) if lr is None else {**kw, "lr": lr}
        _check_hparams(**kwargs)
        return spec(_params(params), **kwargs)
    entry, spec_kw = resolved
    kwargs = {**entry.defaults, **spec_kw, **kw}
    if lr is not None:
        kwargs["lr"] = lr
    fns = [entry.factory] + ([entry.meta["torch_class"]] if "torch_class" in entry.meta else [])
    check_keywords(f"optimizer {entry.name!r}", kwargs, *fns, skip=("params",))
    return entry.factory(params, **kwargs)


