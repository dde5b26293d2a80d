"""Activation functions by their lecture names, as pure functions of tensors.

Where torch already computes an activation (``torch.sigmoid``, ``F.leaky_relu``, ``F.elu``,
``F.selu``, ``F.gelu``, ``F.silu``, ``F.softplus``, ``F.rrelu``, ``F.prelu`` ...) the function
here calls it and only adds the lecture's name, the formula in the docstring and a check of
the hyperparameters. Where torch lacks it, the formula is written here with plain tensor
operations, so autograd differentiates it (no custom backward):

- :func:`noisy_relu`  ``max(0, x + N(0, σ(x)))``          Nair & Hinton 2010
- :func:`swish`       ``x · sigmoid(β x)``, β fixed or a tensor   Ramachandran et al. 2017
- :func:`maxout`      ``max_j (W_j x + b_j)``               Goodfellow et al. 2013

The Modules in :mod:`trainlab.nn.activations` own parameters and call these functions.

Hyperparameters out of their range raise ``ValueError`` naming the argument, the received
value and the allowed range, e.g. ``negative_slope must be in [0, 1). Received:
negative_slope=1.5.``
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "GELU_APPROXIMATIONS",
    "LECTURE_LEAKY_SLOPE",
    "RRELU_LOWER",
    "RRELU_UPPER",
    "SELU_ALPHA",
    "SELU_LAMBDA",
    "TORCH_LEAKY_SLOPE",
    "check_range",
    "elu",
    "gelu",
    "identity",
    "leaky_relu",
    "maxout",
    "maxout_pool",
    "noisy_relu",
    "prelu",
    "relu",
    "relu6",
    "rrelu",
    "selu",
    "sigmoid",
    "silu",
    "softplus",
    "softsign",
    "swish",
    "tanh",
]

#: ``F.leaky_relu``'s default negative slope (Maas et al. 2013 used 0.01 too).
TORCH_LEAKY_SLOPE = 0.01
#: The slope of the lectures' leaky ReLU ``max(0.1 x, x)`` (lectures 001 and 004).
LECTURE_LEAKY_SLOPE = 0.1
#: RReLU's default slope interval [1/8, 1/3] (Xu et al. 2015; torch's defaults).
RRELU_LOWER = 1.0 / 8.0
RRELU_UPPER = 1.0 / 3.0
#: SELU's constants (Klambauer et al. 2017, eq. 14); ``F.selu`` uses the same ones.
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717
#: Accepted values of ``gelu(approximate=...)``.
GELU_APPROXIMATIONS = ("none", "tanh")


# -- argument checks ----------------------------------------------------------------------
def _fmt(v: float) -> str:
    if v == math.inf:
        return "inf"
    if v == -math.inf:
        return "-inf"
    return f"{v:g}"


def check_range(
    name: str,
    value: float,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_closed: bool = True,
    high_closed: bool = True,
) -> float:
    """Return ``float(value)`` if it lies in the interval, else raise ``ValueError``.

    The message names the argument, the allowed interval and the received value:
    ``"alpha must be in (0, inf). Received: alpha=-1."``
    """
    lo_b = "[" if low_closed and low != -math.inf else "("
    hi_b = "]" if high_closed and high != math.inf else ")"
    interval = f"{lo_b}{_fmt(low)}, {_fmt(high)}{hi_b}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number in {interval}. Received: {name}={value!r}.")
    v = float(value)
    ok = not math.isnan(v)
    ok = ok and (v >= low if low_closed else v > low)
    ok = ok and (v <= high if high_closed else v < high)
    if not ok:
        raise ValueError(f"{name} must be in {interval}. Received: {name}={value!r}.")
    return v


def _check_slope(name: str, value: float) -> float:
    # A leaky slope a keeps max(a x, x) monotone and distinct from the identity: 0 <= a < 1.
    return check_range(name, value, 0.0, 1.0, high_closed=False)


# -- bounded, saturating ------------------------------------------------------------------
def sigmoid(x: Tensor) -> Tensor:
    """Logistic sigmoid ``σ(x) = 1 / (1 + e^{-x})``, range (0, 1). ``torch.sigmoid``."""
    return torch.sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent ``(e^x - e^{-x}) / (e^x + e^{-x}) = 2σ(2x) - 1``, range (-1, 1)."""
    return torch.tanh(x)


def softsign(x: Tensor) -> Tensor:
    """Softsign ``x / (1 + |x|)``, range (-1, 1) (Glorot & Bengio 2010; Bergstra et al. 2009).

    Like tanh but with polynomial rather than exponential tails, so it saturates more
    slowly: its derivative is ``1 / (1 + |x|)² = (1 - |h|)²``. ``F.softsign``.
    """
    return F.softsign(x)


# -- rectifiers ---------------------------------------------------------------------------
def relu(x: Tensor) -> Tensor:
    """Rectified linear unit ``max(0, x)`` (Nair & Hinton 2010; Glorot et al. 2011)."""
    return F.relu(x)


def relu6(x: Tensor) -> Tensor:
    """ReLU capped at 6, ``min(max(0, x), 6)`` (Krizhevsky 2010). ``F.relu6``."""
    return F.relu6(x)


def leaky_relu(x: Tensor, negative_slope: float = TORCH_LEAKY_SLOPE) -> Tensor:
    """Leaky ReLU ``max(a x, x)`` for ``0 <= a < 1`` (Maas et al. 2013). ``F.leaky_relu``.

    ``negative_slope=0.01`` is torch's default; the lectures write ``max(0.1 x, x)``
    (:data:`LECTURE_LEAKY_SLOPE`).
    """
    a = _check_slope("negative_slope", negative_slope)
    return F.leaky_relu(x, a)


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """Parametric ReLU ``max(0, x) + a · min(0, x)`` with learnable ``a`` (He et al. 2015).

    ``weight`` has one element (shared slope) or ``C`` elements, one per channel on dim 1.
    ``F.prelu``.
    """
    return F.prelu(x, weight)


def rrelu(
    x: Tensor,
    lower: float = RRELU_LOWER,
    upper: float = RRELU_UPPER,
    training: bool = True,
) -> Tensor:
    """Randomized leaky ReLU (Xu et al. 2015). ``F.rrelu``.

    In training each element's negative slope is drawn from ``U(lower, upper)``; in
    evaluation the slope is the mean ``(lower + upper) / 2``. Unlike ``F.rrelu`` (default
    ``training=False``) this follows ``F.dropout``'s convention, ``training=True``.
    """
    lo = _check_slope("lower", lower)
    hi = _check_slope("upper", upper)
    if lo > hi:
        raise ValueError(
            f"lower must be <= upper, both in [0, 1). Received: lower={lower!r}, upper={upper!r}."
        )
    return F.rrelu(x, lo, hi, training=training)


def noisy_relu(
    x: Tensor,
    sigma: float | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Noisy ReLU ``max(0, x + ε)``, ``ε ~ N(0, σ(x))`` (Nair & Hinton 2010).

    With ``sigma=None`` the noise *variance* is the logistic sigmoid of the input, as in
    Nair & Hinton (the variance of a sum of infinitely many binary units with shifted
    biases), so its standard deviation is ``sqrt(sigmoid(x))``. A float ``sigma >= 0`` gives
    constant-std noise ``N(0, sigma²)`` instead. In evaluation (``training=False``) the
    function is the plain ReLU.

    The noise is a reparametrized sample ``ε = sqrt(σ(x)) · z`` with ``z ~ N(0, 1)`` drawn
    from ``generator``; autograd differentiates the sampled function, so the gradient is
    ``1[x + ε > 0] · (1 + z · dsqrt(σ(x))/dx)`` (``1[x + ε > 0]`` for constant ``sigma``).
    """
    if sigma is not None:
        sigma = check_range("sigma", sigma, 0.0, math.inf, high_closed=False)
    if not training:
        return F.relu(x)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    # sqrt(sigmoid(x)) as exp(logsigmoid(x) / 2): same value, but a finite gradient where
    # sigmoid(x) underflows to 0 (sqrt's derivative there is infinite, times 0 gives NaN).
    std = torch.exp(0.5 * F.logsigmoid(x)) if sigma is None else sigma
    return F.relu(x + std * z)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """Exponential linear unit: ``x`` for ``x > 0``, ``α (e^x - 1)`` otherwise (Clevert et
    al. 2016). Range (-α, ∞). ``F.elu``."""
    a = check_range("alpha", alpha, 0.0, math.inf, low_closed=False, high_closed=False)
    return F.elu(x, a)


def selu(x: Tensor) -> Tensor:
    """Scaled ELU ``λ · elu(x, α)`` with λ ≈ 1.0507, α ≈ 1.6733 (Klambauer et al. 2017).

    The constants make N(0, 1) a fixed point of mean and variance through a layer with
    LeCun-normal weights, so deep stacks self-normalize. ``F.selu``.
    """
    return F.selu(x)


# -- smooth, ReLU-like --------------------------------------------------------------------
def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit ``x · Φ(x)`` (Hendrycks & Gimpel 2016). ``F.gelu``.

    ``approximate="none"``: exact, ``Φ(x) = (1 + erf(x / √2)) / 2``.
    ``approximate="tanh"``: ``0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))``.
    """
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(
            f"approximate must be one of {GELU_APPROXIMATIONS}. "
            f"Received: approximate={approximate!r}."
        )
    return F.gelu(x, approximate=approximate)


def silu(x: Tensor) -> Tensor:
    """Sigmoid-weighted linear unit ``x · σ(x)`` (Elfwing et al. 2018), swish with β = 1."""
    return F.silu(x)


def swish(x: Tensor, beta: float | Tensor = 1.0) -> Tensor:
    """Swish ``x · σ(β x)`` (Ramachandran, Zoph & Le 2017).

    ``beta`` is a float (fixed, ``β >= 0``) or a tensor that broadcasts against ``x`` (a
    learnable β, shared or per channel). β = 1 is SiLU; β → ∞ tends to ReLU; β = 0 is x/2.
    """
    if not isinstance(beta, Tensor):
        beta = check_range("beta", beta, 0.0, math.inf, high_closed=False)
    return x * torch.sigmoid(beta * x)


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """Softplus ``(1/β) log(1 + e^{β x})`` (Dugas et al. 2001), a smooth ReLU. ``F.softplus``.

    For ``β x > threshold`` torch returns ``x`` (equal within float precision).
    """
    b = check_range("beta", beta, 0.0, math.inf, low_closed=False, high_closed=False)
    t = check_range("threshold", threshold, 0.0, math.inf, low_closed=False, high_closed=False)
    return F.softplus(x, b, t)


# -- maxout and identity ------------------------------------------------------------------
def maxout_pool(z: Tensor, k: int, dim: int = -1) -> Tensor:
    """Max over consecutive groups of ``k`` entries of ``z`` along ``dim``.

    ``z.size(dim)`` must be a multiple of ``k``; the result has ``z.size(dim) // k`` entries
    along ``dim``, entry ``j`` being ``max(z[j k], ..., z[j k + k - 1])``. Applied to the
    channels of a convolution's output (``dim=1``) it gives a convolutional maxout layer.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an integer >= 2. Received: k={k!r}.")
    dim = dim % z.dim()
    n = z.size(dim)
    if n % k:
        raise ValueError(
            f"the size of dim {dim} must be a multiple of k={k}. Received: shape {tuple(z.shape)}."
        )
    shape = (*z.shape[:dim], n // k, k, *z.shape[dim + 1 :])
    return z.reshape(shape).amax(dim=dim + 1)


def maxout(x: Tensor, weight: Tensor, bias: Tensor | None, k: int) -> Tensor:
    """Maxout ``h_j = max_{i<k} (W_{jk+i} · x + b_{jk+i})`` (Goodfellow et al. 2013).

    ``weight`` is ``(out_features · k, in_features)`` with the ``k`` pieces of output ``j``
    in rows ``j k .. j k + k - 1``; ``bias`` is ``(out_features · k,)`` or ``None``. The
    input is ``(..., in_features)``, the output ``(..., out_features)``. One maxout layer
    replaces a ``Linear`` followed by an activation; with ``k = 2`` and one piece fixed at 0
    it is a ReLU, with the pieces ``x`` and ``a x`` a leaky ReLU.
    """
    return maxout_pool(F.linear(x, weight, bias), k, dim=-1)


def identity(x: Tensor) -> Tensor:
    """The identity ``x`` (a linear unit), for linear networks and as a baseline."""
    return x
