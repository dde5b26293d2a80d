"""Activations against their formulas (float64, typed here independently of the library),
against torch's own modules, and gradchecks of what trainlab writes itself (noisy ReLU,
swish, maxout)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from trainlab.nn import functional as TF
from trainlab.nn.activations import (
    ACTIVATIONS,
    ELU,
    GELU,
    SELU,
    Identity,
    LeakyReLU,
    Maxout,
    NoisyReLU,
    PReLU,
    ReLU,
    ReLU6,
    RReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Softsign,
    Swish,
    Tanh,
)

D = torch.float64


@pytest.fixture
def x():
    g = torch.Generator().manual_seed(0)
    return torch.cat(
        [
            torch.randn(500, generator=g, dtype=D) * 4,
            torch.tensor([-50.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 50.0], dtype=D),
        ]
    )


def elementwise(f, x):
    return torch.tensor([f(v) for v in x.tolist()], dtype=D)


def close(a, b, **kw):
    torch.testing.assert_close(a, b, rtol=kw.get("rtol", 1e-12), atol=kw.get("atol", 1e-12))


# -- each formula, typed from the papers ------------------------------------------------------
def test_sigmoid(x):
    close(Sigmoid()(x), elementwise(lambda v: 1 / (1 + math.exp(-v)), x))


def test_tanh(x):
    def ref(v):
        if abs(v) > 20:
            return math.copysign(1.0, v) * (1 - 2 * math.exp(-2 * abs(v)))
        return (math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v))

    close(Tanh()(x), elementwise(ref, x))


def test_softsign(x):
    close(Softsign()(x), elementwise(lambda v: v / (1 + abs(v)), x))


def test_relu_relu6(x):
    close(ReLU()(x), elementwise(lambda v: max(0.0, v), x))
    close(ReLU6()(x), elementwise(lambda v: min(max(0.0, v), 6.0), x))


@pytest.mark.parametrize("a", [0.0, 0.01, 0.1, 0.5])
def test_leaky_relu(x, a):
    close(LeakyReLU(a)(x), elementwise(lambda v: max(a * v, v), x))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_elu(x, alpha):
    close(ELU(alpha)(x), elementwise(lambda v: v if v > 0 else alpha * (math.exp(v) - 1), x))


def test_selu(x):
    lam = 1.0507009873554804934193349852946  # Klambauer et al. 2017, eq. 14
    alpha = 1.6732632423543772848170429916717
    ref = elementwise(lambda v: lam * (v if v > 0 else alpha * (math.exp(v) - 1)), x)
    close(SELU()(x), ref)


def test_gelu_exact(x):
    ref = elementwise(lambda v: v * 0.5 * (1 + math.erf(v / math.sqrt(2))), x)
    close(GELU()(x), ref)


def test_gelu_tanh_approximation(x):
    def ref(v):
        return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))

    close(GELU("tanh")(x), elementwise(ref, x))
    close(ACTIVATIONS.build("gelu_tanh")(x), elementwise(ref, x))
    # the approximation stays within 1e-3 of the exact GELU
    assert (GELU("tanh")(x) - GELU()(x)).abs().max() < 1e-3


def sig(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def test_silu(x):
    close(SiLU()(x), elementwise(lambda v: v * sig(v), x))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0, 10.0])
def test_swish_fixed(x, beta):
    close(Swish(beta)(x), elementwise(lambda v: v * sig(beta * v), x))


def test_swish_beta_one_is_silu(x):
    close(Swish(1.0)(x), nn.SiLU()(x), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_softplus(x, beta):
    def ref(v):
        return (max(beta * v, 0) + math.log1p(math.exp(-abs(beta * v)))) / beta

    # torch returns x itself once beta*x > threshold=20 (error below e^-20)
    close(Softplus(beta)(x), elementwise(ref, x), atol=1e-9, rtol=1e-12)


def test_identity(x):
    assert torch.equal(Identity()(x), x)


def test_rrelu_eval_uses_mean_slope(x):
    l, u = 0.1, 0.3
    close(RReLU(l, u).eval()(x), elementwise(lambda v: v if v >= 0 else (l + u) / 2 * v, x))


def test_rrelu_train_slopes_within_bounds():
    l, u = 0.1, 0.3
    torch.manual_seed(0)
    x = -torch.rand(20_000, dtype=D) - 0.5
    a = RReLU(l, u).train()(x) / x
    assert a.min() >= l and a.max() <= u
    assert a.mean().item() == pytest.approx((l + u) / 2, abs=3e-3)
    assert a.std().item() == pytest.approx((u - l) / math.sqrt(12), rel=0.03)
    pos = torch.rand(100, dtype=D)
    assert torch.equal(RReLU(l, u).train()(pos), pos)


def test_maxout_against_loops():
    torch.manual_seed(0)
    m = Maxout(4, 3, k=3).to(D)
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(7, 4, dtype=D)
    W, b = m.weight.detach(), m.bias.detach()
    ref = torch.empty(7, 3, dtype=D)
    for n in range(7):
        for j in range(3):
            pieces = [float(W[j * 3 + i] @ x[n] + b[j * 3 + i]) for i in range(3)]
            ref[n, j] = max(pieces)
    close(m(x), ref)


def test_maxout_generalizes_relu_and_leaky_relu():
    # pieces (x, 0) give ReLU; pieces (x, 0.1 x) give the lectures' leaky ReLU
    x = torch.randn(50, 1, dtype=D)
    for a in (0.0, 0.1):
        w = torch.tensor([[1.0], [a]], dtype=D)
        close(TF.maxout(x, w, None, 2), torch.maximum(x, a * x))


def test_maxout_pool_on_channels():
    z = torch.randn(2, 6, 3, 3, dtype=D)
    got = TF.maxout_pool(z, 3, dim=1)
    assert got.shape == (2, 2, 3, 3)
    close(got[:, 0], z[:, 0:3].max(dim=1).values)
    close(got[:, 1], z[:, 3:6].max(dim=1).values)


# -- equality with torch's modules where ours wraps them ---------------------------------------
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (Sigmoid(), nn.Sigmoid()),
        (Tanh(), nn.Tanh()),
        (Softsign(), nn.Softsign()),
        (ReLU(), nn.ReLU()),
        (ReLU6(), nn.ReLU6()),
        (LeakyReLU(), nn.LeakyReLU()),
        (LeakyReLU(0.1), nn.LeakyReLU(0.1)),
        (ELU(0.7), nn.ELU(0.7)),
        (SELU(), nn.SELU()),
        (GELU(), nn.GELU()),
        (GELU("tanh"), nn.GELU(approximate="tanh")),
        (SiLU(), nn.SiLU()),
        (Softplus(2.0, 10.0), nn.Softplus(2.0, 10.0)),
        (Identity(), nn.Identity()),
        (PReLU(), nn.PReLU()),
        (PReLU(3, 0.1), nn.PReLU(3, 0.1)),
        (RReLU(0.2, 0.4).eval(), nn.RReLU(0.2, 0.4).eval()),
    ],
)
def test_equal_to_torch_module(ours, theirs):
    x = torch.randn(4, 3, 5) * 3
    assert torch.equal(ours(x), theirs(x))
    assert ours.state_dict().keys() == theirs.state_dict().keys()


def test_rrelu_train_equals_torch_with_same_seed():
    x = torch.randn(1000)
    torch.manual_seed(7)
    a = RReLU().train()(x)
    torch.manual_seed(7)
    b = nn.RReLU().train()(x)
    assert torch.equal(a, b)


# -- PReLU ------------------------------------------------------------------------------------
def test_prelu_shared_and_per_channel_shapes_and_init():
    shared = PReLU()
    assert shared.weight.shape == (1,) and torch.all(shared.weight == 0.25)
    per = PReLU(num_parameters=4)
    assert per.weight.shape == (4,) and torch.all(per.weight == 0.25)
    assert PReLU(2, init=0.1).weight.tolist() == pytest.approx([0.1, 0.1])
    assert [n for n, _ in per.named_parameters()] == ["weight"]


def test_prelu_per_channel_slopes_apply_on_dim1():
    m = PReLU(3).to(D)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.0, 0.5, 2.0 / 3.0], dtype=D))
    x = -torch.ones(2, 3, 4, 4, dtype=D)
    y = m(x)
    for c, a in enumerate([0.0, 0.5, 2.0 / 3.0]):
        assert torch.all(y[:, c] == -a)
    shared = PReLU().to(D)
    assert torch.all(shared(x) == -0.25)


def test_prelu_reset_and_state_dict_interchange_with_torch():
    ours, theirs = PReLU(3), nn.PReLU(3)
    with torch.no_grad():
        ours.weight.uniform_()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 3)
    assert torch.equal(ours(x), theirs(x))
    ours.reset_parameters()
    assert torch.all(ours.weight == 0.25)


def test_prelu_slope_learns():
    m = PReLU()
    x = -torch.ones(8)
    m(x).sum().backward()
    assert m.weight.grad.item() == pytest.approx(-8.0)


# -- swish with a learnable beta -----------------------------------------------------------------
def test_swish_learnable_beta_shared_and_per_channel():
    s = Swish(beta=1.5, learnable=True)
    assert isinstance(s.beta, nn.Parameter) and s.beta.shape == (1,) and s.beta.item() == 1.5
    p = Swish(beta=0.5, learnable=True, num_parameters=3).to(D)
    assert p.beta.shape == (3,)
    with torch.no_grad():
        p.beta.copy_(torch.tensor([0.5, 1.0, 2.0], dtype=D))
    x = torch.randn(2, 3, 4, dtype=D)
    y = p(x)
    for c, b in enumerate([0.5, 1.0, 2.0]):
        close(y[:, c], x[:, c] * torch.sigmoid(b * x[:, c]))
    assert Swish(2.0).state_dict() == {}  # fixed beta is not state


def test_swish_learnable_gradcheck():
    torch.manual_seed(0)
    m = Swish(beta=1.3, learnable=True, num_parameters=3).to(D)
    x = torch.randn(2, 3, 4, dtype=D, requires_grad=True)
    assert gradcheck(lambda inp, beta: TF.swish(inp, beta.reshape(1, 3, 1)), (x, m.beta))


def test_swish_fixed_gradcheck():
    x = torch.randn(20, dtype=D, requires_grad=True)
    assert gradcheck(lambda inp: TF.swish(inp, 0.7), (x,))


# -- maxout gradcheck ---------------------------------------------------------------------
def test_maxout_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(5, 4, dtype=D, requires_grad=True)
    w = torch.randn(3 * 3, 4, dtype=D, requires_grad=True)
    b = torch.randn(3 * 3, dtype=D, requires_grad=True)
    assert gradcheck(lambda x_, w_, b_: TF.maxout(x_, w_, b_, 3), (x, w, b))


def test_maxout_pool_gradcheck():
    z = torch.randn(2, 6, 3, dtype=D, requires_grad=True)
    assert gradcheck(lambda z_: TF.maxout_pool(z_, 2, dim=1), (z,))


# -- noisy ReLU ----------------------------------------------------------------------------------
def test_noisy_relu_eval_is_relu_and_deterministic():
    x = torch.randn(100, 10)
    m = NoisyReLU().eval()
    assert torch.equal(m(x), nn.functional.relu(x))
    assert torch.equal(m(x), m(x))
    assert torch.equal(TF.noisy_relu(x, training=False), nn.functional.relu(x))
    m.train()
    assert not torch.equal(m(x), nn.functional.relu(x))


@pytest.mark.parametrize("v", [3.0, 6.0])
def test_noisy_relu_noise_has_sigmoid_variance(v):
    # Far from 0 the ReLU never clips (P(x + eps < 0) < 1e-3), so out - x is the raw noise.
    n = 200_000
    g = torch.Generator().manual_seed(0)
    x = torch.full((n,), v, dtype=D)
    eps = TF.noisy_relu(x, training=True, generator=g) - x
    var = 1 / (1 + math.exp(-v))  # Nair & Hinton: N(0, sigmoid(x)), sigmoid(x) the variance
    se_mean = math.sqrt(var / n)
    assert abs(eps.mean().item()) < 5 * se_mean
    se_var = var * math.sqrt(2 / (n - 1))
    assert abs(eps.var().item() - var) < 5 * se_var


def test_noisy_relu_at_zero_is_rectified_half_normal():
    n = 200_000
    g = torch.Generator().manual_seed(1)
    y = TF.noisy_relu(torch.zeros(n, dtype=D), training=True, generator=g)
    s = math.sqrt(0.5)  # std = sqrt(sigmoid(0))
    assert (y == 0).double().mean().item() == pytest.approx(0.5, abs=5 * math.sqrt(0.25 / n))
    mean = s / math.sqrt(2 * math.pi)  # E[max(0, N(0, s^2))]
    assert y.mean().item() == pytest.approx(mean, abs=5 * s / math.sqrt(n))


def test_noisy_relu_constant_sigma():
    n = 200_000
    g = torch.Generator().manual_seed(2)
    x = torch.full((n,), 10.0, dtype=D)
    eps = NoisyReLU(sigma=0.5, generator=g).train()(x) - x
    assert eps.std().item() == pytest.approx(0.5, rel=5 * math.sqrt(1 / (2 * n)))
    assert abs(eps.mean().item()) < 5 * 0.5 / math.sqrt(n)
    assert torch.equal(TF.noisy_relu(x, sigma=0.0), x)


def test_noisy_relu_seeded_generator_reproducible():
    x = torch.randn(1000)
    a = TF.noisy_relu(x, generator=torch.Generator().manual_seed(3))
    b = TF.noisy_relu(x, generator=torch.Generator().manual_seed(3))
    c = TF.noisy_relu(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("sigma", [None, 0.3])
def test_noisy_relu_gradcheck(sigma):
    torch.manual_seed(0)
    x = (torch.randn(30, dtype=D) * 2).requires_grad_(True)

    def f(inp):  # the same noise draw at every call, so the function is deterministic
        return TF.noisy_relu(inp, sigma, training=True, generator=torch.Generator().manual_seed(5))

    assert gradcheck(f, (x,))


def test_noisy_relu_gradient_finite_where_sigmoid_underflows():
    x = torch.tensor([-1e4, -200.0, 0.0, 200.0], requires_grad=True)
    TF.noisy_relu(x, training=True).sum().backward()
    assert torch.isfinite(x.grad).all()
