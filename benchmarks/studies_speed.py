"""The study suite's time: every study at one scale, with the time per study, its training
runs and the packs they were trained in (issue 23: the quick suite in at most 10 minutes of
wall time on the quiet 2-core CPU, with at least 3 seeds per comparison).

Runs ``trainlab study run --all`` in this process (``--executor ray``: each study one Ray task
on a local Ray, to measure what Ray adds), into a temporary folder (or ``--out``), and prints
one line per study and the totals. The data are what the machine has: ``TRAINLAB_DATA``
pointing at a folder with ``mnist/`` gives the MNIST studies their paper's data; without it
they run on their declared alternative (said per study).

    python benchmarks/studies_speed.py                       # quick scale, local
    python benchmarks/studies_speed.py --executor ray        # the same through Ray
    python benchmarks/studies_speed.py --only he-depth lsuv  # some studies
    python benchmarks/studies_speed.py --scale test          # a check that it runs
    python benchmarks/studies_speed.py --jobs 1              # one study after another
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="quick", choices=("test", "quick", "reference", "paper"))
    ap.add_argument("--jobs", default="auto",
                    help="studies at once with the local executor (default auto: one per core, "
                         "as `trainlab study run --all`; 1: one after another)")
    ap.add_argument("--executor", default="local", choices=("local", "ray"))
    ap.add_argument("--only", nargs="*", default=None, help="study names (default: all)")
    ap.add_argument("--out", default=None, help="keep the study folders here")
    ap.add_argument("--target", type=float, default=600.0,
                    help="the wall-time target in seconds (default 600: ten minutes)")
    args = ap.parse_args(argv)

    from trainlab.studies import run_all, study_names
    from trainlab.studies.page import runs_summary

    names = args.only or study_names()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="studies-speed-"))
    print(f"studies_speed: {len(names)} studies at scale {args.scale!r}, executor "
          f"{args.executor}, TRAINLAB_DATA={os.environ.get('TRAINLAB_DATA', '(unset)')}, "
          f"out {out}")
    t0 = time.perf_counter()
    c0 = time.process_time()
    jobs = None if args.jobs == "auto" else int(args.jobs)
    results, _ = run_all(names, scale=args.scale, out=out, force=True, db=None, log=None,
                         progress=False, executor=args.executor, jobs=jobs)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(f"\n{'study':26s} {'data':10s} {'wall s':>8s} {'CPU s':>8s} {'runs':>5s} "
          f"{'packs':>5s} {'alone':>5s}  claims")
    total_runs = total_packs = 0
    for r in results:
        packs = len({x["pack"] for x in r.runs if x.get("pack")})
        alone = sum(1 for x in r.runs if not x.get("pack"))
        total_runs += len(r.runs)
        total_packs += packs
        cpu_s = "—" if r.cpu_seconds is None else f"{r.cpu_seconds:.1f}"
        print(f"{r.name:26s} {str(r.dataset or 'generated'):10s} {r.seconds:8.1f} "
              f"{cpu_s:>8s} {len(r.runs):5d} {packs:5d} {alone:5d}  "
              f"{r.n_passed}/{r.n_applicable}{'  ERROR ' + r.error[:50] if r.error else ''}")
        if r.runs and args.only:
            print(f"    {runs_summary(r.runs)}")
    study_cpu = sum(r.cpu_seconds or 0.0 for r in results)
    print(f"\ntotal: {wall:.1f} s wall ({wall / 60:.1f} min; target <= {args.target / 60:.0f} "
          f"min: {'met' if wall <= args.target else 'NOT met'}), {study_cpu:.1f} s CPU in the "
          f"studies ({cpu:.1f} s in this process), {jobs or 'one per core'} at a time, "
          f"{total_runs} training runs in {total_packs} packs (+ the runs alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
