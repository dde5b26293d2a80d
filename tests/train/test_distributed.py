"""`trainlab train` under torchrun (DDP, gloo on CPU) equals one process with the same batch.

The fast tests run by default: the rank helpers, a one-process gloo group in this process
(setup, DistributedTrainer, cleanup) and one real torchrun job of 2 CPU processes on a tiny
30-step run, compared with the same run in this process. The slow ones check the
batch-size refusal through a real torchrun job, and that leaving the group never hangs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from trainlab.engine.checkpoint import load_checkpoint
from trainlab.engine.distributed import is_distributed, is_main, rank, world_size

ARGS = ["train", "--dataset", "spirals", "--depth", "2", "--width", "16", "--steps", "30",
        "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.1", "--seed", "3", "--quiet",
        "--no-db", "--device", "cpu", "--set", "log_every=10"]
_DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
              "MASTER_PORT", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in _DIST_VARS:
        env.pop(k, None)
    return env


def _torchrun(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 ARGS`` (ARGS: ``-m MODULE ...`` or a
    script). On a timeout the whole process group goes (torchrun and its workers: a hung
    worker must not outlive the test) and the test fails with what they printed."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", *args]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"torchrun still running after {timeout} s (hung?)\n{out}\n{err[-4000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_distributed_trainer_needs_the_process_group():
    from trainlab.engine.distributed import DistributedTrainer
    from trainlab.nn import mlp

    with pytest.raises(RuntimeError, match="needs the process group: call "
                       "trainlab.engine.distributed.setup"):
        DistributedTrainer(mlp([2, 4, 2]), lr=0.1, progress=False)


def test_one_process_group_trains_as_the_trainer(monkeypatch):
    """setup() joins a gloo group (env://, as torchrun sets it); a DistributedTrainer over one
    process takes the Trainer's steps; cleanup() leaves the group."""
    import torch.distributed as dist

    from trainlab.engine.distributed import DistributedTrainer, cleanup, setup
    from trainlab.nn import mlp
    from trainlab.train import Trainer

    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(k, v)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 2, generator=g), torch.randint(0, 2, (96,), generator=g)

    def fit(cls):
        torch.manual_seed(1)
        t = cls(mlp([2, 8, 2], activation="tanh"), lr=0.1, seed=1, device="cpu",
                progress=False, log_every=4)
        return t, t.fit((x, y), steps=8, batch_size=16)

    ref, ref_hist = fit(Trainer)
    assert setup("cpu") == torch.device("cpu")
    try:
        assert dist.is_initialized() and dist.get_backend() == "gloo"
        assert setup("cpu") == torch.device("cpu")  # joining again is a no-op
        ddp, ddp_hist = fit(DistributedTrainer)
        assert (ddp.world, ddp.rank) == (1, 0)
        for a, b in zip(ref.model.parameters(), ddp.model.parameters()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        assert [r["train_loss"] for r in ddp_hist.metrics] == pytest.approx(
            [r["train_loss"] for r in ref_hist.metrics], rel=1e-5)
        ddp.world = 2  # as under a 2-process job: the global batch must split evenly
        with pytest.raises(ValueError, match="batch_size must be divisible by the 2 "
                           "processes.*Received: batch_size=33"):
            ddp.fit((x, y), steps=1, batch_size=33)
    finally:
        cleanup()
    assert not dist.is_initialized()
    # cleanup released the DDP wrapper (its reducer holds the group) before leaving the group
    assert ddp.ddp is None
    with pytest.raises(RuntimeError, match="was released"):
        ddp.fit((x, y), steps=1, batch_size=16)
    cleanup()  # leaving when not joined is a no-op


def test_torchrun_two_processes_equal_one_with_the_same_global_batch(tmp_path, capsys):
    import importlib.util

    from trainlab.cli import main

    one, two, tb = tmp_path / "one", tmp_path / "two", tmp_path / "tb"
    has_tb = importlib.util.find_spec("tensorboard") is not None  # trainlab[tensorboard]
    extra = ["--tensorboard", str(tb)] if has_tb else []
    r2 = _torchrun("-m", "trainlab", *ARGS, "--out", str(two), *extra)
    assert r2.returncode == 0, r2.stderr + r2.stdout
    assert main([*ARGS, "--out", str(one)]) == 0  # the same run, one process (this one)
    capsys.readouterr()
    a = load_checkpoint(one / "checkpoints" / "last.pt")
    b = load_checkpoint(two / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 30
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5)
    la = [r["train_loss"] for r in a["history"]["metrics"]]
    lb = [r["train_loss"] for r in b["history"]["metrics"]]
    assert len(la) == 3 and la == pytest.approx(lb, rel=1e-4)
    # rank 0 alone wrote the folder and printed its one line
    assert (two / "status.json").is_file() and (two / "metrics.csv").is_file()
    assert r2.stdout.count("done:") == 1
    if not has_tb:
        return
    # and rank 0 alone wrote TensorBoard events: one file, one value per logged step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert len(list(tb.glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.value for e in acc.Scalars("metrics/train_loss")] == pytest.approx(lb, rel=1e-6)


@pytest.mark.slow
def test_batch_size_must_divide_among_processes(tmp_path):
    args = [a if a != "32" else "33" for a in ARGS]
    r = _torchrun("-m", "trainlab", *args, "--out", str(tmp_path / "x"))
    assert r.returncode != 0
    assert "batch_size must be divisible by the 2 processes" in r.stderr + r.stdout


_LOOP = """
import os, sys, torch
import torch.distributed as dist
from trainlab.nn import mlp
from trainlab.engine.distributed import DistributedTrainer, cleanup
rank = int(os.environ["RANK"])
g = torch.Generator().manual_seed(0)
x, y = torch.randn(96, 2, generator=g), torch.randint(0, 2, (96,), generator=g)
for it in range(int(sys.argv[1])):
    store = dist.TCPStore("127.0.0.1", int(sys.argv[2]) + it, 2, rank == 0)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    t = DistributedTrainer(mlp([2, 16, 2]), lr=0.1, progress=False, device="cpu")
    t.fit((x, y), steps=30, batch_size=32)
    cleanup()
    del t, store  # the trainer outlives the group, as on the ranks > 0 of trainlab train
print("rank", rank, "left the group", sys.argv[1], "times", flush=True)
"""


@pytest.mark.slow
def test_leaving_the_group_never_hangs(tmp_path):
    # Before cleanup() released the DDP reducer, the process group died with the trainer,
    # from a destructor holding the GIL while joining gloo threads that wanted it: a 2-process
    # loop like this one hung within about 10 rounds.
    script = tmp_path / "loop.py"
    script.write_text(_LOOP)
    base = _free_port() % 20000 + 30000
    r = _torchrun(str(script), "30", str(base), timeout=240)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.count("left the group 30 times") == 2
