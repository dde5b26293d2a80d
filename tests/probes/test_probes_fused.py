"""The fused (torch.compile) statistics path: switch, policy, fallback, equality with eager."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from trainlab.probes import (
    ActivationStats,
    GradientStats,
    UpdateRatio,
    WeightStats,
    fused_enabled,
    set_fused,
)
from trainlab.probes import activations as act_mod
from trainlab.probes.activations import FUSED_MIN, _Moments


@pytest.fixture(autouse=True)
def _fresh_fused_state(monkeypatch):
    """Each test starts from the default (off, nothing compiled) and leaves no trace."""
    monkeypatch.setitem(act_mod._FUSED, "on", None)
    monkeypatch.setitem(act_mod._FUSED, "failed", False)
    monkeypatch.setitem(act_mod._FUSED, "fns", {})
    monkeypatch.delenv("TRAINLAB_PROBE_COMPILE", raising=False)


def _reference(t: torch.Tensor) -> list[float]:
    d = t.double().reshape(-1)
    return [d.sum().item(), (d * d).sum().item(), d.min().item(), d.max().item()]


def _tensors() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # mixed sizes: one above FUSED_MIN (fused), one below (eager), non-contiguous big one
    return [torch.randn(FUSED_MIN + 17, generator=g) + 0.5,
            torch.randn(64, 33, generator=g),
            torch.randn(600, 700, generator=g).t()]


def test_switch_default_off_env_and_set_fused(monkeypatch):
    assert not fused_enabled()  # the default: off
    monkeypatch.setenv("TRAINLAB_PROBE_COMPILE", "1")
    assert fused_enabled()
    set_fused(False)  # an explicit choice wins over the environment
    assert not fused_enabled()
    set_fused(None)
    assert fused_enabled()
    monkeypatch.setenv("TRAINLAB_PROBE_COMPILE", "0")
    assert not fused_enabled()
    set_fused(True)
    assert fused_enabled()


def test_off_never_compiles(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("torch.compile called with the fused path off")

    monkeypatch.setattr(torch, "compile", boom)
    stats, _ = _Moments((), 1, 0).rows(_tensors(), sample=False)
    for row, t in zip(stats, _tensors()):
        torch.testing.assert_close(row.double(), torch.tensor(_reference(t), dtype=torch.float64),
                                   rtol=1e-5, atol=1e-3)


def test_routing_one_call_above_threshold_eager_below(monkeypatch):
    """With a stand-in compiler (the function itself): a call holding >= FUSED_MIN elements
    goes through one fused call for all its tensors, a smaller one stays eager; every row
    equals the float64 reference."""
    seen: list[int] = []

    def fake_compile(fn, **kw):
        def run(*xs):
            seen.append(len(xs))
            return fn(*xs)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    set_fused(True)
    ts = _tensors()
    stats, _ = _Moments((), 1, 0).rows(ts, sample=False)
    assert seen == [len(ts)]
    for row, t in zip(stats, ts):
        torch.testing.assert_close(row.double(), torch.tensor(_reference(t), dtype=torch.float64),
                                   rtol=1e-5, atol=1e-3)
    two, _ = _Moments((), 1, 0).rows(ts, minmax=False, sample=False)
    assert two.shape == (3, 2)
    torch.testing.assert_close(two, stats[:, :2])
    small = [torch.randn(100, 30), torch.randn(7, 11)]  # 3077 elements in all: eager
    _Moments((), 1, 0).rows(small, sample=False)
    assert seen == [len(ts), len(ts)]


def test_compile_failure_warns_once_and_falls_back(monkeypatch):
    calls = []

    def broken(fn, **kw):
        calls.append(1)
        raise RuntimeError("no C compiler found\nlong traceback text")

    monkeypatch.setattr(torch, "compile", broken)
    set_fused(True)
    ts = _tensors()
    with pytest.warns(RuntimeWarning, match="torch.compile of the statistics failed") as rec:
        stats, _ = _Moments((), 1, 0).rows(ts, sample=False)
    assert len([w for w in rec if "torch.compile" in str(w.message)]) == 1
    assert not fused_enabled()  # eager from now on
    eager, _ = _Moments((), 1, 0).rows(ts, sample=False)
    torch.testing.assert_close(stats, eager)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        _Moments((), 1, 0).rows(ts, sample=False)
    assert len(calls) == 1


def _cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 8, 3, padding=1), nn.Tanh(),
                          nn.Flatten(), nn.Linear(8 * 24 * 24, 10))
    x = torch.randn(64, 1, 24, 24)  # activations of 589,824 and 294,912 elements
    y = torch.randint(0, 10, (64,))
    return model, x, y


def _records(fused: bool, sgd_steps) -> dict:
    set_fused(fused)
    model, x, y = _cnn()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    probes = [p.attach(model) for p in (ActivationStats(every=1), GradientStats(every=1),
                                        WeightStats(every=1), UpdateRatio(every=1))]
    sgd_steps(model, opt, probes, [(x, y)] * 3)
    return {(s, layer, q): v for p in probes for s, layer, q, v in p.records()}


@pytest.mark.slow
def test_compiled_probes_equal_eager(sgd_steps):
    """Real torch.compile (a few seconds): every record of a 3-step CNN run equals the
    eager path's within float32 rounding, and the compiled functions ran."""
    eager = _records(False, sgd_steps)
    fused = _records(True, sgd_steps)
    assert act_mod._FUSED["fns"] and not act_mod._FUSED["failed"]
    assert eager.keys() == fused.keys()
    for k, v in eager.items():
        assert fused[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
