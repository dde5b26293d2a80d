"""MNIST-1D: reference defaults, shapes, balance, determinism and procedure properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainlab.data import load_dataset
from trainlab.data.mnist1d import mnist1d_templates


@pytest.fixture(scope="module")
def ds():
    return load_dataset("mnist1d")


def test_reference_defaults(ds):
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.y_train.dtype == torch.int64 and ds.num_classes == 10
    y = torch.cat([ds.y_train, ds.y_test])
    assert torch.bincount(y).tolist() == [500] * 10  # 500 per class before the split
    # each split is a random draw of the shuffled set: counts within ~4.5 binomial sd
    assert min(ds.class_counts("train")) > 400 - 4.5 * 19 and min(ds.class_counts("test")) > 60
    # standardized with the statistics of the whole set
    x = torch.cat([ds.x_train, ds.x_test]).double()
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(unbiased=False).item() - 1) < 1e-5
    assert ds.meta.extra["seed"] == 42


def test_determinism_by_seed(ds):
    again = load_dataset("mnist1d")
    assert torch.equal(ds.x_train, again.x_train) and torch.equal(ds.y_test, again.y_test)
    other = load_dataset("mnist1d", seed=1, num_samples=500)
    assert other.x_train.shape == (400, 40)
    small = load_dataset("mnist1d", n_train=100, n_test=10)
    assert small.x_train.shape == (100, 40) and torch.equal(small.x_train, ds.x_train[:100])
    assert not torch.equal(other.x_train, load_dataset("mnist1d", num_samples=500).x_train)


def test_templates_standardized():
    t = mnist1d_templates()
    assert t.shape == (10, 12)
    assert np.allclose(t[:, 0], 0) and np.allclose(t[:, -1], 0)  # start and end at zero
    # std of each template is 1/6 after standardization and division by 6
    assert np.allclose(t.std(1), 1 / 6)


def test_no_noise_no_transform_recovers_template():
    # With all randomness off, each example is the template padded and resampled: the first
    # point is 0 and the class mean signal is the same for every member of the class.
    d = load_dataset(
        "mnist1d", num_samples=100, padding=(0, 0), scale_coeff=0.0, max_translation=1,
        corr_noise_scale=0.0, iid_noise_scale=0.0, shear_scale=0.0, final_seq_length=12,
    )
    x = torch.cat([d.x_train, d.x_test]).double().numpy()
    y = torch.cat([d.y_train, d.y_test]).numpy()
    t = mnist1d_templates()
    raw = t[y] + 1e-8
    expect = (raw - raw.mean()) / raw.std()
    assert np.allclose(x, expect, atol=1e-5)


def test_classes_are_separable_by_nearest_class_mean(ds):
    # A weak sanity check that labels go with their templates: a nearest-class-mean rule
    # beats chance (10%) clearly on held-out data (the reference reports ~40% for a linear model).
    means = torch.stack([ds.x_train[ds.y_train == k].mean(0) for k in range(10)])
    pred = torch.cdist(ds.x_test, means).argmin(1)
    assert (pred == ds.y_test).float().mean() > 0.2


def test_errors():
    with pytest.raises(ValueError, match=r"train_split must .* Received: train_split=1.5"):
        load_dataset("mnist1d", train_split=1.5)
    with pytest.raises(ValueError, match="num_samples must .* Received: num_samples=3"):
        load_dataset("mnist1d", num_samples=3)
    with pytest.raises(ValueError, match="n_train must be None or an integer >= 1"):
        load_dataset("mnist1d", n_train=-1)


def _reference_loop(num_samples, seed):
    """The published procedure written out example by example (scipy interp1d and
    gaussian_filter, the legacy global-order RandomState draws), independent of the
    vectorized implementation."""
    from scipy.interpolate import interp1d
    from scipy.ndimage import gaussian_filter

    rs = np.random.RandomState(seed)
    t = mnist1d_templates()

    def resample(v, n):
        return interp1d(np.linspace(0, 1, len(v)), v, kind="linear")(np.linspace(0, 1, n))

    xs, ys = [], []
    for label in range(10):
        for _ in range(num_samples // 10):
            p = 36 + int(rs.rand() * (60 - 36 + 1))
            v = np.concatenate([t[label] + 1e-8, np.zeros(p)])
            v = resample(v, 72)
            v = v * (1 + 0.4 * (rs.rand() - 0.5))
            k = rs.choice(48)
            v = np.concatenate([v[len(v) - k:], v[: len(v) - k]])
            corr = gaussian_filter(0.25 * rs.randn(72), 2)
            v = np.where(v != 0, v, corr)
            v = v + 0.02 * rs.randn(72)
            v = v - 0.75 * (rs.rand() - 0.5) * np.linspace(-0.5, 0.5, 72)
            xs.append(resample(v, 40))
            ys.append(label)
    perm = rs.permutation(len(ys))
    x, y = np.stack(xs)[perm], np.array(ys)[perm]
    return (x - x.mean()) / x.std(), y


def test_matches_the_procedure_written_out_per_example():
    d = load_dataset("mnist1d", num_samples=300, seed=7)
    x_ref, y_ref = _reference_loop(300, 7)
    x = torch.cat([d.x_train, d.x_test]).double().numpy()
    y = torch.cat([d.y_train, d.y_test]).numpy()
    assert np.array_equal(y, y_ref)
    assert np.allclose(x, x_ref, atol=1e-5)


# The MNIST-1D reference templates (Greydanus 2020, github.com/greydanus/mnist1d, data.py
# get_templates), written out here rather than read from the module, so a mistyped or
# mirrored template is caught.
_REFERENCE = [
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
]


def test_templates_match_the_reference_values():
    ref = np.asarray(_REFERENCE, dtype=np.float64)
    ref = (ref - ref.mean(1, keepdims=True)) / ref.std(1, keepdims=True)
    ref = (ref - ref[:, :1]) / 6.0
    np.testing.assert_allclose(mnist1d_templates(), ref, atol=1e-12)
    # pinned by hand: digit 0 has mean 6.375 and std sqrt(5.9375/12); its peak 7 becomes
    # (0.625 + 1.375) / std / 6 = 0.473879
    assert mnist1d_templates()[0].max() == pytest.approx(2.0 / (5.9375 / 12) ** 0.5 / 6, abs=1e-9)
