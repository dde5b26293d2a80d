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


def test_default_lr_is_the_optimizer_default_and_explicit_lr_wins():
    import inspect

    # Adam's default lr, read from torch's own signature (Kingma & Ba: 1e-3)
    adam_default = inspect.signature(torch.optim.Adam).parameters["lr"].default
    assert adam_default == pytest.approx(1e-3)
    m = _model()
    t = Trainer(m, optimizer="adam", device="cpu")
    assert all(g["lr"] == pytest.approx(adam_default) for g in t.optimizer.param_groups)
    assert isinstance(t.optimizer, torch.optim.Adam)
    # plain SGD: the registry's documented default for "sgd" (0.1), not Adam's
    t = Trainer(_model(), optimizer="sgd", device="cpu")
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    t = Trainer(_model(), device="cpu")  # the default optimizer is SGD
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    # an explicit lr still overrides the default, also in a (name, kwargs) pair
    t = Trainer(_model(), optimizer="adam", lr=0.05, device="cpu")
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    t = Trainer(_model(), optimizer=("adam", {"lr": 0.02}), device="cpu")
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.02)
    # and Adam trained at its default takes the step a hand-built Adam(lr=1e-3) takes
    x, y = _data()
    m1, m2 = _model(), _model()
    Trainer(m1, optimizer="adam", loss=F.cross_entropy, device="cpu", seed=1).fit(
        (x, y), steps=3, batch_size=32)
    opt = torch.optim.Adam(m2.parameters(), lr=1e-3)
    for xb, yb in DeviceBatcher(x, y, 32, shuffle=True, seed=1).steps(3):
        loss = F.cross_entropy(m2(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def _keys(rows):
    return [(s, layer, q) for s, layer, q, _ in rows]


def test_fit_twice_does_not_repeat_probe_records():
    from trainlab.nn import mlp
    from trainlab.probes import ActivationStats, JacobianSpectrum

    x, y = _data()
    torch.manual_seed(0)
    m = mlp(6, [8, 8], 3, activation="tanh")
    act, jac = ActivationStats(every=2), JacobianSpectrum(every=3, n_examples=2)
    t = Trainer(m, optimizer="sgd", loss=F.cross_entropy, device="cpu", probes=[act, jac])
    h1 = t.fit((x, y), steps=6, batch_size=32)
    h2 = t.fit((x, y), steps=6, batch_size=32)
    for h in (h1, h2):
        keys = _keys(h.probe_records)
        assert len(keys) == len(set(keys))  # no row twice
        # every=2 over steps 0..5 (+ histogram steps 0 and 1); the Jacobian at 0 and 3
        assert sorted({k[0] for k in keys if k[2] == "act_std"}) == [0, 1, 2, 4]
        assert sorted({k[0] for k in keys if k[2] == "jac_sv_max"}) == [0, 3]
        # spectra: blocks block1, block2, head and the whole model, at steps 0 and 3
        assert sorted((s["step"], s["layer"]) for s in h.spectra) == sorted(
            (s, layer) for s in (0, 3) for layer in ("block1", "block2", "head", "model"))
        assert len({h_["step"] for h_ in h.histograms}) == 2
    assert _keys(h1.probe_records) == _keys(h2.probe_records)
    # the probe keeps what it recorded (issue 10 item 7): both fits, each row once
    mine = [r for r in h1.probe_records + h2.probe_records if r[2].startswith(("pre_", "act_"))]
    assert act.records() == mine
    assert act.histograms() == h1.histograms + h2.histograms  # only ActivationStats draws them


def test_spectra_match_the_records_and_a_direct_svd():
    from trainlab.nn import mlp
    from trainlab.probes import JacobianSpectrum

    x, y = _data()
    torch.manual_seed(0)
    m = mlp(6, [5], 3, activation="tanh")
    jac = JacobianSpectrum(layers=["head"], every=100, n_examples=1, input_output=False)
    t = Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.0), loss=F.cross_entropy,
                device="cpu", probes=[jac])
    h = t.fit((x, y), steps=1, batch_size=4)
    (sp,) = h.spectra
    assert sp["step"] == 0 and sp["layer"] == "head" and sp["exact"]
    # the head is a Linear: its Jacobian is its weight matrix
    expected = torch.linalg.svdvals(m.head.weight.detach().double()).tolist()
    assert sorted(sp["singular_values"], reverse=True) == pytest.approx(expected, rel=1e-5)
    assert dict(((q), v) for s, _, q, v in h.probe_records)["jac_sv_max"] == pytest.approx(
        expected[0], rel=1e-5)
