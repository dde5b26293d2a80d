"""The results store seen from the command line: unusable stores are reported before any run
folder is made, read-only commands, status filters, and a failed --force."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing

import pytest

from trainlab.cli import main
from trainlab.store import RunStore

TINY = ["--dataset", "blobs", "--depth", "1", "--width", "4", "--steps", "8",
        "--batch-size", "64", "--set", "log_every=4", "--device", "cpu", "--quiet"]


def _train(tmp_path, *extra, out="run"):
    return main(["train", *TINY, "--out", str(tmp_path / out), "--db", str(tmp_path / "t.db"),
                 *extra])


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("trainlab: error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _corrupt(db):
    with closing(sqlite3.connect(db, isolation_level=None)) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (root,) = con.execute("SELECT rootpage FROM sqlite_master "
                              "WHERE name='sqlite_autoindex_metrics_1'").fetchone()
    with open(db, "r+b") as f:
        f.seek((root - 1) * 4096 + 8)
        f.write(bytes(range(200, 256)) * 2)


@pytest.mark.parametrize("damage", ["empty", "corrupt"])
def test_an_unusable_store_fails_every_command_before_any_folder(tmp_path, capsys, damage):
    assert _train(tmp_path, out="first") == 0
    db = tmp_path / "t.db"
    if damage == "empty":
        for extra in ("-wal", "-shm"):
            (tmp_path / f"t.db{extra}").unlink(missing_ok=True)
        db.write_bytes(b"")
        needle = "is empty (0 bytes)"
    else:
        _corrupt(db)
        needle = "is corrupt"
    capsys.readouterr()
    for action in (["list"], ["show", "1"], ["export", "--csv"], ["compare", "1", "1"]):
        assert main(["runs", "--db", str(db), *action]) == 2
        _one_line(capsys, "t.db", needle)
    assert _train(tmp_path, out="second") == 2
    _one_line(capsys, "t.db", needle)
    assert not (tmp_path / "second").exists()  # found before the run folder was made


def test_runs_check_and_status_filters(tmp_path, capsys):
    assert _train(tmp_path) == 0
    db = ["--db", str(tmp_path / "t.db")]
    capsys.readouterr()
    assert main(["runs", "check", *db]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok (1 runs)")
    assert main(["runs", "list", "--status", "bogus", *db]) == 2
    line = _one_line(capsys, "unknown run status 'bogus'")
    assert "Allowed: running, running?, done, diverged, failed, interrupted, overwritten" in line
    assert main(["runs", "list", "--status", "failed", *db]) == 0
    assert capsys.readouterr().out.strip() == "no runs with status 'failed' (of 1 recorded)"


def test_runs_list_leaves_the_store_as_it_was(tmp_path, capsys):
    assert _train(tmp_path) == 0
    db = tmp_path / "t.db"
    with closing(sqlite3.connect(db, isolation_level=None)) as con:
        con.execute("PRAGMA journal_mode=DELETE")
    before = db.read_bytes()
    for action in (["list"], ["show", "1"], ["export", "--csv"]):
        assert main(["runs", "--db", str(db), *action]) == 0
    assert db.read_bytes() == before
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_failed_force_leaves_the_old_run_and_its_row_intact(tmp_path, capsys, monkeypatch):
    assert _train(tmp_path) == 0
    run = tmp_path / "run"
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def no_rename(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "rename", no_rename)
    capsys.readouterr()
    assert _train(tmp_path, "--force") == 2
    _one_line(capsys, "cannot create output folder", "Permission denied")
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    (row,) = RunStore(tmp_path / "t.db").list_runs()
    assert row["status"] == "done"
    assert _train(tmp_path, "--force") == 0  # a --force that works: then it is overwritten
    old, new = RunStore(tmp_path / "t.db").list_runs()
    assert (old["status"], new["status"]) == ("overwritten", "done")
    assert json.loads((run / "status.json").read_text())["run_id"] == new["id"]
    assert not list(tmp_path.glob(".run.replaced-*"))  # the old folder was deleted


def test_the_old_row_is_not_marked_overwritten_before_the_folder_is_replaced(
        tmp_path, capsys, monkeypatch):
    import trainlab.runs.run as runs

    assert _train(tmp_path) == 0

    def fails(self):
        raise ValueError(f"cannot create output folder {str(self.path)!r}: simulated.")

    monkeypatch.setattr(runs.RunFolder, "create", fails)
    assert _train(tmp_path, "--force") == 2
    (row,) = RunStore(tmp_path / "t.db").list_runs()
    assert row["status"] == "done"


def test_a_force_whose_store_row_cannot_be_written_puts_the_old_run_back(
        tmp_path, capsys, monkeypatch):
    assert _train(tmp_path) == 0
    run = tmp_path / "run"
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def locked(self, *a, **k):
        raise OSError(f"results store {str(self.path)!r} is locked by another process")

    monkeypatch.setattr(RunStore, "create_run", locked)
    capsys.readouterr()
    assert _train(tmp_path, "--force") == 2
    _one_line(capsys, "is locked")
    assert _train(tmp_path, out="new") == 2  # a new folder: none is left behind
    _one_line(capsys, "is locked")
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    assert not (tmp_path / "new").exists()
    assert not list(tmp_path.glob(".run.replaced-*"))
    (row,) = RunStore(tmp_path / "t.db").list_runs()
    assert row["status"] == "done"
