"""`trainlab train`, `trainlab runs`, `trainlab demo`: outputs, lifecycle and every error path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainlab.cli import main
from trainlab.store import RunStore
from trainlab.train import load_checkpoint

TINY = ["--dataset", "blobs", "--depth", "2", "--width", "8", "--steps", "24",
        "--batch-size", "64", "--eval-every", "8", "--set", "log_every=4", "--device", "cpu",
        "--quiet"]


def _train(tmp_path, *extra, out="run", db="t.db"):
    return main(["train", *TINY, "--out", str(tmp_path / out), "--db", str(tmp_path / db),
                 *extra])


def _rc(argv):
    """Exit status of `trainlab ARGV` (argparse errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("trainlab: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_train_writes_run_folder_and_store(tmp_path, capsys):
    assert main(["train", *TINY[:-1], "--out", str(tmp_path / "run"),
                 "--db", str(tmp_path / "t.db")]) == 0
    out = capsys.readouterr().out
    assert "test_acc" in out and "done" in out  # the summary table
    run = tmp_path / "run"
    for f in ("config.json", "env.json", "status.json", "metrics.csv",
              "checkpoints/last.pt", "figures/curves.png"):
        assert (run / f).is_file(), f
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "done" and status["step"] == 24
    env = json.loads((run / "env.json").read_text())
    assert {"torch", "python", "device", "seed", "git_revision"} <= set(env)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["width"] == 8 and cfg["optim"]["lr"] == pytest.approx(0.1)
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,") and len(lines) == 1 + 6
    r = RunStore(tmp_path / "t.db").get_run(status["run_id"])
    assert r["status"] == "done" and r["final_metrics"]["step"] == 24
    assert len(RunStore(tmp_path / "t.db").metrics(r["id"])) == 6


def test_existing_folder_needs_resume_or_force(tmp_path, capsys):
    assert _train(tmp_path) == 0
    capsys.readouterr()
    assert _train(tmp_path) == 2
    _one_line_error(capsys, "already exists", "--resume", "--force")
    assert _train(tmp_path, "--force") == 0
    assert main(["train", "--resume", "--force", "--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, "not both")
    assert main(["train", "--resume"]) == 2
    _one_line_error(capsys, "--resume needs --out")


def test_resume_with_different_config_lists_differences(tmp_path, capsys):
    assert _train(tmp_path) == 0
    capsys.readouterr()
    assert _train(tmp_path, "--resume", "--set", "model.width=16", "--lr", "0.5") == 2
    line = _one_line_error(capsys, "differs")
    assert "model.width: stored 8, given 16" in line and "optim.lr: stored 0.1, given 0.5" in line


def test_resume_refuses_corrupt_checkpoint(tmp_path, capsys):
    assert _train(tmp_path) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    capsys.readouterr()
    assert _train(tmp_path, "--resume") == 2
    _one_line_error(capsys, "last.pt", "corrupt or truncated")


def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, capsys):
    import trainlab.runs.run as runs

    assert _train(tmp_path, out="full") == 0

    class InterruptAt12(runs.MetricsCSV):
        def on_log(self, trainer, row):
            super().on_log(trainer, row)
            if row["step"] == 12:
                trainer.interrupt()

    monkeypatch.setattr(runs, "MetricsCSV", InterruptAt12)
    assert _train(tmp_path, out="cut") == 130  # Ctrl-C: checkpoint saved, status 130
    status = json.loads((tmp_path / "cut" / "status.json").read_text())
    assert status["status"] == "interrupted" and status["step"] == 12
    store = RunStore(tmp_path / "t.db")
    assert store.get_run(status["run_id"])["status"] == "interrupted"
    monkeypatch.undo()
    assert _train(tmp_path, "--resume", out="cut") == 0
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert store.get_run(status["run_id"])["status"] == "done"  # same row, now finished
    full_csv = (tmp_path / "full" / "metrics.csv").read_text()
    cut_csv = (tmp_path / "cut" / "metrics.csv").read_text()
    assert [ln.split(",")[0] for ln in full_csv.splitlines()] == [
        ln.split(",")[0] for ln in cut_csv.splitlines()]


def test_divergence_marks_run_diverged_and_keeps_files(tmp_path, capsys):
    rc = _train(tmp_path, "--lr", "1e30", "--activation", "relu")
    assert rc == 1
    err = capsys.readouterr().err
    assert "diverged at step" in err and "first appeared in" in err
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "diverged" and "diverged at step" in status["message"]
    assert (tmp_path / "run" / "config.json").is_file()
    assert RunStore(tmp_path / "t.db").get_run(status["run_id"])["status"] == "diverged"


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--config", "missing.yaml"], ["missing.yaml", "does not exist"]),
        (["--width", "abc"], ["--width", "invalid int value"]),
        (["--set", "model.width=-1"], ["model.width must be >= 1"]),
        (["--set", "model.widht=4"], ["unknown key model.widht", "Did you mean model.width"]),
        (["--optimizer", "adm"], ["Unknown optim 'adm'"]),
        (["--device", "tpu"], ["device must be"]),
        (["--set", "width"], ["--set takes KEY=VALUE"]),
    ],
)
def test_train_bad_input_is_one_line_exit_2(tmp_path, capsys, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    assert _rc(["train", "--out", str(tmp_path / "o"), "--no-db", *args]) == 2
    _one_line_error(capsys, *needles)
    assert not (tmp_path / "o").exists()  # nothing ran


def test_unreadable_yaml_and_unwritable_folder(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {width: [\n")
    assert main(["train", "--config", str(bad), "--no-db"]) == 2
    _one_line_error(capsys, "cannot parse config file", "bad.yaml")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", *TINY, "--out", str(blocker / "run"), "--no-db"]) == 2
    _one_line_error(capsys, "cannot create output folder")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert main(["train", *TINY, "--out", str(ro / "run"), "--no-db"]) == 2
        _one_line_error(capsys, "cannot create output folder")


def test_runs_list_show_compare_export(tmp_path, capsys):
    assert _train(tmp_path, out="a") == 0
    assert _train(tmp_path, "--width", "16", out="b") == 0
    capsys.readouterr()
    db = ["--db", str(tmp_path / "t.db")]
    assert main(["runs", "list", *db]) == 0
    out = capsys.readouterr().out
    assert "blobs mlp 2x8 relu none init=default sgd" in out and "blobs mlp 2x16" in out
    assert main(["runs", *db, "show", "2"]) == 0
    out = capsys.readouterr().out
    assert "config.model.width" in out and "16" in out and "final.test_acc" in out
    assert main(["runs", *db, "compare", "1", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["run", "1", "run", "2"]
    width_row = next(ln for ln in out if ln.startswith("model.width"))
    assert width_row.split() == ["model.width", "8", "16"]
    assert not any(ln.startswith("seed") for ln in out)  # equal settings hidden
    assert main(["runs", *db, "export", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("id,name,status") and len(lines) == 3
    assert main(["runs", *db, "export", "--csv", str(tmp_path / "x.csv")]) == 0
    assert (tmp_path / "x.csv").read_text().count("\n") == 3


def test_runs_errors(tmp_path, capsys):
    assert main(["runs", "--db", str(tmp_path / "none.db"), "list"]) == 2
    _one_line_error(capsys, "no results store")
    assert _train(tmp_path) == 0
    capsys.readouterr()
    db = ["--db", str(tmp_path / "t.db")]
    assert main(["runs", *db, "show", "99"]) == 2
    _one_line_error(capsys, "No run with id 99")
    assert main(["runs", *db, "compare", "1"]) == 2
    _one_line_error(capsys, "at least two run ids")
    assert _rc(["runs", *db, "show", "one"]) == 2
    _one_line_error(capsys, "invalid int value")


def test_demo_small_run_and_errors(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "30", "--depth", "3", "--width", "16",
                 "--db", str(tmp_path / "t.db"), "--quiet", "--device", "cpu",
                 "--no-studies"]) == 0
    text = capsys.readouterr().out
    assert "tanh, N(0, 0.01²) init" in text and "xavier+bn @init" in text
    assert f"Report: {(out / 'index.html').resolve()}" in text
    for f in ("index.html", "curves.png", "activation_std.png"):
        assert (out / f).is_file()
    assert len(RunStore(tmp_path / "t.db").list_runs(status="done")) == 3
    assert main(["demo", "--steps", "0"]) == 2
    _one_line_error(capsys, "--steps must be >= 1")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert main(["demo", "--out", str(other), "--no-db"]) == 2
    _one_line_error(capsys, "holds no earlier demo")


def test_installed_command_reports_one_line(tmp_path):
    exe = shutil.which("trainlab") or str(Path(sys.executable).with_name("trainlab"))
    p = subprocess.run([exe, "train", "--config", str(tmp_path / "nope.toml")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"trainlab: error: config file {str(tmp_path / 'nope.toml')!r} does not exist."]


def test_preprocessing_and_build_errors_leave_no_folder(tmp_path, capsys):
    base = ["train", "--dataset", "mnist1d", "--steps", "8", "--batch-size", "64", "--quiet",
            "--no-db", "--device", "cpu", "--width", "8", "--depth", "1"]
    assert main([*base, "--preprocess", "pca", "--set", "data.preprocess_options.bogus=3",
                 "--out", str(tmp_path / "bad")]) == 2
    _one_line_error(capsys, "bogus")
    assert not (tmp_path / "bad").exists()
    assert main([*base, "--preprocess", "standardize", "--out", str(tmp_path / "ok")]) == 0
    cfg = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert cfg["data"]["preprocess"] == "standardize"


@pytest.mark.slow
def test_ctrl_c_on_the_command_saves_marks_interrupted_and_exits_130(tmp_path):
    import signal
    import time

    exe = shutil.which("trainlab") or str(Path(sys.executable).with_name("trainlab"))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(
        [exe, "train", "--dataset", "blobs", "--depth", "1", "--width", "4", "--steps",
         "100000000", "--set", "log_every=10", "--out", str(out), "--db",
         str(tmp_path / "t.db"), "--quiet", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until training has logged a few rows
            m = out / "metrics.csv"
            if m.exists() and len(m.read_text().splitlines()) > 3:
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == status["step"] > 0
    assert RunStore(tmp_path / "t.db").get_run(status["run_id"])["status"] == "interrupted"


def test_train_with_probes_writes_records_figures_and_says_where(tmp_path, capsys):
    from trainlab.probes import load_records

    base = ["train", *TINY[:-1], "--out", str(tmp_path / "run"), "--no-db"]
    assert main([*base, "--probe", "activations,jacobian", "--probe", "updates",
                 "--probe-every", "8"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    assert f"probe records  {run / 'probes.csv'}" in out
    assert f"probe figures  {run / 'figures' / 'probe_*.png'}" in out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["probes"] == ["activations", "updates", "jacobian"] and cfg["probe_every"] == 8
    log = load_records(run)
    assert {"act_std", "update_ratio", "jac_sv_max"} <= set(log.quantities())
    assert "grad_out_std" not in log.quantities()
    assert sorted(set(log.steps("update_ratio"))) == [0, 8, 16, 23]  # + the last step
    assert (run / "figures" / "probe_act_moments.png").is_file()
    assert list((run / "figures").glob("probe_jacobian_step*.png"))
    # resuming with other probes is refused, naming the difference
    assert main([*base, "--probe", "all", "--resume"]) == 2
    line = _one_line_error(capsys, "differs", "probes: stored")
    assert "probe_every" not in line  # not given with --resume: the stored 8 is kept


def test_unknown_probe_is_one_line_with_close_matches(tmp_path, capsys):
    assert _train(tmp_path, "--probe", "activations,gradiens") == 2
    _one_line_error(capsys, "unknown probe 'gradiens'", "Did you mean gradients",
                    "Allowed: activations, gradients, weights, updates, jacobian, all")
    assert not (tmp_path / "run").exists()


def test_force_marks_the_old_row_overwritten_in_runs_list(tmp_path, capsys):
    assert _train(tmp_path) == 0
    assert _train(tmp_path, "--force") == 0
    store = RunStore(tmp_path / "t.db")
    old, new = store.list_runs()
    assert old["status"] == "overwritten" and new["status"] == "done"
    assert old["folder"] == new["folder"]
    capsys.readouterr()
    assert main(["runs", "list", "--db", str(tmp_path / "t.db")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:2] == [str(old["id"]), "overwritten"]
    assert lines[3].split()[:2] == [str(new["id"]), "done"]
    assert main(["runs", "list", "--status", "overwritten", "--db", str(tmp_path / "t.db")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


# -- --builder seq_classifier: recurrent nets on a sequence dataset ---------------------------
@pytest.mark.parametrize("norm", ["none", "bn_frame", "bn_seq", "ln"])
def test_train_seq_classifier_with_each_recurrent_norm(tmp_path, capsys, norm):
    out = tmp_path / norm
    assert main(["train", "--dataset", "mnist1d", "--set", "data.options.num_samples=200",
                 "--builder", "seq_classifier", "--norm", norm, "--depth", "1", "--width", "6",
                 "--optimizer", "adam", "--steps", "4", "--batch-size", "16", "--eval-every",
                 "4", "--set", "log_every=2", "--device", "cpu", "--quiet", "--no-db",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == f"done: {out}"
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "done" and status["step"] == 4
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["builder"] == "seq_classifier" and cfg["model"]["norm"] == norm
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 and "test_acc" in lines[0]


def test_train_seq_classifier_refuses_keys_that_do_not_apply(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist1d", "--builder", "seq_classifier",
                 "--activation", "tanh", "--norm", "bn", "--steps", "2", "--no-db",
                 "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "model.activation does not apply to model.builder 'seq_classifier'",
                    "Received: model.activation='tanh'")
    assert main(["train", "--dataset", "mnist1d", "--builder", "seq_classifier", "--dropout",
                 "0.3", "--steps", "2", "--no-db", "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "model.dropout does not apply",
                    "Allowed: model.dropout=0.0 (the default, unused)",
                    "Received: model.dropout=0.3")
    assert not (tmp_path / "r").exists()


def test_builder_help_names_every_registered_builder(capsys):
    import re

    from trainlab.nn import MODELS

    assert _rc(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    m = re.search(r"--builder BUILDER (.*?) --depth", text)
    assert m, text
    for name in MODELS.names():
        assert name in m.group(1), (name, m.group(1))
    assert "seq_classifier" in MODELS.names()
