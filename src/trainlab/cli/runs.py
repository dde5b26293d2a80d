"""`trainlab runs`: list, show, compare, export and check the runs in the results store.

Every action opens the store read-only (it never changes the file, and waits at most a few
seconds for another process's lock); opening checks it (see :mod:`trainlab.store`).
"""

from __future__ import annotations

import argparse
import sys
import time

from trainlab.cli._common import CliError, examples
from trainlab.report.html import format_cell
from trainlab.runs.config import _flat
from trainlab.runs.run import format_table
from trainlab.runs.sweep import sweep_run_ids
from trainlab.store import DEFAULT_DB, LIST_STATUSES, RunStore
from trainlab.utils import atomic_write_text

NAME = "runs"
HELP = "list, show, compare, export and check recorded training runs"
EPILOG = """examples:
  trainlab runs list
  trainlab runs list --status done
  trainlab runs show 3
  trainlab runs compare 3 4 5
  trainlab runs export --csv runs.csv
  trainlab runs check                     # SQLite's full integrity check of the store
  trainlab runs list --db other/trainlab.db
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="results store (default runs/trainlab.db)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    p = sub.add_parser("list", help="one line per run",
                       **examples(
                           "trainlab runs list",
                           "trainlab runs list --status done",
                           "trainlab runs list --db other/trainlab.db",
                       ))
    _db(p)
    p.add_argument("--status", default=None,
                   help="only runs with this status: " + ", ".join(LIST_STATUSES))
    p = sub.add_parser("show", help="config, environment, final metrics of one run",
                       **examples(
                           "trainlab runs show 3",
                       ))
    _db(p)
    p.add_argument("id", type=int)
    p = sub.add_parser("compare", help="a table of runs side by side (differing settings)",
                       **examples(
                           "trainlab runs compare 3 4 5",
                           "trainlab runs compare 3 4 --all      # settings that agree too",
                           "trainlab runs compare --sweep runs/sweep1   # every run of a sweep",
                       ))
    _db(p)
    p.add_argument("ids", type=int, nargs="*")
    p.add_argument("--sweep", metavar="DIR", default=None,
                   help="compare the runs of the sweep in DIR (its store unless --db)")
    p.add_argument("--all", action="store_true", help="show settings that agree too")
    p = sub.add_parser("export", help="every run as CSV",
                       **examples(
                           "trainlab runs export --csv runs.csv",
                           "trainlab runs export --csv | head    # to standard output",
                       ))
    _db(p)
    p.add_argument(
        "--csv", metavar="FILE", nargs="?", const="-", required=True,
        help="write CSV to FILE ('-' or nothing: standard output)",
    )
    p = sub.add_parser("check", help="SQLite's full integrity check of the store",
                       **examples(
                           "trainlab runs check",
                           "trainlab runs check --db other/trainlab.db",
                       ))
    _db(p)


def _db(parser: argparse.ArgumentParser) -> None:
    # also accepted after the action; SUPPRESS keeps a --db given before it
    parser.add_argument("--db", default=argparse.SUPPRESS, help="results store")


def _store(args: argparse.Namespace):
    from pathlib import Path


    path = Path(args.db or DEFAULT_DB)
    if not path.exists():
        raise CliError(f"no results store at {str(path)!r} (train a run first, or pass --db).")
    return RunStore(path, readonly=True)


def _fmt(v) -> str:
    return "" if v is None else format_cell(v)


def _when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def run(args: argparse.Namespace) -> int:
    if args.action == "compare" and getattr(args, "sweep", None):
        db, ids = sweep_run_ids(args.sweep, args.db)
        args.db = args.db or str(db)
        args.ids = [*args.ids, *ids]
    store = _store(args)
    if args.action == "check":
        store.check(full=True)
        print(f"{store.path}: ok ({len(store.list_runs())} runs)")
        return 0
    if args.action == "list":
        # an unknown --status is a ValueError naming it and listing the allowed ones
        runs = store.list_runs(status=args.status)
        rows = []
        for r in runs:
            c, f = r["config"], r["final_metrics"]
            model = c.get("model", {})
            desc = (
                f"{c.get('data', {}).get('name', '?')} {model.get('builder', '?')} "
                f"{model.get('depth', '?')}x{model.get('width', '?')} {model.get('activation', '')}"
                f" {model.get('norm', '')} init={model.get('init') or 'default'}"
                f" {c.get('optim', {}).get('name', '')}"
            )
            rows.append([r["id"], r["status"], _when(r["created"]), desc, _fmt(f.get("step")),
                         _fmt(f.get("train_loss")), _fmt(f.get("test_acc")), r["folder"] or ""])
        header = ["id", "status", "created", "run", "step", "train_loss", "test_acc", "folder"]
        if rows:
            print(format_table(rows, header))
        elif args.status is not None and store.list_runs():
            print(f"no runs with status {args.status!r} (of {len(store.list_runs())} recorded)")
        else:
            print("no runs recorded yet")
        return 0
    if args.action == "show":
        r = store.get_run(args.id)
        rows = [["id", r["id"]], ["name", r["name"] or ""], ["status", r["status"]],
                ["seed", r["seed"]], ["created", _when(r["created"])],
                ["finished", _when(r["finished"])], ["folder", r["folder"] or ""]]
        if r["message"]:
            rows.append(["message", r["message"]])
        rows += [[f"config.{k}", _fmt(v)] for k, v in _flat(r["config"]).items()]
        rows += [[f"final.{k}", _fmt(v)] for k, v in sorted(r["final_metrics"].items())]
        rows += [[f"env.{k}", _fmt(v)] for k, v in sorted(r["env"].items()) if k != "argv"]
        print(format_table(rows, ["field", "value"]))
        return 0
    if args.action == "compare":
        if len(args.ids) < 2:
            raise CliError(f"compare needs at least two run ids. Received: {args.ids}.")
        runs = [store.get_run(i) for i in args.ids]
        flats = [_flat(r["config"]) for r in runs]
        keys = sorted(set().union(*flats))
        if not args.all:
            keys = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
        rows = [["status", *[r["status"] for r in runs]]]
        rows += [[k, *[_fmt(f.get(k)) for f in flats]] for k in keys]
        metrics = sorted(set().union(*[r["final_metrics"] for r in runs]) - {"lr", "epoch"})
        rows += [[f"final.{m}", *[_fmt(r["final_metrics"].get(m)) for r in runs]] for m in metrics]
        print(format_table(rows, ["", *[f"run {r['id']}" for r in runs]]))
        return 0
    if args.action == "export":
        if args.csv == "-":
            store.export_csv(sys.stdout)
        else:
            atomic_write_text(args.csv, store.export_csv())
            print(f"wrote {args.csv}")
        return 0
    raise CliError(f"unknown action {args.action!r}")  # pragma: no cover - argparse guards it
