"""`trainlab list [FAMILY]`: every registered name with its description and reference."""

from __future__ import annotations

import argparse

import trainlab.data
import trainlab.engine.ccnn  # noqa: F401  (registers its parts)
import trainlab.engine.pretraining  # noqa: F401  (registers its parts)
import trainlab.losses  # noqa: F401  (registers its parts)
import trainlab.models  # noqa: F401  (registers its parts)
import trainlab.optim  # noqa: F401  (registers its parts)
from trainlab.registry import Registry
from trainlab.studies import load_studies

NAME = "list"
HELP = "list the techniques trainlab knows, by family"
EPILOG = """examples:
  trainlab list                # every family
  trainlab list activation     # one family
  trainlab list init
  trainlab list study          # the studies (`trainlab study show NAME` for one)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family", nargs="?", help="family to list (default: all)")


def run(args: argparse.Namespace) -> int:
    load_studies()  # each study module registers itself, as for `trainlab study list`

    families = Registry.families()
    chosen = [Registry.family_of(args.family)] if args.family else list(families.values())
    for reg in chosen:
        print(f"{reg.family} ({len(reg)})")
        width = max((len(e.name) for e in reg), default=0)
        for e in reg:
            alias = f"  [also: {', '.join(e.aliases)}]" if e.aliases else ""
            ref = f"  — {e.reference}" if e.reference else ""
            print(f"  {e.name:<{width}}  {e.description}{ref}{alias}")
        print()
    return 0
