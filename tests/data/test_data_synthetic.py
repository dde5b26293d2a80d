"""2-D synthetic sets: shapes, balance, ranges, determinism and each set's defining rule."""

from __future__ import annotations

import math

import pytest
import torch

from trainlab.data import DATASETS, load_dataset
from trainlab.data.synthetic import THREE_MODES_CENTRES

NAMES = ["quadrants", "ring", "three_modes", "spirals", "blobs"]


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_balance_and_seed(name):
    d = load_dataset(name, n_train=301, n_test=100, seed=1)
    assert d.x_train.shape == (301, 2) and d.x_test.shape == (100, 2)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.meta.input_shape == (2,) and d.meta.name == name
    for split, n in (("train", 301), ("test", 100)):
        counts = d.class_counts(split)
        assert sum(counts) == n and max(counts) - min(counts) <= 1  # stratified, balanced
    assert torch.isfinite(d.x_train).all()
    again = load_dataset(name, n_train=301, n_test=100, seed=1)
    assert torch.equal(d.x_train, again.x_train) and torch.equal(d.y_test, again.y_test)
    other = load_dataset(name, n_train=301, n_test=100, seed=2)
    assert not torch.equal(d.x_train, other.x_train)
    assert DATASETS.get(name).meta["embedded"] is True


def test_quadrants_rule_and_range():
    d = load_dataset("quadrants", n_train=2000, n_test=0)
    x, y = d.x_train.double(), d.y_train
    assert torch.equal(y, (x[:, 0] * x[:, 1] > 0).long())
    assert x.abs().max() <= 1
    # uniform within each quadrant pair: mean |x| ~ 0.5 (se ~ 0.0065)
    assert abs(x.abs().mean().item() - 0.5) < 0.03


def test_ring_labels_follow_radius():
    d = load_dataset("ring", n_train=4000, n_test=0, seed=3)
    r = d.x_train.double().norm(dim=1)
    inside = (r >= 1 - 1e-6) & (r <= 2 + 1e-6)
    assert torch.equal(d.y_train, inside.long())
    assert r.max() <= 3 + 1e-6
    # class 0 is uniform in area over r<1 and 2<r<3: P(r<1 | class 0) = pi / (pi + 5 pi) = 1/6
    frac = (r[d.y_train == 0] < 1).double().mean().item()
    assert abs(frac - 1 / 6) < 0.03  # binomial se ~ 0.0083
    # class 1 uniform in area: E[r^2] = (1 + 4) / 2 = 2.5
    assert abs((r[d.y_train == 1] ** 2).mean().item() - 2.5) < 0.08


def test_ring_noise_moves_points_across_boundary():
    d = load_dataset("ring", n_train=2000, n_test=0, noise=0.3)
    r = d.x_train.norm(dim=1)
    rule = ((r >= 1) & (r <= 2)).long()
    mismatch = (rule != d.y_train).double().mean().item()
    assert 0.02 < mismatch < 0.4


def test_three_modes_rule():
    d = load_dataset("three_modes", n_train=3000, n_test=0, mode_std=0.3)
    dist = torch.cdist(d.x_train.double(), THREE_MODES_CENTRES.double()).min(dim=1).values
    assert (dist[d.y_train == 1] <= 2.5 * 0.3 + 1e-5).all()
    assert (dist[d.y_train == 0] > 3 * 0.3 - 1e-5).all()
    # all three modes are used about equally
    near = torch.cdist(d.x_train[d.y_train == 1].double(), THREE_MODES_CENTRES.double())
    counts = torch.bincount(near.argmin(1), minlength=3)
    assert counts.min() > 0.28 * counts.sum()
    # centres 2*sqrt(3) apart: far more than the 2 * 2.5 std = 1.5 reach of two modes
    assert math.dist(*THREE_MODES_CENTRES[:2].tolist()) > 3


def test_spirals_and_blobs_geometry():
    s = load_dataset("spirals", n_train=600, n_test=0, noise=0.0, classes=3)
    assert s.num_classes == 3 and s.x_train.norm(dim=1).max() <= 1 + 1e-6
    b = load_dataset("blobs", n_train=900, n_test=0, noise=0.2, classes=3, seed=4)
    for k in range(3):
        a = 2 * math.pi * k / 3
        m = b.x_train[b.y_train == k].double().mean(0)
        assert abs(m[0] - 2.5 * math.cos(a)) < 0.05 and abs(m[1] - 2.5 * math.sin(a)) < 0.05
        assert abs(b.x_train[b.y_train == k].double().std(0).mean() - 0.2) < 0.03


def test_errors():
    with pytest.raises(ValueError, match=r"Unknown dataset 'rings'. Did you mean 'ring'"):
        load_dataset("rings")
    with pytest.raises(ValueError, match=r"n_train must be an integer >= 1. Received: n_train=0"):
        load_dataset("ring", n_train=0)
    with pytest.raises(ValueError, match=r"noise must be a finite .* Received: noise=-0.1"):
        load_dataset("quadrants", noise=-0.1)
    with pytest.raises(ValueError, match=r"classes must be an integer >= 2. Received: classes=1"):
        load_dataset("blobs", classes=1)
    with pytest.raises(ValueError, match=r"mode_std must be in \(0, 0.5\]. Received: mode_std=2"):
        load_dataset("three_modes", mode_std=2)


def test_dataset_record_validation_and_to():
    d = load_dataset("ring", n_train=10, n_test=4)
    assert "ring" in d.summary() and "class counts" in d.summary()
    assert d.to("cpu").x_train.shape == (10, 2)
    from trainlab.data import Dataset

    with pytest.raises(TypeError, match="x_train must be float32 and y_train int64"):
        Dataset(d.x_train.double(), d.y_train, d.x_test, d.y_test, d.meta)
    with pytest.raises(ValueError, match=r"input_shape=\(2,\). Received: x_test.shape=\(4, 3\)"):
        Dataset(d.x_train, d.y_train, torch.zeros(4, 3), d.y_test, d.meta)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'. Received: split='val'"):
        d.class_counts("val")


# -- one validation rule for every factory (issue 10 item 6) -------------------------------
@pytest.mark.parametrize("name", ["quadrants", "ring", "three_modes", "spirals", "blobs"])
def test_non_finite_noise_is_refused(name):
    from trainlab.data import load_dataset

    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ValueError, match=r"noise must be a finite number >= 0"):
            load_dataset(name, noise=bad)


@pytest.mark.parametrize("name", ["ring", "mnist1d", "shapeset"])
def test_empty_training_split_is_refused_by_every_factory(name):
    from trainlab.data import load_dataset

    with pytest.raises(ValueError, match=r"n_train must be .*>= 1\. Received: n_train=0"):
        load_dataset(name, n_train=0)


def test_unknown_keyword_lists_close_matches():
    from trainlab.data import load_dataset

    with pytest.raises(ValueError, match=r"dataset 'ring' takes no argument 'n_trian'\. "
                                         r"Did you mean 'n_train'\?.*Received: n_trian=10"):
        load_dataset("ring", n_trian=10)
    with pytest.raises(ValueError, match=r"dataset 'mnist1d'.*'iid_noise'.*"
                                         r"Did you mean 'iid_noise_scale'"):
        load_dataset("mnist1d", iid_noise=0.1)


def test_mnist1d_noise_scales_must_be_finite():
    from trainlab.data import load_dataset

    with pytest.raises(ValueError, match=r"iid_noise_scale must be a finite number >= 0"):
        load_dataset("mnist1d", iid_noise_scale=float("nan"))
