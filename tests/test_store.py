"""Results store: rows, series, statuses, WAL, and two concurrent writer processes."""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import sqlite3

import pytest

from trainlab.store import RunStore


def test_create_finish_and_read_back(tmp_path):
    s = RunStore(tmp_path / "sub" / "t.db")
    rid = s.create_run({"model": {"width": 8}, "seed": 3}, seed=3, env={"torch": "x"},
                       folder=tmp_path / "run", name="r")
    r = s.get_run(rid)
    assert r["status"] == "running" and r["config"]["model"]["width"] == 8
    assert r["folder"] == str((tmp_path / "run").resolve())
    series = [{"step": 5, "epoch": 0.5, "train_loss": 1.5},
              {"step": 10, "epoch": 1.0, "train_loss": 1.0, "test_acc": 0.5}]
    s.finish(rid, "done", final_metrics={"train_loss": 1.0, "test_acc": float("nan")},
             series=series)
    r = s.get_run(rid)
    assert r["status"] == "done" and r["finished"] >= r["created"]
    assert r["final_metrics"] == {"train_loss": 1.0, "test_acc": None}  # NaN stored as null
    assert s.metrics(rid) == [{"step": 5, "train_loss": 1.5},
                              {"step": 10, "test_acc": 0.5, "train_loss": 1.0}]
    assert s.find_by_folder(tmp_path / "run")["id"] == rid
    with sqlite3.connect(s.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_status_validation_and_unknown_id(tmp_path):
    s = RunStore(tmp_path / "t.db")
    rid = s.create_run({})
    with pytest.raises(ValueError, match="status must be one of.*status='finished'"):
        s.finish(rid, "finished")
    with pytest.raises(ValueError, match="No run with id 99"):
        s.get_run(99)
    with pytest.raises(ValueError, match="timeout must be > 0.*timeout=0"):
        RunStore(tmp_path / "t.db", timeout=0)


def test_killed_run_is_not_shown_as_finished(tmp_path):
    s = RunStore(tmp_path / "t.db")
    rid = s.create_run({})
    # Pretend the row belongs to a process that no longer exists (killed before finish()).
    with sqlite3.connect(s.path) as con:
        con.execute("UPDATE runs SET pid=? WHERE id=?", (2**22 + 12345, rid))
    assert s.get_run(rid)["status"] == "running?"
    assert s.list_runs(status="done") == []


def test_export_csv_flattens_config_and_final_metrics(tmp_path):
    s = RunStore(tmp_path / "t.db")
    a = s.create_run({"model": {"width": 8}, "seed": 1}, seed=1)
    s.finish(a, "done", final_metrics={"test_acc": 0.75})
    s.create_run({"model": {"width": 16}, "seed": 2}, seed=2)
    rows = list(csv.DictReader(io.StringIO(s.export_csv())))
    assert [r["config.model.width"] for r in rows] == ["8", "16"]
    assert rows[0]["final.test_acc"] == "0.75" and rows[1]["status"] == "running"


def _writer(path: str, tag: int, n: int) -> None:
    s = RunStore(path, timeout=30)
    for i in range(n):
        rid = s.create_run({"writer": tag, "i": i}, seed=i)
        s.finish(rid, "done", final_metrics={"i": i},
                 series=[{"step": k, "loss": float(k)} for k in range(20)])


def test_two_concurrent_writer_processes(tmp_path):
    path = str(tmp_path / "t.db")
    RunStore(path)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, tag, 25)) for tag in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]  # no 'database is locked' escaped
    s = RunStore(path)
    runs = s.list_runs()
    assert len(runs) == 50 and all(r["status"] == "done" for r in runs)
    assert sorted((r["config"]["writer"], r["config"]["i"]) for r in runs) == [
        (w, i) for w in (0, 1) for i in range(25)
    ]
    assert all(len(s.metrics(r["id"])) == 20 for r in runs)
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
