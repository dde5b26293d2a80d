"""Weight initializers: one variance-scaling function and the lectures' schemes as presets.

Every initializer here is an in-place function ``name_(tensor, ..., generator=None)``: it runs
under ``torch.no_grad()``, draws its random numbers from ``generator`` (torch's global RNG when
``None``) and returns the tensor it filled. The sampling itself is done by ``torch.nn.init``
(``normal_``, ``uniform_``, ``trunc_normal_``, ``orthogonal_``), so a scheme and torch's
equivalent give the same tensor for the same generator seed.

Fan convention (stated once, used by every scheme): for a weight of shape
``(out, in, *kernel)`` — ``nn.Linear`` is ``(out_features, in_features)``, ``nn.Conv2d`` is
``(C_out, C_in/groups, k_h, k_w)`` —

    fan_in  = in  · prod(kernel)      (C_in·k·k for a conv: lecture 001's "Din")
    fan_out = out · prod(kernel)      (C_out·k·k)
    fan_avg = (fan_in + fan_out) / 2

This is torch's and Keras' convention. For a transposed convolution, whose weight is stored
as ``(C_in, C_out/groups, *kernel)``, the same rule reads dimension 1 as ``fan_in``, i.e.
``fan_in = C_out/groups·k·k`` (again as torch and Keras do).

Variance scaling (:func:`variance_scaling_`) draws zero-mean weights with

    Var(W) = scale / fan

from a normal, a normal truncated at ±2σ (rescaled so that the variance is still
``scale / fan``) or a uniform distribution. Xavier/Glorot, He/Kaiming, LeCun and Glorot's
"standard" init are two-line presets of it:

    glorot_standard_   Var = 1/(3·fan_in)                U[−1/√fan_in, 1/√fan_in]
    xavier_uniform_    Var = gain²·2/(fan_in + fan_out)  uniform   (fan_avg)
    xavier_normal_     Var = gain²·2/(fan_in + fan_out)  normal    (fan_avg)
    lecun_normal_      Var = 1/fan_in                    normal
    lecun_uniform_     Var = 1/fan_in                    uniform
    he_normal_         Var = 2/((1 + a²)·fan)            normal    (fan_in or fan_out)
    he_uniform_        Var = 2/((1 + a²)·fan)            uniform   (fan_in or fan_out)

A warning on names: what lecture 001 (after CS231n) calls "Xavier" initialization,
``W = randn(Din, Dout) / sqrt(Din)``, is :func:`lecun_normal_` here (variance 1/fan_in);
Glorot & Bengio's own "normalized initialization" is :func:`xavier_uniform_` (fan_avg).

Every scheme is registered in :data:`INITS` (family ``"init"``) under a short name
(``"he_normal"``, ``"xavier_uniform"`` …) with keyword arguments as documented below.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from trainlab.registry import Registry

__all__ = [
    "DISTRIBUTIONS",
    "FAN_MODES",
    "INITS",
    "TRUNCATED_NORMAL_STD_FACTOR",
    "TRUNCATION",
    "compute_fans",
    "constant_",
    "glorot_standard_",
    "he_normal_",
    "he_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "normal_",
    "orthogonal_",
    "uniform_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

FAN_MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")

#: The truncated normal is cut at ±TRUNCATION standard deviations of the untruncated normal.
TRUNCATION = 2.0


def _truncated_standard_normal_std(c: float) -> float:
    """Standard deviation of N(0, 1) truncated to [−c, c].

    Var = 1 − 2c·φ(c) / (Φ(c) − Φ(−c)), with φ the standard normal density and
    Φ(c) − Φ(−c) = erf(c/√2).
    """
    pdf = math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi)
    mass = math.erf(c / math.sqrt(2.0))
    return math.sqrt(1.0 - 2.0 * c * pdf / mass)


#: Std of N(0, 1) truncated to [−2, 2]: 0.87962566103423978 (the constant in Keras'
#: ``VarianceScaling``). A truncated normal with target std σ is drawn from N(0, (σ/0.8796)²)
#: cut at ±2·σ/0.8796, so that its std after truncation is σ.
TRUNCATED_NORMAL_STD_FACTOR = _truncated_standard_normal_std(TRUNCATION)


# -- argument checks ------------------------------------------------------------------------
def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number. Received: {name}={value!r} "
            f"of type {type(value).__name__}."
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number. Received: {name}={value!r}.")
    return value


def _check_nonnegative(name: str, value: object) -> float:
    v = _check_number(name, value)
    if v < 0:
        raise ValueError(f"{name} must be a non-negative number. Received: {name}={value!r}.")
    return v


def _check_positive(name: str, value: object) -> float:
    v = _check_number(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}.")
    return v


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}. Received: {name}={value!r}.")
    return value  # type: ignore[return-value]


def _check_tensor(tensor: object, who: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(
            f"{who} initializes a torch.Tensor in place. Received: {type(tensor).__name__}."
        )
    if not tensor.is_floating_point():
        raise TypeError(
            f"{who} needs a floating-point tensor. Received: a tensor of dtype {tensor.dtype}."
        )
    return tensor


def _is_empty(tensor: torch.Tensor, who: str) -> bool:
    if tensor.numel() == 0:
        warnings.warn(
            f"{who}: the tensor of shape {tuple(tensor.shape)} has no elements; nothing to do.",
            stacklevel=3,
        )
        return True
    return False


# -- fans -----------------------------------------------------------------------------------
def compute_fans(tensor: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``.

    ``fan_in = in · prod(kernel)`` and ``fan_out = out · prod(kernel)``: for
    ``nn.Linear`` ``(in_features, out_features)``, for ``nn.Conv2d`` ``(C_in/groups·k·k,
    C_out·k·k)``. Same numbers as torch's ``_calculate_fan_in_and_fan_out`` (see the module
    docstring for transposed convolutions).

    Raises:
        ValueError: for a tensor with fewer than 2 dimensions (a bias has no fans).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"compute_fans needs a torch.Tensor. Received: {type(tensor).__name__}.")
    if tensor.dim() < 2:
        raise ValueError(
            "compute_fans needs a weight with at least 2 dimensions (out, in, *kernel). "
            f"Received: a tensor of shape {tuple(tensor.shape)}."
        )
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


# -- the general initializer ----------------------------------------------------------------
def variance_scaling_(
    tensor: torch.Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` with zero-mean random weights of variance ``scale / fan``.

    Formula: ``Var(W) = scale / n`` with ``n`` = ``fan_in``, ``fan_out`` or
    ``(fan_in + fan_out) / 2`` (``mode``; fans as in :func:`compute_fans`), drawn from

    - ``"normal"``: ``N(0, σ²)`` with ``σ = √(scale/n)``;
    - ``"truncated_normal"``: ``N(0, s²)`` cut at ``±2s`` with
      ``s = σ / 0.87962566…`` (:data:`TRUNCATED_NORMAL_STD_FACTOR`, the std of a standard
      normal truncated to ±2), so that the std after truncation is exactly ``σ``;
    - ``"uniform"``: ``U[−L, L]`` with ``L = √(3·scale/n)``.

    Paper: the unifying view of LeCun et al. 1998 ("Efficient BackProp"), Glorot & Bengio
    2010 and He et al. 2015. Also known as: Keras' ``VarianceScaling``, JAX's
    ``variance_scaling``.

    Args:
        tensor: weight with at least 2 dimensions, filled in place.
        scale: positive variance multiplier (``gain²``).
        mode: ``"fan_in"`` (preserves forward variance), ``"fan_out"`` (backward) or
            ``"fan_avg"`` (Glorot's compromise).
        distribution: ``"truncated_normal"``, ``"normal"`` or ``"uniform"``.
        generator: random source, for reproducibility.

    Returns:
        ``tensor``.
    """
    _check_tensor(tensor, "variance_scaling_")
    scale = _check_positive("scale", scale)
    _check_choice("mode", mode, FAN_MODES)
    _check_choice("distribution", distribution, DISTRIBUTIONS)
    if _is_empty(tensor, "variance_scaling_"):
        return tensor
    fan_in, fan_out = compute_fans(tensor)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    std = math.sqrt(scale / fan)
    with torch.no_grad():
        if distribution == "normal":
            torch.nn.init.normal_(tensor, 0.0, std, generator=generator)
        elif distribution == "uniform":
            limit = math.sqrt(3.0) * std
            torch.nn.init.uniform_(tensor, -limit, limit, generator=generator)
        else:  # truncated_normal
            s = std / TRUNCATED_NORMAL_STD_FACTOR
            torch.nn.init.trunc_normal_(
                tensor, 0.0, s, -TRUNCATION * s, TRUNCATION * s, generator=generator
            )
    return tensor


# -- constant and fixed-scale schemes -------------------------------------------------------
def zeros_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` with 0.

    Formula: ``W = 0``. For weights this makes every unit of a layer compute the same thing
    (lecture 004: "What happens if we initialize all weights to 0?" — symmetry is never
    broken); it is the usual choice for biases. ``generator`` is accepted for a uniform
    signature and not used. Also known as: ``torch.nn.init.zeros_``, Keras ``Zeros``.
    """
    _check_tensor(tensor, "zeros_")
    with torch.no_grad():
        return tensor.zero_()


def constant_(
    tensor: torch.Tensor, value: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill ``tensor`` with ``value``.

    Formula: ``W = value``. Lecture 004 advises a small positive bias (0.01) for ReLU units.
    ``generator`` is accepted for a uniform signature and not used. Also known as:
    ``torch.nn.init.constant_``, Keras ``Constant``.
    """
    _check_tensor(tensor, "constant_")
    value = _check_number("value", value)
    with torch.no_grad():
        return tensor.fill_(value)


def normal_(
    tensor: torch.Tensor, std: float = 0.01, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill ``tensor`` from ``N(0, std²)``, a fixed scale that ignores the layer's size.

    Formula: ``W ~ N(0, std²)``. The lectures' ``W = 0.01 * np.random.randn(Din, Dout)``
    (std 0.01: activations shrink to 0 with depth), std 0.05 (tanh units saturate) and
    ``randn`` itself (std 1.0). Reference: lecture 001 (after CS231n) and lecture 004.
    Also known as: "small random numbers", Keras ``RandomNormal``, ``torch.nn.init.normal_``.
    """
    _check_tensor(tensor, "normal_")
    std = _check_nonnegative("std", std)
    if std == 0.0:
        warnings.warn(
            "normal_ with std=0 fills the tensor with zeros; use zeros_ if that is intended.",
            stacklevel=2,
        )
    with torch.no_grad():
        return torch.nn.init.normal_(tensor, 0.0, std, generator=generator)


def uniform_(
    tensor: torch.Tensor, a: float = 0.05, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill ``tensor`` from ``U[−a, a]``, a fixed scale that ignores the layer's size.

    Formula: ``W ~ U[−a, a]``, so ``Var(W) = a²/3``. Also known as: Keras ``RandomUniform``
    (default a = 0.05), ``torch.nn.init.uniform_(tensor, -a, a)``.
    """
    _check_tensor(tensor, "uniform_")
    a = _check_nonnegative("a", a)
    if a == 0.0:
        warnings.warn(
            "uniform_ with a=0 fills the tensor with zeros; use zeros_ if that is intended.",
            stacklevel=2,
        )
    with torch.no_grad():
        return torch.nn.init.uniform_(tensor, -a, a, generator=generator)


# -- variance-scaling presets ---------------------------------------------------------------
def glorot_standard_(
    tensor: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Glorot & Bengio's "standard" initialization: ``W ~ U[−1/√fan_in, 1/√fan_in]``.

    Formula: ``Var(W) = 1/(3·fan_in)`` — the heuristic Glorot & Bengio 2010 (eq. 1) start
    from, which makes activation variance shrink layer after layer. Paper: Glorot & Bengio,
    "Understanding the difficulty of training deep feedforward neural networks", AISTATS 2010.
    Also known as: "standard init"; it is also PyTorch's default ``nn.Linear``/``nn.Conv*``
    weight init (``kaiming_uniform_(a=√5)``).
    """
    return variance_scaling_(tensor, 1.0 / 3.0, "fan_in", "uniform", generator=generator)


def xavier_uniform_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Glorot & Bengio's "normalized initialization", uniform.

    Formula: ``W ~ U[−L, L]``, ``L = gain·√(6/(fan_in + fan_out))``, so
    ``Var(W) = gain²·2/(fan_in + fan_out)`` (eq. 16 of the paper, with gain 1): a compromise
    between keeping the forward (fan_in) and the backward (fan_out) variance constant.
    Paper: Glorot & Bengio 2010. Also known as: Xavier uniform, ``glorot_uniform`` (Keras),
    ``torch.nn.init.xavier_uniform_`` (same draws for the same generator).
    """
    gain = _check_positive("gain", gain)
    return variance_scaling_(tensor, gain * gain, "fan_avg", "uniform", generator=generator)


def xavier_normal_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Glorot & Bengio's "normalized initialization" with a normal distribution.

    Formula: ``W ~ N(0, σ²)``, ``σ = gain·√(2/(fan_in + fan_out))`` (not truncated).
    Paper: Glorot & Bengio 2010. Also known as: Xavier normal,
    ``torch.nn.init.xavier_normal_`` (same draws for the same generator); Keras'
    ``glorot_normal`` is the truncated version (``variance_scaling_(t, 1, "fan_avg")``).
    """
    gain = _check_positive("gain", gain)
    return variance_scaling_(tensor, gain * gain, "fan_avg", "normal", generator=generator)


def lecun_normal_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun initialization, normal: ``W ~ N(0, 1/fan_in)``.

    Formula: ``σ = 1/√fan_in``, which keeps ``Var(y) = Var(x)`` for ``y = Wx`` (lecture 001's
    derivation ``Var(y_i) = Din·Var(x_i)·Var(w_i)``). Paper: LeCun, Bottou, Orr & Müller,
    "Efficient BackProp", 1998. Also known as: what lecture 001 (after CS231n) calls
    "Xavier" initialization, ``np.random.randn(Din, Dout) / np.sqrt(Din)``; Keras'
    ``lecun_normal`` is the truncated version (``variance_scaling_(t, 1, "fan_in")``).
    """
    return variance_scaling_(tensor, 1.0, "fan_in", "normal", generator=generator)


def lecun_uniform_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun initialization, uniform: ``W ~ U[−√(3/fan_in), √(3/fan_in)]``.

    Formula: ``Var(W) = 1/fan_in``. Paper: LeCun et al. 1998, "Efficient BackProp".
    Also known as: Keras ``lecun_uniform``.
    """
    return variance_scaling_(tensor, 1.0, "fan_in", "uniform", generator=generator)


def _he_scale(negative_slope: float, gain: float | None) -> float:
    """``gain²``: ``2/(1 + a²)`` from the leaky slope ``a``, or the given ``gain`` squared."""
    a = _check_number("negative_slope", negative_slope)
    if gain is None:
        return 2.0 / (1.0 + a * a)
    if a != 0.0:
        raise ValueError(
            "give negative_slope or gain, not both: gain already fixes the variance. "
            f"Received: negative_slope={negative_slope!r}, gain={gain!r}."
        )
    g = _check_positive("gain", gain)
    return g * g


def he_normal_(
    tensor: torch.Tensor,
    negative_slope: float = 0.0,
    mode: str = "fan_in",
    gain: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """He (Kaiming) initialization for rectifiers, normal.

    Formula: ``W ~ N(0, σ²)``, ``σ² = 2 / ((1 + a²)·fan)`` with ``a`` the leaky-ReLU /
    PReLU negative slope (``a = 0``: ReLU, ``σ = √(2/fan_in)``) and ``fan = fan_in``
    (forward variance kept, the paper's eq. 10) or ``fan_out`` (backward, eq. 14).
    ``gain`` replaces ``√(2/(1+a²))`` for another nonlinearity (``σ = gain/√fan``).
    Paper: He, Zhang, Ren & Sun, "Delving Deep into Rectifiers", ICCV 2015.
    Also known as: Kaiming normal, MSRA init, ``torch.nn.init.kaiming_normal_`` (same draws
    for the same generator), Keras ``he_normal`` (truncated there).
    """
    scale = _he_scale(negative_slope, gain)
    return variance_scaling_(tensor, scale, mode, "normal", generator=generator)


def he_uniform_(
    tensor: torch.Tensor,
    negative_slope: float = 0.0,
    mode: str = "fan_in",
    gain: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """He (Kaiming) initialization for rectifiers, uniform.

    Formula: ``W ~ U[−L, L]``, ``L = √(6 / ((1 + a²)·fan))`` (variance ``2/((1+a²)·fan)``),
    ``fan`` = ``fan_in`` or ``fan_out`` (``mode``), ``a`` the negative slope; ``gain``
    replaces ``√(2/(1+a²))`` (``L = gain·√(3/fan)``). Paper: He et al. 2015.
    Also known as: Kaiming uniform, ``torch.nn.init.kaiming_uniform_`` (same draws for the
    same generator), Keras ``he_uniform``.
    """
    scale = _he_scale(negative_slope, gain)
    return variance_scaling_(tensor, scale, mode, "uniform", generator=generator)


def orthogonal_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(Semi-)orthogonal initialization scaled by ``gain``.

    Formula: reshape ``W`` to ``(rows, cols) = (out, in·prod(kernel))``; ``W = gain·Q`` with
    ``Q`` drawn uniformly (Haar) from the matrices with orthonormal rows (``rows ≤ cols``:
    ``W Wᵀ = gain² I``) or orthonormal columns (``rows > cols``: ``Wᵀ W = gain² I``), via the
    sign-corrected QR decomposition of a Gaussian matrix. Every singular value equals
    ``gain``, so deep linear networks keep dynamical isometry. Paper: Saxe, McClelland &
    Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep linear neural
    networks", ICLR 2014. Also known as: ``torch.nn.init.orthogonal_`` (this calls it),
    Keras ``Orthogonal``.
    """
    _check_tensor(tensor, "orthogonal_")
    gain = _check_positive("gain", gain)
    if tensor.dim() < 2:
        raise ValueError(
            "orthogonal_ needs a weight with at least 2 dimensions (out, in, *kernel). "
            f"Received: a tensor of shape {tuple(tensor.shape)}."
        )
    if _is_empty(tensor, "orthogonal_"):
        return tensor
    with torch.no_grad():
        return torch.nn.init.orthogonal_(tensor, gain=gain, generator=generator)


# -- registry -------------------------------------------------------------------------------
#: Family ``"init"``: name -> in-place initializer ``fn(tensor, **kwargs, generator=None)``.
#: Entry ``meta``: ``data_dependent`` (False here; LSUV and Kraehenbuehl, which need a batch
#: of data, will be registered with True), ``random`` (draws random numbers), ``variance``
#: (the formula, for reports), ``needs_fans`` (needs a weight with ≥ 2 dimensions).
INITS = Registry("init")

_G, _H, _L, _S = (
    "Glorot & Bengio 2010",
    "He et al. 2015",
    "LeCun et al. 1998, Efficient BackProp",
    "Saxe et al. 2014",
)


def _meta(variance: str, *, random: bool = True, needs_fans: bool = True) -> dict:
    return {"data_dependent": False, "random": random, "variance": variance,
            "needs_fans": needs_fans}


INITS.add("zeros", zeros_,
          description="W = 0 (for biases; as weights, all units of a layer stay identical)",
          reference="lecture 004", aliases=("zero",),
          meta=_meta("0", random=False, needs_fans=False))
INITS.add("constant", constant_, description="W = value (e.g. bias 0.01 for ReLU units)",
          reference="lecture 004", meta=_meta("0", random=False, needs_fans=False))
INITS.add("normal", normal_, description="W ~ N(0, std²), fixed std (lectures: 0.01, 0.05, 1.0)",
          reference="lecture 001 / CS231n", aliases=("gaussian", "random_normal"),
          meta=_meta("std²", needs_fans=False))
INITS.add("uniform", uniform_, description="W ~ U[-a, a], fixed a",
          reference="Keras RandomUniform", aliases=("random_uniform",),
          meta=_meta("a²/3", needs_fans=False))
INITS.add("variance_scaling", variance_scaling_,
          description="Var(W) = scale/fan (fan_in|out|avg; truncated normal, normal, uniform)",
          reference=f"{_L}; {_G}; {_H}", meta=_meta("scale/fan"))
INITS.add("glorot_standard", glorot_standard_,
          description="U[-1/√fan_in, 1/√fan_in] (Glorot's 'standard'; torch's default Linear)",
          reference=_G, aliases=("standard",), meta=_meta("1/(3·fan_in)"))
INITS.add("xavier_uniform", xavier_uniform_,
          description="U[-L, L], L = gain·√(6/(fan_in+fan_out)) (Glorot's 'normalized')",
          reference=_G, aliases=("glorot_uniform", "normalized"),
          meta=_meta("gain²·2/(fan_in+fan_out)"))
INITS.add("xavier_normal", xavier_normal_,
          description="N(0, gain²·2/(fan_in+fan_out))", reference=_G,
          aliases=("glorot_normal",), meta=_meta("gain²·2/(fan_in+fan_out)"))
INITS.add("lecun_normal", lecun_normal_,
          description="N(0, 1/fan_in) (lecture 001's 'Xavier': randn/√Din)", reference=_L,
          meta=_meta("1/fan_in"))
INITS.add("lecun_uniform", lecun_uniform_, description="U[-√(3/fan_in), √(3/fan_in)]",
          reference=_L, meta=_meta("1/fan_in"))
INITS.add("he_normal", he_normal_,
          description="N(0, 2/((1+a²)·fan)), fan_in or fan_out (ReLU, leaky ReLU, PReLU)",
          reference=_H, aliases=("kaiming_normal", "msra"), meta=_meta("2/((1+a²)·fan)"))
INITS.add("he_uniform", he_uniform_,
          description="U[-L, L], L = √(6/((1+a²)·fan)) (ReLU, leaky ReLU, PReLU)",
          reference=_H, aliases=("kaiming_uniform",), meta=_meta("2/((1+a²)·fan)"))
INITS.add("orthogonal", orthogonal_,
          description="gain·Q, Q with orthonormal rows or columns (all singular values = gain)",
          reference=_S, meta=_meta("gain²/max(rows, cols)"))
