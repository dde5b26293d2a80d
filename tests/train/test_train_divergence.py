"""Divergence: NaN/Inf stops training, naming the exact step and the first module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.train import DivergenceError, Trainer


def _data(n=128):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


class StepPoison(nn.Module):
    """Identity, except at training step ``at`` (read from the trainer) it returns NaN."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at
        self.trainer = None

    def forward(self, x):
        return x * float("nan") if self.trainer.step == self.at else x


class _BadGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


class BadGradient(nn.Module):
    def forward(self, x):
        return _BadGrad.apply(x)


def _trainer(model, **kw):
    return Trainer(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                   loss=F.cross_entropy, device="cpu", log_every=5, **kw)


def test_nan_activation_names_step_and_first_module():
    x, y = _data()
    torch.manual_seed(0)
    poison = StepPoison(at=6)
    model = nn.Sequential()
    model.add_module("block1", nn.Sequential(nn.Linear(4, 8), nn.Tanh()))
    model.add_module("block2", nn.Sequential(nn.Linear(8, 8), poison, nn.Tanh()))
    model.add_module("head", nn.Linear(8, 2))
    t = _trainer(model)
    poison.trainer = t  # step 6 lies inside the window 5..9: found by the replay
    with pytest.raises(DivergenceError) as e:
        t.fit((x, y), steps=50, batch_size=16)
    d = e.value.divergence
    assert (d.step, d.module, d.kind, d.value) == (6, "block2.1", "activation", "nan")
    assert "step 6" in str(e.value) and "'block2.1'" in str(e.value)
    assert t.history.status == "diverged"
    assert [r["step"] for r in t.history.metrics] == [5]  # last healthy sync point kept


def test_inf_gradient_names_module_and_kind():
    x, y = _data()
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("block1", nn.Sequential(nn.Linear(4, 8), nn.Tanh()))
    model.add_module("bad", BadGradient())
    model.add_module("head", nn.Linear(8, 2))
    t = _trainer(model, on_divergence="stop")
    h = t.fit((x, y), steps=20, batch_size=16)
    assert h.status == "diverged"
    d = h.divergence
    # Backward runs head -> bad -> block1: 'bad' returns an Inf gradient for its input,
    # which is first seen as the gradient of block1.1's output (the Tanh feeding it).
    assert d.step == 0 and d.kind == "gradient"
    assert d.module in ("block1.1", "block1")
    assert d.value in ("inf", "nan")


_OPTS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=1e12),
    "momentum": lambda ps: torch.optim.SGD(ps, lr=1e6, momentum=0.99),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e37),
}


@pytest.mark.parametrize("opt", list(_OPTS))
def test_exploding_learning_rate_diverges_with_named_step(opt):
    x, y = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 2))
    t = Trainer(model, optimizer=_OPTS[opt](model.parameters()), loss=F.cross_entropy,
                device="cpu", log_every=7, on_divergence="stop")
    h = t.fit((x, y), steps=200, batch_size=16)
    assert h.status == "diverged"
    d = h.divergence
    assert d.module != "?" and 0 < d.step < 200
    # Independent check: replaying the same run by hand, step d.step is the first whose
    # forward pass or loss is non-finite.
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                        nn.Linear(32, 2))
    ref_opt = _OPTS[opt](ref.parameters())
    from trainlab.data import DeviceBatcher

    for s, (xb, yb) in enumerate(DeviceBatcher(x, y, 16, seed=0).steps(d.step + 1)):
        loss = F.cross_entropy(ref(xb), yb)
        finite = bool(torch.isfinite(loss)) and all(
            bool(torch.isfinite(p).all()) for p in ref.parameters())
        if s < d.step:
            assert finite, f"step {s} already non-finite"
        ref_opt.zero_grad()
        loss.backward()
        grads_ok = all(bool(torch.isfinite(p.grad).all()) for p in ref.parameters())
        if s < d.step:
            assert grads_ok, f"step {s} already had a non-finite gradient"
        else:
            assert not (finite and grads_ok)
        ref_opt.step()


def test_healthy_training_never_replays(monkeypatch):
    x, y = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    t = _trainer(model)
    monkeypatch.setattr(t, "_locate", lambda *a: pytest.fail("replay on healthy run"))
    assert t.fit((x, y), steps=12, batch_size=16).status == "done"


def test_replay_restores_model_optimizer_and_rng_exactly():
    """After the replay the model holds the weights of steps 0..16 of a hand-written run."""
    from trainlab.data import DeviceBatcher
    from trainlab.utils import seed_everything

    x, y = _data()

    def build():
        torch.manual_seed(0)
        m = nn.Sequential()
        m.add_module("block1", nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.3)))
        m.add_module("poison", StepPoison(at=17))
        m.add_module("head", nn.Linear(16, 2))
        return m

    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    t = Trainer(model, optimizer=opt, loss=F.cross_entropy, device="cpu", seed=5, log_every=5,
                on_divergence="stop")
    model.poison.trainer = t
    h = t.fit((x, y), steps=40, batch_size=16)
    assert (h.divergence.step, h.divergence.module) == (17, "poison")

    ref = build()
    ref.poison.trainer = type("T", (), {"step": -1})()
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    seed_everything(5)
    for xb, yb in DeviceBatcher(x, y, 16, seed=5).steps(17):
        loss = F.cross_entropy(ref(xb), yb)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"])


def test_infinite_loss_with_finite_gradients_stops_as_diverged():
    """+Inf (not NaN) in the loss alone: the gradients and weights stay finite, so only the
    loss check can see it; it must use isfinite, not isnan."""
    x, y = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    t = None

    def loss(out, target):
        base = F.cross_entropy(out, target)
        return base + float("inf") if t.step >= 7 else base  # a constant: zero gradient

    t = Trainer(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05), loss=loss,
                device="cpu", log_every=5, on_divergence="stop")
    h = t.fit((x, y), steps=20, batch_size=16)
    assert h.status == "diverged"
    d = h.divergence
    assert (d.step, d.kind, d.value) == (7, "loss", "inf")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
