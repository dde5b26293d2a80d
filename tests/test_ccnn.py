"""Tests of trainlab.engine.ccnn against independent computations (float64 SVD, bisection,
explicit loops, the RBF kernel itself)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainlab.engine.ccnn import (
    CCNN,
    KERNEL_FEATURES,
    CCNNLayer,
    NystromFeatures,
    RandomFourierFeatures,
    avg_pool_positions,
    extract_patches,
    local_contrast_normalize,
    nuclear_norm,
    project_l1_ball,
    project_nuclear_ball,
    rbf_kernel,
    recover_filters,
    zca_matrix,
)


# -- independent references ---------------------------------------------------------------------
def l1_ball_bisection(v: np.ndarray, radius: float) -> np.ndarray:
    """Projection onto the l1 ball by bisection on the threshold theta (float64)."""
    a = np.abs(v)
    if a.sum() <= radius:
        return v.copy()
    lo, hi = 0.0, a.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(a - mid, 0).sum() > radius:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.maximum(a - 0.5 * (lo + hi), 0)


def nuclear_projection_f64(a: np.ndarray, radius: float) -> np.ndarray:
    u, s, vt = np.linalg.svd(a.astype(np.float64), full_matrices=False)
    return (u * l1_ball_bisection(s, radius)) @ vt


def toy_bars(n: int, seed: int = 0, size: int = 8):
    """Two classes of noisy images: a horizontal or a vertical bar at a random place."""
    g = torch.Generator().manual_seed(seed)
    x = 0.2 * torch.rand(n, 1, size, size, generator=g)
    y = torch.arange(n) % 2
    pos = torch.randint(1, size - 1, (n,), generator=g)
    for i in range(n):
        if y[i] == 0:
            x[i, 0, pos[i], :] += 1.0
        else:
            x[i, 0, :, pos[i]] += 1.0
    return x, y


def small_layer(**kw) -> CCNNLayer:
    args = dict(patch=3, features=48, pool=2, radius=20.0, rank=4, gamma=1.0, lr=0.5,
                epochs=4, batch_size=10)
    args.update(kw)
    return CCNNLayer(**args)


# -- projections --------------------------------------------------------------------------------
@pytest.mark.parametrize("radius", [0.3, 2.0, 50.0])
def test_l1_projection_matches_bisection(radius):
    g = torch.Generator().manual_seed(1)
    v = torch.randn(5, 17, generator=g, dtype=torch.float64) * 2
    got = project_l1_ball(v, radius)
    for row, out in zip(v, got):
        ref = l1_ball_bisection(row.numpy(), radius)
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-10)
        assert out.abs().sum() <= radius + 1e-9


def test_l1_projection_keeps_points_inside():
    v = torch.tensor([0.1, -0.2, 0.3])
    assert torch.equal(project_l1_ball(v, 1.0), v)


@pytest.mark.parametrize("shape,radius", [((12, 7), 1.5), ((7, 12), 4.0), ((30, 20), 0.2)])
def test_nuclear_projection_matches_float64_svd(shape, radius):
    g = torch.Generator().manual_seed(2)
    a = torch.randn(*shape, generator=g)
    got = project_nuclear_ball(a, radius)
    ref = nuclear_projection_f64(a.numpy(), radius)
    np.testing.assert_allclose(got.numpy(), ref, atol=2e-5)
    s = np.linalg.svd(got.double().numpy(), compute_uv=False)
    assert s.sum() <= radius * (1 + 1e-5)
    # The projection is the closest point: <A - P, B - P> <= 0 for every B in the ball.
    p = torch.from_numpy(ref)
    for _ in range(20):
        b = torch.randn(*shape, generator=g, dtype=torch.float64)
        b = b * (radius * float(torch.rand((), generator=g)) / float(nuclear_norm(b)))
        assert float(((a.double() - p) * (b - p)).sum()) <= 1e-6


def test_nuclear_projection_inside_ball_is_identity():
    a = torch.randn(6, 4, dtype=torch.float64)
    r = float(nuclear_norm(a)) * 1.01
    torch.testing.assert_close(project_nuclear_ball(a, r), a)


def test_projected_iterate_has_nuclear_norm_at_most_radius():
    x, y = toy_bars(60)
    for radius in (0.5, 3.0):
        layer = small_layer(radius=radius, epochs=2, average="none", project_every=4)
        rows = layer.fit(x, y)
        mat = layer.weight.reshape(-1, layer.features).double()
        s = torch.linalg.svdvals(mat)
        assert float(s.sum()) <= radius * (1 + 1e-4)
        assert all(r["nuclear_norm"] <= radius * (1 + 1e-4) for r in rows)


def test_small_radius_is_active():
    x, y = toy_bars(60)
    layer = small_layer(radius=0.5, epochs=2, average="none")
    layer.fit(x, y)
    s = torch.linalg.svdvals(layer.weight.reshape(-1, layer.features).double())
    assert float(s.sum()) == pytest.approx(0.5, rel=1e-3)


# -- kernel features ---------------------------------------------------------------------------
def test_random_fourier_features_approximate_rbf_kernel():
    # k_hat(x, y) = (1/D) sum_j [cos(w_j.(x-y)) + cos(w_j.(x+y) + 2 b_j)]: each term has
    # variance <= 1/2 + 1, so std(k_hat) <= sqrt(1.5 / D) = 0.0087 for D = 20000; we allow
    # 5 standard deviations on each of 45 pairs and 1 on their mean error.
    torch.manual_seed(0)
    d, big_d, gamma = 6, 20000, 0.3
    x = torch.randn(10, d, dtype=torch.float64) * 0.8
    rff = RandomFourierFeatures(d, big_d, gamma=gamma).double()
    rff.reset_parameters(torch.Generator().manual_seed(3))
    phi = rff(x)
    k_hat = phi @ phi.T
    diff = x[:, None, :] - x[None, :, :]
    k = torch.exp(-gamma * (diff ** 2).sum(-1))  # the kernel, written out
    sigma = math.sqrt(1.5 / big_d)
    iu = torch.triu_indices(10, 10, 1)
    err = (k_hat - k)[iu[0], iu[1]]
    assert err.abs().max() < 5 * sigma
    assert err.mean().abs() < sigma
    # The weights have the variance 2 gamma the formula says.
    assert float(rff.weight.var()) == pytest.approx(2 * gamma, rel=0.05)
    assert float(rff.bias.min()) >= 0 and float(rff.bias.max()) < 2 * math.pi


def test_nystrom_is_exact_on_landmarks_and_close_elsewhere():
    g = torch.Generator().manual_seed(4)
    data = torch.randn(400, 3, generator=g, dtype=torch.float64)
    ny = NystromFeatures(3, 200, gamma=0.5).double().fit(data, torch.Generator().manual_seed(5))
    lm = ny.landmarks
    phi = ny(lm)
    k = rbf_kernel(lm, lm, 0.5)
    torch.testing.assert_close(phi @ phi.T, k, atol=1e-4, rtol=0)
    q = torch.randn(20, 3, generator=g, dtype=torch.float64) * 0.5
    err = (ny(q) @ ny(q).T - rbf_kernel(q, q, 0.5)).abs().max()
    assert err < 0.02


def test_kernel_registry_names():
    assert set(KERNEL_FEATURES.names()) == {"rff", "nystrom"}
    with pytest.raises(ValueError, match="Did you mean 'nystrom'"):
        CCNNLayer(kernel="nystroem")


# -- feature pipeline ---------------------------------------------------------------------------
def test_extract_patches_against_slicing():
    x = torch.randn(2, 3, 6, 7)
    z, grid = extract_patches(x, 3, stride=2)
    assert grid == (2, 3)
    i = 0
    for r in range(0, 4, 2):
        for c in range(0, 5, 2):
            ref = x[:, :, r:r + 3, c:c + 3].reshape(2, -1)  # channel, then row, then column
            torch.testing.assert_close(z[:, i], ref)
            i += 1


def test_lcn_and_zca():
    z = torch.randn(500, 9, dtype=torch.float64) * torch.linspace(0.5, 3, 9) + 2.0
    n = local_contrast_normalize(z, eps=0.0)
    torch.testing.assert_close(n.mean(-1), torch.zeros(500, dtype=torch.float64), atol=1e-12,
                               rtol=0)
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(500, dtype=torch.float64))
    c = torch.randn(5, 5, dtype=torch.float64)
    data = torch.randn(4000, 5, dtype=torch.float64) @ c
    data = data - data.mean(0)
    cov = data.T @ data / data.shape[0]
    w = zca_matrix(cov, eps=0.0)
    white = data @ w
    torch.testing.assert_close(white.T @ white / data.shape[0], torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(w, w.T)


def test_avg_pool_positions_against_means():
    f = torch.randn(2, 16, 3)  # a 4 x 4 grid of 3 features
    out, grid = avg_pool_positions(f, (4, 4), 2)
    assert grid == (2, 2)
    g4 = f.reshape(2, 4, 4, 3)
    ref = g4[:, 2:4, 0:2].mean((1, 2))  # pooled position (1, 0)
    torch.testing.assert_close(out[:, 2], ref)


# -- filters ------------------------------------------------------------------------------------
def test_recover_filters_rank():
    g = torch.Generator().manual_seed(6)
    u = torch.linalg.qr(torch.randn(20, 3, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(9, 3, generator=g, dtype=torch.float64))[0]
    a = u @ torch.diag(torch.tensor([5.0, 2.0, 1.0], dtype=torch.float64)) @ v.T
    f = recover_filters(a, 3)
    assert f.shape == (3, 9)
    torch.testing.assert_close(f @ f.T, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(a @ f.T @ f, a)  # the filters span A's row space
    assert torch.linalg.matrix_rank(f) == 3
    # Top-1 filter: the leading right singular vector (up to sign).
    f1 = recover_filters(a, 1)[0]
    assert abs(float(f1 @ v[:, 0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"rank must be at most min\(A.shape\)=9"):
        recover_filters(a, 10)


def test_fitted_layer_filters_are_orthonormal_top_singular_vectors():
    x, y = toy_bars(60)
    layer = small_layer(rank=3)
    layer.fit(x, y)
    f = layer.filters.double()
    assert f.shape == (3, 48)
    torch.testing.assert_close(f @ f.T, torch.eye(3, dtype=torch.float64), atol=1e-5, rtol=0)
    mat = layer.weight.reshape(-1, 48).double()
    _, s, vt = np.linalg.svd(mat.numpy(), full_matrices=False)
    proj = np.abs(vt[:3] @ f.numpy().T)  # |cos| between the subspaces' bases
    np.testing.assert_allclose(np.sort(np.linalg.svd(proj, compute_uv=False)), 1.0, atol=1e-3)
    np.testing.assert_allclose(layer.singular_values.numpy(), s, rtol=1e-3, atol=1e-5)


# -- training -----------------------------------------------------------------------------------
def test_objective_decreases_on_tiny_problem():
    x, y = toy_bars(80)
    layer = small_layer(epochs=5, average="all", radius=20.0)
    rows = layer.fit(x, y)
    obj = [r["objective"] for r in rows]
    assert obj[0] < math.log(2)  # below the loss of A = 0
    assert all(b <= a + 1e-6 for a, b in zip(obj, obj[1:])), obj
    assert obj[-1] < 0.6 * obj[0]
    assert rows[-1]["train_error"] < 0.1


def test_streamed_and_cached_features_agree():
    x, y = toy_bars(40)
    out = {}
    for cache in ("none", "float32"):
        net = CCNN([small_layer(epochs=2)], cache=cache, seed=3)
        h = net.fit(x, y)
        out[cache] = h.objective
        assert h.cache == [cache]
    np.testing.assert_allclose(out["none"], out["float32"], rtol=1e-4)
    net = CCNN([small_layer(epochs=1)], cache="auto", memory_budget=10)
    assert net.fit(x, y).cache == ["none"]  # does not fit into 10 bytes: streamed


def test_two_and_three_layer_shapes_and_predict():
    x, y = toy_bars(40, size=12)
    xt, yt = toy_bars(10, seed=1, size=12)
    l1 = small_layer(rank=4)
    l2 = small_layer(patch=3, pool=1, rank=3, features=32)
    l3 = small_layer(patch=2, pool=1, rank=2, features=16)
    net = CCNN([l1, l2, l3])
    h = net.fit(x, y, xt, yt)
    assert {r["layer"] for r in h.rows} == {0, 1, 2}
    assert all("test_error" in r for r in h.rows)
    assert l1(x).shape == (40, 4, 5, 5)  # 12 - 3 + 1 = 10 patches per side, pooled by 2
    assert l2.in_shape == (4, 5, 5) and l2(l1(x)).shape == (40, 3, 3, 3)
    assert net(xt).shape == (10, 2)
    assert net.predict(xt).shape == (10,) and net.predict(xt).dtype == torch.long
    assert len(h.singular_values) == 3 and len(h.series("objective", layer=0)) == 4


def test_nystrom_layer_trains():
    x, y = toy_bars(40)
    layer = small_layer(kernel="nystrom", epochs=2)
    rows = layer.fit(x, y)
    assert rows[-1]["objective"] < math.log(2)


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_radius_must_be_positive(value):
    with pytest.raises(ValueError, match=rf"radius must be a positive finite number. "
                                         rf"Received: radius={value}"):
        CCNNLayer(radius=value)


@pytest.mark.parametrize("value", [0, -3, 2.5])
def test_features_must_be_positive(value):
    with pytest.raises(ValueError, match=rf"features must be a positive integer. "
                                         rf"Received: features={value}"):
        CCNNLayer(features=value)
    with pytest.raises(ValueError, match=r"features must be a positive integer"):
        RandomFourierFeatures(3, value)


def test_wrong_input_shapes_name_both_shapes():
    x, y = toy_bars(20)
    net = CCNN([small_layer(epochs=1)])
    net.fit(x, y)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1, 8, 8\).*"
                                         r"Received: x.shape=\(3, 1, 9, 9\)"):
        net.predict(torch.zeros(3, 1, 9, 9))
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\) with N >= 1. "
                                         r"Received: x.shape=\(20, 8, 8\)"):
        net.fit(x[:, 0], y)
    with pytest.raises(ValueError, match=r"y must be integer labels of shape \(20,\).*"
                                         r"Received: y.shape=\(19,\)"):
        net.fit(x, y[:19])
    with pytest.raises(ValueError, match=r"x_test must have the training images' shape "
                                         r"\(N, 1, 8, 8\). Received: x_test.shape=\(2, 1, 7, 7\)"):
        net.fit(x, y, torch.zeros(2, 1, 7, 7), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"patch=9 does not fit into images of shape "
                                         r"\(1, 8, 8\)"):
        CCNN([small_layer(patch=9)]).fit(x, y)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match=r"cache must be one of .*Received: cache='disk'"):
        CCNN([small_layer()], cache="disk")
    with pytest.raises(ValueError, match=r"average must be one of .*Received: average='mean'"):
        CCNNLayer(average="mean")
    with pytest.raises(ValueError, match=r"layers must be a non-empty list of CCNNLayer"):
        CCNN([])
    with pytest.raises(RuntimeError, match="not fitted"):
        CCNN([small_layer()]).predict(torch.zeros(1, 1, 8, 8))


def test_rank_above_feature_count_warns_and_clips():
    x, y = toy_bars(20)
    layer = small_layer(rank=60, features=8, epochs=1)
    with pytest.warns(UserWarning, match=r"rank=60 exceeds min\(K\*P, D\)=8"):
        layer.fit(x, y)
    assert layer.filters.shape == (8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    x, y = toy_bars(40)
    net = CCNN([small_layer(epochs=1)], device="cuda")
    net.fit(x, y)
    assert net.layers[0].weight.device.type == "cuda"
    assert net.predict(x.cuda()).device.type == "cuda"


def test_pool_larger_than_grid_is_refused():
    x, y = toy_bars(20)
    with pytest.raises(ValueError, match=r"pool=7 is larger than the 6 x 6 grid"):
        small_layer(pool=7).fit(x, y)


def test_nystrom_landmarks_are_distinct_whitened_patches():
    x, y = toy_bars(40)
    layer = small_layer(kernel="nystrom", features=20, epochs=1)
    layer.fit(x, y)
    lm = layer.feature_map.landmarks
    assert lm.shape == (20, 9)
    assert torch.unique(lm, dim=0).shape[0] == 20  # drawn without replacement
