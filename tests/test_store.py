"""Results store: rows, series, statuses, WAL, and two concurrent writer processes."""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import sqlite3

import pytest
import torch

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


def test_new_run_in_a_folder_marks_earlier_rows_overwritten(tmp_path):
    s = RunStore(tmp_path / "t.db")
    a = s.create_run({}, folder=tmp_path / "run")
    s.finish(a, "done", final_metrics={"test_acc": 0.9})
    other = s.create_run({}, folder=tmp_path / "other")
    s.finish(other, "diverged")
    b = s.create_run({}, folder=tmp_path / "sub" / ".." / "run")  # the same folder, resolved
    ra = s.get_run(a)
    assert ra["status"] == "overwritten" and f"overwritten by run {b}" in ra["message"]
    assert ra["final_metrics"] == {"test_acc": 0.9}  # the record itself is kept
    assert s.get_run(b)["status"] == "running"
    assert s.get_run(other)["status"] == "diverged"
    assert [r["id"] for r in s.list_runs(status="overwritten")] == [a]
    # a run whose folder was taken over while it ran stays "overwritten" when it finishes
    s.finish(b, "done")
    c = s.create_run({}, folder=tmp_path / "run")
    s.finish(c, "done")
    assert s.get_run(b)["status"] == "overwritten" and s.get_run(c)["status"] == "done"
    assert s.get_run(a)["message"].endswith(f"run {b}")  # an older mark keeps its message


def test_a_run_whose_folder_is_taken_over_while_it_runs_stays_overwritten(tmp_path):
    """Run a is still running when run b takes its folder; a finishing later must not turn
    its row back to "done" (its folder now holds b's files)."""
    s = RunStore(tmp_path / "t.db")
    a = s.create_run({}, folder=tmp_path / "run")
    b = s.create_run({}, folder=tmp_path / "run")
    assert s.get_run(a)["status"] == "overwritten"
    s.finish(a, "done", final_metrics={"test_acc": 0.5})
    ra = s.get_run(a)
    assert ra["status"] == "overwritten" and f"overwritten by run {b}" in ra["message"]
    s.finish(b, "diverged", message="loss NaN")
    assert s.get_run(b)["status"] == "diverged"


def test_create_run_stores_values_json_cannot_hold_as_text(tmp_path):
    """A config may hold paths and devices (what the CLI builds); they are stored as their
    text, not refused, and a run without env has an empty one (not null)."""
    import pathlib

    s = RunStore(tmp_path / "t.db")
    rid = s.create_run({"out": pathlib.Path("runs/a"), "device": torch.device("cpu"),
                        "lr": 0.1}, folder=tmp_path / "a")
    row = s.get_run(rid)
    assert row["config"] == {"device": "cpu", "lr": 0.1, "out": "runs/a"}
    assert row["env"] == {}


def test_mark_overwritten_without_keep_marks_the_first_run_too(tmp_path):
    """The store's first run has id 1: 'keep nothing' must not be spelled as a valid id
    (a surviving mutant read the sentinel -1 as +1 and kept run 1); the default message says
    what happened, a given one is stored as it is."""
    s = RunStore(tmp_path / "t.db")
    first = s.create_run({}, folder=tmp_path / "a")
    other = s.create_run({}, folder=tmp_path / "b")
    assert first == 1
    assert s.mark_overwritten(tmp_path / "a") == 1
    row = s.get_run(first)
    assert row["status"] == "overwritten" and row["message"] == "its folder was overwritten"
    assert s.mark_overwritten(tmp_path / "b", message="replaced by hand") == 1
    assert s.get_run(other)["message"] == "replaced by hand"


def test_mark_overwritten_is_one_transaction_and_counts_rows(tmp_path):
    s = RunStore(tmp_path / "t.db")
    ids = [s.create_run({}, folder=tmp_path / "r", name=str(i)) for i in range(2)]
    keep = s.create_run({}, folder=tmp_path / "r")
    # create_run already marked the first two; mark_overwritten changes nothing more ...
    assert s.mark_overwritten(tmp_path / "r", keep=keep) == 0
    assert [s.get_run(i)["status"] for i in ids] == ["overwritten", "overwritten"]
    # ... until the kept row's folder is overwritten too
    assert s.mark_overwritten(tmp_path / "r") == 1
    assert s.get_run(keep)["status"] == "overwritten"
    assert s.mark_overwritten(tmp_path / "nowhere") == 0
    with pytest.raises(ValueError, match="status must be one of.*status='overwritten'"):
        s.finish(keep, "overwritten")


def test_overwritten_rows_are_written_atomically(tmp_path, monkeypatch):
    s = RunStore(tmp_path / "t.db")
    a = s.create_run({}, folder=tmp_path / "r")
    s.finish(a, "done")
    real = sqlite3.Connection.execute
    calls = []

    class Boom(sqlite3.Connection):
        def execute(self, sql, *args):
            calls.append(sql)
            if sql.startswith("UPDATE runs SET status='overwritten'"):
                raise sqlite3.OperationalError("disk I/O error (simulated)")
            return real(self, sql, *args)

    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, factory=Boom, **k))
    with pytest.raises(OSError, match="simulated"):
        s.create_run({}, folder=tmp_path / "r")
    monkeypatch.undo()
    # the insert was rolled back with the failed update: still one run, still "done"
    assert [(r["id"], r["status"]) for r in s.list_runs()] == [(a, "done")]


# -- checks on open, read-only use --------------------------------------------------------
def _raw(path):
    """A plain connection, closed at the end of the with block (sqlite3's own is not)."""
    from contextlib import closing

    return closing(sqlite3.connect(path, isolation_level=None))


def _store_with_runs(path, n=5):
    s = RunStore(path)
    for i in range(n):
        rid = s.create_run({"i": i})
        s.finish(rid, "done", series=[{"step": k, "loss": 1.0} for k in range(50)])
    with _raw(path) as con:  # move the WAL's pages into the file
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return s


def _corrupt_page(path, name):
    """Overwrite the cell pointers of the root page of table or index ``name``."""
    with _raw(path) as con:
        (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name=?",
                              (name,)).fetchone()
        (size,) = con.execute("PRAGMA page_size").fetchone()
    with open(path, "r+b") as f:
        f.seek((root - 1) * size + 8)
        f.write(bytes(range(200, 256)) * 2)


def test_a_zero_byte_store_is_refused_not_read_as_empty(tmp_path):
    path = tmp_path / "t.db"
    path.write_bytes(b"")
    for readonly in (False, True):
        with pytest.raises(OSError, match=r"t.db.*is empty \(0 bytes\).*gone"):
            RunStore(path, readonly=readonly)
    assert path.stat().st_size == 0  # left as it was, for the user to restore
    with pytest.raises(OSError, match="not an SQLite database"):
        (tmp_path / "x.db").write_text("hello"), RunStore(tmp_path / "x.db")


def test_corrupt_pages_are_found_on_open(tmp_path):
    path = tmp_path / "t.db"
    _store_with_runs(path)
    _corrupt_page(path, "sqlite_autoindex_metrics_1")  # a page `runs list` never reads
    for readonly in (False, True):
        with pytest.raises(OSError) as e:
            RunStore(path, readonly=readonly)
        assert "t.db" in str(e.value) and "is corrupt" in str(e.value)
        assert "\n" not in str(e.value) and "tree page" in str(e.value)


def test_a_large_store_checks_its_runs_table_on_open_and_everything_on_demand(
        tmp_path, monkeypatch):
    import trainlab.store as store

    monkeypatch.setattr(store, "FULL_CHECK_BYTES", 0)  # as if the file were large
    path = tmp_path / "t.db"
    _store_with_runs(path)
    _corrupt_page(path, "sqlite_autoindex_metrics_1")
    s = RunStore(path, readonly=True)  # only the runs table is checked on open ...
    with pytest.raises(OSError, match="is corrupt"):
        s.check(full=True)  # ... every page on demand (`trainlab runs check`)
    path2 = tmp_path / "u.db"
    _store_with_runs(path2)
    _corrupt_page(path2, "runs")
    with pytest.raises(OSError, match="is corrupt"):
        RunStore(path2, readonly=True)


def test_read_only_use_never_changes_the_store(tmp_path):
    path = tmp_path / "t.db"
    s = _store_with_runs(path, n=2)
    with _raw(path) as con:
        assert con.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    before = path.read_bytes()
    ro = RunStore(path, readonly=True)
    assert [r["id"] for r in ro.list_runs()] == [1, 2] and ro.metrics(1)
    ro.export_csv()
    with pytest.raises(OSError, match="read-only"):
        ro.create_run({})
    assert path.read_bytes() == before
    with _raw(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not set to WAL
    other = tmp_path / "other.db"
    with _raw(other) as con:
        con.execute("CREATE TABLE notes (x)")
    with pytest.raises(OSError, match="not a trainlab results store"):
        RunStore(other, readonly=True)
    with _raw(other) as con:  # no table was created in it
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["notes"]
    with pytest.raises(OSError, match="no results store"):
        RunStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    assert s.list_runs()[0]["status"] == "done"


def test_a_locked_store_is_reported_quickly_to_readers(tmp_path):
    import time

    path = tmp_path / "t.db"
    _store_with_runs(path, n=1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")  # in WAL mode writers never block readers
    holder.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.perf_counter()
        with pytest.raises(OSError, match=r"locked by another process \(waited 0.3 s\)"):
            RunStore(path, readonly=True, timeout=0.3).list_runs()
        assert time.perf_counter() - t0 < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_unknown_status_filter_lists_the_allowed(tmp_path):
    s = _store_with_runs(tmp_path / "t.db", n=1)
    with pytest.raises(ValueError, match=r"unknown run status 'bogus'.*Allowed: running, "
                                         r"running\?, done, diverged, failed, interrupted"):
        s.list_runs(status="bogus")
    with pytest.raises(ValueError, match="Did you mean done"):
        s.list_runs(status="dnoe")
    assert s.list_runs(status="running?") == []


def test_a_new_store_is_never_seen_empty(tmp_path):
    path = tmp_path / "new" / "t.db"
    RunStore(path)
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.db"]  # no temporary left


def test_a_writer_waits_at_most_its_timeout_then_says_the_store_is_locked(tmp_path):
    import time

    path = tmp_path / "t.db"
    s = RunStore(path, timeout=0.3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer's transaction that does not end
    try:
        t0 = time.perf_counter()
        with pytest.raises(OSError, match=r"t.db.*locked by another process \(waited"):
            s.create_run({})
        assert time.perf_counter() - t0 < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert s.list_runs() == []
