"""ActivationStats against naive float64 recomputations on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.probes import ActivationStats, collect, observe


def tiny() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        m[0].weight.mul_(4.0)  # some tanh saturation
        m[2].bias[:3] = -10.0  # three dead ReLU units
    return m, torch.randn(9, 5)


def test_moments_percentiles_saturation_dead_match_naive():
    m, x = tiny()
    p = ActivationStats(hist_every=0).attach(m)
    observe(m, [p], x)
    t = collect([p]).table(0)
    with torch.no_grad():
        s1 = m[0](x).double()
        h1 = torch.tanh(s1)
        s2 = m[2](h1.float()).double()
        h2 = torch.relu(s2)
    for layer, pre, act in (("1", s1, h1), ("3", s2, h2)):
        for which, v in (("pre", pre), ("act", act)):
            r = t[layer]
            assert r[f"{which}_mean"] == pytest.approx(v.mean().item(), abs=1e-5)
            assert r[f"{which}_std"] == pytest.approx(v.std().item(), rel=1e-4, abs=1e-6)
            assert r[f"{which}_min"] == pytest.approx(v.min().item(), abs=1e-5)
            assert r[f"{which}_max"] == pytest.approx(v.max().item(), abs=1e-5)
            for q in (15, 50, 85, 98):
                ref = torch.quantile(v.flatten(), q / 100).item()
                assert r[f"{which}_p{q}"] == pytest.approx(ref, abs=1e-5)
    # tanh: saturated when |h| >= 0.97 (the registry's rule); ReLU: a unit is dead when
    # h <= 0 for every example; tanh cannot die and ReLU cannot saturate.
    assert t["1"]["act_saturated"] == pytest.approx((h1.abs() >= 0.97).double().mean().item())
    assert t["1"]["act_saturated"] > 0
    dead = sum(bool((h2[:, j] <= 0).all()) for j in range(h2.shape[1])) / h2.shape[1]
    assert t["3"]["act_dead"] == pytest.approx(dead) and dead >= 0.5
    assert "act_dead" not in t["1"] and "act_saturated" not in t["3"]


def test_dead_fraction_uses_channel_axis_for_conv():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU())
    with torch.no_grad():
        m[0].bias[:] = torch.tensor([-100.0, 0.0, 0.0, -100.0])
    x = torch.randn(3, 2, 6, 6)
    p = ActivationStats(hist_every=0).attach(m)
    p.observe(x)
    assert collect([p]).table(0)["1"]["act_dead"] == pytest.approx(0.5)


def test_percentile_subsample_accuracy():
    # A fixed random subsample of m elements: the rank error of a p-quantile has standard
    # deviation sqrt(p(1-p)/m); allow 4 of them (normal data, so the rank is Phi(value)).
    torch.manual_seed(2)
    m = nn.Sequential(nn.Identity(), nn.Tanh())
    x = torch.randn(400, 250) * 0.2  # tanh almost linear; check the pre-activations
    p = ActivationStats(hist_every=0, sample_size=2048).attach(m)
    p.observe(x)
    r = collect([p]).table(0)["1"]
    for q in (15, 50, 85, 98):
        pq = q / 100
        rank = 0.5 * (1 + math.erf(r[f"pre_p{q}"] / 0.2 / math.sqrt(2)))
        assert abs(rank - pq) < 4 * math.sqrt(pq * (1 - pq) / 2048)


def test_histograms_fixed_and_adaptive_ranges():
    m, x = tiny()
    p = ActivationStats(bins=10, hist_every=1).attach(m)
    p.observe(x)
    hs = {(h["layer"], h["quantity"]): h for h in p.histograms()}
    with torch.no_grad():
        s1 = m[0](x)
        h1 = torch.tanh(s1)
    h = hs[("1", "act")]  # tanh: the registry's hist_range (-1, 1)
    assert h["edges"][0] == pytest.approx(-1) and h["edges"][-1] == pytest.approx(1)
    ref = torch.histc(h1, bins=10, min=-1, max=1)
    assert h["counts"] == pytest.approx(ref.tolist())
    h = hs[("1", "pre")]  # adaptive: ±4·rms, tails clamped into the outer bins
    r = 4 * s1.pow(2).mean().sqrt().item()
    assert h["edges"][-1] == pytest.approx(r, rel=1e-5)
    ref = torch.histc(s1.clamp(-r, r), bins=10, min=-r, max=r)
    assert sum(h["counts"]) == s1.numel()
    assert h["counts"] == pytest.approx(ref.tolist(), abs=1)


def test_schedule_and_capacity_flush():
    m, x = tiny()
    p = ActivationStats(every=2, hist_every=0, capacity=2).attach(m)
    for step in range(9):
        p.step_begin(step)
        m(x)
        p.after_backward(step)
        p.step_end(step)
    assert collect([p]).steps() == [0, 2, 4, 6, 8]
    p.step_begin(10)
    m(x)
    assert 10 not in collect([p]).steps()  # records() mid-step keeps the open step
    p.step_end(10)
    assert collect([p]).steps()[-1] == 10


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="percentiles.*101"):
        ActivationStats(percentiles=(50, 101))
    with pytest.raises(ValueError, match="sample_size.*0"):
        ActivationStats(sample_size=0)
    with pytest.raises(ValueError, match="mode must be 'eval', 'train' or 'as_is'.*'test'"):
        ActivationStats(mode="test")
    with pytest.raises(TypeError, match="probe_data"):
        ActivationStats(probe_data=[1, 2, 3])
    with pytest.raises(ValueError, match="bins must be an integer >= 1.*bins=0"):
        ActivationStats(bins=0)


def test_large_activations_unstacked_path_matches_naive():
    from trainlab.probes.activations import STACK_MAX

    torch.manual_seed(4)
    n = STACK_MAX // 16 + 7
    m = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    with torch.no_grad():
        m[0].bias[:4] = -50.0
    x = torch.randn(n, 5)
    p = ActivationStats(hist_every=0, sample_size=10**9).attach(m)  # no subsampling: exact
    p.observe(x)
    t = collect([p]).table(0)
    with torch.no_grad():
        h1 = torch.relu(m[0](x)).double()
    assert t["1"]["act_std"] == pytest.approx(h1.std().item(), rel=1e-4)
    assert t["1"]["act_p85"] == pytest.approx(torch.quantile(h1.flatten(), 0.85).item(),
                                              rel=1e-5)
    assert t["1"]["act_dead"] == pytest.approx(4 / 16)


@pytest.mark.parametrize("stack_max,foreach_max", [(0, 0), (0, 1 << 20), (1 << 20, 0)])
def test_stacked_and_per_tensor_reductions_agree(monkeypatch, stack_max, foreach_max):
    """_Moments.rows gives the same statistics whether it stacks a group or reduces tensor
    by tensor (the choice is a speed trade-off only), for equal and mixed shapes."""
    from trainlab.probes import activations as A

    g = torch.Generator().manual_seed(3)
    ts = [torch.randn(7, 5, generator=g) * (i + 1) + i for i in range(3)]
    mom = A._Moments((15, 50, 85, 98), 1024, 0)
    monkeypatch.setattr(A, "STACK_MAX", stack_max)
    monkeypatch.setattr(A, "FOREACH_MAX", foreach_max)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the dot path is CPU-multithread
    stats, sub = mom.rows(ts)
    for r, t in enumerate(ts):
        v = t.double().reshape(-1)
        ref = [v.sum(), v.square().sum(), v.min(), v.max(),
               *torch.quantile(v, torch.tensor([.15, .5, .85, .98], dtype=torch.float64))]
        assert stats[r].tolist() == pytest.approx([float(x) for x in ref], rel=1e-5, abs=1e-5)
    mixed = [torch.randn(4, 3, generator=g), torch.randn(10, generator=g)]
    sums, none = mom.rows(mixed, minmax=False, sample=False)
    assert none is None and sums.shape == (2, 2)
    for r, t in enumerate(mixed):
        assert sums[r].tolist() == pytest.approx([t.sum().item(), t.square().sum().item()],
                                                 rel=1e-5, abs=1e-6)
