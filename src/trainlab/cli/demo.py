"""`trainlab demo`: a deep tanh net with 0.01 init, Xavier init, and Xavier + BN."""

from __future__ import annotations

import argparse

from trainlab.cli._common import CliError
from trainlab.cli.demo_app import DEMO_STUDIES, run_demo
from trainlab.store import DEFAULT_DB

NAME = "demo"
HELP = "show in under a minute why init and normalization decide whether a deep net trains"
EPILOG = """examples:
  trainlab demo                       # writes ./trainlab-demo/index.html
  trainlab demo --out /tmp/demo --steps 3000
  trainlab demo --no-db --quiet
  trainlab demo --no-studies                # only the three-run comparison
  trainlab demo --studies activation-stats

Trains the same 8-layer tanh MLP on embedded MNIST-1D three times (N(0, 0.01²) init, Xavier
init, Xavier + batch norm), prints the comparison and per-layer activation-std tables and
writes an HTML page with the curves; then runs two quick studies (the lectures' experiments,
with checked claims) and links them from the page.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="trainlab-demo", help="output folder")
    parser.add_argument("--steps", type=int, default=500, help="training steps per run")
    parser.add_argument("--depth", type=int, default=8, help="hidden tanh layers")
    parser.add_argument("--width", type=int, default=128, help="units per hidden layer")
    parser.add_argument("--dataset", default="mnist1d", help="embedded dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--db", default=None, help="results store (default runs/trainlab.db)")
    parser.add_argument("--no-db", action="store_true", help="do not record the runs")
    parser.add_argument("--force", action="store_true", help="write into a non-demo folder")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser.add_argument("--studies", default=None, metavar="NAME[,NAME...]",
                        help="quick studies to run after the comparison (default: "
                             "activation-stats,dynamical-isometry)")
    parser.add_argument("--no-studies", action="store_true",
                        help="only the comparison, no studies")


def run(args: argparse.Namespace) -> int:
    for name in ("steps", "depth", "width"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name} must be >= 1. Received: {getattr(args, name)}.")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0. Received: {args.seed}.")
    db = None if args.no_db else (args.db or DEFAULT_DB)
    run_demo(
        args.out,
        steps=args.steps,
        depth=args.depth,
        width=args.width,
        dataset=args.dataset,
        seed=args.seed,
        device=args.device,
        db=db,
        force=args.force,
        progress=False if args.quiet else None,
        studies=() if args.no_studies else (
            tuple(n.strip() for n in args.studies.split(",") if n.strip())
            if args.studies else DEMO_STUDIES),
    )
    return 0
