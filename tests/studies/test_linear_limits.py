"""linear-limits at the test scale: its files, and its numbers against independent ones."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from trainlab.data.synthetic import quadrants
from trainlab.nn.builders import mlp
from trainlab.studies import run_study
from trainlab.studies.linear_limits import collapse_affine


def _best_line_accuracy(x: torch.Tensor, y: torch.Tensor, angles: int = 360) -> float:
    """The best accuracy of any half-plane whose normal is one of ``angles`` directions:
    every threshold between sorted projections, both orientations (float64)."""
    x, y = x.double(), y.double()
    best = 0.0
    for k in range(angles):
        t = math.pi * k / angles
        p = x @ torch.tensor([math.cos(t), math.sin(t)], dtype=torch.float64)
        order = p.argsort()
        ys = y[order]
        # predict class 1 above the cut: correct = (# class 0 below) + (# class 1 above)
        below0 = torch.cat([torch.zeros(1, dtype=torch.float64), (1 - ys).cumsum(0)])
        above1 = ys.sum() - torch.cat([torch.zeros(1, dtype=torch.float64), ys.cumsum(0)])
        acc = (below0 + above1) / len(y)
        best = max(best, acc.max().item(), (1 - acc).max().item())
    return best


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("linear_limits")
    res = run_study("linear-limits", scale="test", out=tmp / "out", seed=0,
                    db=tmp / "db.sqlite", progress=False, log=None)
    return res, tmp


def test_artifacts(result):
    res, tmp = result
    out = tmp / "out"
    assert res.error is None
    data = json.loads((out / "result.json").read_text())
    assert data["study"] == "linear-limits" and data["scale"] == "test"
    ids = {c["id"]: c for c in data["claims"]}
    assert set(ids) == {"linear-fails", "mlp-solves", "deep-linear-no-better",
                        "deep-linear-is-affine"}
    assert all(c["status"] in ("PASS", "FAIL") and c["measured"] is not None
               for c in data["claims"])
    png = out / "decision_regions.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "index.html").is_file() and (out / "accuracy.csv").is_file()
    from trainlab.store import RunStore

    runs = RunStore(tmp / "db.sqlite", readonly=True).list_runs()
    assert len(runs) == 9 and all(r["config"]["study"] == "linear-limits" for r in runs)


def test_linear_accuracy_bounded_by_the_best_line(result):
    """No linear classifier beats the best half-plane, found here by exhaustive search; on
    XOR that best line is far from a solution."""
    res, tmp = result
    ds = quadrants(n_train=200, n_test=200, seed=0)  # the study's test-scale set
    best = _best_line_accuracy(ds.x_test, ds.y_test)
    assert 0.55 < best < 0.75  # a corner cut: about 0.625 in the limit of many points
    with open(tmp / "out" / "accuracy.csv") as f:
        rows = {r["set"]: r for r in csv.DictReader(f)}
    xor = rows["XOR quadrants"]
    assert float(xor["linear acc"]) <= best + 1e-9
    assert float(xor["deep linear acc"]) <= best + 1e-9
    # the deep-linear claim's value is the largest accuracy gain over the linear model
    gains = [float(r["deep linear acc"]) - float(r["linear acc"]) for r in rows.values()]
    claim = next(c for c in res.claims if c.id == "deep-linear-no-better")
    assert claim.measured == pytest.approx(max(gains), abs=1e-3)


def test_collapse_affine_equals_the_deep_linear_forward():
    torch.manual_seed(0)
    net = mlp(3, [5, 4, 6], 2, activation="identity").double()
    x = torch.randn(17, 3, dtype=torch.float64)
    w, b = collapse_affine(net)
    assert w.shape == (2, 3) and b.shape == (2,)
    torch.testing.assert_close(x @ w.T + b, net(x), rtol=1e-12, atol=1e-12)


def test_collapse_affine_needs_a_linear_layer():
    with pytest.raises(ValueError, match="has no nn.Linear layer"):
        collapse_affine(torch.nn.Sequential(torch.nn.Tanh()))
