"""LossLandscape (Santurkar et al. 2018 fig. 4) against a naive recomputation on copies of
the model, and the promise that a run with the probe ends with the same weights."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import trainlab
from trainlab.probes import LossLandscape
from trainlab.train import Trainer

ETAS = (0.1, 0.3, 0.5)


def _naive(model, x, y, etas, loss_fn=nn.functional.cross_entropy):
    """Move a deep copy along -eta*g by hand, in float64, and recompute everything."""
    base = copy.deepcopy(model).double()
    params = [p for p in base.parameters() if p.requires_grad]
    loss0 = loss_fn(base(x.double()), y)
    g0 = torch.autograd.grad(loss0, params)
    g0flat = torch.cat([g.reshape(-1) for g in g0])
    losses, changes = [], []
    for eta in etas:
        moved = copy.deepcopy(base)
        mp = [p for p in moved.parameters() if p.requires_grad]
        with torch.no_grad():
            for p, g in zip(mp, g0):
                p.sub_(eta * g)
        loss = loss_fn(moved(x.double()), y)
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, mp)])
        losses.append(loss.item())
        changes.append((g - g0flat).norm().item())
    dist = [eta * g0flat.norm().item() for eta in etas]
    return {"loss": loss0.item(), "grad_norm": g0flat.norm().item(),
            "loss_min": min(losses), "loss_max": max(losses),
            "loss_range": max(losses) - min(losses), "grad_change_min": min(changes),
            "grad_change_max": max(changes),
            "beta_smoothness": max(c / d for c, d in zip(changes, dist))}, losses, changes


@pytest.mark.parametrize("norm", ["none", "bn"])
def test_records_equal_a_naive_recomputation(norm):
    torch.manual_seed(0)
    model = trainlab.mlp([6, 16, 16, 3], activation="tanh", norm=norm)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    probe = LossLandscape(every=1, step_sizes=ETAS).attach(model)
    probe.see_batch(x, y, nn.functional.cross_entropy)
    probe.step_begin(0)
    nn.functional.cross_entropy(model(x), y).backward()
    probe.after_backward(0)
    probe.step_end(0)
    got = {q: v for _, layer, q, v in probe.records() if layer == "model"}
    want, losses, changes = _naive(model, x, y, ETAS)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    c = probe.curves()[0]
    assert c["step"] == 0 and c["step_sizes"] == list(ETAS)
    assert c["loss"] == pytest.approx(losses, rel=1e-4)
    assert c["grad_change"] == pytest.approx(changes, rel=1e-4, abs=1e-6)
    probe.detach()


def test_probe_data_path_matches_the_naive_recomputation():
    torch.manual_seed(1)
    model = trainlab.mlp([5, 12, 4], activation="relu")
    x, y = torch.randn(20, 5), torch.randint(0, 4, (20,))
    probe = LossLandscape(every=1, step_sizes=ETAS, probe_data=(x, y)).attach(model)
    xb, yb = torch.randn(8, 5), torch.randint(0, 4, (8,))  # a training batch, not measured
    probe.step_begin(0)
    nn.functional.cross_entropy(model(xb), yb).backward()
    probe.after_backward(0)
    probe.step_end(0)
    got = {q: v for _, _, q, v in probe.records()}
    want, _, _ = _naive(model, x, y, ETAS)
    assert got["beta_smoothness"] == pytest.approx(want["beta_smoothness"], rel=1e-4)
    assert got["loss_range"] == pytest.approx(want["loss_range"], rel=1e-4, abs=1e-7)


def _train(probes, norm="bn", dropout=0.2):
    torch.manual_seed(0)
    from trainlab.data import load_dataset

    ds = load_dataset("blobs", n_train=128, n_test=32, seed=0)
    model = trainlab.mlp([ds.meta.input_shape[0], 16, 16, ds.meta.num_classes],
                         activation="relu", norm=norm, dropout=dropout)
    t = Trainer(model, "sgd", lr=0.1, probes=probes, progress=False, device="cpu",
                log_every=4)
    h = t.fit(ds, steps=8, batch_size=32)
    return model, h


def test_a_run_with_the_probe_ends_with_the_same_weights():
    a, _ = _train([])
    b, h = _train([LossLandscape(every=3)])
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n
    steps = sorted({s for s, layer, q, _ in h.probe_records if q == "beta_smoothness"})
    assert steps == [0, 3, 6]
    vals = [v for _, _, q, v in h.probe_records if q in ("loss_range", "beta_smoothness")]
    assert all(math.isfinite(v) and v >= 0 for v in vals)


def test_errors():
    with pytest.raises(ValueError, match=r"step_sizes must be a non-empty list of finite "
                       r"numbers > 0.*Received: step_sizes=\[0\.1, -1\]"):
        LossLandscape(step_sizes=[0.1, -1])
    model = nn.Linear(3, 2)
    p = LossLandscape(every=1).attach(model)
    p.step_begin(0)
    model(torch.randn(4, 3)).sum().backward()
    with pytest.raises(RuntimeError, match=r"LossLandscape has no batch"):
        p.after_backward(0)
    frozen = nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(ValueError, match=r"needs a model with trainable parameters"):
        LossLandscape().attach(frozen)
