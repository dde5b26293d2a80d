"""The figures of a sweep's report (``figures/`` of :mod:`trainlab.runs.sweep`).

- :func:`plot_heatmap` — ``heatmap_A__B.png``: a metric for each pair of values of two axes
  (the mean over the other axes), each cell labelled with its value and run count;
- :func:`plot_best_curves` — ``best_AXIS.png``: for each value of one axis, the curve of its
  best run.

They draw what the sweep has computed (means, counts, curves) and write the PNG atomically
(:func:`~trainlab.report.figures.save_figure`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.report.figures import pyplot, save_figure

__all__ = ["plot_best_curves", "plot_heatmap"]


def plot_heatmap(mean: Any, counts: Any, rows: Sequence[str], cols: Sequence[str], *,
                 row_axis: str, col_axis: str, metric: str, title: str,
                 path: str | os.PathLike) -> Path:
    """Heat map of ``mean`` (a ``len(rows) × len(cols)`` array, NaN where no run finished):
    rows are the values of ``row_axis``, columns those of ``col_axis``; cell ``(i, j)`` says
    ``mean[i, j]`` and its run count ``counts[i, j]`` ("n/a" when 0). For a metric ending in
    ``loss`` (lower is better) the colour scale is reversed, so the best cells are bright."""
    plt = pyplot()
    mean, counts = np.asarray(mean, dtype=float), np.asarray(counts)
    lower = metric.endswith("loss")
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 3, 0.7 * len(rows) + 2.2))
    im = ax.imshow(np.ma.masked_invalid(mean), cmap="viridis_r" if lower else "viridis",
                   aspect="auto")
    ax.set_xticks(range(len(cols)), list(cols), rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_xlabel(col_axis)
    ax.set_ylabel(row_axis)
    finite = mean[np.isfinite(mean)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(len(rows)):
        for j in range(len(cols)):
            text = "n/a" if not counts[i, j] else f"{mean[i, j]:.3g}\n(n={counts[i, j]})"
            dark = np.isfinite(mean[i, j]) and ((mean[i, j] < mid) != lower)
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100, tight=False)


def plot_best_curves(curves: Sequence[tuple[str, Sequence[float], Sequence[float], str]], *,
                     metric: str, title: str, path: str | os.PathLike) -> Path | None:
    """One curve per ``(label, steps, values, colour)`` (a matplotlib colour, e.g. ``"C2"``)
    of ``metric`` against the step, the legend below the axes; ``None`` (nothing written)
    when ``curves`` is empty. ``train_loss`` (a mean over the steps since the previous row)
    is drawn as a step function over the window it averages."""
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    style = "steps-pre" if metric == "train_loss" else "default"
    for label, steps, values, color in curves:
        ax.plot(steps, values, color=color, marker="." if len(steps) < 30 else None,
                drawstyle=style, label=label)
    ax.set(xlabel="step", ylabel=metric, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False,
              ncol=2)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
