"""Ctrl-C while the ``trainlab`` command starts up: one line and status 130, no traceback.

Importing trainlab imports torch, which takes seconds; a Ctrl-C then would print a
``KeyboardInterrupt`` traceback from the middle of torch. When this process *is* the
``trainlab`` command (its console script or ``python -m trainlab``), :func:`install` puts a
SIGINT handler in place first. Until a command's ``run`` function is executing, the handler
prints ``trainlab: interrupted while starting up; nothing was written`` and exits with 130;
once one is, it raises ``KeyboardInterrupt`` as Python's own handler does, and the command
handles it (``trainlab train`` saves a checkpoint, the others exit with 130). A program that
merely imports trainlab keeps Python's handler.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

__all__ = ["install", "started_as_cli"]

_CLI_DIR = os.path.join("trainlab", "cli")


def started_as_cli() -> bool:
    """Whether this process is the ``trainlab`` command."""
    if sys.argv and os.path.basename(sys.argv[0]) == "trainlab":
        return True
    orig = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and b == "trainlab" for a, b in zip(orig, orig[1:]))


def _in_command(frame: FrameType | None) -> bool:
    while frame is not None:
        code = frame.f_code
        if code.co_name == "run" and _CLI_DIR in code.co_filename:
            return True
        frame = frame.f_back
    return False


def _handler(signum: int, frame: FrameType | None) -> None:
    if _in_command(frame):
        raise KeyboardInterrupt
    sys.stderr.write("trainlab: interrupted while starting up; nothing was written\n")
    sys.stderr.flush()
    raise SystemExit(128 + signum)


def install() -> None:
    """Install the start-up handler, only in the ``trainlab`` command's main thread and only
    over Python's default handler (never over one a host program set)."""
    if not started_as_cli():
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _handler)
    except ValueError:  # not the main thread
        pass
