"""linear-limits at the test scale: its files, and its numbers against independent ones."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from trainlab.data.synthetic import quadrants
from trainlab.models.builders import mlp
from trainlab.studies import run_study
from trainlab.studies.linear_limits import best_line_accuracy, collapse_affine


def _exact_best_half_plane(x: torch.Tensor, y: torch.Tensor) -> float:
    """The best half-plane accuracy, exactly (up to the 2 points on the line): an optimal
    boundary can be moved until it passes through two data points, so try the line through
    every pair, both orientations, points on the line counted as correct (float64)."""
    x, y = x.double(), (y == 1)
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    d = x[j] - x[i]                                          # (P, 2) line directions
    rel = x.unsqueeze(0) - x[i].unsqueeze(1)                 # (P, N, 2)
    side = d[:, :1] * rel[..., 1] - d[:, 1:] * rel[..., 0]   # cross product: which side
    on = side.abs() < 1e-12
    right = ((side > 0) == y) | on
    wrong_side = ((side < 0) == y) | on
    best = torch.maximum(right.double().mean(1), wrong_side.double().mean(1)).max()
    return best.item()


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
                        "deep-linear-within-best-line", "deep-linear-is-affine"}
    assert all(c["status"] in ("PASS", "FAIL") and c["measured"] is not None
               for c in data["claims"])
    png = out / "decision_regions.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "index.html").is_file() and (out / "accuracy.csv").is_file()
    from trainlab.store import RunStore

    runs = RunStore(tmp / "db.sqlite", readonly=True).list_runs()
    assert len(runs) == 27 and all(r["config"]["study"] == "linear-limits" for r in runs)


def test_linear_accuracy_bounded_by_the_best_line(result):
    """No linear classifier beats the best half-plane, found here exactly from every pair of
    test points; on XOR that best line is far from a solution. The study's grid search
    agrees with it to within its direction grid."""
    res, tmp = result
    ds = quadrants(n_train=200, n_test=200, seed=0)  # the study's test-scale set
    exact = _exact_best_half_plane(ds.x_test, ds.y_test)
    assert 0.55 < exact < 0.75  # a corner cut: about 0.625 in the limit of many points
    grid = best_line_accuracy(ds.x_test, ds.y_test)
    assert exact - 0.02 <= grid <= exact + 1e-12
    with open(tmp / "out" / "accuracy.csv") as f:
        rows = {r["set"]: r for r in csv.DictReader(f)}
    xor = rows["XOR quadrants"]
    assert float(xor["best half-plane acc"]) == pytest.approx(grid, abs=1e-4)
    for kind in ("linear", "deep linear"):
        assert float(xor[f"{kind} acc"]) <= exact + 1e-9
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
