"""The results store: one SQLite file with a row per training run and its metric series.

Layout (default file ``runs/trainlab.db``)::

    runs(id, name, status, config, seed, env, folder, created, finished, final_metrics,
         message, pid, host)
    metrics(run_id, step, name, value)          -- one row per (run, step, metric)

Crash safety follows from three rules:

- The database runs in WAL mode with a busy timeout, and every write is one short
  ``BEGIN IMMEDIATE`` transaction, so two processes training at once take turns instead of
  corrupting the file or surfacing "database is locked". A writer waits at most ``timeout``
  seconds in all (60 by default) for another's lock; then one ``OSError`` says so.
- A run's status moves ``running`` → ``done`` / ``diverged`` / ``failed`` / ``interrupted``.
- :meth:`RunStore.finish` is called only after the run's files are complete, and writes the
  final status, metrics and series in one transaction: a process killed before that leaves
  a row that still says ``running`` (shown as ``running?`` by :meth:`RunStore.list_runs` when
  its process is gone), never one that looks finished.
- A row describes the files of its folder. When a new run is created in a folder (a run
  folder overwritten with ``--force``, or the demo regenerating its folders), the earlier rows
  of that folder are marked ``overwritten`` in the same transaction that inserts the new row
  (:meth:`RunStore.mark_overwritten` does it alone); their config and metrics stay readable.

Checks on open. A store is checked every time it is opened, before anything is read or
written, so an unusable store is reported (one line, naming the file) before a run folder is
made:

- a 0-byte file is refused: SQLite would read it as an empty store, silently losing every
  run recorded earlier (a new store is never 0 bytes: it is built in a temporary file and
  linked into place whole);
- a file that does not start with SQLite's header is refused;
- SQLite's own ``PRAGMA quick_check`` looks for damaged pages: over the whole file while it
  is at most :data:`FULL_CHECK_BYTES` (64 MiB: 0.10 s), and over the ``runs`` table (what
  every command reads) beyond that, so the cost stays small: 0.08 s to open a store of
  100,000 runs (568 MB with 20 logged rows of 4 metrics per run, 2-core CPU,
  ``benchmarks/store_check.py``). The full ``PRAGMA integrity_check`` of that file takes
  about 4 s (as long as ``list_runs`` itself); ``trainlab runs check`` runs it on demand.

Read-only use. ``RunStore(path, readonly=True)`` (``runs list/show/compare/export``) opens the
file with SQLite's ``mode=ro``: it never creates the file, sets ``journal_mode`` or creates a
table, and waits at most ``timeout`` seconds (5 by default) for a lock held by another process
before saying so, instead of retrying for minutes.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["DEFAULT_DB", "FULL_CHECK_BYTES", "LIST_STATUSES", "STATUSES", "RunStore"]

_T = TypeVar("_T")

DEFAULT_DB = Path("runs") / "trainlab.db"
STATUSES = ("running", "done", "diverged", "failed", "interrupted", "overwritten")
# what list_runs can filter on: "running?" is a running row whose process is gone
LIST_STATUSES = ("running", "running?", *STATUSES[1:])
FULL_CHECK_BYTES = 64 * 2**20  # stores up to this size get a quick_check of every page
_SQLITE_MAGIC = b"SQLite format 3\x00"
_READ_TIMEOUT = 5.0
# set only by create_run / mark_overwritten, never by finish()
_FINAL = ("done", "diverged", "failed", "interrupted")
_OVERWRITE_SQL = (
    "UPDATE runs SET status='overwritten', message=? "
    "WHERE folder=? AND id<>? AND status<>'overwritten'"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER,
    env TEXT,
    folder TEXT,
    created REAL NOT NULL,
    finished REAL,
    final_metrics TEXT,
    message TEXT,
    pid INTEGER,
    host TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, name)
);
"""


def _clean(value: Any) -> Any:
    """JSON cannot hold NaN/Inf portably: store them as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class RunStore:
    """The SQLite results store.

    Args:
        path: database file (created with its folder when missing, unless ``readonly``).
            Default ``runs/trainlab.db``.
        timeout: seconds to wait for another process's lock: for a writer, per attempt
            (default 60); read-only, in all (default 5), then ``OSError`` says the store is
            busy.
        readonly: open for reading only (see the module docstring): the file must exist and
            is never changed.

    Each method opens its own short-lived connection, so a store object can be shared
    freely and forked processes never inherit an open connection. Opening checks the file
    (see "Checks on open"); an unusable store raises ``OSError`` naming the file.
    """

    def __init__(
        self,
        path: str | os.PathLike = DEFAULT_DB,
        *,
        timeout: float | None = None,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self.readonly = bool(readonly)
        if timeout is None:
            timeout = _READ_TIMEOUT if readonly else 60.0
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds. Received: timeout={timeout!r}.")
        self.timeout = float(timeout)
        if readonly:
            if not self.path.is_file():
                raise OSError(f"no results store at {str(self.path)!r}.")
        elif not self.path.exists():
            self._create_file()
        self.check()
        if not readonly:
            with self._connect() as con:
                # journal_mode=WAL is persistent in the file; setting it needs no other writer.
                self._retry(lambda: con.execute("PRAGMA journal_mode=WAL"))
                self._retry(lambda: con.executescript(_SCHEMA))

    def _create_file(self) -> None:
        """Build an empty store in a temporary file and link it into place whole, so no
        process ever sees a 0-byte store (which :meth:`check` refuses)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create the store folder {str(self.path.parent)!r}: {e}") from e
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
            finally:
                con.close()
            try:
                os.link(tmp, self.path)  # fails when another process created it meanwhile
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links
                if not self.path.exists():
                    os.replace(tmp, self.path)
        except sqlite3.Error as e:
            raise OSError(f"cannot create the results store {str(self.path)!r}: {e}") from e
        finally:
            for extra in ("", "-wal", "-shm"):
                Path(f"{tmp}{extra}").unlink(missing_ok=True)

    def check(self, full: bool | None = None) -> None:
        """Refuse an unusable store with one ``OSError`` naming the file.

        ``full=None`` (on every open): ``PRAGMA quick_check`` of every page while the file is
        at most :data:`FULL_CHECK_BYTES`, of the ``runs`` table beyond. ``full=True``:
        ``PRAGMA integrity_check`` of the whole file (``trainlab runs check``)."""
        where = repr(str(self.path))
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as e:
            raise OSError(f"cannot read the results store {where}: {e.strerror or e}.") from e
        wal = Path(f"{self.path}-wal")
        if size == 0 and not (wal.is_file() and wal.stat().st_size > 0):
            raise OSError(
                f"results store {where} is empty (0 bytes): the runs recorded in it are gone. "
                "Restore it from a backup, or move it away to start a new store."
            )
        if size and head != _SQLITE_MAGIC:
            raise OSError(f"results store {where} is not an SQLite database (bad header).")
        if full:
            sql = "PRAGMA integrity_check(20)"
        elif size <= FULL_CHECK_BYTES:
            sql = "PRAGMA quick_check(20)"
        else:
            sql = "PRAGMA quick_check(runs)"
        with self._connect() as con:
            found = [r[0] for r in con.execute(sql).fetchall()]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        if self.readonly and found == ["ok"] and not {"runs", "metrics"} <= tables:
            raise OSError(f"{where} is an SQLite file but not a trainlab results store.")
        if found != ["ok"]:
            raise OSError(
                f"results store {where} is corrupt (SQLite's check: "
                f"{' '.join('; '.join(found).split())[:300]}). "
                f"Keep a copy, then restore a backup or recover its rows with "
                f"`sqlite3 {self.path} .recover`; move it away to start a new store."
            )

    # -- plumbing ---------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            if self.readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                con = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None)
            else:
                con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise OSError(f"cannot open the results store {str(self.path)!r}: {e}") from e
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            if not self.readonly:
                con.execute("PRAGMA foreign_keys=ON")
            con.row_factory = sqlite3.Row
            yield con
        except sqlite3.DatabaseError as e:
            locked = isinstance(e, sqlite3.OperationalError) and (
                "locked" in str(e) or "busy" in str(e)
            )
            if locked and not self.readonly:
                raise  # a writer backs off and retries (_retry)
            if locked:
                raise OSError(
                    f"results store {str(self.path)!r} is locked by another process (waited "
                    f"{self.timeout:g} s); try again when it has finished."
                ) from e
            raise OSError(f"results store {str(self.path)!r} is unusable: {e}") from e
        finally:
            con.close()

    def _retry(self, fn):
        """``fn()``, retried while the store is locked, for ``timeout`` seconds in all; then
        one ``OSError`` saying so (never minutes of waiting, never a raw sqlite3 error)."""
        # busy_timeout covers nearly every case; a rare SQLITE_BUSY can still escape when a
        # WAL checkpoint races a writer, so back off and retry rather than surface it.
        start, i = time.monotonic(), 0
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                waited = time.monotonic() - start
                if waited >= self.timeout:
                    raise OSError(
                        f"results store {str(self.path)!r} is locked by another process "
                        f"(waited {waited:.0f} s); try again when it has finished."
                    ) from e
                time.sleep(min(0.05 * 2**i, 1.0, self.timeout - waited))
                i += 1

    def _transaction(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``body(con)`` in one ``BEGIN IMMEDIATE`` transaction: committed when it
        returns, rolled back when it raises, retried as a whole when the store is busy."""

        if self.readonly:
            raise OSError(f"results store {str(self.path)!r} was opened read-only.")

        def go() -> _T:
            with self._connect() as con:
                con.execute("BEGIN IMMEDIATE")
                try:
                    out = body(con)
                    con.execute("COMMIT")
                    return out
                except BaseException:
                    con.execute("ROLLBACK")
                    raise

        return self._retry(go)

    def _write(self, statements: Sequence[tuple[str, Any]]) -> list[sqlite3.Cursor]:
        """Run ``statements`` as one transaction (``executemany`` for a list of params)."""
        return self._transaction(lambda con: [
            con.executemany(sql, params) if isinstance(params, list) else con.execute(sql, params)
            for sql, params in statements
        ])

    # -- writing ----------------------------------------------------------------------------
    def create_run(
        self,
        config: dict[str, Any],
        *,
        seed: int | None = None,
        env: dict[str, Any] | None = None,
        folder: str | os.PathLike | None = None,
        name: str | None = None,
    ) -> int:
        """Insert a run with status ``running``; return its id.

        Earlier rows recorded for the same ``folder`` are marked ``overwritten`` in the same
        transaction: the folder's files now belong to the new run.
        """
        where = str(Path(folder).resolve()) if folder is not None else None

        def insert(con: sqlite3.Connection) -> int:
            cur = con.execute(
                "INSERT INTO runs (name, status, config, seed, env, folder, created, pid, host)"
                " VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    json.dumps(config, sort_keys=True, default=str),
                    seed,
                    json.dumps(env or {}, sort_keys=True, default=str),
                    where,
                    time.time(),
                    os.getpid(),
                    socket.gethostname(),
                ),
            )
            run_id = int(cur.lastrowid)
            if where is not None:
                con.execute(_OVERWRITE_SQL,
                            (f"its folder was overwritten by run {run_id}", where, run_id))
            return run_id

        return self._transaction(insert)

    def mark_overwritten(
        self, folder: str | os.PathLike, *, keep: int | None = None, message: str | None = None
    ) -> int:
        """Mark every run of ``folder`` (except run ``keep``) ``overwritten``, in one
        transaction; return how many rows changed. Rows already marked keep their message."""
        msg = message or "its folder was overwritten"
        where = str(Path(folder).resolve())
        cur = self._write([(_OVERWRITE_SQL, (msg, where, -1 if keep is None else int(keep)))])
        return int(cur[0].rowcount)

    def mark_running(self, run_id: int) -> None:
        """Set a run back to ``running`` (when it is resumed) under this process."""
        self._write(
            [
                (
                    "UPDATE runs SET status='running', finished=NULL, message=NULL, pid=?, host=?"
                    " WHERE id=?",
                    (os.getpid(), socket.gethostname(), int(run_id)),
                )
            ]
        )

    def finish(
        self,
        run_id: int,
        status: str,
        *,
        final_metrics: dict[str, Any] | None = None,
        series: Iterable[dict[str, Any]] = (),
        message: str | None = None,
    ) -> None:
        """Record the outcome of a run in one transaction: status, final metrics, series.

        Call it only after the run's files are written. ``series`` is the run's metric rows
        (dicts with a ``step`` key); they replace any series stored earlier for the run.
        """
        if status not in _FINAL:
            raise ValueError(f"status must be one of {_FINAL}. Received: status={status!r}.")
        rows = []
        for row in series:
            step = int(row["step"])
            for k, v in row.items():
                if k in ("step", "epoch") or not isinstance(v, (int, float)) or v is None:
                    continue
                rows.append((int(run_id), step, k, _clean(float(v))))
        final = {k: _clean(v) for k, v in (final_metrics or {}).items()}
        self._write(
            [
                ("DELETE FROM metrics WHERE run_id=?", (int(run_id),)),
                ("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)", rows),
                (
                    # a row whose folder another run took over meanwhile stays "overwritten"
                    "UPDATE runs SET status=CASE WHEN status='overwritten' THEN status ELSE ? END,"
                    " finished=?, final_metrics=?,"
                    " message=CASE WHEN status='overwritten' THEN message ELSE ? END WHERE id=?",
                    (status, time.time(), json.dumps(final, sort_keys=True), message, int(run_id)),
                ),
            ]
        )

    # -- reading ----------------------------------------------------------------------------
    def _row(self, r: sqlite3.Row) -> dict[str, Any]:
        d = dict(r)
        for k in ("config", "env", "final_metrics"):
            d[k] = json.loads(d[k]) if d.get(k) else {}
        if (
            d["status"] == "running"
            and d.get("host") == socket.gethostname()
            and d.get("pid")
            and not _pid_alive(int(d["pid"]))
        ):
            d["status"] = "running?"  # its process is gone: killed, not finished
        return d

    def list_runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """All runs, oldest first (optionally only those with ``status``, one of
        :data:`LIST_STATUSES`; another value is a ``ValueError`` listing them)."""
        if status is not None and status not in LIST_STATUSES:
            close = difflib.get_close_matches(str(status), LIST_STATUSES, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown run status {status!r}.{hint} Allowed: {', '.join(LIST_STATUSES)}."
            )
        with self._connect() as con:
            rows = con.execute("SELECT * FROM runs ORDER BY id").fetchall()
        out = [self._row(r) for r in rows]
        return [r for r in out if status is None or r["status"] == status]

    def get_run(self, run_id: int) -> dict[str, Any]:
        """One run as a dict; ``ValueError`` when there is no run with that id."""
        with self._connect() as con:
            r = con.execute("SELECT * FROM runs WHERE id=?", (int(run_id),)).fetchone()
        if r is None:
            raise ValueError(f"No run with id {run_id} in {str(self.path)!r}.")
        return self._row(r)

    def find_by_folder(self, folder: str | os.PathLike) -> dict[str, Any] | None:
        """The latest run recorded for ``folder``, or None."""
        with self._connect() as con:
            r = con.execute(
                "SELECT * FROM runs WHERE folder=? ORDER BY id DESC LIMIT 1",
                (str(Path(folder).resolve()),),
            ).fetchone()
        return self._row(r) if r is not None else None

    def metrics(self, run_id: int) -> list[dict[str, Any]]:
        """The metric series of a run as rows ``{"step": s, name: value, ...}``."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT step, name, value FROM metrics WHERE run_id=? ORDER BY step, name",
                (int(run_id),),
            ).fetchall()
        by_step: dict[int, dict[str, Any]] = {}
        for r in rows:
            by_step.setdefault(r["step"], {"step": r["step"]})[r["name"]] = r["value"]
        return list(by_step.values())

    def export_csv(self, file: io.TextIOBase | None = None) -> str:
        """All runs as CSV (config and final metrics flattened into columns); also returned."""
        runs = self.list_runs()
        flat = []
        for r in runs:
            keys = ("id", "name", "status", "seed", "folder", "created", "finished")
            row = {k: r[k] for k in keys}
            row.update({f"config.{k}": v for k, v in _flatten(r["config"]).items()})
            row.update({f"final.{k}": v for k, v in r["final_metrics"].items()})
            flat.append(row)
        cols: list[str] = []
        for row in flat:
            cols.extend(k for k in row if k not in cols)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(flat)
        text = buf.getvalue()
        if file is not None:
            file.write(text)
        return text


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, tuple)) else v
    return out
