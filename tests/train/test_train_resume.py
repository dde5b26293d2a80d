"""Checkpoints: resume equals uninterrupted, Ctrl-C, crash during a write, corrupt files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.train import CheckpointError, LambdaCallback, Trainer, load_checkpoint
from trainlab.train.checkpoint import save_checkpoint


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
        from trainlab.train.checkpoint import save_checkpoint
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
