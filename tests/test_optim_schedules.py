"""Learning-rate schedules against their formulas, gradient clipping, annealed gradient noise."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats

from trainlab.optim import SCHEDULES, GradientNoise, build_optimizer, build_schedule, clip_gradients

LR0 = 0.4


def make_opt(lr: float = LR0, groups: int = 1) -> torch.optim.Optimizer:
    ps = [
        {"params": [torch.zeros(2, requires_grad=True)], "lr": lr * (i + 1)}
        for i in range(groups)
    ]
    return build_optimizer("sgd", ps, lr=lr)


def lr_sequence(opt, sched, n: int) -> list[list[float]]:
    """The lr used by each of n optimizer steps (schedule stepped after each)."""
    out = []
    for _ in range(n):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def first_group(seq):
    return np.array([s[0] for s in seq])


# ---- schedules vs formulas ------------------------------------------------------------------
def test_constant():
    opt = make_opt()
    assert np.allclose(first_group(lr_sequence(opt, build_schedule("constant", opt), 20)), LR0)
    opt = make_opt()
    assert np.allclose(first_group(lr_sequence(opt, build_schedule(None, opt), 5)), LR0)


def test_step():
    opt = make_opt()
    got = first_group(lr_sequence(opt, build_schedule("step", opt, step_size=3, gamma=0.5), 20))
    want = [LR0 * 0.5 ** (t // 3) for t in range(20)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_exponential():
    opt = make_opt()
    got = first_group(lr_sequence(opt, build_schedule("exp", opt, gamma=0.9), 30))
    np.testing.assert_allclose(got, [LR0 * 0.9**t for t in range(30)], rtol=1e-12)


def cosine(t, T, eta_min=0.0, lr0=LR0):
    return eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * t / T)) / 2


def test_cosine():
    opt = make_opt()
    sched = build_schedule("cosine", opt, total_steps=20, eta_min=0.01)
    got = first_group(lr_sequence(opt, sched, 21))
    np.testing.assert_allclose(got, [cosine(t, 20, 0.01) for t in range(21)], rtol=1e-10)
    assert got[0] == pytest.approx(LR0) and got[-1] == pytest.approx(0.01)


def test_warmup_then_constant():
    opt = make_opt()
    got = first_group(lr_sequence(opt, build_schedule("warmup", opt, warmup_steps=5), 12))
    want = [LR0 * (t + 1) / 5 if t < 5 else LR0 for t in range(12)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("how", ["kw", "then"])
def test_warmup_then_cosine(how):
    opt = make_opt()
    if how == "kw":
        sched = build_schedule("cosine", opt, total_steps=30, warmup_steps=6, eta_min=0.02)
    else:
        sched = build_schedule(
            "warmup", opt, warmup_steps=6, then="cosine", total_steps=30, eta_min=0.02
        )
    got = first_group(lr_sequence(opt, sched, 31))
    want = [LR0 * (t + 1) / 6 if t < 6 else cosine(t - 6, 24, 0.02) for t in range(31)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_warmup_then_step_scales_every_group():
    opt = make_opt(groups=2)  # base lrs LR0 and 2·LR0
    sched = build_schedule(("step", {"step_size": 4}), opt, warmup_steps=3, gamma=0.5)
    seq = np.array(lr_sequence(opt, sched, 15))
    base = [LR0 * (t + 1) / 3 if t < 3 else LR0 * 0.5 ** ((t - 3) // 4) for t in range(15)]
    np.testing.assert_allclose(seq[:, 0], base, rtol=1e-12)
    np.testing.assert_allclose(seq[:, 1], 2 * np.array(base), rtol=1e-12)


def test_warmup_steps_zero_or_one_is_no_warmup():
    for w in (0, 1):
        opt = make_opt()
        sched = build_schedule("exponential", opt, gamma=0.8, warmup_steps=w)
        got = first_group(lr_sequence(opt, sched, 6))
        np.testing.assert_allclose(got, [LR0 * 0.8**t for t in range(6)], rtol=1e-12)


def test_class_spec():
    opt = make_opt()
    sched = build_schedule(torch.optim.lr_scheduler.StepLR, opt, step_size=2, gamma=0.1)
    got = first_group(lr_sequence(opt, sched, 5))
    np.testing.assert_allclose(got, [LR0, LR0, LR0 / 10, LR0 / 10, LR0 / 100], rtol=1e-12)


@pytest.mark.parametrize(
    "spec, kw, match",
    [
        ("cosin", {}, r"Unknown schedule 'cosin'\. Did you mean 'cosine'.*Available: constant"),
        ("cosine", {}, r"schedule 'cosine' needs total_steps.* Received: total_steps=None"),
        ("cosine", {"total_steps": 0}, r"total_steps must be an integer >= 1\. .*=0"),
        ("cosine", {"total_steps": 10.5}, r"Received: total_steps=10\.5"),
        ("cosine", {"total_steps": 10, "eta_min": -1}, r"eta_min must be .*eta_min=-1"),
        ("constant", {"warmup_steps": -1}, r"warmup_steps must be an integer >= 0\. .*=-1"),
        ("warmup", {}, r"schedule 'warmup' needs warmup_steps.*Received: warmup_steps=None"),
        (
            "cosine",
            {"total_steps": 10, "warmup_steps": 10},
            r"warmup_steps must be smaller than total_steps\. .*=10, total_steps=10",
        ),
        ("step", {}, r"schedule 'step' needs step_size.*Received: step_size=None"),
        ("step", {"step_size": 0}, r"step_size must be an integer >= 1\. .*=0"),
        ("step", {"step_size": 2, "gamma": 0}, r"gamma must be a number > 0\. .*gamma=0"),
        ("exponential", {}, r"schedule 'exponential' needs gamma.*Received: gamma=None"),
        ("exponential", {"gamma": -0.5}, r"Received: gamma=-0\.5"),
        ({"gamma": 0.5}, {}, r"needs a 'name' key"),
    ],
)
def test_schedule_errors(spec, kw, match):
    with pytest.raises(ValueError, match=match):
        build_schedule(spec, make_opt(), **kw)


def test_schedule_type_errors():
    opt = make_opt()
    with pytest.raises(TypeError, match=r"already-built scheduler"):
        build_schedule(torch.optim.lr_scheduler.StepLR(opt, 2), opt)
    with pytest.raises(TypeError, match=r"Cannot build a schedule from 1\.5"):
        build_schedule(1.5, opt)


@pytest.mark.parametrize("name", SCHEDULES.names())
@pytest.mark.parametrize("warmup", [0, 3])
def test_schedule_contract(name, warmup):
    """Every schedule: builds from its example, positive finite lrs, state_dict round trip."""
    entry = SCHEDULES.get(name)
    assert entry.description
    kw = dict(entry.meta["example"])
    if name != "warmup":
        kw["warmup_steps"] = warmup
    opt = make_opt()
    sched = build_schedule(name, opt, total_steps=20, **kw)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    head = lr_sequence(opt, sched, 8)
    state_opt, state_sched = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    tail = lr_sequence(opt, sched, 12)
    # resume: fresh optimizer and schedule, load both states, same lrs
    opt2 = make_opt(lr=123.0)
    sched2 = build_schedule(name, opt2, total_steps=20, **kw)
    opt2.load_state_dict(state_opt)
    sched2.load_state_dict(state_sched)
    tail2 = lr_sequence(opt2, sched2, 12)
    np.testing.assert_allclose(tail2, tail, rtol=1e-12)
    lrs = np.array(head + tail)
    assert np.all(np.isfinite(lrs)) and np.all(lrs[:-1] > 0) and lrs.max() <= LR0 + 1e-12


# ---- clipping -------------------------------------------------------------------------------
def grads_of(*arrays):
    ps = []
    for a in arrays:
        p = torch.zeros(len(a), dtype=torch.float64, requires_grad=True)
        p.grad = torch.tensor(a, dtype=torch.float64)
        ps.append(p)
    return ps


def test_clip_norm():
    ps = grads_of([3.0, 0.0], [4.0, 0.0, 12.0])  # total norm 13
    no_grad = torch.zeros(3, requires_grad=True)
    total = clip_gradients(ps + [no_grad], max_norm=6.5)
    assert isinstance(total, float) and total == pytest.approx(13.0, rel=1e-12)
    new = torch.cat([p.grad for p in ps])
    # scaled by max_norm / norm (torch adds 1e-6 to the norm), direction kept
    np.testing.assert_allclose(new.numpy(), [1.5, 0, 2, 0, 6], rtol=1e-6)
    assert no_grad.grad is None


def test_clip_norm_below_threshold_unchanged():
    ps = grads_of([3.0, 4.0])
    assert clip_gradients(ps, max_norm=10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(ps[0].grad.numpy(), [3.0, 4.0])


def test_clip_value_and_both():
    ps = grads_of([3.0, -0.5], [4.0, 0.0, -12.0])
    total = clip_gradients(ps, max_value=2.0)
    assert total == pytest.approx(math.sqrt(9 + 0.25 + 16 + 144), rel=1e-12)  # before clipping
    np.testing.assert_array_equal(torch.cat([p.grad for p in ps]).numpy(), [2, -0.5, 2, 0, -2])
    ps = grads_of([3.0, -0.5], [4.0, 0.0, -12.0])
    total = clip_gradients(ps, max_norm=1.0, max_value=2.0)
    assert total == pytest.approx(math.sqrt(169.25), rel=1e-12)
    v = np.array([2, -0.5, 2, 0, -2])
    np.testing.assert_allclose(
        torch.cat([p.grad for p in ps]).numpy(), v / np.linalg.norm(v), rtol=1e-5
    )


def test_clip_measure_only_and_module():
    m = torch.nn.Linear(3, 1)
    assert clip_gradients(m.parameters()) == 0.0  # no gradients yet
    m(torch.ones(2, 3)).sum().backward()
    want = math.sqrt(sum(float((p.grad**2).sum()) for p in m.parameters()))
    before = [p.grad.clone() for p in m.parameters()]
    assert clip_gradients(m) == pytest.approx(want, rel=1e-6)
    assert all(torch.equal(a, p.grad) for a, p in zip(before, m.parameters()))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"max_norm": 0.0}, r"max_norm must be a number > 0 or None\. Received: max_norm=0\.0"),
        ({"max_value": -1}, r"max_value must be .* Received: max_value=-1"),
    ],
)
def test_clip_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        clip_gradients(grads_of([1.0]), **kw)


# ---- gradient noise -------------------------------------------------------------------------
N = 200_000


@pytest.mark.parametrize("step", [0, 10, 1000])
def test_noise_variance(step):
    """Sample variance of N draws: relative standard error sqrt(2/(N-1)) ≈ 0.32 %; we accept
    5 standard errors (1.6 %). Mean: within 5 standard errors σ/sqrt(N). Shape: KS p > 1e-3."""
    eta, gamma = 0.3, 0.55
    want_var = eta / (1 + step) ** gamma  # computed here, not imported
    noise = GradientNoise(eta, gamma, generator=torch.Generator().manual_seed(step))
    p = torch.zeros(N, dtype=torch.float64, requires_grad=True)
    p.grad = torch.full((N,), 2.0, dtype=torch.float64)
    sigma = noise.add_([p], step)
    assert sigma == pytest.approx(math.sqrt(want_var), rel=1e-12)
    z = (p.grad - 2.0).numpy()
    assert abs(z.var(ddof=1) / want_var - 1) < 5 * math.sqrt(2 / (N - 1))
    assert abs(z.mean()) < 5 * math.sqrt(want_var / N)
    assert stats.kstest(z / math.sqrt(want_var), "norm").pvalue > 1e-3


def test_noise_anneals():
    noise = GradientNoise(eta=1.0, gamma=0.55)
    s = [noise.sigma(t) for t in range(0, 10_000, 100)]
    assert all(a > b for a, b in zip(s, s[1:]))
    assert noise.variance(0) == 1.0 and noise.variance(99) == pytest.approx(100**-0.55)
    assert GradientNoise(eta=0.0).add_(grads_of([1.0]), 0) == 0.0


def test_noise_deterministic_and_state_dict():
    def draw(gn, step):
        ps = grads_of([0.0] * 5, [0.0] * 3)
        gn.add_(ps, step)
        return torch.cat([p.grad for p in ps])

    a = draw(GradientNoise(generator=torch.Generator().manual_seed(1)), 3)
    b = draw(GradientNoise(generator=torch.Generator().manual_seed(1)), 3)
    c = draw(GradientNoise(generator=torch.Generator().manual_seed(2)), 3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    gn = GradientNoise(eta=0.1, gamma=0.5, generator=torch.Generator().manual_seed(7))
    draw(gn, 0)
    state = copy.deepcopy(gn.state_dict())
    want = draw(gn, 1)
    gn2 = GradientNoise()
    gn2.load_state_dict(state)
    assert (gn2.eta, gn2.gamma) == (0.1, 0.5)
    assert torch.equal(draw(gn2, 1), want)


def test_noise_skips_params_without_grad_and_accepts_module():
    m = torch.nn.Linear(2, 1)
    GradientNoise(generator=torch.Generator().manual_seed(0)).add_(m, 0)
    assert all(p.grad is None for p in m.parameters())
    m.weight.grad = torch.zeros_like(m.weight)
    GradientNoise(generator=torch.Generator().manual_seed(0)).add_(m, 0)
    assert m.bias.grad is None and m.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"eta": -0.1}, r"eta must be a finite number >= 0\. Received: eta=-0\.1"),
        ({"gamma": -1}, r"gamma must be a finite number >= 0\. Received: gamma=-1"),
        ({"eta": float("inf")}, r"Received: eta=inf"),
    ],
)
def test_noise_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        GradientNoise(**kw)


def test_noise_step_and_generator_errors():
    with pytest.raises(ValueError, match=r"step must be an integer >= 0\. Received: step=-1"):
        GradientNoise().add_(grads_of([1.0]), -1)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or None"):
        GradientNoise(generator=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_params():
    """Optimizer, clipping and noise (CPU generator, CUDA gradients) on the GPU."""
    m = torch.nn.Linear(3, 2).cuda()
    opt = build_optimizer("adam", m)
    sched = build_schedule("cosine", opt, total_steps=5, warmup_steps=2)
    gn = GradientNoise(generator=torch.Generator().manual_seed(0))
    for step in range(5):
        opt.zero_grad()
        m(torch.ones(4, 3, device="cuda")).pow(2).sum().backward()
        assert clip_gradients(m, max_norm=1.0) > 0
        gn.add_(m, step)
        opt.step()
        sched.step()
    assert all(p.is_cuda and torch.isfinite(p).all() for p in m.parameters())
