"""Trainer core: equality with a hand-written loop, evaluation, seeding, callbacks, probes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.data import DeviceBatcher
from trainlab.train import EarlyStopping, History, LambdaCallback, Trainer


def _data(n=256, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def _model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 16), nn.Tanh(),
        nn.Linear(16, 3),
    )


def _params(m):
    return [p.detach().clone() for p in m.parameters()]


def test_fit_equals_hand_written_loop():
    x, y = _data()
    m1 = _model()
    t = Trainer(m1, optimizer=torch.optim.SGD(m1.parameters(), lr=0.1, momentum=0.9),
                loss=F.cross_entropy, device="cpu", seed=3, log_every=7)
    t.fit((x, y), steps=23, batch_size=32)
    # The same steps written by hand: same batch order (DeviceBatcher, seed 3), same update.
    m2 = _model()
    opt = torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
    batches = DeviceBatcher(x, y, 32, shuffle=True, seed=3).steps(23)
    for xb, yb in batches:
        loss = F.cross_entropy(m2(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_history_rows_and_eval_match_direct_computation():
    x, y = _data()
    xt, yt = _data(n=100, seed=1)
    m = _model()
    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.05), loss=F.cross_entropy,
                device="cpu", log_every=5)
    h = t.fit((x, y, xt, yt), steps=20, batch_size=64, eval_every=10)
    assert isinstance(h, History) and h.status == "done"
    assert [r["step"] for r in h.metrics] == [5, 10, 15, 20]
    assert "test_acc" in h.metrics[1] and "test_acc" not in h.metrics[0]
    with torch.no_grad():
        out = m(xt)
        loss = F.cross_entropy(out, yt).item()
        acc = (out.argmax(1) == yt).double().mean().item()
    assert h.last("test_loss") == pytest.approx(loss, rel=1e-5)
    assert h.last("test_acc") == pytest.approx(acc)
    csv = h.to_csv()
    assert csv.splitlines()[0].startswith("step,epoch,train_loss")
    assert len(csv.splitlines()) == 5


def test_train_loss_is_window_mean_of_step_losses():
    x, y = _data()
    seen = []
    m = _model()

    def loss_fn(out, yb):
        v = F.cross_entropy(out, yb)
        seen.append(v.item())
        return v

    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=loss_fn,
                device="cpu", log_every=4)
    h = t.fit((x, y), steps=8, batch_size=32)
    assert h.metrics[0]["train_loss"] == pytest.approx(sum(seen[:4]) / 4, rel=1e-6)
    assert h.metrics[1]["train_loss"] == pytest.approx(sum(seen[4:]) / 4, rel=1e-6)


def test_epochs_counts_steps_and_exactly_one_of_epochs_steps():
    x, y = _data(n=100)
    m = _model()
    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=F.cross_entropy,
                device="cpu")
    t.fit((x, y), epochs=3, batch_size=32)
    assert t.step == 3 * 4
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        t.fit((x, y), epochs=1, steps=1)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1.*batch_size=0"):
        t.fit((x, y), steps=1, batch_size=0)
    with pytest.raises(TypeError, match="data must be a trainlab Dataset"):
        t.fit("nope", steps=1)


def test_same_seed_same_weights_with_dropout_and_different_seed_differs():
    x, y = _data()

    def run(seed):
        m = _model(dropout=0.3)
        t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=F.cross_entropy,
                    device="cpu", seed=seed)
        t.fit((x, y), steps=15, batch_size=32)
        return _params(m)

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_registry_names_build_optimizer_loss_and_schedule():
    x, y = _data()
    m = _model()
    t = Trainer(m, optimizer="adam", lr=1e-3, loss="cross_entropy", device="cpu",
                schedule=("step", {"step_size": 5, "gamma": 0.5}))
    assert isinstance(t.optimizer, torch.optim.Adam)
    h = t.fit((x, y), steps=10, batch_size=32)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)
    assert h.metrics[-1]["lr"] == pytest.approx(2.5e-4)


def test_early_stopping_stops_when_metric_stalls():
    x, y = _data()
    m = _model()
    es = EarlyStopping("train_loss", patience=2, min_delta=10.0)  # never "improves" by 10
    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=F.cross_entropy,
                device="cpu", log_every=2, callbacks=[es])
    h = t.fit((x, y), steps=100, batch_size=32)
    assert h.status == "stopped"
    assert t.step == 6 and es.stopped_step == 6  # first check sets best, two more stall
    with pytest.raises(ValueError, match="patience must be an integer >= 1.*patience=0"):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="mode must be one of.*mode='up'"):
        EarlyStopping(mode="up")


def test_callbacks_called_at_log_points():
    x, y = _data()
    m = _model()
    calls = []
    cb = LambdaCallback(
        on_fit_begin=lambda t: calls.append("begin"),
        on_log=lambda t, row: calls.append(row["step"]),
        on_fit_end=lambda t, h: calls.append("end"),
    )
    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=F.cross_entropy,
                device="cpu", log_every=3, callbacks=[cb])
    t.fit((x, y), steps=7, batch_size=32)
    assert calls == ["begin", 3, 6, 7, "end"]


class _RecordingProbe:
    def __init__(self):
        self.events = []
        self.model = None

    def attach(self, model):
        self.model = model
        self.events.append("attach")
        return self

    def detach(self):
        self.events.append("detach")

    def step_begin(self, step):
        self.events.append(("begin", step))

    def after_backward(self, step):
        grads = [p.grad is not None for p in self.model.parameters()]
        self.events.append(("backward", step, all(grads)))

    def step_end(self, step):
        self.events.append(("end", step))

    def records(self):
        return [(0, "layer", "q", 1.0)]

    def histograms(self):
        return []


def test_probe_protocol_order_and_records():
    x, y = _data()
    m = _model()
    p = _RecordingProbe()
    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=F.cross_entropy,
                device="cpu", probes=[p])
    h = t.fit((x, y), steps=2, batch_size=32)
    assert p.events == ["attach", ("begin", 0), ("backward", 0, True), ("end", 0),
                        ("begin", 1), ("backward", 1, True), ("end", 1), "detach"]
    assert h.probe_records == [(0, "layer", "q", 1.0)]


def test_constructor_errors_name_the_value():
    m = _model()
    with pytest.raises(ValueError, match="seed must be a non-negative integer.*seed=-1"):
        Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), seed=-1)
    with pytest.raises(ValueError, match="on_divergence must be one of.*'ignore'"):
        Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), on_divergence="ignore")
    with pytest.raises(ValueError, match="log_every must be an integer >= 1.*log_every=0"):
        Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), log_every=0)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        Trainer("model")
    with pytest.raises(ValueError, match="Unknown optim 'adm'"):
        Trainer(m, optimizer="adm")
    with pytest.raises(ValueError, match="device must be"):
        Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), device="tpu9")


def test_device_auto_picks_cpu_without_cuda():
    m = _model()
    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1))
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert t.device.type == expected


def test_progress_bar_off_when_not_a_terminal(capsys):
    x, y = _data()
    m = _model()
    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=F.cross_entropy,
                device="cpu")
    t.fit((x, y), steps=3, batch_size=32)
    assert capsys.readouterr().err == ""


def test_trainlab_probe_records_rows_and_leaves_training_unchanged():
    from trainlab.nn import mlp
    from trainlab.probes import ActivationStats

    x, y = _data()

    def run(probes):
        torch.manual_seed(0)
        m = mlp(6, [16, 16], 3, activation="tanh")
        t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=F.cross_entropy,
                    device="cpu", probes=probes)
        return t.fit((x, y), steps=10, batch_size=32), _params(m)

    probe = ActivationStats(every=5)
    h, with_probe = run([probe])
    _, without = run([])
    assert all(torch.equal(a, b) for a, b in zip(with_probe, without))
    layers = {r[1] for r in h.probe_records}
    assert {"block1.act", "block2.act"} <= layers
    assert {0, 5} <= {r[0] for r in h.probe_records}
    assert probe.model is None  # detached after fit
