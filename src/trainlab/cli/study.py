"""`trainlab study`: list, show and run the studies (the lectures' experiments).

Exit status of ``run``: 0 when every claim holds, 1 when a claim fails (or a study stops
with an error), 2 for bad input (unknown study, scale or data, an existing output folder,
data that are not on this machine or fail their checksums).
"""

from __future__ import annotations

import argparse
import shlex

from trainlab.cli._common import CliError, examples
from trainlab.runs.run import format_table
from trainlab.store import DEFAULT_DB
from trainlab.studies import STUDIES, get_study, run_all, run_study, study_names, summarize
from trainlab.studies.base import ALL_SCALES
from trainlab.studies.page import data_short

NAME = "study"
HELP = "reproduce the lectures' experiments: figures, tables and checked claims"
EPILOG = """examples:
  trainlab study list
  trainlab study show activation-stats
  trainlab study run activation-stats                  # quick scale, ./trainlab-studies/...
  trainlab study run activation-stats --scale paper --out /tmp/as
  trainlab study run he-depth --data mnist1d           # a declared alternative dataset
  TRAINLAB_DATA=~/data trainlab study run he-depth     # MNIST from ~/data/mnist/
  trainlab study run --all --scale quick --out studies
  trainlab study run --all --out studies --resume     # after a kill: the rest only
  trainlab study run --all --out studies --executor ray  # each study one Ray task
  trainlab study run he-depth --controls               # each claim beside its control
  trainlab study summary studies --markdown docs/reproductions.md
  trainlab study summary with-mnist without-mnist --markdown docs/reproductions.md
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    sub.add_parser("list", help="name, source, number of claims and quick-scale time",
                   **examples("trainlab study list"))
    p = sub.add_parser("show", help="what a study reproduces, its setups and its claims",
                       **examples("trainlab study show glorot-init-diagnostics"))
    p.add_argument("name")
    p = sub.add_parser(
        "run", help="run one study (or --all) and check its claims",
        **examples(
            "trainlab study run activation-stats",
            "trainlab study run dynamical-isometry --scale paper --seed 1 --out /tmp/di",
            "trainlab study run --all --scale quick --out studies",
            "trainlab study run --all --scale quick --markdown docs/reproductions.md",
        ))
    p.add_argument("name", nargs="?", help="the study (or --all)")
    p.add_argument("--all", action="store_true", help="run every study")
    p.add_argument("--scale", default="quick",
                   help=f"one of {', '.join(ALL_SCALES)} (default quick; reference: the paper's "
                        "setup at the length a 2-core CPU affords, quick where a study has "
                        "none, said so)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None,
                   help="one of the study's declared datasets (`trainlab study show NAME`); "
                        "default: the paper's when its files are found (TRAINLAB_DATA, "
                        "`trainlab data prepare`), else the first declared alternative, said "
                        "on the first lines and the page")
    p.add_argument("--out", default=None,
                   help="output folder (default trainlab-studies/NAME, or trainlab-studies "
                        "with --all)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--db", default=None, help="results store (default runs/trainlab.db)")
    p.add_argument("--no-db", action="store_true", help="do not record the training runs")
    p.add_argument("--markdown", default=None,
                   help="with --all: where to write the Markdown claim table "
                        "(default OUT/reproductions.md)")
    p.add_argument("--controls", action="store_true",
                   help="also run each claim's control (the technique removed or reversed), "
                        "under which every claim must FAIL; the page shows both")
    p.add_argument("--resume", action="store_true",
                   help="with --all: keep the studies of OUT that already finished (same "
                        "scale and seed) and run the rest")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="with --all: local (one study after another) or ray (each study one "
                        "Ray task; needs trainlab[ray])")
    p.add_argument("--jobs", default="auto",
                   help="with --all and the local executor: studies run at once, each in its "
                        "own process with cores/JOBS threads (default auto: one per core, "
                        "single-threaded; 1: one after another in this process)")
    p.add_argument("--address", default=None,
                   help="with --executor ray: the Ray cluster to join ('auto' or HOST:PORT); "
                        "default a local Ray")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p = sub.add_parser("summary", help="rebuild the summary page and Markdown table of a "
                       "folder of study runs (several folders: one table each)",
                       **examples("trainlab study summary trainlab-studies",
                                  "trainlab study summary studies --markdown "
                                  "docs/reproductions.md"))
    p.add_argument("folder", nargs="+", help="a folder of study runs (`run --all --out`)")
    p.add_argument("--markdown", default=None,
                   help="where to write the Markdown claim table (default FOLDER/"
                        "reproductions.md; required with several folders)")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list()
    if args.action == "show":
        print(get_study(args.name).describe())
        return 0
    if args.action == "summary":
        folders = args.folder[0] if len(args.folder) == 1 else args.folder
        results, page = summarize(folders, markdown=args.markdown)
        _print_claims(results)
        print(f"summary page: {page}")
        return 0 if all(r.passed for r in results) else 1
    if args.all and args.name:
        raise CliError("give a study name or --all, not both.")
    if not args.all and not args.name:
        raise CliError("name the study to run (see `trainlab study list`), or pass --all.")
    if args.markdown and not args.all:
        raise CliError("--markdown goes with --all.")
    if args.data and args.all:
        raise CliError("--data goes with one study (studies declare different data); "
                       "with --all each study picks its own and says which.")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0. Received: {args.seed}.")

    if not args.all and (args.resume or args.executor != "local"):
        raise CliError("--resume and --executor go with --all (one study runs in this "
                       "process; it packs its own runs).")
    if args.address is not None and args.executor != "ray":
        raise CliError(f"--address goes with --executor ray. Received: --address "
                       f"{args.address}.")
    if args.resume and args.force:
        raise CliError("--resume keeps finished studies, --force replaces them: choose one.")
    db = None if args.no_db else (args.db or DEFAULT_DB)
    progress = False if args.quiet else None
    if args.all:
        return _run_all(args, db, progress)

    spec = get_study(args.name)
    result = run_study(spec, scale=args.scale, seed=args.seed, out=args.out, force=args.force,
                       db=db, device=args.device, progress=progress, data=args.data,
                       controls=args.controls)
    _print_claims([result])
    if result.error:
        print(f"trainlab: study {result.name} stopped with an error: {result.error}")
    return 0 if result.passed else 1


def _list() -> int:
    names = study_names()
    rows = []
    for n in names:
        s = STUDIES.get(n).factory
        rows.append((s.name, s.source, " | ".join(s.datasets) or "generated",
                     str(len(s.claims)), f"~{s.quick_seconds:.0f} s"))
    header = ("study", "source", "data (paper's first)", "claims", "quick")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    widths[1] = min(widths[1], 60)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        src = r[1] if len(r[1]) <= 60 else r[1][:57] + "..."
        print("  ".join(c.ljust(w) for c, w in zip((r[0], src, *r[2:]), widths)))
    print(f"\n{len(rows)} studies; `trainlab study show NAME` for the setup and claims.")
    return 0


def _jobs(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise CliError(f"--jobs must be a positive integer or 'auto'. Received: --jobs {text}")
    return n


def _run_all(args: argparse.Namespace, db, progress) -> int:
    out = args.out or "trainlab-studies"
    cmd = ["trainlab", "study", "run", "--all", "--scale", args.scale, "--seed",
           str(args.seed), "--out", out] + (["--controls"] if args.controls else [])
    results, page = run_all(scale=args.scale, seed=args.seed, out=out, force=args.force, db=db,
                            device=args.device, progress=progress, markdown=args.markdown,
                            command=shlex.join(cmd), controls=args.controls,
                            resume=args.resume, executor=args.executor, address=args.address,
                            jobs=_jobs(args.jobs))
    _print_claims(results)
    print(f"summary page: {page}")
    return 0 if all(r.passed for r in results) else 1


def _print_claims(results) -> None:
    rows = []
    for r in results:
        if r.error and not r.error.startswith("no data"):
            rows.append([r.name, data_short(r), "(stopped with an error)", "", r.error[:60],
                         "ERROR"])
        for c in r.claims:
            rows.append([r.name, data_short(r), c.id, c.expected, c.measured_text, c.status])
    print()
    print(format_table(rows, ["study", "data", "claim", "expected", "measured", "verdict"]))
    total = sum(r.n_applicable for r in results)
    passed = sum(r.n_passed for r in results)
    na = sum(len(r.claims) for r in results) - total
    secs = sum(r.seconds for r in results)
    subs = [f"{r.name} on {r.dataset} for {r.substituted_for}" for r in results
            if r.substituted_for]
    print(f"\n{passed}/{total} claims hold{f' ({na} not tested on these data)' if na else ''}"
          f"; {secs:.1f} s")
    if subs:
        print("substituted data (thresholds declared for them applied): " + "; ".join(subs))
