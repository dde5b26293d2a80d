"""Probe records: one object for the rows, histograms and spectra of a run, and their files.

Record format (what ``History.probe_records`` and a run folder hold):

- **rows**: tidy tuples ``(step, layer, quantity, value)`` — ``step`` an int (the training
  step the statistic describes), ``layer`` the module's qualified name in
  ``model.named_modules()`` (``"block2.act"``; ``"model"`` for the input–output Jacobian),
  ``quantity`` a key listed in the probe's docstring (``"act_std"``, ``"grad_out_norm"``,
  ``"update_ratio"``, ``"jac_sv_mean"`` ...), ``value`` a float (NaN/inf kept as such);
- **histograms**: dicts ``{"step", "layer", "quantity", "edges", "counts"}`` with
  ``len(edges) == len(counts) + 1`` fixed-width bins, edges in the quantity's units;
- **spectra**: dicts ``{"step", "layer", "singular_values", "exact"}``.

Files written by :meth:`ProbeLog.save` into a run folder (each atomically):

- ``probes.csv``: header ``step,layer,quantity,value``, one row per record;
- ``probe_histograms.jsonl``: one JSON histogram dict per line;
- ``probe_spectra.jsonl``: one JSON spectrum dict per line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.utils import atomic_write_text

__all__ = ["ProbeLog", "collect", "save_records", "load_records", "FILES"]

FILES = {"rows": "probes.csv", "histograms": "probe_histograms.jsonl",
         "spectra": "probe_spectra.jsonl"}

Row = tuple[int, str, str, float]


@dataclass
class ProbeLog:
    """Rows, histograms and spectra of one run, with small query helpers."""

    rows: list[Row] = field(default_factory=list)
    histograms: list[dict[str, Any]] = field(default_factory=list)
    spectra: list[dict[str, Any]] = field(default_factory=list)

    # -- queries ---------------------------------------------------------------------------
    def layers(self, quantity: str | None = None) -> list[str]:
        """Layer names in first-seen order (those having ``quantity`` if given)."""
        seen: dict[str, None] = {}
        for _, layer, q, _ in self.rows:
            if quantity is None or q == quantity:
                seen.setdefault(layer)
        return list(seen)

    def quantities(self) -> list[str]:
        return list(dict.fromkeys(q for _, _, q, _ in self.rows))

    def steps(self, quantity: str | None = None) -> list[int]:
        return sorted({s for s, _, q, _ in self.rows if quantity is None or q == quantity})

    def series(self, layer: str, quantity: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of one layer's quantity, sorted by step."""
        pts = sorted((s, v) for s, l, q, v in self.rows if l == layer and q == quantity)
        return [s for s, _ in pts], [v for _, v in pts]

    def value(self, step: int, layer: str, quantity: str, default: float = math.nan) -> float:
        for s, l, q, v in self.rows:
            if s == step and l == layer and q == quantity:
                return v
        return default

    def table(self, step: int | None = None) -> dict[str, dict[str, float]]:
        """``{layer: {quantity: value}}`` at ``step`` (default: the last step)."""
        if step is None:
            steps = self.steps()
            if not steps:
                return {}
            step = steps[-1]
        out: dict[str, dict[str, float]] = {}
        for s, l, q, v in self.rows:
            if s == step:
                out.setdefault(l, {})[q] = v
        return out

    def hists(self, quantity: str, layer: str | None = None, step: int | None = None
              ) -> list[dict[str, Any]]:
        return [h for h in self.histograms if h["quantity"] == quantity
                and (layer is None or h["layer"] == layer) and (step is None or h["step"] == step)]

    def extend(self, other: ProbeLog) -> ProbeLog:
        self.rows += other.rows
        self.histograms += other.histograms
        self.spectra += other.spectra
        return self

    # -- files -----------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write the three files into ``folder``; return their paths."""
        return save_records(folder, self.rows, self.histograms, self.spectra)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ProbeLog:
        return load_records(folder)

    @classmethod
    def from_history(cls, history: Any) -> ProbeLog:
        """The probe part of a ``trainlab.train.History`` (``probe_records``, ``histograms``,
        ``spectra``)."""
        return cls(rows=list(getattr(history, "probe_records", [])),
                   histograms=list(getattr(history, "histograms", [])),
                   spectra=list(getattr(history, "spectra", [])))


def collect(probes: Iterable[Any]) -> ProbeLog:
    """Gather ``records()``, ``histograms()`` and (where offered) ``spectra()`` of probes."""
    log = ProbeLog()
    for p in probes:
        log.rows += p.records()
        log.histograms += p.histograms()
        if hasattr(p, "spectra"):
            log.spectra += p.spectra()
    return log


def _num(v: float) -> str:
    return repr(float(v))


def save_records(
    folder: str | os.PathLike,
    rows: Sequence[Row],
    histograms: Sequence[dict[str, Any]] = (),
    spectra: Sequence[dict[str, Any]] = (),
) -> dict[str, Path]:
    """Write probe records into ``folder`` in the documented format (atomic writes)."""
    folder = Path(folder)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "layer", "quantity", "value"])
    for s, l, q, v in rows:
        w.writerow([int(s), l, q, _num(v)])
    paths = {"rows": atomic_write_text(folder / FILES["rows"], buf.getvalue())}
    for key, items in (("histograms", histograms), ("spectra", spectra)):
        text = "".join(json.dumps(_jsonable(d), allow_nan=True) + "\n" for d in items)
        paths[key] = atomic_write_text(folder / FILES[key], text)
    return paths


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def load_records(folder: str | os.PathLike) -> ProbeLog:
    """Read what :func:`save_records` wrote (missing histogram/spectra files are empty)."""
    folder = Path(folder)
    path = folder / FILES["rows"]
    if not path.exists():
        raise FileNotFoundError(f"No probe records in {str(folder)!r}: {FILES['rows']} is missing.")
    log = ProbeLog()
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["step", "layer", "quantity", "value"]:
            raise ValueError(f"{path} is not a probe record file (header {header!r}).")
        for s, l, q, v in reader:
            log.rows.append((int(s), l, q, float(v)))
    for key in ("histograms", "spectra"):
        p = folder / FILES[key]
        if p.exists():
            items = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
            setattr(log, key, items)
    return log
