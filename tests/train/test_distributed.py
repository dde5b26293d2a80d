"""`trainlab train` under torchrun (DDP, gloo on CPU) equals one process with the same batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from trainlab.train.checkpoint import load_checkpoint
from trainlab.train.distributed import is_distributed, is_main, rank, world_size

ARGS = ["train", "--dataset", "spirals", "--depth", "2", "--width", "16", "--steps", "30",
        "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.1", "--seed", "3", "--quiet",
        "--no-db", "--device", "cpu", "--set", "log_every=10"]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def test_rank_helpers_outside_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert world_size() == 1 and rank() == 0 and is_main() and not is_distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert is_distributed() and rank() == 1 and not is_main()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer. Received: "
                       "WORLD_SIZE='two'"):
        world_size()


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = subprocess.run([sys.executable, "-m", "trainlab", *ARGS, "--out", str(one)],
                        env=_env(), capture_output=True, text=True, timeout=120)
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                         "--nproc-per-node", "2", "-m", "trainlab", *ARGS, "--out", str(two)],
                        env=_env(), capture_output=True, text=True, timeout=180)
    assert r2.returncode == 0, r2.stderr + r2.stdout
    a = load_checkpoint(one / "checkpoints" / "last.pt")
    b = load_checkpoint(two / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 30
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5)
    la = [r["train_loss"] for r in a["history"]["metrics"]]
    lb = [r["train_loss"] for r in b["history"]["metrics"]]
    assert la == pytest.approx(lb, rel=1e-4)
    # rank 0 alone wrote the folder: one status.json, printed one line
    assert (two / "status.json").is_file()
    assert r2.stdout.count("done:") == 1


@pytest.mark.slow
def test_batch_size_must_divide_among_processes(tmp_path):
    args = [a if a != "32" else "33" for a in ARGS]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", "-m", "trainlab", *args, "--out",
                        str(tmp_path / "x")], env=_env(), capture_output=True, text=True,
                       timeout=180)
    assert r.returncode != 0
    assert "batch_size must be divisible by the 2 processes" in r.stderr + r.stdout
