"""Figures from probe records, one function per lecture figure.

- :func:`plot_layer_moments` — per-layer mean and std over training (Glorot & Bengio 2010
  fig. 2: mean, with the std as vertical bars, of each hidden layer's activations);
- :func:`plot_layer_histograms` — per-layer normalized histograms at chosen steps (lecture
  001's activation histograms; Glorot figs. 6–7 for activations and back-propagated
  gradients);
- :func:`plot_percentiles` — percentiles over time (Ioffe & Szegedy 2015 fig. 1: the 15th,
  50th and 85th percentiles of a sigmoid input over training);
- :func:`plot_jacobian_spectra` — sorted singular values of each layer's Jacobian;
- :func:`plot_histogram_heatmap` — one layer's histograms over time as a heat map.

Each takes records (a :class:`~trainlab.probes.ProbeLog`, a list of rows, or histogram /
spectrum dicts), returns the matplotlib ``Figure`` and saves it as PNG when ``path`` is given.
matplotlib is imported lazily with the Agg backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

__all__ = [
    "plot_layer_moments",
    "plot_layer_histograms",
    "plot_percentiles",
    "plot_jacobian_spectra",
    "plot_histogram_heatmap",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _log(records: Any):
    from trainlab.probes.records import ProbeLog

    if isinstance(records, ProbeLog):
        return records
    if isinstance(records, (list, tuple)):
        if records and isinstance(records[0], dict):
            if "edges" in records[0]:
                return ProbeLog(histograms=list(records))
            return ProbeLog(spectra=list(records))
        return ProbeLog(rows=list(records))
    raise TypeError(
        "records must be a ProbeLog, a list of (step, layer, quantity, value) rows, or a list "
        f"of histogram/spectrum dicts. Received: {type(records).__name__}."
    )


def _save(fig: Any, path: str | os.PathLike | None) -> Any:
    if path is not None:
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _layers(log: Any, quantity: str, layers: Sequence[str] | None) -> list[str]:
    found = log.layers(quantity) if log.rows else list(
        dict.fromkeys(h["layer"] for h in log.histograms if h["quantity"] == quantity))
    if layers is not None:
        missing = [l for l in layers if l not in found]
        if missing:
            raise ValueError(f"layers {missing} have no {quantity!r} records; "
                             f"available: {found}.")
        return list(layers)
    if not found:
        raise ValueError(f"No {quantity!r} records to plot.")
    return found


def plot_layer_moments(records: Any, prefix: str = "act", layers: Sequence[str] | None = None,
                       *, path: str | os.PathLike | None = None, logx: bool = False) -> Any:
    """Mean of ``{prefix}_mean`` per layer over steps, std as error bars (Glorot fig. 2)."""
    log = _log(records)
    names = _layers(log, f"{prefix}_mean", layers)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        steps, mean = log.series(name, f"{prefix}_mean")
        _, std = log.series(name, f"{prefix}_std")
        ax.errorbar(steps, mean, yerr=std if len(std) == len(mean) else None, label=name,
                    capsize=2, marker="o", ms=3, lw=1)
    if logx:
        ax.set_xscale("symlog")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{prefix} mean ± std")
    ax.set_title(f"{prefix}: mean and std per layer over training")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_layer_histograms(records: Any, quantity: str = "act", step: int | None = None,
                          layers: Sequence[str] | None = None, *,
                          path: str | os.PathLike | None = None) -> Any:
    """Normalized histograms, one curve per layer, at ``step`` (default: the first)
    — lecture 001's per-layer activation histograms, Glorot figs. 6–7."""
    log = _log(records)
    hs = log.hists(quantity)
    if not hs:
        raise ValueError(f"No {quantity!r} histograms to plot.")
    if step is None:
        step = min(h["step"] for h in hs)
    hs = [h for h in hs if h["step"] == step and (layers is None or h["layer"] in layers)]
    if not hs:
        raise ValueError(f"No {quantity!r} histograms at step {step}.")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for h in hs:
        edges, counts = h["edges"], h["counts"]
        total = sum(counts) or 1.0
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        ax.plot(centers, [c / total for c in counts], label=h["layer"], lw=1.2)
    ax.set_xlabel(quantity)
    ax.set_ylabel("fraction of values")
    ax.set_title(f"{quantity} histograms per layer, step {step}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_percentiles(records: Any, layer: str, prefix: str = "pre",
                     percentiles: Sequence[float] = (15, 50, 85), *,
                     path: str | os.PathLike | None = None) -> Any:
    """Percentiles of one layer's ``prefix`` tensor over training (Ioffe & Szegedy fig. 1)."""
    log = _log(records)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    plotted = 0
    for p in percentiles:
        key = f"{prefix}_p{p:g}".replace(".", "_")
        steps, vals = log.series(layer, key)
        if steps:
            ax.plot(steps, vals, label=f"{p:g}th percentile")
            plotted += 1
    if not plotted:
        raise ValueError(f"No {prefix} percentile records for layer {layer!r}.")
    ax.set_xlabel("step")
    ax.set_ylabel(prefix)
    ax.set_title(f"{layer}: {prefix} percentiles over training")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_jacobian_spectra(spectra: Any, step: int | None = None,
                          layers: Sequence[str] | None = None, *,
                          path: str | os.PathLike | None = None) -> Any:
    """Sorted singular values of each layer's Jacobian at ``step`` (default: the last)."""
    log = _log(spectra)
    sp = log.spectra
    if not sp:
        raise ValueError("No Jacobian spectra to plot.")
    if step is None:
        step = max(s["step"] for s in sp)
    sp = [s for s in sp if s["step"] == step and (layers is None or s["layer"] in layers)]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in sp:
        sv = s["singular_values"]
        ax.plot(range(1, len(sv) + 1), sv, label=s["layer"] + ("" if s["exact"] else " (top-k)"))
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("index")
    ax.set_ylabel("singular value")
    ax.set_title(f"Jacobian singular values, step {step}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_histogram_heatmap(records: Any, layer: str, quantity: str = "act", *,
                           path: str | os.PathLike | None = None, bins: int = 60) -> Any:
    """One layer's histograms over time as a heat map (x: step index, y: value).

    Histograms recorded with adaptive ranges are re-binned onto a common grid spanning all
    their edges (each bin's mass goes to the grid cell holding its center).
    """
    log = _log(records)
    hs = sorted(log.hists(quantity, layer=layer), key=lambda h: h["step"])
    if not hs:
        raise ValueError(f"No {quantity!r} histograms for layer {layer!r}.")
    lo = min(h["edges"][0] for h in hs)
    hi = max(h["edges"][-1] for h in hs)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    grid = [[0.0] * len(hs) for _ in range(bins)]
    for j, h in enumerate(hs):
        e, c = h["edges"], h["counts"]
        total = sum(c) or 1.0
        for a, b, n in zip(e[:-1], e[1:], c):
            k = min(bins - 1, max(0, int(((a + b) / 2 - lo) / (hi - lo) * bins)))
            grid[k][j] += n / total
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    im = ax.imshow(grid, aspect="auto", origin="lower", extent=(-0.5, len(hs) - 0.5, lo, hi),
                   cmap="viridis")
    ax.set_xticks(range(len(hs)))
    ax.set_xticklabels([str(h["step"]) for h in hs], rotation=45, fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel(quantity)
    ax.set_title(f"{layer}: {quantity} histogram over training")
    fig.colorbar(im, ax=ax, label="fraction")
    return _save(fig, path)
