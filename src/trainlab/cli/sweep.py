"""`trainlab sweep`: train a grid of runs (packed where they can be), resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainlab.cli._common import CliError
from trainlab.runs.sweep import expand_grid, format_plan, load_grid, plan_packs, run_sweep
from trainlab.store import DEFAULT_DB

NAME = "sweep"
HELP = "train a grid of runs from a YAML/TOML file, packed and resumable, with a report"
EPILOG = """examples:
  trainlab sweep examples/sweep_mnist1d.yaml --out runs/sweep1
  trainlab sweep examples/sweep_mnist1d.yaml --dry-run          # the runs and the packs
  trainlab sweep grid.toml --out runs/s --set steps=500 --set optim.lr=0.05
  trainlab sweep grid.yaml --out runs/s                          # again: resumes, repeats none
  trainlab sweep other.yaml --out runs/s --force                 # replace a different grid
  trainlab sweep grid.yaml --out runs/s --executor ray            # each pack one Ray task
  trainlab sweep grid.yaml --executor ray --address auto          # on a running cluster
  trainlab runs compare --sweep runs/sweep1

A grid file has fixed settings and axes, with the keys of `trainlab train --print-config`:

  name: mnist1d-init-lr
  fixed:
    data: {name: mnist1d}
    model: {builder: mlp, depth: 2, width: 32}
    steps: 200
  axes:
    model.init: [he_normal, xavier_uniform]
    optim.lr: [0.1, 0.03]
    seed: [0, 1]

Runs that differ only in seed, learning rate, optimizer options (same kind of optimizer),
schedule or init are trained together as one vectorized pack; other axes (activation, norm,
width ...) give separate packs. Every run is a run folder under OUT/runs/ and a row in the
results store. Killed at any moment and started again with the same grid, the sweep skips
the finished runs and trains the rest. At the end: OUT/summary.csv, OUT/figures/heatmap_*.png,
OUT/figures/best_*.png and OUT/index.html.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", metavar="GRID", help="grid file (.yaml, .yml, .toml or .json)")
    parser.add_argument("--out", default=None,
                        help="sweep folder (default runs/sweep-NAME, NAME the grid's name)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        dest="overrides",
                        help="override a fixed setting (or fix an axis to one value)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the expanded runs and the packs; train nothing")
    parser.add_argument("--force", action="store_true",
                        help="replace a sweep folder that holds a different grid")
    parser.add_argument("--db", default=None, help="results store (default runs/trainlab.db)")
    parser.add_argument("--no-db", action="store_true", help="do not record runs in the store")
    parser.add_argument("--max-pack", type=int, default=64,
                        help="most members in one pack (default 64)")
    parser.add_argument("--no-pack", action="store_true",
                        help="train every run on its own with the Trainer")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: packs one after another in this process; ray: each pack "
                             "one Ray task (needs trainlab[ray]), same folders and store")
    parser.add_argument("--address", default=None,
                        help="with --executor ray: the Ray cluster to join ('auto', or "
                             "HOST:PORT); default a local Ray on this machine's CPUs")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show the progress bar over runs (default: on a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")


def run(args: argparse.Namespace) -> int:
    if args.address is not None and args.executor != "ray":
        raise CliError(f"--address goes with --executor ray. Received: --address "
                       f"{args.address} with --executor {args.executor}.")
    if args.max_pack < 1:
        raise CliError(f"--max-pack must be >= 1. Received: --max-pack {args.max_pack}.")
    grid = load_grid(args.grid, args.overrides)
    if args.dry_run:
        plan = plan_packs(grid, expand_grid(grid), max_pack=args.max_pack,
                          pack=not args.no_pack)
        print(format_plan(plan))
        return 0
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{grid.name}"
    db = None if args.no_db else Path(args.db or DEFAULT_DB)
    res = run_sweep(grid, out, db=db, force=args.force, max_pack=args.max_pack,
                    pack=not args.no_pack, progress=args.progress, device=args.device,
                    executor=args.executor, address=args.address)
    bad = [i for i, r in res.results.items() if r.get("status") not in ("done", "diverged")]
    print(f"sweep {grid.name!r}: {len(res.trained)} runs trained, {len(res.skipped)} already "
          f"finished; report: {out / 'index.html'}")
    return 1 if bad else 0
