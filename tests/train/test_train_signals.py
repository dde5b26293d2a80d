"""SIGTERM like Ctrl-C, signals during the final bookkeeping, Ctrl-C during start-up, and
resuming with `trainlab train --out DIR --resume` alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import trainlab.runs.run as runs
from trainlab.cli import main
from trainlab.store import RunStore
from trainlab.train import load_checkpoint

TINY = ["--dataset", "blobs", "--depth", "2", "--width", "8", "--steps", "24",
        "--batch-size", "64", "--eval-every", "8", "--set", "log_every=4", "--device", "cpu",
        "--quiet"]


def _train(tmp_path, *extra, out="run", flags=TINY):
    return main(["train", *flags, "--out", str(tmp_path / out), "--db", str(tmp_path / "t.db"),
                 *extra])


def _lines(err):
    return [ln for ln in err.splitlines() if ln.strip()]


def _signal_in_step(monkeypatch, step, signum):
    """The model sends ``signum`` to this process during its training step ``step``."""
    real = runs.build_model_from_config

    def build(cfg, dataset):
        model = real(cfg, dataset)
        calls = []

        def hook(module, inputs):
            if module.training:
                calls.append(1)
                if len(calls) == step + 1:
                    os.kill(os.getpid(), signum)

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(runs, "build_model_from_config", build)


def _csv_without_time(path):
    lines = Path(path).read_text().splitlines()
    col = lines[0].split(",").index("time")
    return [[c for i, c in enumerate(ln.split(",")) if i != col] for ln in lines]


def test_sigterm_checkpoints_exits_143_and_resume_alone_matches_uninterrupted(
        tmp_path, monkeypatch, capsys):
    assert _train(tmp_path, out="full") == 0
    _signal_in_step(monkeypatch, 9, signal.SIGTERM)  # between the sync points 8 and 12
    assert _train(tmp_path, out="cut") == 143
    err = capsys.readouterr().err
    cut = tmp_path / "cut"
    assert _lines(err) == [
        f"trainlab: interrupted (SIGTERM) at step 10; checkpoint saved in {cut}. "
        f"Resume with: trainlab train --out {cut} --resume"]
    status = json.loads((cut / "status.json").read_text())
    assert status["status"] == "interrupted" and status["step"] == 10
    assert "SIGTERM" in status["message"]
    assert load_checkpoint(cut / "checkpoints" / "last.pt")["step"] == 10
    store = RunStore(tmp_path / "t.db")
    assert store.get_run(status["run_id"])["status"] == "interrupted"
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers put back

    # no other flag: the stored config is used
    assert main(["train", "--out", str(cut), "--resume", "--db", str(tmp_path / "t.db"),
                 "--quiet"]) == 0
    assert _csv_without_time(cut / "metrics.csv") == _csv_without_time(
        tmp_path / "full" / "metrics.csv")
    assert store.get_run(status["run_id"])["status"] == "done"


def test_a_flag_given_with_resume_must_agree_with_the_stored_config(tmp_path, capsys):
    assert _train(tmp_path) == 0
    capsys.readouterr()
    run = str(tmp_path / "run")
    assert main(["train", "--out", run, "--resume", "--width", "8", "--no-db"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", run, "--resume", "--width", "16", "--no-db"]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("trainlab: error: the config given with --resume differs")
    assert "config.json" in line and "model.width: stored 8, given 16" in line


def test_missing_checkpoint_is_refused_and_nothing_changes(tmp_path, capsys):
    assert _train(tmp_path) == 0
    run = tmp_path / "run"
    (run / "checkpoints" / "last.pt").unlink()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--db", str(tmp_path / "t.db")]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert "last.pt" in line and "is missing" in line and "--force" in line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_with_another_thread_count_warns_and_records_it(tmp_path, monkeypatch, capsys):
    import torch

    assert _train(tmp_path) == 0
    run = tmp_path / "run"
    first = json.loads((run / "env.json").read_text())
    other = first["threads"] + 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: other)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--no-db", "--quiet"]) == 0
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("trainlab: warning: ")
    assert f"threads {other} instead of {first['threads']}" in line
    assert "not be bitwise identical" in line
    env = json.loads((run / "env.json").read_text())
    assert env["threads"] == first["threads"]  # the first start's environment is kept
    (entry,) = env["resumes"]
    assert entry["threads"] == other and entry["changed"] == ["threads"]
    assert entry["step"] == 24


def test_signals_during_the_final_plots_leave_no_running_status(tmp_path, monkeypatch):
    real = runs.plot_curves

    def interrupted_plot(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)  # two Ctrl-C while the figures are drawn
        os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(runs, "plot_curves", interrupted_plot)
    assert _train(tmp_path) == 130  # the signal is delivered once the bookkeeping is done
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "done" and status["step"] == 24
    assert (tmp_path / "run" / "figures" / "curves.png").is_file()
    assert RunStore(tmp_path / "t.db").get_run(status["run_id"])["status"] == "done"


def test_two_signals_during_training_still_record_interrupted(tmp_path, monkeypatch, capsys):
    real = runs.MetricsCSV

    class TwoSignals(real):
        def on_log(self, trainer, row):
            super().on_log(trainer, row)
            if row["step"] == 8:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)  # the second stops at once

    monkeypatch.setattr(runs, "MetricsCSV", TwoSignals)
    assert _train(tmp_path) == 130
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert RunStore(tmp_path / "t.db").get_run(status["run_id"])["status"] == "interrupted"
    assert "Traceback" not in capsys.readouterr().err


def test_ctrl_c_while_loading_data_is_one_line_and_leaves_nothing(tmp_path, monkeypatch,
                                                                  capsys):
    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "load_data_from_config", interrupted)
    assert _train(tmp_path) == 130
    assert _lines(capsys.readouterr().err) == [
        "trainlab: interrupted (SIGINT) while starting up, before training; nothing was "
        "written"]
    assert not (tmp_path / "run").exists()


def _exe():
    import shutil

    return shutil.which("trainlab") or str(Path(sys.executable).with_name("trainlab"))


def _wait_for(pred, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _rows(path):
    try:
        return len(path.read_text().splitlines()) - 1
    except OSError:
        return 0


@pytest.mark.slow
def test_sigterm_to_the_command_saves_marks_interrupted_and_exits_143(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen(
        [_exe(), "train", "--dataset", "blobs", "--depth", "1", "--width", "4", "--steps",
         "100000000", "--set", "log_every=10", "--out", str(out), "--db",
         str(tmp_path / "t.db"), "--quiet", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _wait_for(lambda: _rows(out / "metrics.csv") > 3 or p.poll() is not None, "training")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err
    assert "Traceback" not in err and f"trainlab train --out {out} --resume" in err
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == status["step"] > 0
    assert RunStore(tmp_path / "t.db").get_run(status["run_id"])["status"] == "interrupted"


_SLOW_PLOTS = """
import sys, time
import trainlab.runs.run as runs
from trainlab.cli import main
real = runs.plot_curves
def slow(*a, **k):
    print("plotting", flush=True)
    time.sleep(3)
    return real(*a, **k)
runs.plot_curves = slow
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_signals_to_the_command_during_the_final_plots(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen(
        [sys.executable, "-c", _SLOW_PLOTS, "train", *TINY, "--out", str(out), "--db",
         str(tmp_path / "t.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "plotting"
        p.send_signal(signal.SIGINT)
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert _lines(err) == ["trainlab: interrupted (SIGINT) after the run ended (status done); "
                           "its files and store row are complete"]
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "done"
    assert RunStore(tmp_path / "t.db").get_run(status["run_id"])["status"] == "done"


@pytest.mark.slow
def test_ctrl_c_while_the_command_imports_torch_is_one_line(tmp_path):
    # -X importtime reports each import on stderr as it ends: interrupt while torch loads
    p = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "trainlab", "train", *TINY, "--out",
         str(tmp_path / "run"), "--no-db"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            if "torch" in line:
                p.send_signal(signal.SIGINT)
                break
        _, rest = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    lines = [ln for ln in _lines(rest) if not ln.startswith("import time:")]
    assert len(lines) == 1 and lines[0].startswith("trainlab: interrupted"), rest[-2000:]
    assert "nothing was written" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_second_signal_while_fit_cleans_up_still_restores_the_handlers(tmp_path,
                                                                         monkeypatch):
    from trainlab.probes import ActivationStats

    real_detach, real_plot = ActivationStats.detach, runs.plot_curves

    def detach(self):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the second raises inside fit's cleanup
        return real_detach(self)

    def plot(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)  # must be deferred, not raised
        return real_plot(*a, **k)

    monkeypatch.setattr(ActivationStats, "detach", detach)
    monkeypatch.setattr(runs, "plot_curves", plot)
    assert _train(tmp_path, "--probe", "activations") == 130
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert (tmp_path / "run" / "figures" / "curves.png").is_file()
    assert RunStore(tmp_path / "t.db").get_run(status["run_id"])["status"] == "interrupted"


def test_any_command_stopped_by_sigterm_exits_143(monkeypatch, capsys):
    import trainlab.cli.demo as demo
    from trainlab.engine.trainer import TrainingInterrupted

    def stopped(args):
        raise TrainingInterrupted(signal.SIGTERM, 3)

    monkeypatch.setattr(demo, "run", stopped)
    assert main(["demo"]) == 143
    assert _lines(capsys.readouterr().err) == ["trainlab: interrupted"]
