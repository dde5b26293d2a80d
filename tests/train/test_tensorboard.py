"""The TensorBoard sink writes the History's scalars and the probes' own histogram bins."""

from __future__ import annotations

import builtins

import pytest
import torch

from trainlab.nn import mlp
from trainlab.train import Trainer


def test_missing_extra_names_it(monkeypatch):
    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    from trainlab.engine.tensorboard import TensorBoardSink

    with pytest.raises(ImportError, match=r"trainlab\[tensorboard\]"):
        TensorBoardSink("x")


def test_scalars_and_precomputed_histograms(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainlab.engine.tensorboard import TensorBoardSink
    from trainlab.probes import ActivationStats

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    model = mlp([4, 8, 8, 3], activation="tanh")
    probe = ActivationStats(every=5, hist_every=5)
    sink = TensorBoardSink(tmp_path / "tb")
    trainer = Trainer(model, lr=0.1, probes=[probe], callbacks=[sink], log_every=5,
                      progress=False)
    hist = trainer.fit((x, y, x, y), steps=10, batch_size=16, eval_every=5)
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    losses = [e.value for e in acc.Scalars("metrics/train_loss")]
    assert losses == pytest.approx([r["train_loss"] for r in hist.metrics], rel=1e-6)
    assert [e.step for e in acc.Scalars("metrics/test_acc")] == [5, 10]
    assert hist.histograms, "the probe recorded histograms"
    h = hist.histograms[0]
    tag = f"{h['quantity']}/{h['layer']}"
    assert tag in tags["histograms"]
    ev = next(e for e in acc.Histograms(tag) if e.step == h["step"])
    counts = [float(c) for c in h["counts"]]
    assert list(ev.histogram_value.bucket) == pytest.approx(counts)  # not re-binned
    assert list(ev.histogram_value.bucket_limit) == pytest.approx(
        [float(e) for e in h["edges"][1:]])
    assert ev.histogram_value.num == pytest.approx(sum(counts))
    assert any(t.startswith("probes/") for t in tags["scalars"])


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_train_command_writes_the_run_to_tensorboard(tmp_path, capsys):
    """`trainlab train --tensorboard DIR`: the run's metrics.csv rows as scalars, the probes'
    records and histograms, in one event file written by the command."""
    pytest.importorskip("tensorboard")
    import csv

    from trainlab.cli import main

    tb, out = tmp_path / "tb", tmp_path / "run"
    assert main(["train", "--dataset", "blobs", "--depth", "2", "--width", "8", "--steps",
                 "12", "--batch-size", "32", "--eval-every", "6", "--set", "log_every=3",
                 "--probe", "activations", "--probe-every", "6", "--device", "cpu", "--quiet",
                 "--no-db", "--out", str(out), "--tensorboard", str(tb)]) == 0
    capsys.readouterr()
    assert len(list(tb.glob("events.out.tfevents.*"))) == 1
    acc = _events(tb)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    scalars = acc.Scalars("metrics/train_loss")
    assert [e.step for e in scalars] == [int(r["step"]) for r in rows] == [3, 6, 9, 12]
    assert [e.value for e in scalars] == pytest.approx([float(r["train_loss"]) for r in rows],
                                                       rel=1e-6)
    assert [e.step for e in acc.Scalars("metrics/test_acc")] == [6, 12]
    tags = acc.Tags()
    assert any(t.startswith("probes/") for t in tags["scalars"])
    assert tags["histograms"], "the activation probe's histograms"
