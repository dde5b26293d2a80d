"""Batch renormalization (Ioffe 2017, Algorithm 1) and mean-only BN (Salimans & Kingma 2016)
against float64 re-implementations, torch's BN where they reduce to it, and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.nn import (
    BatchRenorm,
    MeanOnlyBatchNorm,
    batch_renorm,
    mean_only_batch_norm,
    mlp,
    renorm_limits,
)

D64 = torch.float64


def _x(*shape, seed=0, scale=2.0, shift=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=D64) * scale + shift


def _algorithm1(x, mu, sigma, gamma, beta, r_max, d_max, alpha, eps):
    """Ioffe 2017, Algorithm 1, for (N, C) or (N, C, L) inputs: returns y, new mu, new sigma."""
    dims = [0] + list(range(2, x.dim()))
    view = [1, -1] + [1] * (x.dim() - 2)
    mu_b = x.mean(dim=dims)
    sigma_b = torch.sqrt(((x - mu_b.view(view)) ** 2).mean(dim=dims) + eps)
    r = torch.clamp(sigma_b / sigma, 1 / r_max, r_max).detach()
    d = torch.clamp((mu_b - mu) / sigma, -d_max, d_max).detach()
    xhat = (x - mu_b.view(view)) / sigma_b.view(view) * r.view(view) + d.view(view)
    y = gamma.view(view) * xhat + beta.view(view)
    return y, mu + alpha * (mu_b.detach() - mu), sigma + alpha * (sigma_b.detach() - sigma)


@pytest.mark.parametrize("shape", [(16, 4), (6, 4, 5)])
def test_brn_training_steps_match_algorithm_1(shape):
    eps, alpha = 1e-3, 0.2
    brn = BatchRenorm(4, r_max=1.5, d_max=0.5, warmup_steps=0, r_max_steps=0, d_max_steps=0,
                      momentum=alpha, eps=eps).to(D64)
    with torch.no_grad():  # running statistics far from the batches': r and d clip
        brn.running_mean.copy_(torch.tensor([3.0, -2.0, 1.0, 0.0], dtype=D64))
        brn.running_var.copy_(torch.tensor([0.1, 9.0, 4.0, 1.0], dtype=D64))
        brn.weight.copy_(torch.tensor([1.5, 0.5, -1.0, 2.0], dtype=D64))
        brn.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=D64))
    mu = brn.running_mean.clone()
    sigma = torch.sqrt(brn.running_var.clone() + eps)
    gamma, beta = brn.weight.detach().clone(), brn.bias.detach().clone()
    for step in range(4):
        x = _x(*shape, seed=step)
        y = brn(x)
        want, mu, sigma = _algorithm1(x, mu, sigma, gamma, beta, 1.5, 0.5, alpha, eps)
        torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(brn.running_mean, mu, rtol=1e-12, atol=1e-12)
        # sigma is stored as running_var = sigma^2 - eps, so eval is BN's formula
        torch.testing.assert_close(torch.sqrt(brn.running_var + eps), sigma, rtol=1e-12,
                                   atol=1e-12)
    brn.eval()
    x = _x(*shape, seed=9)
    view = [1, -1] + [1] * (len(shape) - 2)
    want = gamma.view(view) * (x - mu.view(view)) / sigma.view(view) + beta.view(view)
    torch.testing.assert_close(brn(x), want, rtol=1e-12, atol=1e-12)
    assert int(brn.num_batches_tracked) == 4


def test_brn_gradient_treats_r_and_d_as_constants():
    """Autograd through the layer equals autograd through Algorithm 1 with r, d detached
    (and differs from letting the gradient flow through r and d)."""
    kw = dict(r_max=2.0, d_max=1.0, warmup_steps=0, r_max_steps=0, d_max_steps=0, eps=1e-5)
    brn = BatchRenorm(3, **kw).to(D64)
    with torch.no_grad():
        brn.running_mean.fill_(0.3)
        brn.running_var.fill_(2.0)
    mu, sigma = brn.running_mean.clone(), torch.sqrt(brn.running_var.clone() + 1e-5)
    x = _x(10, 3).requires_grad_()
    G = _x(10, 3, seed=5)
    (brn(x) * G).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    want, _, _ = _algorithm1(x2, mu, sigma, torch.ones(3, dtype=D64), torch.zeros(3, dtype=D64),
                             2.0, 1.0, 0.01, 1e-5)
    (want * G).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)

    # with the gradient through r (no clipping active), it would differ
    x3 = x.detach().clone().requires_grad_()
    mu_b, s_b = x3.mean(0), torch.sqrt(x3.var(0, unbiased=False) + 1e-5)
    r = s_b / sigma
    ((((x3 - mu_b) / s_b * r + (mu_b - mu) / sigma)) * G).sum().backward()
    assert (x3.grad - x.grad).abs().max() > 1e-3


def test_brn_gradcheck():
    """Finite differences see r and d move with x, autograd does not (stop-gradient): with
    running statistics far off, both are clipped, hence locally constant, and the two agree."""
    rm, rv = torch.full((3,), 10.0, dtype=D64), torch.full((3,), 100.0, dtype=D64)

    def f(x, w, b):  # fresh copies of the buffers: the training call updates them
        return batch_renorm(x, rm.clone(), rv.clone(), w, b, True, 1.3, 0.2)

    x = _x(8, 3).requires_grad_()
    w = torch.rand(3, dtype=D64).add(0.5).requires_grad_()
    b = torch.randn(3, dtype=D64).requires_grad_()
    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("shape, ref_cls", [((12, 5), nn.BatchNorm1d), ((4, 5, 3, 3),
                                                                         nn.BatchNorm2d)])
def test_brn_with_r_max_1_and_d_max_0_is_batch_norm(shape, ref_cls):
    """r_max = 1, d_max = 0 (also: the warm-up steps) give BN's output and gradients."""
    ours = BatchRenorm(5, r_max=1.0, d_max=0.0).to(D64)
    warm = BatchRenorm(5, warmup_steps=3).to(D64)  # paper schedule: BN for the first steps
    ref = ref_cls(5).to(D64)
    with torch.no_grad():
        for m in (ours, warm, ref):
            m.weight.copy_(torch.linspace(0.5, 2.0, 5, dtype=D64))
            m.bias.copy_(torch.linspace(-1.0, 1.0, 5, dtype=D64))
    for step in range(3):
        x = _x(*shape, seed=step, scale=3.0).requires_grad_()
        outs = []
        for m in (ours, warm, ref):
            xi = x.detach().clone().requires_grad_()
            y = m(xi)
            (y * _x(*shape, seed=10 + step)).sum().backward()
            outs.append((y.detach(), xi.grad, m.weight.grad.clone()))
            m.weight.grad = None
        for y, gx, gw in outs[:2]:
            torch.testing.assert_close(y, outs[2][0], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(gx, outs[2][1], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(gw, outs[2][2], rtol=1e-10, atol=1e-10)
    assert warm.current_limits() == (1.0, 0.0)


def test_paper_schedule_and_its_defaults():
    """Ioffe 2017 §4: (1, 0) for 5000 steps, then r_max -> 3 at 40k, d_max -> 5 at 25k."""
    assert renorm_limits(0) == (1.0, 0.0) and renorm_limits(4999) == (1.0, 0.0)
    assert renorm_limits(5000) == (1.0, 0.0)
    r, d = renorm_limits(15000)
    assert r == pytest.approx(1 + 2 * 10000 / 35000) and d == pytest.approx(5 * 10000 / 20000)
    assert renorm_limits(25000)[1] == 5.0 and renorm_limits(40000) == (3.0, 5.0)
    assert renorm_limits(10**6) == (3.0, 5.0)
    assert renorm_limits(0, warmup_steps=0, r_max_steps=0, d_max_steps=0) == (3.0, 5.0)
    b = BatchRenorm(4)
    assert (b.r_max, b.d_max, b.warmup_steps, b.r_max_steps, b.d_max_steps, b.momentum) == (
        3.0, 5.0, 5000, 40000, 25000, 0.01)
    with torch.no_grad():
        b.num_batches_tracked.fill_(22500)
    assert b.current_limits() == pytest.approx((1 + 2 * 17500 / 35000, 5 * 17500 / 20000))


def test_brn_bad_input_names_value_and_range():
    with pytest.raises(ValueError, match=r"r_max must be a finite number >= 1.*Received: "
                                         r"r_max=0\.5\."):
        BatchRenorm(4, r_max=0.5)
    with pytest.raises(ValueError, match=r"d_max must be a finite number >= 0.*Received: "
                                         r"d_max=-1\."):
        BatchRenorm(4, d_max=-1)
    with pytest.raises(ValueError, match=r"momentum must be a number in \(0, 1\]\. Received: "
                                         r"momentum=0"):
        BatchRenorm(4, momentum=0)
    with pytest.raises(ValueError, match=r"warmup_steps must be an integer >= 0\. Received: "
                                         r"warmup_steps=-2"):
        BatchRenorm(4, warmup_steps=-2)
    msg = (r"BatchRenorm \('brn'\).*only one value per channel.*does not need batch "
           r"statistics: 'ln', 'gn', 'wn', 'cwn' or 'normprop'")
    with pytest.raises(ValueError, match=msg):
        BatchRenorm(4)(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"MeanOnlyBatchNorm \('mobn'\).*'normprop'"):
        MeanOnlyBatchNorm(4)(torch.randn(1, 4))
    assert BatchRenorm(4).eval()(torch.randn(1, 4)).shape == (1, 4)


def test_brn_state_dict_is_bn_compatible():
    ref = nn.BatchNorm2d(4)
    ref(torch.randn(8, 4, 3, 3))
    ours = BatchRenorm(4)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    ours.eval(), ref.eval()
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(ours(x), ref(x))


def test_mean_only_bn_matches_its_formula():
    m = MeanOnlyBatchNorm(3, momentum=0.25).to(D64)
    with torch.no_grad():
        m.bias.copy_(torch.tensor([0.5, -1.0, 2.0], dtype=D64))
    run = torch.zeros(3, dtype=D64)
    for step in range(3):
        x = _x(5, 3, 4, seed=step)
        mu = x.mean(dim=(0, 2))
        want = x - mu.view(1, 3, 1) + m.bias.detach().view(1, 3, 1)
        torch.testing.assert_close(m(x), want, rtol=1e-12, atol=1e-12)
        run = 0.75 * run + 0.25 * mu
        torch.testing.assert_close(m.running_mean, run, rtol=1e-12, atol=1e-12)
    m.eval()
    x = _x(2, 3, 4, seed=7)
    want = x - run.view(1, 3, 1) + m.bias.detach().view(1, 3, 1)
    torch.testing.assert_close(m(x), want, rtol=1e-12, atol=1e-12)
    xg = _x(6, 3).requires_grad_()
    b = torch.randn(3, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b: mean_only_batch_norm(x, None, b, True), (xg, b))
    # the output's per-channel batch mean is the bias: no scale at all
    y = MeanOnlyBatchNorm(3).to(D64)(_x(9, 3, scale=7.0))
    torch.testing.assert_close(y.mean(0), torch.zeros(3, dtype=D64), rtol=0, atol=1e-12)
    assert y.std(0).min() > 3  # the variance is left alone


def test_brn_trains_in_a_model():
    torch.manual_seed(0)
    m = mlp(4, [16], 2, norm=("brn", {"warmup_steps": 2, "r_max_steps": 6, "d_max_steps": 4}))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert m.block1.norm.current_limits() == (3.0, 5.0)
