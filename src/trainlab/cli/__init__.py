"""The ``trainlab`` command.

Each subcommand lives in its own module of this package and defines::

    NAME = "list"                       # the subcommand as typed
    HELP = "one line for `trainlab --help`"
    EPILOG = "copy-pastable examples"   # optional
    def add_arguments(parser): ...      # argparse setup
    def run(args) -> int: ...           # exit status

Modules are discovered automatically, so adding a command is adding a file.

Errors a user can cause (``ValueError``, ``TypeError``, missing or unreadable files) are
printed as one line, ``trainlab: error: ...``, with exit status 2 and no traceback; set
``TRAINLAB_DEBUG=1`` to see the traceback. Ctrl-C exits with status 130 (SIGTERM during
training: 143).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from trainlab._version import __version__
from trainlab.cli._common import CliError, examples

__all__ = ["main", "build_parser", "CliError", "examples"]


def _commands() -> list:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: m.NAME)


class _Parser(argparse.ArgumentParser):
    # argparse prints usage + error and exits 2; keep it to one line as promised.
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"trainlab: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trainlab",
        description="Make deep networks trainable and see why.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  trainlab demo\n  trainlab list activation\n",
    )
    parser.add_argument("--version", action="version", version=f"trainlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _commands():
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            epilog=getattr(mod, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The CLI prints a warning as one line, ``trainlab: warning: ...`` (no source path)."""
    print(f"trainlab: warning: {' '.join(str(message).split())}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt as e:  # TrainingInterrupted carries its signal (SIGTERM: 143)
        print("trainlab: interrupted", file=sys.stderr)
        return 128 + int(getattr(e, "signum", 2))
    except BrokenPipeError:
        # The reader went away (`trainlab runs list | head`): not an error. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (CliError, ValueError, TypeError, OSError, RuntimeError, ImportError) as e:
        if os.environ.get("TRAINLAB_DEBUG"):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"trainlab: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
