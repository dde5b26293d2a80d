"""Initializers: seeded KS tests against the formulas, exact properties, torch equality, errors.

Every expected standard deviation is computed again here from the fans written out by hand
for each test shape (the conv convention fan_in = C_in·k·k, fan_out = C_out·k·k), never
taken from trainlab.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy import stats

import trainlab.init as I
from trainlab.init import INITS

# Seeded, so each p-value is a fixed number for a given torch; the threshold is low so that
# another torch version's random stream (equally valid) does not fail one of the ~150 KS
# tests by chance, while the power tests below show that a wrong scale is still caught.
P_MIN = 1e-6

# (shape, fan_in, fan_out), fans written out by hand.
SHAPES = [
    pytest.param((400, 300), 300, 400, id="linear400x300"),
    pytest.param((64, 32, 3, 3), 32 * 3 * 3, 64 * 3 * 3, id="conv2d64x32x3x3"),
    pytest.param((50, 20, 5), 20 * 5, 50 * 5, id="conv1d50x20x5"),
]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def truncnorm_std_factor() -> float:
    return float(stats.truncnorm(-2.0, 2.0).std())


def frozen(family: str, param: float):
    """scipy distribution: 'normal' (param = std), 'uniform' (param = limit L of U[-L, L]),
    'truncnorm' (param = std after truncation at ±2 of the underlying normal's std)."""
    if family == "normal":
        return stats.norm(0.0, param)
    if family == "uniform":
        return stats.uniform(-param, 2.0 * param)
    if family == "truncnorm":
        base = param / truncnorm_std_factor()
        return stats.truncnorm(-2.0, 2.0, scale=base)
    raise AssertionError(family)


# name -> (initializer(tensor, generator), expected(fan_in, fan_out) -> (family, param))
CASES = {
    "normal_0.01": (lambda t, g: I.normal_(t, 0.01, generator=g), lambda fi, fo: ("normal", 0.01)),
    "normal_0.05": (lambda t, g: I.normal_(t, std=0.05, generator=g),
                    lambda fi, fo: ("normal", 0.05)),
    "normal_1.0": (lambda t, g: I.normal_(t, std=1.0, generator=g),
                   lambda fi, fo: ("normal", 1.0)),
    "uniform_0.05": (lambda t, g: I.uniform_(t, generator=g), lambda fi, fo: ("uniform", 0.05)),
    "uniform_0.3": (lambda t, g: I.uniform_(t, a=0.3, generator=g),
                    lambda fi, fo: ("uniform", 0.3)),
    "glorot_standard": (lambda t, g: I.glorot_standard_(t, generator=g),
                        lambda fi, fo: ("uniform", 1.0 / math.sqrt(fi))),
    "xavier_uniform": (lambda t, g: I.xavier_uniform_(t, generator=g),
                       lambda fi, fo: ("uniform", math.sqrt(6.0 / (fi + fo)))),
    "xavier_uniform_gain": (lambda t, g: I.xavier_uniform_(t, gain=5 / 3, generator=g),
                            lambda fi, fo: ("uniform", 5 / 3 * math.sqrt(6.0 / (fi + fo)))),
    "xavier_normal": (lambda t, g: I.xavier_normal_(t, generator=g),
                      lambda fi, fo: ("normal", math.sqrt(2.0 / (fi + fo)))),
    "xavier_normal_gain": (lambda t, g: I.xavier_normal_(t, gain=math.sqrt(2), generator=g),
                           lambda fi, fo: ("normal", math.sqrt(2) * math.sqrt(2.0 / (fi + fo)))),
    "lecun_normal": (lambda t, g: I.lecun_normal_(t, generator=g),
                     lambda fi, fo: ("normal", 1.0 / math.sqrt(fi))),
    "lecun_uniform": (lambda t, g: I.lecun_uniform_(t, generator=g),
                      lambda fi, fo: ("uniform", math.sqrt(3.0 / fi))),
    "he_normal": (lambda t, g: I.he_normal_(t, generator=g),
                  lambda fi, fo: ("normal", math.sqrt(2.0 / fi))),
    "he_normal_fan_out": (lambda t, g: I.he_normal_(t, mode="fan_out", generator=g),
                          lambda fi, fo: ("normal", math.sqrt(2.0 / fo))),
    "he_normal_leaky0.2": (lambda t, g: I.he_normal_(t, negative_slope=0.2, generator=g),
                           lambda fi, fo: ("normal", math.sqrt(2.0 / ((1 + 0.04) * fi)))),
    "he_normal_gain": (lambda t, g: I.he_normal_(t, gain=5 / 3, generator=g),
                       lambda fi, fo: ("normal", 5 / 3 / math.sqrt(fi))),
    "he_uniform": (lambda t, g: I.he_uniform_(t, generator=g),
                   lambda fi, fo: ("uniform", math.sqrt(6.0 / fi))),
    "he_uniform_fan_out_leaky0.3": (
        lambda t, g: I.he_uniform_(t, negative_slope=0.3, mode="fan_out", generator=g),
        lambda fi, fo: ("uniform", math.sqrt(6.0 / ((1 + 0.09) * fo)))),
}
for _dist, _family in [("normal", "normal"), ("uniform", "uniform"),
                       ("truncated_normal", "truncnorm")]:
    for _mode in ("fan_in", "fan_out", "fan_avg"):
        def _fn(t, g, _d=_dist, _m=_mode):
            return I.variance_scaling_(t, 2.5, _m, _d, generator=g)

        def _exp(fi, fo, _f=_family, _m=_mode):
            fan = {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2}[_m]
            std = math.sqrt(2.5 / fan)
            return (_f, math.sqrt(3) * std if _f == "uniform" else std)

        CASES[f"variance_scaling_{_dist}_{_mode}"] = (_fn, _exp)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("shape,fan_in,fan_out", SHAPES)
def test_ks_against_formula(case, shape, fan_in, fan_out):
    fn, expected = CASES[case]
    w = fn(torch.empty(shape, dtype=torch.float64), gen(1234))
    family, param = expected(fan_in, fan_out)
    p = stats.kstest(w.flatten().numpy(), frozen(family, param).cdf).pvalue
    assert p > P_MIN, f"{case} on {shape}: KS p={p:.2e} against {family}({param:.4g})"


@pytest.mark.parametrize("case", list(CASES))
def test_ks_rejects_a_scale_10_percent_off(case):
    # The KS test above has the power to tell xavier (fan_avg) from lecun (fan_in) here.
    fn, expected = CASES[case]
    w = fn(torch.empty(400, 300, dtype=torch.float64), gen(1234))
    family, param = expected(300, 400)
    p = stats.kstest(w.flatten().numpy(), frozen(family, 1.1 * param).cdf).pvalue
    assert p < P_MIN


# -- truncated normal -----------------------------------------------------------------------
def test_truncated_normal_std_factor():
    assert I.TRUNCATED_NORMAL_STD_FACTOR == pytest.approx(truncnorm_std_factor(), rel=1e-12)
    assert I.TRUNCATED_NORMAL_STD_FACTOR == pytest.approx(0.87962566103423978, rel=1e-15)


@pytest.mark.parametrize("mode,fan", [("fan_in", 500), ("fan_out", 800), ("fan_avg", 650)])
def test_truncated_normal_std_is_corrected(mode, fan):
    w = I.variance_scaling_(torch.empty(800, 500, dtype=torch.float64), 2.0, mode,
                            "truncated_normal", generator=gen(7))
    target = math.sqrt(2.0 / fan)
    assert w.std().item() == pytest.approx(target, rel=0.005)
    # Cut at ±2 standard deviations of the underlying (wider) normal, and the cut is reached.
    bound = 2.0 * target / 0.87962566103423978
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound


def test_truncated_normal_is_the_default_distribution():
    a = I.variance_scaling_(torch.empty(30, 20), generator=gen(3))
    b = I.variance_scaling_(torch.empty(30, 20), 1.0, "fan_in", "truncated_normal",
                            generator=gen(3))
    assert torch.equal(a, b)


# -- exact properties -----------------------------------------------------------------------
def test_zeros():
    w = torch.randn(5, 7)
    out = I.zeros_(w, generator=gen())
    assert out is w and torch.count_nonzero(w) == 0


def test_constant():
    w = torch.randn(3, 4, 2)
    assert torch.equal(I.constant_(w, 0.01), torch.full((3, 4, 2), 0.01))
    assert torch.equal(I.constant_(torch.empty(4), -2), torch.full((4,), -2.0))


@pytest.mark.parametrize("shape,wide", [
    ((50, 200), True), ((200, 50), False), ((64, 64), True),
    ((16, 8, 3, 3), True), ((128, 4, 3, 3), False),
])
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2.0), 0.5])
def test_orthogonal_gram_is_gain_squared_identity(shape, wide, gain):
    w = I.orthogonal_(torch.empty(shape, dtype=torch.float64), gain=gain, generator=gen(5))
    m = w.reshape(shape[0], -1)
    gram = m @ m.T if wide else m.T @ m
    torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.float64),
                               rtol=0, atol=1e-12)
    sv = torch.linalg.svdvals(m)
    torch.testing.assert_close(sv, torch.full_like(sv, gain), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rows,cols", [(32, 32), (16, 40), (40, 16)])
def test_orthogonal_entries_ks(rows, cols):
    # A Haar-random row (wide) or column (tall) is uniform on the unit sphere S^{n-1},
    # n = max(rows, cols), so an entry w satisfies (w/gain)² ~ Beta(1/2, (n-1)/2), sign
    # symmetric. One entry from each of many independent draws gives iid samples.
    gain, n = 2.0, max(rows, cols)
    g = gen(11)
    x = np.array([I.orthogonal_(torch.empty(rows, cols, dtype=torch.float64), gain=gain,
                                generator=g)[1, 2].item() for _ in range(1500)])
    beta = stats.beta(0.5, (n - 1) / 2.0)

    def cdf(t):
        t = np.asarray(t)
        return 0.5 + 0.5 * np.sign(t) * beta.cdf((t / gain) ** 2)

    assert stats.kstest(x, cdf).pvalue > P_MIN
    # ... and the test can tell n from n/2 (a gain off by √2):
    assert stats.kstest(x * math.sqrt(2.0), cdf).pvalue < P_MIN


# -- fans -----------------------------------------------------------------------------------
def test_conv_fan_convention():
    # fan_in = C_in·k·k, fan_out = C_out·k·k (lecture 001: "Din is kernel_size² * channels").
    assert I.compute_fans(torch.nn.Conv2d(32, 64, 3).weight) == (32 * 9, 64 * 9)
    assert I.compute_fans(torch.nn.Conv2d(32, 64, (3, 5)).weight) == (32 * 15, 64 * 15)
    assert I.compute_fans(torch.nn.Conv1d(4, 6, 7).weight) == (4 * 7, 6 * 7)
    assert I.compute_fans(torch.nn.Conv3d(2, 5, 3).weight) == (2 * 27, 5 * 27)
    assert I.compute_fans(torch.nn.Linear(784, 10).weight) == (784, 10)
    # grouped conv: each output unit sees C_in/groups channels
    assert I.compute_fans(torch.nn.Conv2d(32, 64, 3, groups=4).weight) == (8 * 9, 64 * 9)
    # transposed conv: weight (C_in, C_out, k, k), dim 1 read as fan_in (torch and Keras)
    assert I.compute_fans(torch.nn.ConvTranspose2d(32, 64, 3).weight) == (64 * 9, 32 * 9)
    for layer in [torch.nn.Conv2d(3, 8, 5, groups=1), torch.nn.ConvTranspose1d(6, 4, 3),
                  torch.nn.Linear(7, 2)]:
        ours = I.compute_fans(layer.weight)
        assert ours == torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)


def test_conv_he_normal_std_uses_c_in_k_k():
    w = I.he_normal_(torch.empty(128, 64, 3, 3, dtype=torch.float64), generator=gen(2))
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / (64 * 3 * 3)), rel=0.01)


# -- same seed, same tensor; torch equality -------------------------------------------------
EXTRA_KW = {"constant": {"value": 0.3}}
# per-tensor schemes (the model-level ones, lsuv, fixup ..., have tests of their own)
TENSOR_NAMES = [e.name for e in INITS if e.meta.get("applies_to") != "model"]
RANDOM_NAMES = [n for n in TENSOR_NAMES if INITS.get(n).meta.get("random")]


@pytest.mark.parametrize("name", TENSOR_NAMES)
@pytest.mark.parametrize("shape", [(20, 30), (8, 4, 3, 3)])
def test_registry_contract(name, shape):
    entry = INITS.get(name)
    assert entry.description and entry.reference
    assert entry.meta["data_dependent"] is False
    w = torch.nn.Parameter(torch.empty(shape, dtype=torch.float64))  # requires grad
    out = entry.build(w, generator=gen(0), **EXTRA_KW.get(name, {}))
    assert out is w and out.dtype == torch.float64 and out.shape == shape
    assert torch.isfinite(w).all() and w.grad_fn is None


@pytest.mark.parametrize("name", RANDOM_NAMES)
def test_same_seed_same_tensor(name):
    a = INITS.build(name, torch.empty(20, 30), generator=gen(42))
    b = INITS.build(name, torch.empty(20, 30), generator=gen(42))
    c = INITS.build(name, torch.empty(20, 30), generator=gen(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_global_rng_without_generator():
    torch.manual_seed(0)
    a = I.he_normal_(torch.empty(10, 10))
    torch.manual_seed(0)
    assert torch.equal(a, I.he_normal_(torch.empty(10, 10)))


def _same(a, b):
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", [(400, 300), (64, 32, 3, 3), (7, 5)])
def test_equal_to_torch_for_same_seed(shape):
    T = torch.nn.init

    def e():
        return torch.empty(shape)

    for gain in (1.0, 5 / 3):
        _same(I.xavier_uniform_(e(), gain, generator=gen()),
              T.xavier_uniform_(e(), gain, generator=gen()))
        _same(I.xavier_normal_(e(), gain, generator=gen()),
              T.xavier_normal_(e(), gain, generator=gen()))
    for a in (0.0, 0.2):
        for mode in ("fan_in", "fan_out"):
            _same(I.he_normal_(e(), a, mode, generator=gen()),
                  T.kaiming_normal_(e(), a, mode, "leaky_relu", generator=gen()))
            _same(I.he_uniform_(e(), a, mode, generator=gen()),
                  T.kaiming_uniform_(e(), a, mode, "leaky_relu", generator=gen()))
    _same(I.he_normal_(e(), gain=5 / 3, generator=gen()),
          T.kaiming_normal_(e(), nonlinearity="tanh", generator=gen()))
    # torch's default nn.Linear / nn.Conv weight init is Glorot's "standard" init
    _same(I.glorot_standard_(e(), generator=gen()),
          T.kaiming_uniform_(e(), a=math.sqrt(5), generator=gen()))
    fan_in = shape[1] * math.prod(shape[2:])
    _same(I.lecun_normal_(e(), generator=gen()),
          T.normal_(e(), 0.0, 1.0 / math.sqrt(fan_in), generator=gen()))
    assert torch.equal(I.orthogonal_(e(), 1.5, generator=gen()),
                       T.orthogonal_(e(), 1.5, generator=gen()))
    assert torch.equal(I.normal_(e(), 0.05, generator=gen()),
                       T.normal_(e(), 0.0, 0.05, generator=gen()))
    assert torch.equal(I.uniform_(e(), 0.3, generator=gen()),
                       T.uniform_(e(), -0.3, 0.3, generator=gen()))


def test_torch_default_linear_init_is_glorot_standard():
    torch.manual_seed(0)
    layer = torch.nn.Linear(30, 20)
    torch.manual_seed(0)
    _same(layer.weight.detach(), I.glorot_standard_(torch.empty(20, 30)))


def test_lecture_001_xavier_is_lecun_normal():
    # W = np.random.randn(Din, Dout) / np.sqrt(Din): torch stores W as (Dout, Din).
    din, dout = 4096, 512
    w = I.lecun_normal_(torch.empty(dout, din, dtype=torch.float64), generator=gen(0))
    assert w.std().item() == pytest.approx(1 / math.sqrt(din), rel=0.01)


# -- registry names -------------------------------------------------------------------------
def test_registry_names_and_aliases():
    assert INITS.get("Kaiming-Normal").name == "he_normal"
    assert INITS.get("msra").name == "he_normal"
    assert INITS.get("glorot_uniform").name == "xavier_uniform"
    assert INITS.get("glorot_normal").name == "xavier_normal"
    assert INITS.get("kaiming_uniform").name == "he_uniform"
    for name in ["zeros", "constant", "normal", "uniform", "glorot_standard", "xavier_uniform",
                 "xavier_normal", "lecun_normal", "lecun_uniform", "he_normal", "he_uniform",
                 "orthogonal", "variance_scaling"]:
        assert name in INITS


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown init 'he_normall'\. Did you mean 'he_normal'"):
        INITS.get("he_normall")
    with pytest.raises(ValueError, match=r"Did you mean .*'xavier_uniform'"):
        INITS.get("xavier_unifrom")


# -- errors ---------------------------------------------------------------------------------
def test_bad_mode_message():
    msg = "mode must be one of ('fan_in', 'fan_out', 'fan_avg'). Received: mode='fan_inn'"
    with pytest.raises(ValueError, match=re.escape(msg)):
        I.variance_scaling_(torch.empty(3, 4), mode="fan_inn")
    with pytest.raises(ValueError, match=re.escape(msg)):
        I.he_normal_(torch.empty(3, 4), mode="fan_inn")


def test_bad_distribution_message():
    msg = ("distribution must be one of ('truncated_normal', 'normal', 'uniform'). "
           "Received: distribution='gaussian'")
    with pytest.raises(ValueError, match=re.escape(msg)):
        I.variance_scaling_(torch.empty(3, 4), distribution="gaussian")


@pytest.mark.parametrize("call,msg", [
    (lambda: I.normal_(torch.empty(3, 4), std=-0.01),
     "std must be a non-negative number. Received: std=-0.01"),
    (lambda: I.uniform_(torch.empty(3, 4), a=-1),
     "a must be a non-negative number. Received: a=-1"),
    (lambda: I.variance_scaling_(torch.empty(3, 4), scale=-2.0),
     "scale must be a positive number. Received: scale=-2.0"),
    (lambda: I.variance_scaling_(torch.empty(3, 4), scale=0),
     "scale must be a positive number. Received: scale=0"),
    (lambda: I.variance_scaling_(torch.empty(3, 4), scale=float("nan")),
     "scale must be a finite number. Received: scale=nan"),
    (lambda: I.normal_(torch.empty(3, 4), std=float("inf")),
     "std must be a finite number. Received: std=inf"),
    (lambda: I.xavier_uniform_(torch.empty(3, 4), gain=0.0),
     "gain must be a positive number. Received: gain=0.0"),
    (lambda: I.orthogonal_(torch.empty(3, 4), gain=-1),
     "gain must be a positive number. Received: gain=-1"),
    (lambda: I.he_normal_(torch.empty(3, 4), negative_slope=0.1, gain=2.0),
     "give negative_slope or gain, not both: gain already fixes the variance. "
     "Received: negative_slope=0.1, gain=2.0"),
    (lambda: I.compute_fans(torch.empty(10)),
     "compute_fans needs a weight with at least 2 dimensions (out, in, *kernel). "
     "Received: a tensor of shape (10,)"),
    (lambda: I.he_uniform_(torch.empty(10)),
     "compute_fans needs a weight with at least 2 dimensions (out, in, *kernel). "
     "Received: a tensor of shape (10,)"),
    (lambda: I.orthogonal_(torch.empty(10)),
     "orthogonal_ needs a weight with at least 2 dimensions (out, in, *kernel). "
     "Received: a tensor of shape (10,)"),
])
def test_value_error_messages(call, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        call()


@pytest.mark.parametrize("call,msg", [
    (lambda: I.normal_(torch.empty(3, 4), std="0.1"),
     "std must be a real number. Received: std='0.1' of type str"),
    (lambda: I.constant_(torch.empty(3), value=True),
     "value must be a real number. Received: value=True of type bool"),
    (lambda: I.he_normal_(torch.empty(3, 4, dtype=torch.int64)),
     "variance_scaling_ needs a floating-point tensor. Received: a tensor of dtype torch.int64"),
    (lambda: I.zeros_([1.0, 2.0]),
     "zeros_ initializes a torch.Tensor in place. Received: list"),
    (lambda: I.compute_fans(np.zeros((3, 4))),
     "compute_fans needs a torch.Tensor. Received: ndarray"),
])
def test_type_error_messages(call, msg):
    with pytest.raises(TypeError, match=re.escape(msg)):
        call()


def test_suspect_input_warns():
    with pytest.warns(UserWarning, match="std=0 fills the tensor with zeros"):
        w = I.normal_(torch.ones(3, 3), std=0.0)
    assert torch.count_nonzero(w) == 0
    with pytest.warns(UserWarning, match="a=0 fills the tensor with zeros"):
        I.uniform_(torch.ones(3, 3), a=0)
    with pytest.warns(UserWarning, match=r"shape \(0, 5\) has no elements"):
        I.he_normal_(torch.empty(0, 5))
    with pytest.warns(UserWarning, match=r"shape \(4, 0\) has no elements"):
        I.orthogonal_(torch.empty(4, 0))
