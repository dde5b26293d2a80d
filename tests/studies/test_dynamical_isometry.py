"""dynamical-isometry at the test scale: artifacts, the critical-line parameters against
SciPy quadrature, and the measured spectra against a NumPy float64 re-implementation of
``J = Π D_l W_l`` and the free-probability prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from signal_checks import check_artifacts, read_rows, run_test_scale

from trainlab.studies import get_study
from trainlab.studies.dynamical_isometry import critical_tanh, spread, theory_spread


def _gauss(f):
    return integrate.quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                          -12, 12, limit=200)[0]


@pytest.mark.parametrize("q", [1 / 64, 0.25, 1.0])
def test_critical_line_matches_quadrature(q):
    sw, sb, ex2, mu = critical_tanh(q)
    d2 = _gauss(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2)
    d4 = _gauss(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 4)
    t2 = _gauss(lambda z: math.tanh(math.sqrt(q) * z) ** 2)
    assert sw ** 2 * d2 == pytest.approx(1.0, rel=1e-6)  # chi = 1
    assert sw ** 2 * t2 + sb ** 2 == pytest.approx(q, rel=1e-6)  # q* is the fixed point
    assert ex2 == pytest.approx(t2, rel=1e-6) and mu == pytest.approx(d4 / d2 ** 2, rel=1e-6)


def test_spread_of_an_isometry_is_zero_and_scale_free():
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((16, 16)))
    assert spread(np.linalg.svd(q, compute_uv=False)) == pytest.approx(0.0, abs=1e-12)
    s = np.array([0.5, 1.0, 2.0])
    lam = s ** 2
    assert spread(3 * s) == pytest.approx(lam.var() / lam.mean() ** 2)


def _numpy_spread(act: str, weights: str, n: int, depth: int, q_star: float,
                  rng: np.random.Generator) -> float:
    """Var(λ)/E[λ]² of JJᵀ for one draw, J = Π D_l W_l built by matrix products."""
    if act == "tanh":
        sw, sb, ex2, _ = critical_tanh(q_star)
        f, df, x = np.tanh, (lambda s: 1 - np.tanh(s) ** 2), rng.standard_normal(n) * ex2 ** .5
    else:
        sw, sb = math.sqrt(2), 0.0
        f, df, x = (lambda s: np.maximum(s, 0)), (lambda s: (s > 0) * 1.0), rng.standard_normal(n)
    j = np.eye(n)
    for _ in range(depth):
        if weights == "orthogonal":
            qm, r = np.linalg.qr(rng.standard_normal((n, n)))
            w = sw * qm * np.sign(np.diag(r))
        else:
            w = rng.standard_normal((n, n)) * sw / math.sqrt(n)
        s = w @ x + sb * rng.standard_normal(n)
        j = (df(s)[:, None] * w) @ j
        x = f(s)
    lam = np.linalg.svd(j, compute_uv=False) ** 2
    return float(lam.var() / lam.mean() ** 2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_test_scale("dynamical-isometry", tmp_path_factory.mktemp("di"))


def test_artifacts_and_critical_mean(run):
    res, out = run
    check_artifacts(res, out, ["jacobian_spectra", "spread_vs_depth"], ["spectra"])
    cfg = get_study(res.name).config("test")
    rows = read_rows(out, "spectra")
    assert len(rows) == 4 * len(cfg.depths)
    for r in rows:  # on the critical line the mean of λ = s² is 1 at every depth
        if r["net"] == "tanh, orthogonal":
            assert float(r["mean_lambda"]) == pytest.approx(1.0, abs=0.1)


def test_spread_matches_numpy_and_theory(run):
    res, _ = run
    cfg = get_study(res.name).config("test")
    depth = max(cfg.depths)
    claims = {c.id: c for c in res.claims}
    rng = np.random.default_rng(3)
    orth = np.mean([_numpy_spread("tanh", "orthogonal", cfg.width, depth, cfg.q_star, rng)
                    for _ in range(10)])
    gauss = np.mean([_numpy_spread("tanh", "gaussian", cfg.width, depth, cfg.q_star, rng)
                     for _ in range(10)])
    _, _, _, mu = critical_tanh(cfg.q_star)
    # orthogonal tanh: tiny and close to L·(μ2/μ1² − 1) (finite-width corrections ~ 1/N)
    assert orth < 0.1 and theory_spread(mu, "orthogonal", depth) < 0.1
    assert claims["orthogonal-tanh-isometric"].measured == pytest.approx(orth, abs=0.04)
    # Gaussian tanh: of the order of L; the spread of a heavy-tailed spectrum fluctuates a
    # lot from draw to draw (the study's 2 seeds), hence the factor 2.5
    assert gauss == pytest.approx(theory_spread(mu, "gaussian", depth), rel=0.6)
    m = claims["gaussian-tanh-spreads"].measured
    assert gauss / 2.5 < m < gauss * 2.5
