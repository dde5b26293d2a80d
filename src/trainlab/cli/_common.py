"""What every subcommand module shares: the one-line user error and the examples epilog
(here, not in ``cli/__init__``, so that a subcommand imports it without importing the
package that discovers the subcommands)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["CliError", "examples"]


class CliError(Exception):
    """A user-facing error: its message is printed as one line, exit status 2."""


def examples(*lines: str) -> dict[str, Any]:
    """``add_parser`` keywords giving a sub-action an ``examples:`` epilog, verbatim."""
    return {"epilog": "examples:\n" + "".join(f"  {line}\n" for line in lines),
            "formatter_class": argparse.RawDescriptionHelpFormatter}
