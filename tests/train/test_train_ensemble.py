"""Bagging on bootstrap samples, the averaged ensemble, and Monte-Carlo dropout averaging
against the weight scaling rule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from trainlab.engine.ensemble import (
    Ensemble,
    bagging,
    bootstrap_indices,
    dropout_active,
    mc_dropout_predict,
    weight_scaling_predict,
)
from trainlab.engine.history import History
from trainlab.nn import mlp


def test_bootstrap_rows_are_sampled_with_replacement():
    n, k = 2000, 20
    idx = bootstrap_indices(n, k, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (k, n) and idx.dtype == torch.int64
    assert idx.min() >= 0 and idx.max() < n
    unique = torch.tensor([row.unique().numel() / n for row in idx], dtype=torch.float64)
    expected = 1 - (1 - 1 / n) ** n  # ≈ 1 - 1/e: "about 36 % duplicates"
    # the distinct fraction of one row has std ≈ sqrt(e^-1 (1 - 2 e^-1) / n) ≈ 0.0054
    assert abs(unique.mean().item() - expected) < 5 * 0.0054 / math.sqrt(k)
    assert all(not torch.equal(idx[0], idx[i]) for i in range(1, k))  # one sample per member
    with pytest.raises(ValueError, match=r"k must be an integer >= 1\. Received: k=0"):
        bootstrap_indices(5, 0)


def test_each_member_trains_on_its_own_bootstrap_sample():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 3, generator=g), torch.randint(0, 2, (50,), generator=g)
    seen = []

    def fit_member(model, data, i):
        seen.append((i, data, model.weight.detach().clone()))
        return History()

    res = bagging(lambda: nn.Linear(3, 2), (x, y), k=4, seed=7, fit_member=fit_member)
    assert res.indices.shape == (4, 50)
    want = bootstrap_indices(50, 4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(res.indices, want)
    for i, data, _ in seen:
        assert torch.equal(data[0], x[res.indices[i]]) and torch.equal(data[1], y[res.indices[i]])
    assert len({tuple(r.tolist()) for r in res.indices}) == 4
    inits = [w for _, _, w in seen]
    assert not torch.equal(inits[0], inits[1])  # independent initial weights
    assert len(res.ensemble.members) == 4 and len(res.histories) == 4


def test_bagging_with_the_trainer_runs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    res = bagging(lambda: mlp(4, [8], 2), (x, y, x, y), k=2, steps=3, batch_size=16,
                  optimizer="sgd", lr=0.1)
    assert [len(h.metrics) > 0 for h in res.histories] == [True, True]
    assert res.ensemble(x).shape == (64, 2)


def test_ensemble_averages_against_float64():
    torch.manual_seed(0)
    members = [nn.Linear(3, 4).double() for _ in range(3)]
    x = torch.randn(5, 3, dtype=torch.float64)
    probs = torch.stack([torch.softmax(m(x), -1) for m in members])
    arith = Ensemble(members, "prob")(x)
    torch.testing.assert_close(arith.exp(), probs.mean(0))
    torch.testing.assert_close(torch.softmax(arith, -1), probs.mean(0))  # a valid logit vector
    geo = Ensemble(members, "geometric")(x)
    g = probs.prod(0) ** (1 / 3)
    torch.testing.assert_close(torch.softmax(geo, -1), g / g.sum(-1, keepdim=True))
    mean = Ensemble(members, "mean")(x)
    torch.testing.assert_close(mean, torch.stack([m(x) for m in members]).mean(0))
    with pytest.raises(ValueError, match=r"average must be one of .* Received: average='median'"):
        Ensemble(members, "median")


def _dropout_linear(d=5, c=3, p=0.4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Dropout(p), nn.Linear(d, c)).double(), p


def test_dropout_expectation_equals_weight_scaling_for_a_linear_model():
    """Exact: enumerate the 2^5 masks with their probabilities; the average of the thinned
    networks W (m ⊙ x) / (1 - p) + b equals the eval-mode output W x + b."""
    model, p = _dropout_linear()
    lin = model[1]
    x = torch.randn(4, 5, dtype=torch.float64)
    avg = torch.zeros(4, 3, dtype=torch.float64)
    for mask in itertools.product([0.0, 1.0], repeat=5):
        m = torch.tensor(mask, dtype=torch.float64)
        prob = torch.prod(m * (1 - p) + (1 - m) * p)
        avg += prob * (lin(x * m / (1 - p)))
    torch.testing.assert_close(avg, weight_scaling_predict(model, x, output="raw"),
                               rtol=0, atol=1e-12)
    # and torch's training-mode outputs are those thinned networks (inverted scaling)
    model.train()
    torch.manual_seed(1)
    out = model(x[:1])
    outs = [lin(x[:1] * torch.tensor(m, dtype=torch.float64) / (1 - p))
            for m in itertools.product([0.0, 1.0], repeat=5)]
    assert any(torch.allclose(out, o) for o in outs)


def test_mc_average_converges_to_weight_scaling_for_a_linear_model():
    model, _ = _dropout_linear()
    x = torch.randn(4, 5, dtype=torch.float64)
    mc, se = mc_dropout_predict(model, x, samples=1500, output="raw", seed=0, return_std=True)
    exact = weight_scaling_predict(model, x, output="raw")
    assert ((mc - exact).abs() <= 5 * se + 1e-12).all()
    assert (se > 0).all()
    again = mc_dropout_predict(model, x, samples=1500, output="raw", seed=0)
    torch.testing.assert_close(again, mc, rtol=0, atol=0)  # seed: same masks


def test_mc_dropout_modes_and_errors():
    model = mlp(4, [8], 3, dropout=0.5, norm="bn")
    model.train()
    x = torch.randn(6, 4)
    with dropout_active(model):
        assert model.block1.drop.training and not model.block1.norm.training
    assert all(m.training for m in model.modules())  # restored
    p = mc_dropout_predict(model, x, samples=8, seed=0)
    torch.testing.assert_close(p.sum(-1), torch.ones(6))
    assert all(m.training for m in model.modules())
    ws = weight_scaling_predict(model, x)
    assert ws.shape == (6, 3) and all(m.training for m in model.modules())
    with pytest.raises(ValueError, match=r"needs a model with dropout modules; MLP has none"):
        mc_dropout_predict(mlp(4, [8], 3), x)
    with pytest.raises(ValueError, match=r"samples must be an integer >= 1\. Received: samples=0"):
        mc_dropout_predict(model, x, samples=0)
    with pytest.raises(ValueError, match=r"output must be one of .* Received: output='probs'"):
        mc_dropout_predict(model, x, output="probs")
