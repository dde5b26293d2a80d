"""The one way trainlab draws and writes a figure.

- :func:`pyplot` — ``matplotlib.pyplot`` with the non-interactive Agg backend, imported on
  first use (``import trainlab`` does not load matplotlib);
- :func:`save_figure` — write a figure atomically and close it: the image is rendered in
  memory, written to a temporary file in the target's folder (``.NAME.XXXXXXXX.tmp``, the
  pattern :meth:`~trainlab.runs.run.RunFolder.remove_orphan_temporaries` clears), flushed,
  ``fsync``-ed and ``os.replace``-d over the target. A reader sees the old file or the new
  one, whole; an error while drawing or a kill at any moment never leaves a half-written
  PNG.

Every figure writer of the package (runs, sweeps, studies, the doctor's page, the demo,
``trainlab data show``) goes through these two.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from trainlab.utils import atomic_write_bytes

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot``, with the Agg backend (non-interactive: figures are only ever
    written to files, also on a machine without a display)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: float = 110,
                tight: bool = True) -> Path:
    """Write the matplotlib ``fig`` to ``path`` atomically and close it; return the path.

    ``dpi``: dots per inch (the image is ``figsize × dpi`` pixels, cropped to the drawn
    content with ``tight``: ``bbox_inches="tight"``). The format follows the file's suffix
    (``.png`` when it has none). Missing parent folders are created. An existing file is
    replaced whole; when drawing fails, nothing is written (no file, no temporary file) and
    the error is raised. The figure is closed in every case.
    """
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    finally:
        pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())
