"""Cost of the results store's checks on open, for a store of many runs.

Builds a store of ``--runs`` finished runs (each with a real config and environment, final
metrics and ``--rows`` logged rows of four metrics, as ``trainlab train`` writes them), then
times, best of ``--repeats``:

* **open**: ``RunStore(path)`` as ``trainlab train`` opens it (0-byte and header checks, then
  ``PRAGMA quick_check``: of every page up to ``FULL_CHECK_BYTES``, of the ``runs`` table
  beyond);
* **open read-only**: ``RunStore(path, readonly=True)`` as ``trainlab runs ...`` opens it;
* **full check**: ``PRAGMA integrity_check`` of the whole file (``trainlab runs check``);
* **list**: ``list_runs()`` (what ``trainlab runs list`` reads anyway), for scale.

Target: opening stays well under a second for 100,000 runs.

    python benchmarks/store_check.py                  # 100,000 runs, 20 rows each
    python benchmarks/store_check.py --runs 1000 --rows 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from trainlab.runs.config import TrainConfig
from trainlab.runs.run import collect_env
from trainlab.store import FULL_CHECK_BYTES, RunStore


def build(path: Path, runs: int, rows: int) -> None:
    """A store of ``runs`` done runs, written in bulk (one transaction per 1,000 runs)."""
    RunStore(path)  # the schema, as trainlab creates it
    config = json.dumps(TrainConfig().to_dict(), sort_keys=True, default=str)
    env = json.dumps(collect_env("cpu", 0), sort_keys=True, default=str)
    names = ("train_loss", "lr", "test_loss", "test_acc")
    con = sqlite3.connect(path, isolation_level=None)
    try:
        now = time.time()
        for start in range(0, runs, 1000):
            con.execute("BEGIN")
            for i in range(start, min(start + 1000, runs)):
                final = {"step": rows * 50, "train_loss": 0.1 + i % 7 / 10, "test_acc": 0.9}
                cur = con.execute(
                    "INSERT INTO runs (name, status, config, seed, env, folder, created,"
                    " finished, final_metrics, pid, host) VALUES (?, 'done', ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?)",
                    (f"run-{i}", config, i, env, f"/runs/run-{i}", now, now + 60,
                     json.dumps(final), 1234, "host"),
                )
                run_id = cur.lastrowid
                con.executemany(
                    "INSERT INTO metrics VALUES (?, ?, ?, ?)",
                    [(run_id, s * 50, n, 1.0 / (s + 1)) for s in range(rows) for n in names],
                )
            con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=20, help="logged rows per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trainlab.db"
        t = time.perf_counter()
        build(path, args.runs, args.rows)
        built = time.perf_counter() - t
        size = path.stat().st_size
        store = RunStore(path, readonly=True)
        result = {
            "runs": args.runs,
            "rows_per_run": args.rows,
            "file_mb": round(size / 2**20, 1),
            "whole_file_checked_on_open": size <= FULL_CHECK_BYTES,
            "build_s": round(built, 1),
            "open_s": best(lambda: RunStore(path), args.repeats),
            "open_readonly_s": best(lambda: RunStore(path, readonly=True), args.repeats),
            "full_check_s": best(lambda: store.check(full=True), args.repeats),
            "list_runs_s": best(store.list_runs, args.repeats),
        }
    for k, v in result.items():
        print(f"{k:28s} {v:.4g}" if isinstance(v, float) else f"{k:28s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
