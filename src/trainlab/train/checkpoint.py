"""Checkpoints: atomic writes, clear refusal of corrupt files, every random-number state.

A checkpoint is one ``torch.save`` file holding a dict::

    {"format": "trainlab-checkpoint", "version": 1, "step": ..., "epoch": ...,
     "model": state_dict, "optimizer": state_dict, "schedule": state_dict | None,
     "batcher": state_dict | None, "rng": rng_state(), "history": {...}, "extra": {...}}

It is written to a temporary file in the same folder, fsynced, then renamed over the old
one (:func:`trainlab.utils.atomic_torch_save`), so a crash or kill during the write leaves the
previous checkpoint whole. A truncated or foreign file is refused with
:class:`CheckpointError` naming the path.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.utils import atomic_torch_save

__all__ = [
    "CheckpointError",
    "get_rng_state",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT = "trainlab-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (missing, truncated, corrupt or foreign)."""


def get_rng_state() -> dict[str, Any]:
    """The state of every random source: Python, NumPy, torch CPU and every CUDA device."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`get_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format tag) to ``path`` atomically; return the path."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` (a ``ValueError``) naming ``path`` when the file is
    missing, truncated, corrupt or not a trainlab checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist.")
    try:
        # weights_only=False: the file holds Python/NumPy RNG states (tuples, ndarrays).
        # Checkpoints are the user's own files, written by this module.
        obj = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError ...
        raise CheckpointError(
            f"checkpoint {str(p)!r} is corrupt or truncated and was refused "
            f"({type(e).__name__}: {' '.join(str(e).split())[:200]})."
        ) from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{str(p)!r} is not a trainlab checkpoint and was refused.")
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(p)!r} has format version {obj.get('version')!r}; "
            f"this trainlab reads version {VERSION}."
        )
    missing = [k for k in ("step", "model", "optimizer", "rng") if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {str(p)!r} lacks {missing} and was refused.")
    return obj
