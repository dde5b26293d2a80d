"""The figure of Santurkar et al. 2018 (fig. 4) from :class:`~trainlab.probes.LossLandscape`
records: (a) the range of the loss along the gradient, (b) the range of the ℓ2 change of the
gradient, (c) the effective β-smoothness, each over training steps, one colour per run
(e.g. "standard" and "batch norm")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from trainlab.report.figures import pyplot
from trainlab.report.probe_plots import _log, _save

__all__ = ["plot_landscape"]

_PANELS = (
    ("loss_min", "loss_max", "loss landscape", "loss along the gradient"),
    ("grad_change_min", "grad_change_max", "gradient predictiveness",
     "‖∇L(θ−ηg) − ∇L(θ)‖"),
    ("beta_smoothness", None, "effective β-smoothness", "max ‖Δ∇L‖ / ‖ηg‖"),
)


def _series(records: Any, quantity: str) -> tuple[list[int], list[float]]:
    if hasattr(records, "probe_records"):  # a History
        records = list(records.probe_records)
    log = _log(records)
    if "model" not in log.layers(quantity):
        raise ValueError(f"no {quantity!r} records of LossLandscape (layer 'model') to plot.")
    return log.series("model", quantity)


def plot_landscape(runs: Mapping[str, Any], path: str | os.PathLike | None = None, *,
                   title: str = "Loss landscape along the gradient (Santurkar et al. 2018, "
                   "fig. 4)", log_y: bool = True) -> Any:
    """Three panels over training steps, one colour per run: the band between the smallest
    and the largest loss over the step sizes, the band of the gradient's ℓ2 change, and the
    effective β-smoothness. ``runs``: ``{label: records}`` (a ProbeLog, rows or a History
    holding LossLandscape records). Returns the Figure (saved as PNG at ``path``)."""
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty mapping {label: records}. "
                         f"Received: {type(runs).__name__}.")
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, records) in enumerate(runs.items()):
        c = colors[k % len(colors)]
        for ax, (lo_q, hi_q, _, _) in zip(axes, _PANELS):
            steps, lo = _series(records, lo_q)
            if hi_q is None:
                ax.plot(steps, lo, color=c, label=label, lw=1.6, marker="o", ms=2.5)
                continue
            _, hi = _series(records, hi_q)
            ax.fill_between(steps, lo, hi, color=c, alpha=0.3, lw=0)
            ax.plot(steps, lo, color=c, lw=0.8)
            ax.plot(steps, hi, color=c, lw=0.8, label=label)
    for ax, (_, _, name, ylabel) in zip(axes, _PANELS):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
