"""sigmoid-init at the test scale: artifacts, and the last layer's numbers against the
mean-field recursion ``Var(s_(l+1)) = D·σ²·E[h_l²]`` computed independently in float64 by
Gauss–Hermite quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
from signal_checks import check_artifacts, read_rows, run_test_scale

from trainlab.studies import get_study

Z, W = np.polynomial.hermite_e.hermegauss(160)
W = W / math.sqrt(2 * math.pi)
ACT = {"sigmoid": lambda s: 1 / (1 + np.exp(-s)), "tanh": np.tanh}
CENTRE = {"sigmoid": 0.5, "tanh": 0.0}


def _last_layer(act: str, gain2: float, depth: int) -> tuple[float, float]:
    """(RMS distance from the centre, saturated fraction) of the last layer, where
    ``gain2 = D·σ²`` and the input is unit Gaussian."""
    f, q = ACT[act], gain2
    for _ in range(depth):
        h = f(math.sqrt(q) * Z)
        e2 = float(np.sum(W * h * h))
        q = gain2 * e2
    rms = math.sqrt(float(np.sum(W * (h - CENTRE[act]) ** 2)))
    sat = (h <= 0.03) | (h >= 0.97) if act == "sigmoid" else np.abs(h) >= 0.97
    return rms, float(np.sum(W * sat))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_test_scale("sigmoid-init", tmp_path_factory.mktemp("si"))


def test_artifacts(run):
    res, out = run
    check_artifacts(res, out, ["sigmoid_histograms", "tanh_histograms", "output_std"],
                    ["layer_stats"])
    rows = read_rows(out, "layer_stats")
    cfg = get_study("sigmoid-init").config("test")
    assert len(rows) == 2 * 4 * cfg.depth


def test_last_layer_matches_mean_field(run):
    res, _ = run
    cfg = get_study("sigmoid-init").config("test")
    claims = {c.id: c for c in res.claims}
    small, large = cfg.width * cfg.small_std ** 2, cfg.width * cfg.large_std ** 2
    rms, _ = _last_layer("sigmoid", small, cfg.depth)
    assert claims["small-sigmoid-half"].measured == pytest.approx(rms, rel=0.25)
    rms, _ = _last_layer("tanh", small, cfg.depth)
    assert claims["small-tanh-zero"].measured == pytest.approx(rms, rel=0.25)
    _, sat = _last_layer("sigmoid", large, cfg.depth)
    assert claims["large-sigmoid-saturates"].measured == pytest.approx(sat, abs=0.08)
    _, sat = _last_layer("tanh", large, cfg.depth)
    assert claims["large-tanh-saturates"].measured == pytest.approx(sat, abs=0.08)
