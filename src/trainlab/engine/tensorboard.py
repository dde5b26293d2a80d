"""A TensorBoard sink: the run's scalars and the probes' histograms as event files.

``trainlab train --tensorboard DIR`` (or ``Trainer(..., callbacks=[TensorBoardSink(DIR)])``)
writes, through :class:`torch.utils.tensorboard.SummaryWriter`:

- every logged metric of the History row (``train_loss``, ``lr``, ``test_loss``,
  ``test_acc`` ...) as a scalar ``metrics/NAME`` at its step;
- every probe scalar ``(step, layer, quantity, value)`` as ``probes/QUANTITY/LAYER``;
- every probe histogram as a *precomputed* histogram (``add_histogram_raw``) with the probe's
  own fixed bin edges and counts: TensorBoard shows exactly what the probe counted, nothing
  is re-binned. The first and last edge bound the values; ``sum`` and ``sum_squares`` are
  estimated from the bin centres (TensorBoard only uses them for its summary line).

The probes' records reach the History at checkpoints and at the end of ``fit``; the sink
writes them then. Needs the optional extra ``trainlab[tensorboard]``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["TensorBoardSink"]


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch imports tensorboard lazily, only here
        raise ImportError(
            "--tensorboard needs the tensorboard package: pip install 'trainlab[tensorboard]' "
            f"(or pip install tensorboard). ({e})"
        ) from None
    return SummaryWriter


class TensorBoardSink:
    """Callback writing scalars and probe histograms to TensorBoard event files in ``log_dir``."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.log_dir = str(log_dir)
        self._writer_cls = _summary_writer()  # fail at construction, not mid-training
        self.writer: Any = None
        self._rows = 0
        self._hists = 0

    def on_fit_begin(self, trainer: Any) -> None:
        if self.writer is None:
            self.writer = self._writer_cls(self.log_dir)
        self._rows = len(trainer.history.probe_records)
        self._hists = len(trainer.history.histograms)

    def on_log(self, trainer: Any, row: dict[str, Any]) -> None:
        step = int(row["step"])
        for k, v in row.items():
            if k in ("step", "epoch") or not isinstance(v, (int, float)):
                continue
            self.writer.add_scalar(f"metrics/{k}", float(v), step)

    def on_checkpoint(self, trainer: Any) -> None:  # pragma: no cover - called if offered
        self._write_probes(trainer.history)

    def on_fit_end(self, trainer: Any, history: Any) -> None:
        trainer._finish_probes()  # move the probes' records into the History now
        self._write_probes(history)
        self.writer.flush()

    def _write_probes(self, history: Any) -> None:
        import numpy as np

        for step, layer, quantity, value in history.probe_records[self._rows:]:
            self.writer.add_scalar(f"probes/{quantity}/{layer}", float(value), int(step))
        self._rows = len(history.probe_records)
        for h in history.histograms[self._hists:]:
            edges = np.asarray(h["edges"], dtype=np.float64)
            counts = np.asarray(h["counts"], dtype=np.float64)
            centres = (edges[:-1] + edges[1:]) / 2
            n = counts.sum()
            if n <= 0:
                continue
            nz = np.nonzero(counts)[0]
            self.writer.add_histogram_raw(
                f"{h['quantity']}/{h['layer']}",
                min=float(edges[nz[0]]), max=float(edges[nz[-1] + 1]), num=int(n),
                sum=float((centres * counts).sum()),
                sum_squares=float((centres ** 2 * counts).sum()),
                bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(),
                global_step=int(h["step"]),
            )
        self._hists = len(history.histograms)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
