"""GradientStats, WeightStats and UpdateRatio against naive recomputations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trainlab.probes import GradientStats, UpdateRatio, WeightStats, collect, observe


def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    return m, torch.randn(8, 5), torch.randint(0, 3, (8,))


def naive_grads(m, x, y):
    """Gradients w.r.t. each Linear's output (retain_grad) and weight, in float64."""
    m64 = __import__("copy").deepcopy(m).double()
    s1 = m64[0](x.double())
    s2 = m64[2](torch.tanh(s1))
    s3 = m64[4](torch.relu(s2))
    for s in (s1, s2, s3):
        s.retain_grad()
    F.cross_entropy(s3, y).backward()
    return {"0": (s1.grad, m64[0].weight.grad), "2": (s2.grad, m64[2].weight.grad),
            "4": (s3.grad, m64[4].weight.grad)}


def test_output_and_weight_gradients_match_naive():
    m, x, y = tiny()
    p = GradientStats(hist_every=0).attach(m)
    observe(m, [p], x, y, F.cross_entropy)
    t = collect([p]).table(0)
    assert set(t) == {"0", "2", "4"}
    for layer, (go, gw) in naive_grads(m, x, y).items():
        r = t[layer]
        assert r["grad_out_mean"] == pytest.approx(go.mean().item(), abs=1e-7)
        assert r["grad_out_std"] == pytest.approx(go.std().item(), rel=1e-4)
        assert r["grad_out_norm"] == pytest.approx(go.norm().item(), rel=1e-5)
        assert r["grad_out_min"] == pytest.approx(go.min().item(), rel=1e-5)
        assert r["grad_out_max"] == pytest.approx(go.max().item(), rel=1e-5)
        assert r["grad_w_mean"] == pytest.approx(gw.mean().item(), abs=1e-7)
        assert r["grad_w_std"] == pytest.approx(gw.std().item(), rel=1e-4)
        assert r["grad_w_norm"] == pytest.approx(gw.norm().item(), rel=1e-5)
    # observe() leaves .grad as it found it
    assert all(q.grad is None for q in m.parameters())


def test_gradient_histograms_cover_all_elements():
    m, x, y = tiny()
    p = GradientStats(bins=8, hist_every=1).attach(m)
    observe(m, [p], x, y, F.cross_entropy)
    hs = p.histograms()
    assert {h["quantity"] for h in hs} == {"grad_out", "grad_w"}
    for h in hs:
        n = 8 * 6 if h["layer"] == "0" and h["quantity"] == "grad_out" else None
        if n:
            assert sum(h["counts"]) == n
        assert len(h["edges"]) == 9 and h["edges"][0] == pytest.approx(-h["edges"][-1])


def test_weight_stats_match_direct():
    m, x, _ = tiny()
    p = WeightStats(hist_every=0).attach(m)
    p.observe(x)
    t = collect([p]).table(0)
    for i in ("0", "2", "4"):
        w = m[int(i)].weight.detach().double()
        assert t[i]["w_mean"] == pytest.approx(w.mean().item(), abs=1e-7)
        assert t[i]["w_std"] == pytest.approx(w.std().item(), rel=1e-5)
        assert t[i]["w_norm"] == pytest.approx(w.norm().item(), rel=1e-6)
        assert t[i]["w_min"] == pytest.approx(w.min().item())


def test_update_ratio_is_norm_of_change_over_norm():
    m, x, y = tiny()
    opt = torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9)
    p = UpdateRatio(every=1).attach(m)
    before, after = [], []
    for step in range(3):
        p.step_begin(step)
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        p.after_backward(step)
        before.append({i: m[i].weight.detach().clone() for i in (0, 2, 4)})
        opt.step()
        after.append({i: m[i].weight.detach().clone() for i in (0, 2, 4)})
        p.step_end(step)
    log = collect([p])
    for step in range(3):
        for i in (0, 2, 4):
            w0, w1 = before[step][i].double(), after[step][i].double()
            ref = ((w1 - w0).norm() / w0.norm()).item()
            assert log.value(step, str(i), "update_ratio") == pytest.approx(ref, rel=1e-5)


def test_gradient_stats_probe_data_needs_targets():
    m, x, _ = tiny()
    p = GradientStats(probe_data=x).attach(m)
    with pytest.raises(ValueError, match="probe_data=\\(x, y\\)"):
        p.step_begin(0)
    with pytest.raises(ValueError, match="outputs=True or weights=True"):
        GradientStats(outputs=False, weights=False)


def test_large_layers_take_the_unstacked_path():
    # Tensors above STACK_MAX elements are reduced one by one (no stacking copy).
    from trainlab.probes.activations import STACK_MAX

    torch.manual_seed(3)
    d = int(STACK_MAX**0.5) + 8
    m = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 2))
    x, y = torch.randn(d, d), torch.randint(0, 2, (d,))
    ps = [GradientStats(hist_every=0).attach(m), WeightStats(hist_every=0).attach(m)]
    observe(m, ps, x, y, F.cross_entropy)
    t = collect(ps).table(0)
    m64 = __import__("copy").deepcopy(m).double()
    s1 = m64[0](x.double())
    s1.retain_grad()
    F.cross_entropy(m64[4](torch.tanh(m64[2](torch.tanh(s1)))), y).backward()
    assert t["0"]["grad_out_std"] == pytest.approx(s1.grad.std().item(), rel=1e-4)
    assert t["2"]["grad_w_norm"] == pytest.approx(m64[2].weight.grad.norm().item(), rel=1e-5)
    assert t["2"]["w_max"] == pytest.approx(m64[2].weight.max().item())
