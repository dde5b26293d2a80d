"""activation-stats at the test scale: artifacts, and the measured numbers against an
independent float64 computation (mean-field recursions by Gauss–Hermite quadrature and a
NumPy re-implementation of the lecture's forward pass)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from signal_checks import check_artifacts, read_rows, run_test_scale

from trainlab.studies import get_study

FIGURES = ["activation_histograms", "activation_std", "weight_gradient_std",
           "weight_gradient_histograms"]
Z, W = np.polynomial.hermite_e.hermegauss(120)
W = W / math.sqrt(2 * math.pi)  # E[f(z)] = sum(W * f(Z)) for z ~ N(0, 1)


def _tanh_mean_field(gain: float, depth: int) -> list[dict]:
    """Per layer: std of h, P(|h| >= 0.9) and P(|h| >= 0.97) (the registry's saturation
    rule) for h = tanh(s), Var(s_1) = gain² (unit input), Var(s_(l+1)) = gain²·E[h_l²]
    (lecture 001's derivation)."""
    q, out = gain * gain, []
    for _ in range(depth):
        h = np.tanh(math.sqrt(q) * Z)
        e2 = float(np.sum(W * h * h))
        # P(|tanh(s)| >= c) = 2 Φ(-atanh(c) / √q) exactly (an indicator is no quadrature's
        # integrand)
        near = 2 * norm.cdf(-math.atanh(0.9) / math.sqrt(q))
        sat = 2 * norm.cdf(-math.atanh(0.97) / math.sqrt(q))
        out.append({"std": math.sqrt(e2), "near1": near, "sat": sat})
        q = gain * gain * e2
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_test_scale("activation-stats", tmp_path_factory.mktemp("as"))


def test_artifacts(run):
    res, out = run
    claims = check_artifacts(res, out, FIGURES, ["layer_stats"])
    assert set(claims) == {c.id for c in get_study("activation-stats").claims}


def test_tanh_stds_follow_the_mean_field_recursion(run):
    res, out = run
    cfg = get_study("activation-stats").config("test")
    rows = read_rows(out, "layer_stats")
    for label, std in (("tanh, N(0, 0.08²)", cfg.small_std), ("tanh, N(0, 0.4²)", cfg.large_std),
                       ("tanh, Xavier 1/√D", 1 / math.sqrt(cfg.width))):
        theory = _tanh_mean_field(std * math.sqrt(cfg.width), cfg.depth)
        measured = [float(r["act_std"]) for r in rows if r["init"] == label]
        assert len(measured) == cfg.depth
        # 16 × 64 = 1024 values per layer and 2 seeds; finite width moves each layer's
        # variance by ~1/sqrt(width) relative: 15% on the std covers it
        for m, t in zip(measured, theory):
            assert m == pytest.approx(t["std"], rel=0.15), (label, measured, theory)
    big = _tanh_mean_field(cfg.large_std * math.sqrt(cfg.width), cfg.depth)[-1]
    claims = {c.id: c for c in res.claims}
    # the claim counts the registry's rule |h| >= 0.97: mean field 0.441 at gain 3.2
    assert big["sat"] == pytest.approx(0.441, abs=0.002)
    assert claims["large-init-saturates"].measured == pytest.approx(big["sat"], abs=0.08)
    near = [float(r["frac_abs_h_ge_0.9"]) for r in rows if r["init"] == "tanh, N(0, 0.4²)"]
    assert near[-1] == pytest.approx(big["near1"], abs=0.08)


def test_relu_ratios_match_an_independent_numpy_forward_pass(run):
    res, _ = run
    cfg = get_study("activation-stats").config("test")
    rng = np.random.default_rng(1234)
    he, xav = [], []
    for _ in range(20):
        for std, acc in ((math.sqrt(2 / cfg.width), he), (1 / math.sqrt(cfg.width), xav)):
            x = rng.standard_normal((cfg.batch, cfg.width))
            stds = []
            for _layer in range(cfg.depth):
                x = np.maximum(0.0, x @ (rng.standard_normal((cfg.width, cfg.width)) * std))
                stds.append(x.std(ddof=1))
            acc.append((stds[-1], stds[0]))
    he_ratio = np.mean([a / b for a, b in he])
    xav_factor = np.mean([(a / b) ** (2 / (cfg.depth - 1)) for a, b in xav])
    assert he_ratio == pytest.approx(1.0, abs=0.1)  # He et al. 2015: variance kept
    assert xav_factor == pytest.approx(0.5, abs=0.06)  # ReLU halves the second moment
    claims = {c.id: c for c in res.claims}
    # the study's 2 seeds fluctuate more than the 20-draw NumPy mean: a few std errors
    assert claims["he-relu-constant"].measured == pytest.approx(he_ratio, abs=0.2)
    assert claims["xavier-relu-halves"].measured == pytest.approx(xav_factor, abs=0.08)
    assert claims["small-init-vanishes"].measured == pytest.approx(
        (_tanh_mean_field(0.64, 6)[-1]["std"] / _tanh_mean_field(0.64, 6)[0]["std"]) ** 0.2,
        abs=0.05)
