"""Checkpoints: resume equals uninterrupted, Ctrl-C, crash during a write, corrupt files."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.engine.checkpoint import save_checkpoint
from trainlab.train import CheckpointError, LambdaCallback, Trainer, load_checkpoint


def _data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, (x.sum(1) > 0).long()


def _trainer(ckpt=None, callbacks=(), seed=7, model_seed=0):
    torch.manual_seed(model_seed)
    m = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 2))
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

    def schedule(o, total):
        return torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0 / (1 + 0.05 * s))

    return Trainer(m, optimizer=opt, loss=F.cross_entropy, device="cpu", seed=seed,
                   schedule=schedule, log_every=4, checkpoint=ckpt, callbacks=list(callbacks))


def _interrupt_at(step):
    def on_log(t, row):
        if row["step"] == step:
            t.interrupt()

    return LambdaCallback(on_log=on_log)


@pytest.mark.parametrize("stop_at", [8, 12])  # 200/32 -> 7 batches/epoch: mid-epoch stops
def test_resume_equals_uninterrupted(tmp_path, stop_at):
    x, y = _data()
    full = _trainer()
    h_full = full.fit((x, y, x[:50], y[:50]), steps=30, batch_size=32, eval_every=8)

    ckpt = tmp_path / "last.pt"
    first = _trainer(ckpt, callbacks=[_interrupt_at(stop_at)])
    with pytest.raises(KeyboardInterrupt):
        first.fit((x, y, x[:50], y[:50]), steps=30, batch_size=32, eval_every=8)
    assert first.history.status == "interrupted"
    assert load_checkpoint(ckpt)["step"] == stop_at

    # a fresh process would build the model with other weights: the checkpoint must win
    second = _trainer(ckpt, model_seed=123)
    h = second.fit((x, y, x[:50], y[:50]), steps=30, batch_size=32, eval_every=8, resume=ckpt)
    for a, b in zip(full.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    assert second.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]
    assert [r["step"] for r in h.metrics] == [r["step"] for r in h_full.metrics]
    assert h.last("test_loss") == h_full.last("test_loss")


def test_sigint_saves_checkpoint_and_raises(tmp_path):
    x, y = _data()
    ckpt = tmp_path / "c.pt"

    def on_log(t, row):
        if row["step"] == 8:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, handled by the trainer

    t = _trainer(ckpt, callbacks=[LambdaCallback(on_log=on_log)])
    with pytest.raises(KeyboardInterrupt):
        t.fit((x, y), steps=40, batch_size=32)
    state = load_checkpoint(ckpt)
    assert 8 <= state["step"] <= 9  # stops at the next step boundary
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_crash_during_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    x, y = _data()
    ckpt = tmp_path / "c.pt"
    t = _trainer(ckpt)
    t.fit((x, y), steps=4, batch_size=32)
    before = load_checkpoint(ckpt)

    def boom(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        t.save(ckpt)
    monkeypatch.undo()
    after = load_checkpoint(ckpt)
    assert after["step"] == before["step"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # temporary file removed


def test_sigkill_during_large_checkpoint_write_leaves_old_file_readable(tmp_path):
    ckpt = tmp_path / "big.pt"
    save_checkpoint(ckpt, {"step": 1, "model": {}, "optimizer": {}, "rng": {}})
    code = textwrap.dedent(
        f"""
        import os, sys, torch
        import trainlab.utils as u
        real = os.fsync
        def slow_fsync(fd):
            sys.stdout.write("writing\\n"); sys.stdout.flush()
            import time; time.sleep(30)
        os.fsync = slow_fsync
        from trainlab.engine.checkpoint import save_checkpoint
        save_checkpoint({str(ckpt)!r}, {{"step": 2, "model": {{"w": torch.zeros(10**6)}},
                        "optimizer": {{}}, "rng": {{}}}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"  # the new file is being written
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(ckpt)["step"] == 1


def test_truncated_or_foreign_checkpoint_is_refused_by_name(tmp_path):
    x, y = _data()
    ckpt = tmp_path / "c.pt"
    t = _trainer(ckpt)
    t.fit((x, y), steps=4, batch_size=32)
    data = ckpt.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt.*corrupt or truncated"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        _trainer(bad).fit((x, y), steps=8, batch_size=32, resume=bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt.*not a trainlab checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="missing.pt.*does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def _probed(ckpt=None, callbacks=(), model_seed=0, checkpoint_every=None):
    from trainlab.nn import mlp
    from trainlab.probes import ActivationStats, JacobianSpectrum

    torch.manual_seed(model_seed)
    m = mlp(5, [8, 8], 2, activation="tanh")
    probes = [ActivationStats(every=3), JacobianSpectrum(every=5, n_examples=2)]
    return Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss=F.cross_entropy,
                   device="cpu", seed=7, log_every=4, checkpoint=ckpt, probes=probes,
                   checkpoint_every=checkpoint_every, callbacks=list(callbacks))


def _probe_state(h):
    rows = sorted(h.probe_records)
    hists = sorted((d["step"], d["layer"], d["quantity"], tuple(d["counts"]))
                   for d in h.histograms)
    spectra = sorted((d["step"], d["layer"], tuple(d["singular_values"])) for d in h.spectra)
    return rows, hists, spectra


def _crash_at(step):
    def on_log(t, row):
        if row["step"] == step:
            raise RuntimeError("simulated crash")

    return LambdaCallback(on_log=on_log)


def test_probe_records_survive_interrupt_and_resume_exactly_once(tmp_path):
    x, y = _data()
    full = _probed().fit((x, y), steps=20, batch_size=32)
    rows, hists, spectra = _probe_state(full)
    assert len(rows) == len(set(rows)) and {r[0] for r in rows} >= {0, 3, 6, 9, 12, 15, 18}
    assert {s[0] for s in spectra} == {0, 5, 10, 15}

    ckpt = tmp_path / "c.pt"
    first = _probed(ckpt, callbacks=[_interrupt_at(8)])
    with pytest.raises(KeyboardInterrupt):
        first.fit((x, y), steps=20, batch_size=32)
    saved = load_checkpoint(ckpt)["history"]
    # the checkpoint holds every record of steps 0..7 (Ctrl-C saves before the probes detach)
    assert sorted({r[0] for r in saved["probe_records"]}) == [0, 1, 3, 5, 6]
    assert sorted({s["step"] for s in saved["spectra"]}) == [0, 5]

    second = _probed(ckpt, model_seed=99)
    h = second.fit((x, y), steps=20, batch_size=32, resume=ckpt)
    assert _probe_state(h) == (rows, hists, spectra)  # none lost, none repeated, same values


def test_probe_records_after_a_crash_resume_from_the_last_checkpoint(tmp_path):
    x, y = _data()
    full = _probed().fit((x, y), steps=20, batch_size=32)

    ckpt = tmp_path / "c.pt"
    first = _probed(ckpt, callbacks=[_crash_at(12)], checkpoint_every=8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        first.fit((x, y), steps=20, batch_size=32)
    # the crashed process recorded steps up to 11; the checkpoint at step 8 holds 0..7 only
    assert max(r[0] for r in first.history.probe_records) == 10
    state = load_checkpoint(ckpt)
    assert state["step"] == 8
    assert max(r[0] for r in state["history"]["probe_records"]) == 6

    second = _probed(ckpt, model_seed=99, checkpoint_every=8)
    h = second.fit((x, y), steps=20, batch_size=32, resume=ckpt)
    assert _probe_state(h) == _probe_state(full)


def _interrupt_during_step(trainer, step):
    """Ask for a stop from inside training step ``step`` (between two sync points)."""
    def hook(module, inputs):
        if module.training and trainer.step == step:
            trainer.interrupt()

    return trainer.model.register_forward_pre_hook(hook)


def test_interrupt_between_sync_points_resumes_to_the_same_history(tmp_path):
    x, y = _data()
    data = (x, y, x[:50], y[:50])
    full = _trainer().fit(data, steps=30, batch_size=32, eval_every=8)

    ckpt = tmp_path / "last.pt"
    slow = LambdaCallback(on_log=lambda t, row: time.sleep(0.3) if row["step"] == 4 else None)
    first = _trainer(ckpt, callbacks=[slow])
    _interrupt_during_step(first, 9)  # log_every=4: steps 8, 9 form a partial window
    with pytest.raises(KeyboardInterrupt):
        first.fit(data, steps=30, batch_size=32, eval_every=8)
    assert load_checkpoint(ckpt)["step"] == 10
    assert [r["step"] for r in first.history.metrics] == [4, 8]  # no row for steps 8..9
    before = first.history.metrics[-1]["time"]

    h = _trainer(ckpt, model_seed=123).fit(data, steps=30, batch_size=32, eval_every=8,
                                           resume=ckpt)
    drop = [{k: v for k, v in r.items() if k != "time"} for r in h.metrics]
    assert drop == [{k: v for k, v in r.items() if k != "time"} for r in full.metrics]
    # the time column goes on from the interrupted run's elapsed time (>= the 0.3 s pause)
    times = [r["time"] for r in h.metrics]
    assert times == sorted(times) and times[2] >= before >= 0.3


class _NumpyAndPythonNoise(nn.Module):
    """Scales its input by draws from NumPy's and Python's global generators (as a user's
    augmentation or noise layer would): a resume must restore both states."""

    def forward(self, x):
        if not self.training:
            return x
        return x * (1 + 0.1 * float(np.random.randn())) + 0.05 * random.random()


def test_resume_restores_the_numpy_and_python_random_states(tmp_path):
    x, y = _data()

    def make(ckpt=None, callbacks=()):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(5, 12), _NumpyAndPythonNoise(), nn.Tanh(), nn.Linear(12, 2))
        return Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), device="cpu",
                       seed=3, log_every=4, checkpoint=ckpt, callbacks=list(callbacks))

    full = make()
    full.fit((x, y), steps=16, batch_size=32)
    ckpt = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        make(ckpt, [_interrupt_at(8)]).fit((x, y), steps=16, batch_size=32)
    np.random.seed(99)  # whatever the generators hold now, the checkpoint's states win
    random.seed(99)
    resumed = make(ckpt)
    resumed.fit((x, y), steps=16, batch_size=32, resume=ckpt)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_execute_run_reads_the_checkpoint_once(tmp_path, monkeypatch):
    from trainlab.runs.config import load_config
    from trainlab.runs.run import execute_run

    cfg = load_config(overrides=["data.name=blobs", "model.depth=1", "model.width=4",
                                 "steps=8", "batch_size=64", "log_every=4", "device=cpu"])
    execute_run(cfg, tmp_path / "run")
    real, calls = torch.load, []

    def counting(f, *a, **k):
        calls.append(k.get("weights_only"))
        return real(f, *a, **k)

    monkeypatch.setattr(torch, "load", counting)
    assert execute_run(cfg, tmp_path / "run", resume=True).status == "done"
    assert calls == [True]
