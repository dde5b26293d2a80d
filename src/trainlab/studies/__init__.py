"""Studies: each experiment, figure or claim of the lectures as one command.

``trainlab study list`` lists them, ``trainlab study show NAME`` says what one reproduces and
how, ``trainlab study run NAME --scale quick`` runs it (``--all`` runs every study and writes a
summary page). From Python::

    from trainlab.studies import run_study
    result = run_study("activation-stats", scale="quick", out="out/activation-stats")
    result.passed, [c.measured for c in result.claims]

Each study is one module of this package (``activation_stats.py`` for
``activation-stats``), discovered automatically; :mod:`trainlab.studies.base` holds the
framework. See ``STUDIES.md`` in the design documents for the catalogue.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trainlab.studies.base import (
    SCALES,
    STUDIES,
    Claim,
    ClaimResult,
    Study,
    StudyContext,
    StudyResult,
    get_study,
    prepare_folder,
    run_study,
    study,
)

__all__ = [
    "SCALES",
    "STUDIES",
    "Claim",
    "ClaimResult",
    "Study",
    "StudyContext",
    "StudyResult",
    "get_study",
    "load_studies",
    "run_all",
    "run_study",
    "study",
    "study_names",
]

_FRAMEWORK = {"base", "page"}
_loaded = False


def load_studies() -> None:
    """Import every study module of this package (each registers itself)."""
    global _loaded
    if _loaded:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in _FRAMEWORK:
            continue
        importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def study_names() -> list[str]:
    """The registered studies, in catalogue order of their modules."""
    load_studies()
    return STUDIES.names()


def run_all(
    names: Sequence[str] | None = None,
    *,
    scale: str = "quick",
    seed: int = 0,
    out: str | os.PathLike = "trainlab-studies",
    force: bool = False,
    db: str | os.PathLike | None = None,
    device: Any = "auto",
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
    markdown: str | os.PathLike | None = None,
    command: str | None = None,
) -> tuple[list[StudyResult], Path]:
    """Run ``names`` (default: every study) at ``scale``, each into ``OUT/NAME``.

    Writes ``OUT/index.html`` (linking every study page) and the Markdown claim table
    (``markdown``, default ``OUT/reproductions.md``). The scale and the output folders are
    checked for every study before the first one runs. Returns the results and the summary
    page's path.
    """
    from trainlab.studies.page import write_summary

    specs = [get_study(n) for n in (names if names is not None else study_names())]
    out = Path(out)
    for spec in specs:
        spec.config(scale)
    if out.exists() and any(out.iterdir()):
        prepare_folder(out, force)  # refuses without force, before anything runs
    out.mkdir(parents=True, exist_ok=True)
    results = []
    t0 = time.perf_counter()
    bar = None
    show = progress if progress is not None else __import__("sys").stderr.isatty()
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(specs), unit="study", dynamic_ncols=True)
    try:
        for spec in specs:
            if bar is not None:
                bar.set_description(spec.name)
            results.append(run_study(spec, scale=scale, seed=seed, out=out / spec.name,
                                     force=force, db=db, device=device, progress=progress,
                                     log=log))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    cmd = command or f"trainlab study run --all --scale {scale} --seed {seed} --out {out}"
    page, _ = write_summary(results, out, scale=scale, seconds=seconds, command=cmd,
                            markdown=markdown)
    return results, page
