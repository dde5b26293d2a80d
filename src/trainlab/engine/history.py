"""The record of a training run: metric rows, probe records, outcome."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from typing import Any

from trainlab.utils import atomic_write_text

__all__ = ["Divergence", "History"]


@dataclass(frozen=True)
class Divergence:
    """Where training first produced a NaN or Inf.

    Attributes:
        step: the training step (0-based count of optimizer steps before it) whose forward or
            backward pass first produced a non-finite value.
        module: name of the first module (as in ``model.named_modules()``) whose output or
            gradient was non-finite; ``"loss"`` when only the loss was, ``"?"`` when the
            replay could not locate it.
        kind: ``"activation"``, ``"gradient"``, ``"loss"`` or ``"parameter"``.
        value: ``"nan"`` or ``"inf"``.
    """

    step: int
    module: str
    kind: str
    value: str = "nan"

    def message(self) -> str:
        where = f"module {self.module!r}" if self.module not in ("loss", "?") else self.module
        if self.module == "?":
            where = "an unidentified place (the replay did not reproduce it)"
        return (
            f"training diverged at step {self.step}: a non-finite {self.kind} ({self.value}) "
            f"first appeared in {where}."
        )


@dataclass
class History:
    """Metrics of one ``Trainer.fit``.

    Attributes:
        metrics: one dict per logging point with ``step``, ``epoch``, ``train_loss``
            (the mean over the steps since the previous row), ``lr``, ``time`` (seconds of
            training since the run began; a resumed run goes on from the checkpoint's
            elapsed time, it does not restart at 0) and, at evaluation points,
            ``test_loss`` and ``test_acc``.
        probe_records: tidy rows ``(step, layer, quantity, value)`` from the probes.
        histograms: histogram dicts from the probes.
        spectra: Jacobian spectrum dicts ``{"step", "layer", "singular_values", "exact"}``
            from probes that offer ``spectra()`` (:class:`trainlab.probes.JacobianSpectrum`).
        status: ``"done"``, ``"diverged"``, ``"interrupted"`` or ``"stopped"`` (early stop).
        divergence: where training diverged, when it did.
        pretrain: rows of greedy layer-wise pre-training
            (:func:`trainlab.engine.pretraining.pretrain`),
            one per layer and logging point: ``method``, ``layer``, ``step`` (the layer's own
            step count), ``train_loss``, ``recon_loss``, ``time``; empty without it.
    """

    metrics: list[dict[str, Any]] = field(default_factory=list)
    probe_records: list[tuple[int, str, str, float]] = field(default_factory=list)
    histograms: list[dict[str, Any]] = field(default_factory=list)
    spectra: list[dict[str, Any]] = field(default_factory=list)
    status: str = "done"
    divergence: Divergence | None = None
    pretrain: list[dict[str, Any]] = field(default_factory=list)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` for the rows that have ``key``."""
        rows = [r for r in self.metrics if r.get(key) is not None]
        return [r["step"] for r in rows], [float(r[key]) for r in rows]

    def last(self, key: str, default: float = math.nan) -> float:
        """The latest value of ``key`` (``default`` when never recorded)."""
        for r in reversed(self.metrics):
            if r.get(key) is not None:
                return float(r[key])
        return default

    def final(self) -> dict[str, float]:
        """The latest value of every numeric metric (and, after pre-training, each layer's
        last ``recon_loss`` as ``pretrain.LAYER.recon_loss``)."""
        out: dict[str, float] = {}
        for r in self.metrics:
            for k, v in r.items():
                if isinstance(v, (int, float)) and v is not None:
                    out[k] = v
        for r in self.pretrain:
            out[f"pretrain.{r['layer']}.recon_loss"] = r["recon_loss"]
        return out

    def pretrain_curves(self, key: str = "recon_loss") -> dict[str, tuple[list[int], list[float]]]:
        """Per pre-trained layer, in order: ``(steps, values)`` of ``key`` in
        :attr:`pretrain`."""
        out: dict[str, tuple[list[int], list[float]]] = {}
        for r in self.pretrain:
            steps, values = out.setdefault(r["layer"], ([], []))
            steps.append(int(r["step"]))
            values.append(float(r[key]))
        return out

    def pretrain_csv(self, path: str | os.PathLike | None = None) -> str:
        """The pre-training rows as CSV text (written atomically to ``path`` when given)."""
        buf = io.StringIO()
        cols = ["method", "layer", "step", "train_loss", "recon_loss", "time"]
        for r in self.pretrain:
            cols.extend(k for k in r if k not in cols)
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", restval="")
        w.writeheader()
        w.writerows(self.pretrain)
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def columns(self) -> list[str]:
        cols: list[str] = []
        for r in self.metrics:
            cols.extend(k for k in r if k not in cols)
        return cols

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The metrics as CSV text (written atomically to ``path`` when given)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n", restval="")
        w.writeheader()
        w.writerows(self.metrics)
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def state_dict(self) -> dict[str, Any]:
        return {
            "metrics": [dict(r) for r in self.metrics],
            "probe_records": list(self.probe_records),
            "histograms": list(self.histograms),
            "spectra": list(self.spectra),
            "pretrain": [dict(r) for r in self.pretrain],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics = [dict(r) for r in state.get("metrics", [])]
        self.probe_records = list(state.get("probe_records", []))
        self.histograms = list(state.get("histograms", []))
        self.spectra = list(state.get("spectra", []))
        self.pretrain = [dict(r) for r in state.get("pretrain", [])]
