"""`trainlab sweep`: grid expansion and checks, packs, one store row per run, resume after a
kill (in process, and a real SIGKILL of a subprocess), refusal of another grid, the report,
`runs compare --sweep`."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainlab.cli import main
from trainlab.runs.run import execute_run
from trainlab.store import RunStore
from trainlab.train import PackTrainer
from trainlab.train import sweep as S


def _grid(**over):
    g = {
        "name": "tiny",
        "fixed": {"data": {"name": "spirals", "options": {"n_train": 96, "n_test": 48}},
                  "model": {"builder": "mlp", "depth": 1, "width": 8},
                  "optim": {"name": "momentum"}, "steps": 6, "batch_size": 32,
                  "log_every": 3, "eval_every": 3, "device": "cpu"},
        "axes": {"model.activation": ["relu", "tanh"], "optim.lr": [0.1, 0.03],
                 "seed": [0, 1]},
    }
    g.update(over)
    return g


def _write(tmp_path: Path, grid: dict, name="grid.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(grid))
    return p


def test_expand_and_pack_plan():
    grid = S.load_grid(_grid())
    runs = S.expand_grid(grid)
    assert len(runs) == 8
    assert [r.values["seed"] for r in runs[:2]] == [0, 1]  # the last axis varies fastest
    assert runs[0].config.model.activation == "relu" and runs[0].config.optim.lr == 0.1
    plan = S.plan_packs(grid, runs)
    # lr and seed are per member; the activation changes the model: two packs of four
    assert sorted(map(sorted, plan.packs)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert plan.singles == []
    [note] = plan.notes
    assert "axis model.activation changes the model" in note
    small = S.plan_packs(grid, runs, max_pack=3)
    assert sorted(len(p) for p in small.packs) == [3, 3] and small.singles == [3, 7]
    assert S.plan_packs(grid, runs, pack=False).singles == list(range(8))


def test_optimizer_kinds_split_and_probes_run_alone():
    g = _grid(axes={"optim.name": ["sgd", "momentum", "adam"], "seed": [0, 1]})
    plan = S.plan_packs(S.load_grid(g), S.expand_grid(S.load_grid(g)))
    assert sorted(map(len, plan.packs)) == [2, 4]  # sgd+momentum share a kind
    assert any("mixes kinds of optimizer (adam, sgd)" in n for n in plan.notes)
    g = _grid(axes={"seed": [0, 1]})
    g["fixed"]["probes"] = ["weights"]
    plan = S.plan_packs(S.load_grid(g), S.expand_grid(S.load_grid(g)))
    assert plan.packs == [] and plan.singles == [0, 1]
    assert any("one by one" in n for n in plan.notes)


def test_dry_run_prints_runs_and_packs(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", str(_write(tmp_path, _grid())), "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "8 runs, 2 packs (8 runs), 0 runs alone" in text
    assert "pack 1: 4 members (runs 0-3)" in text and "pack 2: 4 members (runs 4-7)" in text
    assert text.count("axis model.activation changes") == 1
    assert not out.exists()


def test_unknown_technique_lists_close_matches_before_anything_runs(tmp_path, capsys):
    g = _grid(axes={"model.activation": ["relu", "relux"], "seed": [0]})
    out = tmp_path / "sw"
    assert main(["sweep", str(_write(tmp_path, g)), "--out", str(out),
                 "--db", str(tmp_path / "db.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "run 1 (model.activation=relux" in err and "relu" in err
    assert "nothing was run" in err
    assert not out.exists()
    with pytest.raises(ValueError, match=r"unknown key model.widht. Did you mean model.width"):
        S.expand_grid(S.load_grid(_grid(axes={"model.widht": [4]})))


def test_grid_file_errors_and_set_overrides(tmp_path):
    with pytest.raises(ValueError, match=r"axis optim.lr must be a non-empty list"):
        S.load_grid(_grid(axes={"optim.lr": 0.1}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) in the grid: axis \(did you mean"):
        S.load_grid({**_grid(), "axis": {}})
    with pytest.raises(ValueError, match="needs axes"):
        S.load_grid(_grid(axes={}))
    g = S.load_grid(_grid(), ["steps=9", "seed=5", "model.width=4"])
    assert g.fixed["steps"] == 9 and g.axes["seed"] == [5] and g.fixed["model"]["width"] == 4
    toml = tmp_path / "g.toml"
    toml.write_text('name = "t"\n[fixed]\nsteps = 4\n[axes]\n"optim.lr" = [0.1, 0.2]\n')
    assert S.load_grid(toml).axes == {"optim.lr": [0.1, 0.2]}


def _finals(store: RunStore) -> dict[str, dict]:
    return {Path(r["folder"]).name: r["final_metrics"] for r in store.list_runs()}


def test_sweep_rows_resume_compare_and_refuse_another_grid(tmp_path, capsys):
    db = tmp_path / "db.sqlite"
    out = tmp_path / "sw"
    grid = S.load_grid(_grid(axes={"optim.lr": [0.1, 0.03]}, name="fast"))
    res = S.run_sweep(grid, out, db=db, progress=False, report=False)
    assert res.trained == [0, 1] and res.plan.packs == [[0, 1]]
    store = RunStore(db)
    rows = store.list_runs()
    assert [r["config"]["optim"]["lr"] for r in rows] == [0.1, 0.03]  # each its own config
    assert all([m["step"] for m in store.metrics(r["id"])] == [3, 6] for r in rows)
    assert rows[0]["final_metrics"]["train_loss"] != rows[1]["final_metrics"]["train_loss"]
    again = S.run_sweep(grid, out, db=db, progress=False, report=False)
    assert again.trained == [] and again.skipped == [0, 1] and len(store.list_runs()) == 2
    capsys.readouterr()
    assert main(["runs", "compare", "--sweep", str(out)]) == 0
    text = capsys.readouterr().out
    assert "run 1" in text and "run 2" in text and "optim.lr" in text
    other = S.load_grid(_grid(axes={"seed": [3]}))
    with pytest.raises(ValueError, match="holds another grid .*--force"):
        S.run_sweep(other, out, db=db, progress=False, report=False)
    assert len(store.list_runs()) == 2  # refused before anything was changed
    S.run_sweep(other, out, db=db, progress=False, report=False, force=True)
    assert [r["status"] for r in store.list_runs()] == ["overwritten", "overwritten", "done"]


@pytest.mark.slow
def test_sweep_records_every_run_resumes_and_reports(tmp_path, capsys):
    db = tmp_path / "db.sqlite"
    out = tmp_path / "sw"
    grid = S.load_grid(_grid(axes={"model.activation": ["relu", "tanh"],
                                   "optim.lr": [0.1, 0.03]}, name="rep"))
    res = S.run_sweep(grid, out, db=db, progress=False)
    assert len(res.trained) == 4 and res.skipped == []
    store = RunStore(db)
    rows = store.list_runs()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    by_folder = {Path(r["folder"]).name: r for r in rows}
    for run in res.plan.runs:
        row = by_folder[run.folder]
        assert row["config"]["optim"]["lr"] == run.config.optim.lr  # its own config
        assert row["config"]["seed"] == run.config.seed
        series = store.metrics(row["id"])
        assert [m["step"] for m in series] == [3, 6] and "test_acc" in series[-1]
    # a packed member is the run `trainlab train` would make of its config
    run3 = res.plan.runs[3]
    solo = execute_run(run3.config, tmp_path / "solo", progress=False)
    packed = by_folder[run3.folder]["final_metrics"]
    assert packed["train_loss"] == pytest.approx(solo.history.final()["train_loss"], rel=1e-5)
    assert packed["test_acc"] == pytest.approx(solo.history.final()["test_acc"], abs=1e-6)
    # the report
    with open(out / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and table[0]["status"] == "done"
    for name in ("heatmap_model_activation__optim_lr.png", "best_optim_lr.png",
                 "best_model_activation.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    html = (out / "index.html").read_text()
    assert "figures/heatmap_model_activation__optim_lr.png" in html and "Runs (best first)" in html
    # again: nothing trained, nothing repeated
    again = S.run_sweep(grid, out, db=db, progress=False)
    assert again.trained == [] and len(again.skipped) == 4
    assert len(store.list_runs()) == 4
    # runs compare works on the sweep
    capsys.readouterr()
    assert main(["runs", "compare", "--sweep", str(out)]) == 0
    text = capsys.readouterr().out
    assert "run 1" in text and "run 4" in text and "optim.lr" in text
    # another grid in the same folder is refused, unless --force
    other = S.load_grid(_grid(axes={"seed": [3]}))
    with pytest.raises(ValueError, match="holds another grid .*--force"):
        S.run_sweep(other, out, db=db, progress=False)
    forced = S.run_sweep(other, out, db=db, progress=False, force=True)
    assert len(forced.trained) == 1
    statuses = [r["status"] for r in store.list_runs()]
    assert statuses.count("overwritten") == 4 and statuses.count("done") == 1
    assert json.loads((out / "sweep.json").read_text())["grid"]["axes"] == {"seed": [3]}


def test_killed_sweep_resumes_without_losing_or_repeating(tmp_path, monkeypatch):
    grid = S.load_grid(_grid(axes={"optim.lr": [0.1, 0.03, 0.01], "seed": [0, 1]}))
    ref_db = tmp_path / "ref.sqlite"
    S.run_sweep(grid, tmp_path / "ref", db=ref_db, progress=False, max_pack=2, report=False)
    ref = _finals(RunStore(ref_db))
    db = tmp_path / "db.sqlite"
    calls = {"n": 0}
    real = PackTrainer.fit

    def dies_in_third_pack(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # as a kill in the middle of the pack: its rows say "running"
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(PackTrainer, "fit", dies_in_third_pack)
    with pytest.raises(KeyboardInterrupt):
        S.run_sweep(grid, tmp_path / "sw", db=db, progress=False, max_pack=2, report=False)
    monkeypatch.setattr(PackTrainer, "fit", real)
    store = RunStore(db)
    assert [r["status"] for r in store.list_runs()].count("done") == 4
    assert [r["status"] for r in store.list_runs()].count("interrupted") == 2  # mid-pack
    res = S.run_sweep(grid, tmp_path / "sw", db=db, progress=False, max_pack=2, report=False)
    assert len(res.skipped) == 4 and res.trained == [4, 5]
    rows = store.list_runs()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"done"}
    got = _finals(store)
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k]["train_loss"] == pytest.approx(ref[k]["train_loss"], rel=1e-5)


@pytest.mark.slow
def test_sigkill_of_a_running_sweep_then_resume(tmp_path):
    """A real ``kill -9`` of a sweep subprocess after its first pack is recorded."""
    grid = _grid()
    path = _write(tmp_path, grid)
    db = tmp_path / "db.sqlite"
    out = tmp_path / "sw"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "trainlab", "sweep", str(path), "--out", str(out), "--db",
           str(db), "--max-pack", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if db.exists():
                done = [r for r in RunStore(db, readonly=True).list_runs()
                        if r["status"] == "done"]
                if done:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = RunStore(db).list_runs()
    finished = {r["folder"] for r in before if r["status"] == "done"}
    assert 0 < len(finished) < 8
    assert main(["sweep", str(path), "--out", str(out), "--db", str(db), "--max-pack", "2",
                 "--no-progress"]) == 0
    rows = RunStore(db).list_runs()
    assert len({r["folder"] for r in rows}) == 8
    assert [r for r in rows if r["status"] == "done"].__len__() == 8
    # each run has one live row; none finished before was trained again
    for r in rows:
        if r["folder"] in finished:
            old = next(b for b in before if b["folder"] == r["folder"] and b["status"] == "done")
            assert r["id"] == old["id"] and r["finished"] == old["finished"]
    ref_db = tmp_path / "ref.sqlite"
    S.run_sweep(S.load_grid(grid), tmp_path / "ref", db=ref_db, progress=False, max_pack=2)
    ref, got = _finals(RunStore(ref_db)), _finals(RunStore(db))
    for k in ref:
        assert got[k]["test_acc"] == pytest.approx(ref[k]["test_acc"], abs=1e-6)
