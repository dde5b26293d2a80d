"""Activations (family ``activation``): Modules, the registry, and what probes need to know.

Every activation is a Module that calls its pure function in :mod:`trainlab.nn.functional`
and is registered by its lecture name in :data:`ACTIVATIONS`::

    >>> from trainlab.nn.activations import ACTIVATIONS, activation_info
    >>> act = ACTIVATIONS.build("leaky_relu")                          # torch's slope 0.01
    >>> act = ACTIVATIONS.build(("leaky_relu", {"negative_slope": 0.1}))  # the lectures' 0.1
    >>> layer = ACTIVATIONS.build("maxout", 64, 32, k=3)   # replaces Linear(64, 32) + act
    >>> activation_info("tanh").gain                     # 1.0
    >>> activation_info(torch.nn.ReLU()).dead(h)         # bool mask, h == 0
    >>> activation_info(torch.nn.Linear(2, 2))           # None: not an activation

Each entry's ``meta["info"]`` is an :class:`ActivationInfo` declaring what probes and
initializers need (contract C1), written once, in the entry (``meta["info_for"]`` gives it for
other settings; the Modules themselves hold none of it):

- ``output_range``: the closure of the set of outputs, ``(lo, hi)`` (``float("inf")`` allowed),
  and ``hist_range``, the range for fixed-bin histograms (unbounded sides at ``±HIST_LIMIT``);
- ``saturated``: a callable on the activation's OUTPUT returning the bool mask of saturated
  elements (a :class:`ThresholdRule`), or ``None`` if the activation cannot saturate;
- ``dead``: a callable on the OUTPUT returning the bool mask of elements whose derivative is
  zero, or ``None`` if it cannot die; a *unit* is dead when the mask holds for every example
  (and spatial position) of a batch;
- ``gain``: the recommended gain of variance-scaling initialization,
  ``std(W) = gain / sqrt(fan_in)``;
- ``replaces_linear``: True only for maxout, a layer built as ``(in_features, out_features)``.

:func:`activation_info` reads the info of a name, a spec, a trainlab Module or one of torch's
own activation Modules (with their settings) from the registry, and gives ``None`` for anything
else.

Saturation thresholds (``SATURATION_MARGIN = 0.03``). For a bounded squashing function a
unit counts as saturated when its output is within 0.03 of an asymptote: sigmoid ``h <= 0.03
or h >= 0.97``, tanh and softsign ``|h| >= 0.97``. These are the piles that the lectures'
histograms (lecture 001's "output saturated to -1 and 1"; Glorot & Bengio 2010 fig. 2's sigmoid
top layer "saturates at 0") show. At the threshold the pre-activation is ``|x| >= 3.48``
(sigmoid) or ``|x| >= 2.09`` (tanh), two to three standard deviations of a unit-variance input,
and the derivative is down to ``σ' <= 0.029`` (12% of its peak 1/4) and ``tanh' <= 0.059``
(6% of its peak 1); softsign reaches ``|h| = 0.97`` only at ``|x| >= 32.3``, which is why Glorot
& Bengio find its units less saturated. For ELU and SELU, whose negative side tends to
``-α`` (``-λα``), the same margin is relative: saturated when ``h <= -0.97 α`` (``-0.97 λα``),
i.e. the derivative is at most 3% of its value just left of 0. Softplus saturates toward 0:
``h <= 0.03 / β`` (derivative ``<= 0.03``). ReLU6 saturates exactly at its cap ``h >= 6``.

Dead rule. ReLU, ReLU6 and noisy ReLU have zero derivative exactly where their output is 0, so
``dead(h) = h <= 0``. Leaky ReLU, PReLU and RReLU never have a zero derivative on the negative
side (slope ``a > 0``), ELU/SELU/softplus have a strictly positive derivative, maxout is
piecewise linear with no flat piece ("no saturation, no death", lecture 004) and the identity
is linear: none of them has a dead rule. GELU, SiLU and swish have no output-based rule
either: their output is near 0 both at ``x ≈ 0`` (derivative ≈ 1/2) and for ``x → -∞``
(derivative → 0), so the output alone cannot tell the two apart; they have none.

Gains (what ``std = gain / sqrt(fan_in)`` needs; see each class's docstring):
ReLU family ``sqrt(2)`` (He et al. 2015), leaky and PReLU ``sqrt(2 / (1 + a²))``; tanh, softsign
and sigmoid ``1`` (the lectures' Glorot/LeCun convention; torch's ``calculate_gain`` gives 5/3
for tanh); SELU ``1`` with LeCun normal; identity ``1``; maxout with k pieces
``1 / sqrt(E[max of k N(0,1)]²)`` (exactly 1 for k = 2); ELU, GELU, SiLU, swish, softplus and
noisy ReLU ``sqrt(2)`` as ReLU-like units.

Modules take no ``inplace`` flag: an in-place activation would overwrite the tensor a
forward hook or a probe is reading.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.nn import functional as TF
from trainlab.nn.functional import (
    LECTURE_LEAKY_SLOPE,
    RRELU_LOWER,
    RRELU_UPPER,
    SELU_ALPHA,
    SELU_LAMBDA,
    TORCH_LEAKY_SLOPE,
    check_range,
)
from trainlab.registry import Entry, Registry, split_spec

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "EqualsRule",
    "GELU",
    "GELU_MIN",
    "GELU_TANH_MIN",
    "HARDSWISH_MIN",
    "HIST_LIMIT",
    "LECTURE_LEAKY_SLOPE",
    "MISH_MIN",
    "PRELU_INIT",
    "RELU6_CAP",
    "SATURATION_MARGIN",
    "SIGMOID_SATURATION",
    "SILU_MIN",
    "SOFTSIGN_SATURATION",
    "TANH_SATURATION",
    "TORCH_LEAKY_SLOPE",
    "ActivationInfo",
    "Identity",
    "LeakyReLU",
    "Maxout",
    "NoisyReLU",
    "PReLU",
    "RReLU",
    "ReLU",
    "ReLU6",
    "SELU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Softsign",
    "Swish",
    "Tanh",
    "ThresholdRule",
    "activation_info",
    "leaky_gain",
    "maxout_gain",
]

# -- named thresholds ---------------------------------------------------------------------
#: Distance to an asymptote (in output units, or as a fraction of ELU's α) at or within
#: which an output counts as saturated. See the module docstring for the justification.
SATURATION_MARGIN = 0.03
#: Sigmoid outputs at or below the first, or at or above the second, are saturated.
SIGMOID_SATURATION = (SATURATION_MARGIN, 1.0 - SATURATION_MARGIN)
#: tanh outputs with ``|h| >=`` this are saturated.
TANH_SATURATION = 1.0 - SATURATION_MARGIN
#: softsign outputs with ``|h| >=`` this are saturated.
SOFTSIGN_SATURATION = 1.0 - SATURATION_MARGIN
#: Unbounded sides of an output range are cut here for fixed-bin histograms (``hist_range``):
#: four standard deviations of a unit-variance pre-activation.
HIST_LIMIT = 4.0
#: ReLU6's cap; outputs at the cap have zero derivative (saturated).
RELU6_CAP = 6.0
#: PReLU's initial slope (He et al. 2015; torch's default).
PRELU_INIT = 0.25
#: Minimum of GELU ``x Φ(x)`` (at x ≈ -0.7518).
GELU_MIN = -0.16997120747990369
#: Minimum of GELU's tanh approximation (at x ≈ -0.7525), slightly below the exact one.
GELU_TANH_MIN = -0.170040750571254
#: Minimum of SiLU ``x σ(x)`` (at x ≈ -1.2785); swish with β has minimum ``SILU_MIN / β``.
SILU_MIN = -0.2784645427610738
#: Minimum of Mish ``x tanh(softplus(x))`` (at x ≈ -1.1924).
MISH_MIN = -0.30884341301725043

_SQRT2 = math.sqrt(2.0)
_INF = math.inf


# -- the record ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ThresholdRule:
    """An output-based rule: ``rule(h)`` is the bool mask ``h <= at_or_below | h >= at_or_above``.

    A frozen record rather than a lambda, so infos compare by value and print readably.
    """

    at_or_below: float | None = None
    at_or_above: float | None = None

    def __call__(self, h: Tensor) -> Tensor:
        if self.at_or_below is not None and self.at_or_above is not None:
            return (h <= self.at_or_below) | (h >= self.at_or_above)
        if self.at_or_below is not None:
            return h <= self.at_or_below
        if self.at_or_above is not None:
            return h >= self.at_or_above
        return torch.zeros_like(h, dtype=torch.bool)

    def __repr__(self) -> str:
        parts = []
        if self.at_or_below is not None:
            parts.append(f"h <= {self.at_or_below:.6g}")
        if self.at_or_above is not None:
            parts.append(f"h >= {self.at_or_above:.6g}")
        return f"ThresholdRule({' or '.join(parts) or 'never'})"


@dataclass(frozen=True)
class EqualsRule:
    """An output-based rule ``rule(h) = (h == value)``: the flat zone of a shrinkage or
    thresholding function (``nn.Hardswish`` is exactly 0 for ``x <= -3``, ``nn.Softshrink``
    and ``nn.Hardshrink`` inside ``[-λ, λ]``, ``nn.Threshold`` below its threshold), where the
    derivative is zero although outputs on both sides of ``value`` occur."""

    value: float = 0.0

    def __call__(self, h: Tensor) -> Tensor:
        return h == self.value

    def __repr__(self) -> str:
        return f"EqualsRule(h == {self.value:.6g})"


@dataclass(frozen=True)
class ActivationInfo:
    """What probes and initializers need to know about one activation (with its settings).

    Attributes:
        name: registry name of the activation (``"tanh"``, ``"leaky_relu"`` ...).
        output_range: closure of the set of outputs ``(lo, hi)``; ``float("inf")`` where
            unbounded.
        gain: recommended gain for variance-scaling init, ``std(W) = gain / sqrt(fan_in)``.
        saturated: ``saturated(h)`` takes the activation's OUTPUT and returns the bool mask of
            the elements counted as saturated; ``None`` if the activation cannot saturate.
        dead: ``dead(h)`` takes the OUTPUT and returns the bool mask of the elements whose local
            derivative is zero; ``None`` if the activation cannot die. A *unit* counts as dead
            when the mask holds for every example (and every spatial position) of a batch.
        hist_range: range for fixed-bin histograms of outputs: the output range, with each
            unbounded side replaced by ``±HIST_LIMIT`` (unless given).
        replaces_linear: a layer that takes the place of ``Linear`` + activation (maxout only);
            build it with ``(in_features, out_features)``.
        stochastic: random in training mode (RReLU, noisy ReLU); deterministic in eval.
        learnable: has trainable parameters (PReLU, learnable swish, maxout).
        notes: one or two sentences on the rules and the gain, for reports.
    """

    name: str
    output_range: tuple[float, float]
    gain: float
    saturated: Callable[[Tensor], Tensor] | None = None
    dead: Callable[[Tensor], Tensor] | None = None
    hist_range: tuple[float, float] | None = None
    replaces_linear: bool = False
    stochastic: bool = False
    learnable: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.output_range)
        object.__setattr__(self, "output_range", (lo, hi))
        if self.hist_range is None:
            hist_lo = lo if math.isfinite(lo) else -HIST_LIMIT
            hist_hi = hi if math.isfinite(hi) else HIST_LIMIT
            object.__setattr__(self, "hist_range", (hist_lo, hist_hi))


def leaky_gain(negative_slope: float) -> float:
    """He et al. 2015's gain for a leaky rectifier of slope ``a``: ``sqrt(2 / (1 + a²))``.

    Equal to ``torch.nn.init.calculate_gain("leaky_relu", a)``; ``a = 0`` gives ReLU's √2.
    """
    return math.sqrt(2.0 / (1.0 + float(negative_slope) ** 2))


def maxout_gain(k: int) -> float:
    """Gain that keeps the second moment through a maxout layer with ``k`` pieces.

    With weights of std ``g / sqrt(fan_in)`` each piece is ≈ ``N(0, g² q)`` for input second
    moment ``q``, independent across pieces, so the output's second moment is
    ``g² q E[M_k²]`` with ``M_k`` the max of ``k`` standard normals. He et al.'s argument then
    gives ``g = 1 / sqrt(E[M_k²])``: 1 for ``k = 2`` (``max² + min² = z₁² + z₂²``), 0.885 for 3,
    0.803 for 4. ``E[M_k²] = ∫ z² k φ(z) Φ(z)^{k-1} dz`` is integrated numerically.
    """
    if k == 2:
        return 1.0
    n, lo, hi = 4000, -12.0, 12.0
    step = (hi - lo) / n
    total = 0.0
    for i in range(n + 1):
        z = lo + i * step
        w = 0.5 if i in (0, n) else 1.0
        pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        cdf = 0.5 * (1.0 + math.erf(z / _SQRT2))
        total += w * z * z * k * pdf * cdf ** (k - 1)
    return 1.0 / math.sqrt(total * step)


# -- helpers for Modules ------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}.")
    return value


def _check_channels(module: nn.Module, x: Tensor, num_parameters: int) -> None:
    """Per-channel parameters need inputs ``(N, C, ...)`` with ``C == num_parameters``."""
    if num_parameters == 1:
        return
    if x.dim() < 2 or x.size(1) != num_parameters:
        raise ValueError(
            f"{type(module).__name__}(num_parameters={num_parameters}) expects inputs of shape "
            f"(N, {num_parameters}, ...) with the channels on dim 1. Received: shape "
            f"{tuple(x.shape)}."
        )


def _channel_view(p: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-channel parameter ``(C,)`` to broadcast against ``x`` = ``(N, C, ...)``."""
    if p.numel() == 1:
        return p.reshape(())
    return p.reshape(1, -1, *([1] * (x.dim() - 2)))


# -- bounded, saturating ------------------------------------------------------------------
class Sigmoid(nn.Module):
    """Logistic sigmoid ``1 / (1 + e^{-x})``, range (0, 1).

    Saturated: ``h <= 0.03`` or ``h >= 0.97`` (:data:`SIGMOID_SATURATION`). Gain 1, the value
    the lectures' Xavier/LeCun analyses use and ``torch.nn.init.calculate_gain("sigmoid")``
    returns; note the slope at 0 is 1/4, so some texts suggest 4× the tanh scale instead.
    """

    def forward(self, x: Tensor) -> Tensor:
        return TF.sigmoid(x)


class Tanh(nn.Module):
    """Hyperbolic tangent, range (-1, 1).

    Saturated: ``|h| >= 0.97`` (:data:`TANH_SATURATION`). Gain 1, the Glorot/LeCun convention
    of the lectures (tanh is the identity near 0). ``torch.nn.init.calculate_gain("tanh")``
    returns 5/3 instead, and the exact second-moment gain at unit-variance input is ≈1.59.
    """

    def forward(self, x: Tensor) -> Tensor:
        return TF.tanh(x)


class Softsign(nn.Module):
    """Glorot's softsign ``x / (1 + |x|)``, range (-1, 1).

    Saturated: ``|h| >= 0.97`` (:data:`SOFTSIGN_SATURATION`), reached only at ``|x| >= 32.3``.
    Gain 1, as tanh (slope 1 at 0).
    """

    def forward(self, x: Tensor) -> Tensor:
        return TF.softsign(x)


# -- rectifiers ---------------------------------------------------------------------------
class ReLU(nn.Module):
    """Rectified linear unit ``max(0, x)``. Dead where ``h == 0``; gain √2 (He et al. 2015)."""

    def forward(self, x: Tensor) -> Tensor:
        return TF.relu(x)


class ReLU6(nn.Module):
    """``min(max(0, x), 6)``. Dead where ``h == 0``, saturated at the cap ``h == 6``; gain √2."""

    def forward(self, x: Tensor) -> Tensor:
        return TF.relu6(x)


class LeakyReLU(nn.Module):
    """Leaky ReLU ``max(a x, x)``, ``0 <= a < 1``.

    ``negative_slope`` defaults to torch's 0.01 (:data:`TORCH_LEAKY_SLOPE`); the lectures'
    ``max(0.1 x, x)`` is ``LeakyReLU(LECTURE_LEAKY_SLOPE)``. Never dead (slope ``a > 0``) and
    never saturated; gain ``sqrt(2 / (1 + a²))`` (He et al. 2015).
    """

    def __init__(self, negative_slope: float = TORCH_LEAKY_SLOPE) -> None:
        super().__init__()
        self.negative_slope = check_range(
            "negative_slope", negative_slope, 0.0, 1.0, high_closed=False
        )

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope:g}"

    def forward(self, x: Tensor) -> Tensor:
        return TF.leaky_relu(x, self.negative_slope)


class PReLU(nn.Module):
    """Parametric ReLU ``max(0, x) + a · min(0, x)`` with learnable ``a`` (He et al. 2015).

    Args:
        num_parameters: 1 for one slope shared by all units, or the number of channels
            ``C`` of inputs ``(N, C, ...)`` for one slope per channel.
        init: initial slope, in ``[0, 1)``; He et al.'s 0.25 by default.

    The parameter is ``weight`` of shape ``(num_parameters,)``, as in ``torch.nn.PReLU``, so
    state dicts are interchangeable. No dead or saturated rule; gain ``sqrt(2 / (1 + a²))``
    at the initial slope.
    """

    def __init__(self, num_parameters: int = 1, init: float = PRELU_INIT) -> None:
        super().__init__()
        self.num_parameters = _check_int("num_parameters", num_parameters, 1)
        self.init = check_range("init", init, 0.0, 1.0, high_closed=False)
        self.weight = nn.Parameter(torch.empty(num_parameters))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.init)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}, init={self.init:g}"

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(self, x, self.num_parameters)
        return TF.prelu(x, self.weight)


class RReLU(nn.Module):
    """Randomized leaky ReLU (Xu et al. 2015): slope ``~ U(lower, upper)`` per element in
    training, ``(lower + upper) / 2`` in eval.

    No dead or saturated rule; gain ``sqrt(2 / (1 + E[a²]))`` with
    ``E[a²] = (l² + l u + u²) / 3`` for ``a ~ U(l, u)``.
    """

    def __init__(self, lower: float = RRELU_LOWER, upper: float = RRELU_UPPER) -> None:
        super().__init__()
        self.lower = check_range("lower", lower, 0.0, 1.0, high_closed=False)
        self.upper = check_range("upper", upper, 0.0, 1.0, high_closed=False)
        if self.lower > self.upper:
            raise ValueError(
                f"lower must be <= upper, both in [0, 1). Received: lower={lower!r}, "
                f"upper={upper!r}."
            )

    def extra_repr(self) -> str:
        return f"lower={self.lower:g}, upper={self.upper:g}"

    def forward(self, x: Tensor) -> Tensor:
        return TF.rrelu(x, self.lower, self.upper, training=self.training)


class NoisyReLU(nn.Module):
    """Noisy ReLU ``max(0, x + N(0, σ(x)))`` in training, ``max(0, x)`` in eval (Nair &
    Hinton 2010).

    Args:
        sigma: ``None`` (default) for Nair & Hinton's noise of variance ``sigmoid(x)``; a float
            ``>= 0`` for Gaussian noise of constant standard deviation ``sigma``.
        generator: optional ``torch.Generator`` for the noise (must live on the input's
            device); not part of the state dict.

    Dead where ``h == 0``; gain √2 as ReLU.
    """

    def __init__(self, sigma: float | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.sigma = (
            None if sigma is None else check_range("sigma", sigma, 0.0, _INF, high_closed=False)
        )
        self.generator = generator

    def extra_repr(self) -> str:
        return "sigma=sigmoid(x) variance" if self.sigma is None else f"sigma={self.sigma:g}"

    def forward(self, x: Tensor) -> Tensor:
        return TF.noisy_relu(x, self.sigma, training=self.training, generator=self.generator)


# -- exponential ---------------------------------------------------------------------------
class ELU(nn.Module):
    """Exponential linear unit, ``x`` for ``x > 0`` and ``α (e^x - 1)`` otherwise; range (-α, ∞).

    Saturated: ``h <= -0.97 α`` (derivative ``α e^x = h + α <= 0.03 α``). Never dead. Gain √2,
    ReLU-like (Clevert et al. initialize as for ReLU; the exact second-moment gain for α = 1
    at unit-variance input is ≈1.25).
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = check_range("alpha", alpha, 0.0, _INF, low_closed=False, high_closed=False)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"

    def forward(self, x: Tensor) -> Tensor:
        return TF.elu(x, self.alpha)


class SELU(nn.Module):
    """Scaled ELU ``λ elu(x, α)`` (Klambauer et al. 2017), range (-λα, ∞) ≈ (-1.758, ∞).

    Saturated: ``h <= -0.97 λα``. Never dead. Gain 1, with LeCun normal init, as the paper
    requires for self-normalization. (``torch.nn.init.calculate_gain("selu")`` returns 3/4,
    a different convention.)
    """

    def forward(self, x: Tensor) -> Tensor:
        return TF.selu(x)


# -- smooth, ReLU-like --------------------------------------------------------------------
class GELU(nn.Module):
    """Gaussian error linear unit ``x Φ(x)`` (Hendrycks & Gimpel 2016), min ≈ -0.170.

    ``approximate="none"`` is exact (erf); ``"tanh"`` is the paper's tanh approximation.
    No saturated or dead rule (see the module docstring). Gain √2, ReLU-like (the exact
    second-moment gain at unit-variance input is ≈1.53).
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in TF.GELU_APPROXIMATIONS:
            raise ValueError(
                f"approximate must be one of {TF.GELU_APPROXIMATIONS}. "
                f"Received: approximate={approximate!r}."
            )
        self.approximate = approximate

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def forward(self, x: Tensor) -> Tensor:
        return TF.gelu(x, self.approximate)


class SiLU(nn.Module):
    """Sigmoid-weighted linear unit ``x σ(x)`` (Elfwing et al. 2018), min ≈ -0.278.

    Swish with β = 1. No saturated or dead rule. Gain √2, ReLU-like (exact second-moment
    gain at unit-variance input ≈1.68).
    """

    def forward(self, x: Tensor) -> Tensor:
        return TF.silu(x)


class Swish(nn.Module):
    """Swish ``x σ(β x)`` (Ramachandran, Zoph & Le 2017), β fixed or learnable.

    Args:
        beta: the (initial) β, ``>= 0``; 1 gives SiLU.
        learnable: make β a parameter (``self.beta``) instead of a fixed float.
        num_parameters: with ``learnable``, 1 for a shared β or ``C`` for one per channel of
            inputs ``(N, C, ...)``.

    No saturated or dead rule; gain √2, ReLU-like. The minimum is ``SILU_MIN / β`` for β > 0.
    """

    def __init__(self, beta: float = 1.0, learnable: bool = False, num_parameters: int = 1) -> None:
        super().__init__()
        self.beta_init = check_range("beta", beta, 0.0, _INF, high_closed=False)
        self.learnable = bool(learnable)
        self.num_parameters = _check_int("num_parameters", num_parameters, 1)
        if num_parameters > 1 and not learnable:
            raise ValueError(
                "num_parameters > 1 needs learnable=True (a fixed beta is one float). "
                f"Received: num_parameters={num_parameters!r}, learnable={learnable!r}."
            )
        if self.learnable:
            self.beta: Tensor | float = nn.Parameter(torch.empty(num_parameters))
        else:
            self.beta = self.beta_init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if isinstance(self.beta, nn.Parameter):
            nn.init.constant_(self.beta, self.beta_init)

    def extra_repr(self) -> str:
        s = f"beta={self.beta_init:g}, learnable={self.learnable}"
        return s + (f", num_parameters={self.num_parameters}" if self.learnable else "")

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.beta, Tensor):
            _check_channels(self, x, self.num_parameters)
            return TF.swish(x, _channel_view(self.beta, x))
        return TF.swish(x, self.beta)


class Softplus(nn.Module):
    """Softplus ``(1/β) log(1 + e^{β x})`` (Dugas et al. 2001), range (0, ∞).

    Saturated toward 0: ``h <= 0.03 / β`` (derivative ``1 - e^{-β h} <= 0.03``). Never dead.
    Gain √2 as a smooth ReLU.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = check_range("beta", beta, 0.0, _INF, low_closed=False, high_closed=False)
        self.threshold = check_range(
            "threshold", threshold, 0.0, _INF, low_closed=False, high_closed=False
        )

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}, threshold={self.threshold:g}"

    def forward(self, x: Tensor) -> Tensor:
        return TF.softplus(x, self.beta, self.threshold)


# -- maxout and identity ------------------------------------------------------------------
class Maxout(nn.Module):
    """Maxout layer ``h_j = max_{i<k} (W_{jk+i} · x + b_{jk+i})`` (Goodfellow et al. 2013).

    Replaces ``Linear(in_features, out_features)`` followed by an activation: it holds
    ``k`` affine pieces per output unit. Inputs are ``(..., in_features)``.

    Args:
        in_features: size of each input sample.
        out_features: number of maxout units.
        k: affine pieces per unit, an integer ``>= 2``.
        bias: learn the biases ``b``.

    The ``k · out_features`` pieces live in one plain ``self.linear = nn.Linear(in_features,
    out_features · k)`` (pieces of unit ``j`` in rows ``j k .. j k + k - 1``), so initializers and
    probes that look for ``nn.Linear`` find them (fan_in = ``in_features``); ``weight`` and
    ``bias`` are read-only views of ``linear.weight`` and ``linear.bias``.
    :meth:`reset_parameters` draws ``weight ~ U(±g √(3 / in_features))`` with ``g =
    maxout_gain(k)`` (so the output's second moment matches the input's at init) and zero
    biases. No saturated or dead rule ("no saturation, no death").
    """

    def __init__(self, in_features: int, out_features: int, k: int = 2, bias: bool = True):
        super().__init__()
        self.in_features = _check_int("in_features", in_features, 1)
        self.out_features = _check_int("out_features", out_features, 1)
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ValueError(
                f"k must be an integer >= 2 (the number of affine pieces per maxout unit). "
                f"Received: k={k!r}."
            )
        self.k = k
        self.linear = nn.Linear(in_features, out_features * k, bias=bias)
        self.reset_parameters()

    @property
    def weight(self) -> Tensor:
        """The pieces' weights ``(out_features · k, in_features)`` (``linear.weight``)."""
        return self.linear.weight

    @property
    def bias(self) -> Tensor | None:
        """The pieces' biases ``(out_features · k,)`` or ``None`` (``linear.bias``)."""
        return self.linear.bias

    def reset_parameters(self) -> None:
        bound = maxout_gain(self.k) * math.sqrt(3.0 / self.in_features)
        nn.init.uniform_(self.linear.weight, -bound, bound)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, k={self.k}, "
            f"bias={self.bias is not None}"
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 0 or x.size(-1) != self.in_features:
            raise ValueError(
                f"Maxout(in_features={self.in_features}) expects inputs of shape "
                f"(..., {self.in_features}). Received: shape {tuple(x.shape)}."
            )
        return TF.maxout(x, self.linear.weight, self.linear.bias, self.k)


class Identity(nn.Module):
    """The identity (a linear unit). No saturated or dead rule; gain 1."""

    def forward(self, x: Tensor) -> Tensor:
        return TF.identity(x)


# -- registry: each entry holds what its activation is (contract C1) ----------------------
ACTIVATIONS = Registry("activation")


def _register(
    name: str,
    cls: type[nn.Module],
    info_for: Callable[..., ActivationInfo],
    description: str,
    reference: str,
    *,
    aliases: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
    settings: Mapping[str, str] | None = None,
    torch_modules: tuple[type[nn.Module], ...] = (),
) -> None:
    """Register ``cls`` under ``name`` with its :class:`ActivationInfo` rules in the entry's
    meta, the one place they are written:

    - ``meta["info_for"]``: ``info_for(**settings) -> ActivationInfo``, the rules (gain,
      output range, saturated and dead rules, ``replaces_linear`` ...) for the activation's
      settings (its constructor's keyword arguments that change them, with their defaults);
    - ``meta["settings"]``: ``{info_for argument: Module attribute}``, where a Module keeps
      each setting (by default the argument's own name); :func:`activation_info` reads a
      Module through it;
    - ``meta["torch"]``: torch's Modules that are this activation, read through the same
      attributes (``nn.LeakyReLU.negative_slope``);
    - ``meta["info"]``: the info at the entry's ``defaults``, and its fields for listings and
      builders: ``output_range``, ``gain``, ``hist_range``, ``can_saturate``, ``can_die``,
      ``stochastic``, ``learnable``, ``replaces_linear``.
    """
    params = inspect.signature(info_for).parameters
    info = info_for(**{k: v for k, v in (defaults or {}).items() if k in params})
    ACTIVATIONS.add(
        name,
        cls,
        description=description,
        reference=reference,
        aliases=aliases,
        defaults=defaults,
        meta={
            "info_for": info_for,
            "settings": dict(settings) if settings is not None else {p: p for p in params},
            "torch": tuple(torch_modules),
            "info": info,
            "output_range": info.output_range,
            "gain": info.gain,
            "hist_range": info.hist_range,
            "can_saturate": info.saturated is not None,
            "can_die": info.dead is not None,
            "stochastic": info.stochastic,
            "learnable": info.learnable,
            "replaces_linear": info.replaces_linear,
        },
    )


# bounded, saturating
def _sigmoid_info() -> ActivationInfo:
    lo, hi = SIGMOID_SATURATION
    return ActivationInfo(
        "sigmoid",
        (0.0, 1.0),
        1.0,
        saturated=ThresholdRule(lo, hi),
        notes="saturated within 0.03 of 0 or 1; gain 1 (torch: 1).",
    )


_register(
    "sigmoid",
    Sigmoid,
    _sigmoid_info,
    "logistic 1/(1+e^-x), range (0, 1), saturates at 0 and 1",
    "Glorot & Bengio 2010; lectures 001, 004",
    aliases=("logistic",),
    torch_modules=(nn.Sigmoid,),
)


def _tanh_info() -> ActivationInfo:
    t = TANH_SATURATION
    return ActivationInfo(
        "tanh",
        (-1.0, 1.0),
        1.0,
        saturated=ThresholdRule(-t, t),
        notes="saturated at |h| >= 0.97; gain 1 (Glorot/LeCun; torch's calculate_gain: 5/3).",
    )


_register(
    "tanh",
    Tanh,
    _tanh_info,
    "hyperbolic tangent, range (-1, 1), saturates at ±1",
    "LeCun et al. 1998, Efficient BackProp",
    torch_modules=(nn.Tanh,),
)


def _softsign_info() -> ActivationInfo:
    t = SOFTSIGN_SATURATION
    return ActivationInfo(
        "softsign",
        (-1.0, 1.0),
        1.0,
        saturated=ThresholdRule(-t, t),
        notes="saturated at |h| >= 0.97 (|x| >= 32.3); gain 1 as tanh.",
    )


_register(
    "softsign",
    Softsign,
    _softsign_info,
    "x/(1+|x|), range (-1, 1), polynomial tails",
    "Glorot & Bengio 2010",
    torch_modules=(nn.Softsign,),
)


# rectifiers
def _relu_info() -> ActivationInfo:
    return ActivationInfo(
        "relu",
        (0.0, _INF),
        _SQRT2,
        dead=ThresholdRule(at_or_below=0.0),
        notes="dead where h == 0 (zero derivative); gain sqrt(2) (He).",
    )


_register(
    "relu",
    ReLU,
    _relu_info,
    "max(0, x); dead where the output is 0",
    "Nair & Hinton 2010; Glorot, Bordes & Bengio 2011",
    torch_modules=(nn.ReLU,),
)


def _relu6_info() -> ActivationInfo:
    return ActivationInfo(
        "relu6",
        (0.0, RELU6_CAP),
        _SQRT2,
        saturated=ThresholdRule(at_or_above=RELU6_CAP),
        dead=ThresholdRule(at_or_below=0.0),
        notes="dead where h == 0, saturated at the cap h == 6; gain sqrt(2).",
    )


_register("relu6", ReLU6, _relu6_info, "min(max(0, x), 6)", "Krizhevsky 2010",
          torch_modules=(nn.ReLU6,))


def _leaky_relu_info(negative_slope: float = TORCH_LEAKY_SLOPE) -> ActivationInfo:
    # a = 0 is the plain ReLU, which can die
    dead = ThresholdRule(at_or_below=0.0) if negative_slope == 0 else None
    return ActivationInfo(
        "leaky_relu",
        (-_INF if negative_slope > 0 else 0.0, _INF),
        leaky_gain(negative_slope),
        dead=dead,
        notes="no dead or saturated rule (slope a > 0; a = 0 is ReLU and dies where h == 0); "
        "gain sqrt(2/(1+a^2)).",
    )


_register(
    "leaky_relu",
    LeakyReLU,
    _leaky_relu_info,
    "max(a x, x), a = 0.01 (torch) or 0.1 (lectures)",
    "Maas, Hannun & Ng 2013",
    aliases=("lrelu", "leakyrelu"),
    torch_modules=(nn.LeakyReLU,),
)


def _prelu_info(init: float = PRELU_INIT) -> ActivationInfo:
    return ActivationInfo(
        "prelu",
        (-_INF, _INF),
        leaky_gain(init),
        learnable=True,
        notes="learned slope; no dead or saturated rule; gain sqrt(2/(1+a^2)) at init a.",
    )


_register(
    "prelu",
    PReLU,
    _prelu_info,
    "leaky ReLU with a learned slope (shared or per channel), init 0.25",
    "He et al. 2015, Delving deep into rectifiers",
    aliases=("parametric_relu",),
    torch_modules=(nn.PReLU,),
)


def _rrelu_info(lower: float = RRELU_LOWER, upper: float = RRELU_UPPER) -> ActivationInfo:
    mean_sq = (lower * lower + lower * upper + upper * upper) / 3.0
    return ActivationInfo(
        "rrelu",
        (-_INF, _INF),
        math.sqrt(2.0 / (1.0 + mean_sq)),
        stochastic=True,
        notes="random slope in training; no dead or saturated rule; gain sqrt(2/(1+E[a^2])).",
    )


_register(
    "rrelu",
    RReLU,
    _rrelu_info,
    "leaky ReLU with slope ~ U(1/8, 1/3) in training, mean in eval",
    "Xu et al. 2015",
    aliases=("randomized_relu", "randomized_leaky_relu"),
    torch_modules=(nn.RReLU,),
)


def _noisy_relu_info() -> ActivationInfo:
    return ActivationInfo(
        "noisy_relu",
        (0.0, _INF),
        _SQRT2,
        dead=ThresholdRule(at_or_below=0.0),
        stochastic=True,
        notes="Gaussian noise in training; dead where h == 0; gain sqrt(2).",
    )


_register(
    "noisy_relu",
    NoisyReLU,
    _noisy_relu_info,
    "max(0, x + N(0, sigmoid(x))) in training, ReLU in eval",
    "Nair & Hinton 2010",
    aliases=("nrelu",),
)


# exponential
def _elu_info(alpha: float = 1.0) -> ActivationInfo:
    return ActivationInfo(
        "elu",
        (-alpha, _INF),
        _SQRT2,
        saturated=ThresholdRule(at_or_below=-(1.0 - SATURATION_MARGIN) * alpha),
        notes="saturated at h <= -0.97 alpha (negative asymptote); gain sqrt(2).",
    )


_register(
    "elu",
    ELU,
    _elu_info,
    "x for x > 0, alpha (e^x - 1) otherwise",
    "Clevert, Unterthiner & Hochreiter 2016",
    torch_modules=(nn.ELU,),
)


def _selu_info() -> ActivationInfo:
    floor = -SELU_LAMBDA * SELU_ALPHA
    return ActivationInfo(
        "selu",
        (floor, _INF),
        1.0,
        saturated=ThresholdRule(at_or_below=(1.0 - SATURATION_MARGIN) * floor),
        notes="saturated at h <= -0.97 lambda*alpha; gain 1 with LeCun normal "
        "(torch's calculate_gain: 3/4).",
    )


_register(
    "selu",
    SELU,
    _selu_info,
    "scaled ELU, self-normalizing with LeCun normal init",
    "Klambauer et al. 2017",
    torch_modules=(nn.SELU,),
)


# smooth, ReLU-like
def _gelu_info(approximate: str = "none") -> ActivationInfo:
    return ActivationInfo(
        "gelu" if approximate == "none" else "gelu_tanh",
        (GELU_MIN if approximate == "none" else GELU_TANH_MIN, _INF),
        _SQRT2,
        notes="no output-based dead or saturated rule; gain sqrt(2) as ReLU.",
    )


_register("gelu", GELU, _gelu_info, "x Phi(x), exact (erf)", "Hendrycks & Gimpel 2016",
          torch_modules=(nn.GELU,))
_register(
    "gelu_tanh",
    GELU,
    _gelu_info,
    "x Phi(x), tanh approximation",
    "Hendrycks & Gimpel 2016",
    defaults={"approximate": "tanh"},
)


def _silu_info() -> ActivationInfo:
    return ActivationInfo(
        "silu",
        (SILU_MIN, _INF),
        _SQRT2,
        notes="no output-based dead or saturated rule; gain sqrt(2) as ReLU.",
    )


_register(
    "silu",
    SiLU,
    _silu_info,
    "x sigmoid(x) (swish with beta = 1)",
    "Elfwing, Uchibe & Doya 2018; Hendrycks & Gimpel 2016",
    torch_modules=(nn.SiLU,),
)


def _swish_info(beta: float = 1.0, learnable: bool = False) -> ActivationInfo:
    lo = -_INF if learnable or beta <= 0 else SILU_MIN / beta
    return ActivationInfo(
        "swish",
        (lo, _INF),
        _SQRT2,
        learnable=learnable,
        notes="no output-based dead or saturated rule; gain sqrt(2) as ReLU.",
    )


_register(
    "swish",
    Swish,
    _swish_info,
    "x sigmoid(beta x), beta fixed or learnable",
    "Ramachandran, Zoph & Le 2017",
    settings={"beta": "beta_init", "learnable": "learnable"},  # self.beta may be a Parameter
)


def _softplus_info(beta: float = 1.0) -> ActivationInfo:
    return ActivationInfo(
        "softplus",
        (0.0, _INF),
        _SQRT2,
        saturated=ThresholdRule(at_or_below=SATURATION_MARGIN / beta),
        notes="saturated toward 0 at h <= 0.03/beta; never dead; gain sqrt(2).",
    )


_register("softplus", Softplus, _softplus_info, "log(1 + e^x), a smooth ReLU",
          "Dugas et al. 2001", torch_modules=(nn.Softplus,))


# maxout and identity
def _maxout_info(k: int = 2) -> ActivationInfo:
    return ActivationInfo(
        "maxout",
        (-_INF, _INF),
        maxout_gain(k),
        learnable=True,
        replaces_linear=True,
        notes="no saturation, no death; gain 1/sqrt(E[max of k N(0,1)]^2) (1 for k = 2).",
    )


_register(
    "maxout",
    Maxout,
    _maxout_info,
    "max over k affine pieces; replaces Linear + activation",
    "Goodfellow et al. 2013",
)


def _identity_info() -> ActivationInfo:
    return ActivationInfo("identity", (-_INF, _INF), 1.0, notes="linear; gain 1.")


_register("identity", Identity, _identity_info, "the identity (linear unit)", "",
          aliases=("linear", "none"), torch_modules=(nn.Identity,))


# -- activation_info ----------------------------------------------------------------------
def _hardtanh_info(m: nn.Hardtanh) -> ActivationInfo:
    return ActivationInfo(
        "hardtanh",
        (m.min_val, m.max_val),
        1.0,
        saturated=ThresholdRule(m.min_val, m.max_val),
        notes="saturated at its clips; gain 1.",
    )


def _celu_info(m: nn.CELU) -> ActivationInfo:
    return ActivationInfo(
        "celu",
        (-m.alpha, _INF),
        _SQRT2,
        saturated=ThresholdRule(at_or_below=-(1.0 - SATURATION_MARGIN) * m.alpha),
        notes="as ELU: saturated at h <= -0.97 alpha; gain sqrt(2).",
    )


def _mish_info(m: nn.Mish) -> ActivationInfo:
    return ActivationInfo(
        "mish",
        (MISH_MIN, _INF),
        _SQRT2,
        notes="no output-based dead or saturated rule; gain sqrt(2) as ReLU.",
    )


#: Hardswish's minimum, ``-3/8`` at ``x = -3/2``.
HARDSWISH_MIN = -0.375


def _hardswish_info(m: nn.Hardswish) -> ActivationInfo:
    return ActivationInfo(
        "hardswish",
        (HARDSWISH_MIN, _INF),
        _SQRT2,
        dead=EqualsRule(0.0),
        notes="x*relu6(x+3)/6 (MobileNetV3): dead where h == 0 (x <= -3, zero derivative); "
        "gain sqrt(2) as its smooth cousin SiLU.",
    )


def _hardsigmoid_info(m: nn.Hardsigmoid) -> ActivationInfo:
    return ActivationInfo(
        "hardsigmoid",
        (0.0, 1.0),
        1.0,
        saturated=ThresholdRule(0.0, 1.0),
        notes="relu6(x+3)/6: saturated at h <= 0 or h >= 1 (zero derivative beyond |x| >= 3); "
        "gain 1 as sigmoid.",
    )


def _logsigmoid_info(m: nn.LogSigmoid) -> ActivationInfo:
    # d/dx log σ(x) = 1 - σ(x) = 1 - e^h: at most 0.03 once h >= log(0.97)
    return ActivationInfo(
        "logsigmoid",
        (-_INF, 0.0),
        1.0,
        saturated=ThresholdRule(at_or_above=math.log(1.0 - SATURATION_MARGIN)),
        notes="log sigmoid(x): saturated at h >= log(0.97) (derivative 1 - e^h <= 0.03); gain 1.",
    )


def _tanhshrink_info(m: nn.Tanhshrink) -> ActivationInfo:
    return ActivationInfo(
        "tanhshrink", (-_INF, _INF), 1.0,
        notes="x - tanh(x): no output-based dead or saturated rule; gain 1.",
    )


def _shrink_info(name: str) -> Callable[[Any], ActivationInfo]:
    def info(m: Any) -> ActivationInfo:
        return ActivationInfo(
            name, (-_INF, _INF), 1.0, dead=EqualsRule(0.0),
            notes=f"{name}: dead where h == 0 (|x| <= lambda = {m.lambd:g}); gain 1.",
        )

    return info


def _threshold_info(m: nn.Threshold) -> ActivationInfo:
    return ActivationInfo(
        "threshold",
        (min(float(m.value), float(m.threshold)), _INF),
        _SQRT2,
        dead=EqualsRule(float(m.value)),
        notes=f"x if x > {m.threshold:g} else {m.value:g}: dead where h == {m.value:g}; "
        "gain sqrt(2) as ReLU.",
    )


# torch's elementwise activations that are no trainlab activation (not in ACTIVATIONS, so
# not buildable by name) -> their info, read from their attributes. torch's modules that are
# a trainlab activation are in that entry's meta["torch"]. Both are looked up along the
# class's MRO, so nn.ReLU6 (a Hardtanh) is found first. torch's other modules in
# torch.nn.modules.activation are not elementwise hidden-unit nonlinearities (GLU halves a
# dimension; Softmax, Softmin, Softmax2d and LogSoftmax normalize across units;
# MultiheadAttention is a layer) and are not activations here.
_TORCH_INFO: dict[type, Callable[[Any], ActivationInfo]] = {
    nn.Hardtanh: _hardtanh_info,
    nn.CELU: _celu_info,
    nn.Mish: _mish_info,
    nn.Hardswish: _hardswish_info,
    nn.Hardsigmoid: _hardsigmoid_info,
    nn.LogSigmoid: _logsigmoid_info,
    nn.Tanhshrink: _tanhshrink_info,
    nn.Softshrink: _shrink_info("softshrink"),
    nn.Hardshrink: _shrink_info("hardshrink"),
    nn.Threshold: _threshold_info,
}

_by_class_cache: dict[int, dict[type, Entry]] = {}


def _entries_by_class() -> dict[type, Entry]:
    """Each registered activation's class and its ``meta["torch"]`` classes -> the entry (the
    first entry of a class: ``GELU`` is ``gelu``, its settings tell ``gelu_tanh``)."""
    if len(ACTIVATIONS) not in _by_class_cache:
        found: dict[type, Entry] = {}
        for entry in ACTIVATIONS:
            if "info_for" not in entry.meta:
                continue
            for cls in (entry.factory, *entry.meta["torch"]):
                if isinstance(cls, type):
                    found.setdefault(cls, entry)
        _by_class_cache.clear()
        _by_class_cache[len(ACTIVATIONS)] = found
    return _by_class_cache[len(ACTIVATIONS)]


def _registry_info(entry: Entry) -> ActivationInfo:
    if "info" not in entry.meta:
        raise ValueError(
            f"activation {entry.name!r} was registered without its ActivationInfo "
            "(meta['info'] and meta['info_for']); trainlab's activations register with "
            "trainlab.nn.activations._register."
        )
    return entry.meta["info"]


def _info_from_spec(name: str, kwargs: Mapping[str, Any]) -> ActivationInfo:
    """Info of a ``(name, kwargs)`` spec: the settings ``info_for`` reads, over the defaults."""
    entry = ACTIVATIONS.get(name)
    _registry_info(entry)
    info_for = entry.meta["info_for"]
    accepted = inspect.signature(info_for).parameters
    merged = {**entry.defaults, **kwargs}
    return info_for(**{k: v for k, v in merged.items() if k in accepted})


def _module_info(entry: Entry, module: nn.Module) -> ActivationInfo:
    """Info of a Module of ``entry``'s class or one of its torch classes: its settings, read
    through ``meta["settings"]`` (an attribute that is missing or ``None`` keeps the default)."""
    settings = {arg: getattr(module, attr, None) for arg, attr in entry.meta["settings"].items()}
    return entry.meta["info_for"](**{k: v for k, v in settings.items() if v is not None})


def _lookup(cls: type) -> tuple[Entry | None, Callable[[Any], ActivationInfo] | None]:
    """The entry, or torch's info reader, of ``cls`` or its nearest base class."""
    registered = _entries_by_class()
    for klass in cls.__mro__:
        if klass in registered:
            return registered[klass], None
        if klass in _TORCH_INFO:
            return None, _TORCH_INFO[klass]
    return None, None


def activation_info(obj: Any, *, strict: bool = False) -> ActivationInfo | None:
    """The :class:`ActivationInfo` of an activation given by name, spec, Module or class.

    The info is the registry entry's (``ACTIVATIONS.get(name).meta["info"]`` at the entry's
    defaults; ``meta["info_for"]`` for other settings). ``obj`` may be

    - a registry name or alias (the entry's default settings);
    - a spec as :meth:`Registry.build` takes it, ``("leaky_relu", {"negative_slope": 0.1})`` or
      ``{"name": "maxout", "k": 3}`` (the settings that change the info are read);
    - a trainlab activation Module (its settings, read through the entry's
      ``meta["settings"]``: ``LeakyReLU(0.1)`` gives gain ``sqrt(2/1.01)``);
    - one of torch's activation Modules, read the same way: ``nn.Sigmoid``, ``nn.Tanh``,
      ``nn.Softsign``, ``nn.ReLU``, ``nn.ReLU6``, ``nn.LeakyReLU``, ``nn.PReLU``, ``nn.RReLU``,
      ``nn.ELU``, ``nn.SELU``, ``nn.GELU``, ``nn.SiLU``, ``nn.Softplus``, ``nn.Identity`` (the
      entries' ``meta["torch"]``), and ``nn.Hardtanh``, ``nn.CELU``, ``nn.Mish``,
      ``nn.Hardswish``, ``nn.Hardsigmoid``, ``nn.LogSigmoid``, ``nn.Tanhshrink``,
      ``nn.Softshrink``, ``nn.Hardshrink`` and ``nn.Threshold`` (every elementwise activation
      of ``torch.nn``);
    - a class of either (its default settings), or an :class:`ActivationInfo` (returned as is);
    - a Module of your own whose class has ``info_for()`` and an ``activation_info()`` method.

    Anything else (``nn.Linear``, a whole model, ``5``) gives ``None``, so probes can walk any
    model; with ``strict=True`` it raises ``ValueError`` (``TypeError`` for non-modules)
    instead. A *name* that is not registered always raises ``ValueError`` listing the close
    matches: a typo in a config must not silently mean "no activation".
    """
    if isinstance(obj, ActivationInfo):
        return obj
    if isinstance(obj, str):
        return _registry_info(ACTIVATIONS.get(obj))
    if isinstance(obj, (tuple, list, Mapping)):
        parsed = split_spec(obj)
        if parsed is not None:
            return _info_from_spec(*parsed)
    if isinstance(obj, nn.Module):
        if hasattr(type(obj), "info_for") and callable(getattr(obj, "activation_info", None)):
            return obj.activation_info()
        entry, torch_info = _lookup(type(obj))
        if entry is not None:
            return _module_info(entry, obj)
        if torch_info is not None:
            return torch_info(obj)
    elif isinstance(obj, type) and issubclass(obj, nn.Module):
        if hasattr(obj, "info_for"):
            return obj.info_for()
        entry, torch_info = _lookup(obj)
        if entry is not None:
            if isinstance(entry.factory, type) and issubclass(obj, entry.factory):
                return entry.meta["info_for"]()
            return _module_info(entry, obj())
        if torch_info is not None:
            return torch_info(obj())
    elif strict:
        raise TypeError(
            "activation_info expects a registry name, a (name, kwargs) spec, an nn.Module, an "
            f"nn.Module class or an ActivationInfo. Received: {obj!r} of type "
            f"{type(obj).__name__}."
        )
    else:
        return None
    if not strict:
        return None
    name = obj.__name__ if isinstance(obj, type) else type(obj).__name__
    torch_names = {c.__name__ for e in ACTIVATIONS for c in e.meta.get("torch", ())}
    torch_names |= {k.__name__ for k in _TORCH_INFO}
    raise ValueError(
        f"{name} is not a known activation. Known: trainlab's {', '.join(ACTIVATIONS.names())} "
        f"and torch's {', '.join(sorted(torch_names))}."
    )
