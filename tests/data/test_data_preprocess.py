"""Preprocessing: formulas against float64 references, identity covariance after whitening,
state round trip, pipelines and error messages."""

from __future__ import annotations

import pytest
import torch

from trainlab.data import (
    PREPROCESSORS,
    build_preprocessor,
    load_preprocessor,
)


def _correlated(n=2000, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ a + 3.0
    return x.float()


def _images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    return (torch.randn(n, 3, 4, 4, generator=g) * scale + torch.tensor([5.0, -1.0, 0.5]).view(
        1, 3, 1, 1))


def test_center_modes_match_formulas():
    x = _images()
    x64 = x.double()
    out = build_preprocessor("center").fit_transform(x)  # mean image
    assert torch.allclose(out.double(), x64 - x64.mean(0, keepdim=True), atol=1e-5)
    out = build_preprocessor("center_channel").fit_transform(x)
    ref = x64 - x64.mean(dim=(0, 2, 3), keepdim=True)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    out = build_preprocessor(("center", {"mode": "scalar"})).fit_transform(x)
    assert torch.allclose(out.double(), x64 - x64.mean(), atol=1e-5)
    # fitted on train, applied to another split with the *training* statistics
    c = build_preprocessor("center").fit(x)
    y = _images(seed=1)
    assert torch.allclose(c(y).double(), y.double() - x64.mean(0), atol=1e-5)


def test_standardize_per_channel_and_constant_features():
    x = _images(256)
    out = build_preprocessor("standardize_channel").fit_transform(x).double()
    m = out.mean(dim=(0, 2, 3))
    s = out.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(m, torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(s, torch.ones(3, dtype=torch.float64), atol=1e-5)
    x2 = torch.cat([torch.randn(50, 3), torch.full((50, 1), 7.0)], 1)
    out2 = build_preprocessor("standardize").fit_transform(x2)
    assert torch.isfinite(out2).all() and torch.allclose(out2[:, 3], torch.zeros(50))


@pytest.mark.parametrize("spec", ["zca", ("zca", {"eps": 0.0}), "pca_whiten"])
def test_whitened_training_data_has_identity_covariance(spec):
    x = _correlated()
    w = build_preprocessor(spec).fit(x)
    z = w(x).double()
    cov = (z - z.mean(0)).T @ (z - z.mean(0)) / len(z)
    # tolerance: eps = 1e-5 against eigenvalues >= ~0.05 here, plus float32 rounding
    assert torch.allclose(cov, torch.eye(cov.shape[0], dtype=torch.float64), atol=2e-3)
    assert z.shape == (2000, 6)


def test_zca_equals_inverse_sqrt_covariance():
    x = _correlated(500, 4).double()
    xc = x - x.mean(0)
    cov = xc.T @ xc / len(x)
    # Cov^(-1/2) computed independently via the matrix function (scipy)
    import scipy.linalg

    inv_sqrt = torch.from_numpy(scipy.linalg.inv(scipy.linalg.sqrtm(cov.numpy()).real))
    z = build_preprocessor(("zca", {"eps": 0.0})).fit_transform(x.float()).double()
    assert torch.allclose(z, xc @ inv_sqrt, atol=1e-3)
    w = build_preprocessor(("zca", {"eps": 0.0})).fit(x.float())
    assert torch.allclose(w.inverse_transform(w(x.float())).double(), x, atol=1e-3)


def test_pca_components_and_variance_fraction():
    g = torch.Generator().manual_seed(0)
    # variances 9, 4, 1, 0.01 along the axes (then rotated)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    x = (torch.randn(4000, 4, generator=g, dtype=torch.float64) * torch.tensor([3, 2, 1, 0.1]))
    x = (x @ q.T).float()
    p = build_preprocessor(("pca", {"n_components": 2})).fit(x)
    assert p(x).shape == (4000, 2) and p.output_shape() == (2,)
    ev = p.eigenvalues
    assert abs(ev[0] - 9) < 0.6 and abs(ev[1] - 4) < 0.3
    # the first axis is q[:, 0] up to sign
    assert abs(abs(float(p.components[:, 0] @ q[:, 0])) - 1) < 1e-2
    # 0.95 of the variance (total 14.01) needs 3 components: (9 + 4) / 14.01 = 0.928 < 0.95
    assert build_preprocessor(("pca", {"n_components": 0.95})).fit(x).output_shape() == (3,)
    assert build_preprocessor(("pca", {"n_components": 0.9})).fit(x).output_shape() == (2,)
    full = build_preprocessor("pca").fit(x)
    assert torch.allclose(full.inverse_transform(full(x)), x, atol=1e-4)


def test_state_dict_round_trip_and_pipeline():
    x = _images(128)
    pipe = build_preprocessor(["center_channel", ("zca", {"eps": 1e-2})]).fit(x)
    y = _images(16, seed=3)
    state = pipe.state_dict()
    buf = __import__("io").BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    again = load_preprocessor(torch.load(buf, weights_only=False))
    assert torch.equal(again(y), pipe(y))
    # the pipeline is the composition of its steps fitted one after the other
    c = build_preprocessor("center_channel").fit(x)
    z = build_preprocessor(("zca", {"eps": 1e-2})).fit(c(x).double())
    assert torch.allclose(pipe(y), z(c(y).double()).float(), atol=1e-4)
    for name in PREPROCESSORS.names():  # every registered preprocessor round-trips
        p = build_preprocessor(name).fit(x)
        assert torch.allclose(load_preprocessor(p.state_dict())(y), p(y))


def test_preprocess_dataset_updates_shape():
    from trainlab.data import load_dataset, preprocess_dataset

    d = load_dataset("mnist1d", num_samples=200)
    d2, pre = preprocess_dataset(d, ["standardize", ("pca", {"n_components": 5})])
    assert d2.x_train.shape == (160, 5) and d2.meta.input_shape == (5,)
    assert torch.equal(d2.x_test, pre(d.x_test)) and torch.equal(d2.y_train, d.y_train)


def test_errors():
    x = _images(8)
    with pytest.raises(RuntimeError, match="zca is not fitted: call fit"):
        build_preprocessor("zca").transform(x)
    c = build_preprocessor("center").fit(x)
    with pytest.raises(ValueError, match=r"fitted on examples of shape \(3, 4, 4\) but received "
                       r"x.shape=\(8, 48\)"):
        c(x.reshape(8, -1))
    with pytest.raises(ValueError, match=r"mode must be one of .* Received: mode='pixel'"):
        build_preprocessor(("center", {"mode": "pixel"}))
    with pytest.raises(ValueError, match="Unknown preprocess 'zcaa'. Did you mean 'zca'"):
        build_preprocessor("zcaa")
    with pytest.raises(ValueError, match="n_components must be .* Received: n_components=0"):
        build_preprocessor(("pca", {"n_components": 0}))
    with pytest.raises(ValueError, match="n_components must be <= the number of features 48"):
        build_preprocessor(("pca", {"n_components": 100})).fit(x)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0. Received: eps=-1"):
        build_preprocessor(("zca", {"eps": -1}))
    with pytest.raises(ValueError, match="covariance is singular"):
        build_preprocessor(("zca", {"eps": 0.0})).fit(x)  # 8 examples, 48 features
    with pytest.raises(ValueError, match=r"mode='channel' needs inputs of shape \(N, C, ...\)"):
        build_preprocessor("center_channel").fit(torch.randn(5, 3))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        build_preprocessor("center").fit(torch.ones(4, 2, dtype=torch.int64))


def test_zca_with_eps_matches_the_formula_in_float64():
    """W = U diag((λ + eps)^(-1/2)) Uᵀ from Cov = XcᵀXc / N; eps large enough to matter
    (a mutant dropping eps survived tests that used eps=0 or compared ZCA with itself)."""
    from trainlab.data import build_preprocessor

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g, dtype=torch.float64) @ torch.diag(
        torch.tensor([3.0, 1.0, 0.5, 0.1, 0.02], dtype=torch.float64))
    eps = 0.05
    z = build_preprocessor(("zca", {"eps": eps}))
    out = z.fit(x).transform(x)
    xc = x - x.mean(0)
    lam, u = torch.linalg.eigh(xc.T @ xc / len(x))
    w = u @ torch.diag((lam + eps).rsqrt()) @ u.T
    assert torch.allclose(out.double(), xc @ w, atol=1e-6)
    # and eps visibly damps the smallest direction: its output variance is λ/(λ+eps) < 1
    cov = torch.cov(out.double().T, correction=0)
    assert torch.linalg.eigvalsh(cov).min() < 0.5


@pytest.mark.parametrize("eps", [float("nan"), float("inf"), -1e-3])
def test_eps_must_be_finite(eps):
    from trainlab.data import build_preprocessor

    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0"):
        build_preprocessor(("zca", {"eps": eps}))
