"""Trainer callbacks: early stopping, a CSV metrics log, a plain function hook.

A callback is any object with some of these methods (all optional)::

    on_fit_begin(trainer)
    on_log(trainer, row)      # at every logging point; ``row`` is the History row just added
    on_fit_end(trainer, history)

It stops training by setting ``trainer.stop_training = True``. Callbacks run only at
logging points, where the trainer has already synced with the device, so they add no
per-step host synchronisation.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "MetricsCSV"]


class Callback:
    """Base class with empty hooks (subclassing it is optional)."""

    def on_fit_begin(self, trainer: Any) -> None:  # noqa: B027
        pass

    def on_log(self, trainer: Any, row: dict[str, Any]) -> None:  # noqa: B027
        pass

    def on_fit_end(self, trainer: Any, history: Any) -> None:  # noqa: B027
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` checks.

    Args:
        monitor: metric name in the History rows (``"test_loss"``, ``"test_acc"``,
            ``"train_loss"``).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for names containing ``acc``).
        patience: number of consecutive checks without improvement tolerated.
        min_delta: smallest change counted as an improvement.
    """

    def __init__(
        self,
        monitor: str = "test_loss",
        mode: str = "auto",
        patience: int = 5,
        min_delta: float = 0.0,
    ) -> None:
        if mode not in ("min", "max", "auto"):
            raise ValueError(
                f"mode must be one of ('min', 'max', 'auto'). Received: mode={mode!r}."
            )
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1. Received: patience={patience!r}.")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0. Received: min_delta={min_delta!r}.")
        self.monitor = monitor
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_step: int | None = None
        self.wait = 0
        self.stopped_step: int | None = None

    def on_log(self, trainer: Any, row: dict[str, Any]) -> None:
        value = row.get(self.monitor)
        if value is None:
            return
        better = (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        )
        if better:
            self.best, self.best_step, self.wait = float(value), row["step"], 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_step = row["step"]
            trainer.stop_training = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step, self.wait = state["best"], state["best_step"], state["wait"]


class MetricsCSV(Callback):
    """Append each History row to a CSV file (the header grows by rewriting when needed)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._cols: list[str] = []

    def on_fit_begin(self, trainer: Any) -> None:
        # On resume the History already holds the earlier rows: rewrite the file from it so
        # rows logged after the checkpoint (then lost) do not appear twice.
        trainer.history.to_csv(self.path)
        self._cols = trainer.history.columns()

    def on_log(self, trainer: Any, row: dict[str, Any]) -> None:
        if any(k not in self._cols for k in row) or not self.path.exists():
            trainer.history.to_csv(self.path)
            self._cols = trainer.history.columns()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._cols, lineterminator="\n", restval="").writerow(row)


class LambdaCallback(Callback):
    """Wrap plain functions as a callback: ``LambdaCallback(on_log=lambda t, row: ...)``."""

    def __init__(
        self,
        on_fit_begin: Callable[..., None] | None = None,
        on_log: Callable[..., None] | None = None,
        on_fit_end: Callable[..., None] | None = None,
    ) -> None:
        self._begin, self._log, self._end = on_fit_begin, on_log, on_fit_end

    def on_fit_begin(self, trainer: Any) -> None:
        if self._begin:
            self._begin(trainer)

    def on_log(self, trainer: Any, row: dict[str, Any]) -> None:
        if self._log:
            self._log(trainer, row)

    def on_fit_end(self, trainer: Any, history: Any) -> None:
        if self._end:
            self._end(trainer, history)
