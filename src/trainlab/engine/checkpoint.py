"""Checkpoints: atomic writes, a digest, safe loading, every random-number state.

A checkpoint holds a dict::

    {"format": "trainlab-checkpoint", "version": 2, "step": ..., "epoch": ...,
     "model": state_dict, "optimizer": state_dict, "schedule": state_dict | None,
     "batcher": state_dict | None, "rng": get_rng_state(), "history": {...}, ...}

File layout (version 2): one header line, then the ``torch.save`` bytes of that dict::

    TRAINLAB-CHECKPOINT 2 sha256 <64 hex digits of the payload>\\n<torch.save payload>

Policies:

- **Atomic.** The file is written to a temporary file in the same folder, fsynced, then
  renamed over the old one (:func:`trainlab.utils.atomic_torch_save`'s recipe): a crash or
  kill during the write leaves the previous checkpoint whole.
- **Integrity.** The payload's SHA-256 is checked before anything is unpickled; a file
  whose bytes changed (a flipped bit inside tensor data, a truncated copy) is refused with a
  one-line :class:`CheckpointError` naming the file.
- **No code runs on load.** The payload is read with ``torch.load(weights_only=True)``: only
  tensors, containers and numbers, plus exactly the extra types trainlab writes (none today;
  see :data:`SAFE_GLOBALS`). A file holding anything else (an object whose ``__reduce__``
  would run a command) is refused, naming the type; nothing of it is executed.
- **Older files.** A version-1 checkpoint (no header, written before digests existed) is
  still read, with the same ``weights_only`` loader (its NumPy RNG state, an ``ndarray``, is
  the one extra type allowed for it), and a :class:`UserWarning` says its integrity cannot be
  checked. The next checkpoint of the run is written with a digest.
- Each file is read from disk once; :func:`load_checkpoint` returns the dict.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.utils import atomic_write_bytes

__all__ = [
    "CheckpointError",
    "SAFE_GLOBALS",
    "get_rng_state",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT = "trainlab-checkpoint"
VERSION = 2
_MAGIC = b"TRAINLAB-CHECKPOINT"
_HEADER = re.compile(rb"TRAINLAB-CHECKPOINT (\d+) sha256 ([0-9a-f]{64})\n")
_HEADER_LEN = len(_MAGIC) + len(b" 2 sha256 ") + 64 + 1

# Types beyond tensors, dicts, lists, tuples, str, int, float, bool and None that trainlab
# writes into a checkpoint. Empty: the NumPy RNG state is stored as plain ints (see
# get_rng_state), so `weights_only=True` needs no allow-list for files written today.
SAFE_GLOBALS: list[Any] = []


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (missing, truncated, corrupt, unsafe or foreign)."""


def get_rng_state() -> dict[str, Any]:
    """The state of every random source: Python, NumPy, torch CPU and every CUDA device.

    The NumPy state is stored as ``(name, keys as a list of ints, pos, has_gauss,
    cached_gaussian)``: plain values that ``torch.load(weights_only=True)`` reads without an
    allow-list.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`get_rng_state` (Python, NumPy, torch, CUDA)."""
    random.setstate(_as_python_state(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_python_state(s: Any) -> tuple:
    # random.setstate wants tuples; a list (from JSON-like round trips) is turned back.
    version, internal, gauss = s
    return (int(version), tuple(int(v) for v in internal), gauss)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format tag) to ``path`` atomically, with its digest."""
    buf = io.BytesIO()
    torch.save({**state, "format": FORMAT, "version": VERSION}, buf)
    payload = buf.getvalue()
    header = b"%s %d sha256 %s\n" % (_MAGIC, VERSION, hashlib.sha256(payload).hexdigest().encode())
    return atomic_write_bytes(path, header + payload)


def _unpickle(p: Path, payload: bytes, map_location: Any, extra: list[Any]) -> Any:
    """``torch.load(weights_only=True)`` of ``payload``, allowing exactly ``extra`` types."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS + extra):
            return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError ...
        text = " ".join(str(e).split())
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if unsafe:
            raise CheckpointError(
                f"checkpoint {str(p)!r} holds an object of type {unsafe.group(1)}, which "
                "trainlab never writes; it was refused without running it."
            ) from e
        raise CheckpointError(
            f"checkpoint {str(p)!r} is corrupt or truncated and was refused "
            f"({type(e).__name__}: {text[:200]})."
        ) from e


def _legacy_globals() -> list[Any]:
    """What a version-1 file needs: NumPy's array reconstruction for its RNG state (under
    both module names, ``numpy.core`` of NumPy 1 and ``numpy._core`` of NumPy 2)."""
    core = getattr(np, "_core", None) or np.core
    rebuild = core.multiarray._reconstruct
    out: list[Any] = [
        (rebuild, "numpy.core.multiarray._reconstruct"),
        (rebuild, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out.append(dtypes.UInt32DType)
    return out


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; see the module's policies.

    Raises :class:`CheckpointError` (a ``ValueError``, one line, naming ``path``) when the
    file is missing, truncated, corrupt (digest mismatch), holds a type trainlab does not
    write, or is not a trainlab checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist.")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {str(p)!r}: {e.strerror or e}.") from e
    if data.startswith(_MAGIC):
        m = _HEADER.match(data[:_HEADER_LEN])
        if m is None:
            raise CheckpointError(f"checkpoint {str(p)!r} has a damaged header and was refused.")
        payload = data[m.end():]
        if hashlib.sha256(payload).hexdigest() != m.group(2).decode():
            raise CheckpointError(
                f"checkpoint {str(p)!r} is corrupt or truncated (its sha256 digest does not "
                "match its contents) and was refused."
            )
        obj = _unpickle(p, payload, map_location, [])
        version = int(m.group(1))
    else:  # no header: a version-1 file, or not a trainlab checkpoint at all
        obj = _unpickle(p, data, map_location, _legacy_globals())
        version = obj.get("version") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{str(p)!r} is not a trainlab checkpoint and was refused.")
    if obj.get("version") != version or version not in (1, VERSION):
        raise CheckpointError(
            f"checkpoint {str(p)!r} has format version {obj.get('version')!r}; "
            f"this trainlab reads versions 1 and {VERSION}."
        )
    if version == 1:
        warnings.warn(
            f"checkpoint {str(p)!r} was written by an older trainlab and has no digest: its "
            "integrity cannot be checked (the next checkpoint will carry one).",
            UserWarning,
            stacklevel=2,
        )
    missing = [k for k in ("step", "model", "optimizer", "rng") if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {str(p)!r} lacks {missing} and was refused.")
    return obj
