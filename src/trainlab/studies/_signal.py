"""Shared pieces of the signal-propagation studies (activation-stats, sigmoid-init,
glorot-init-diagnostics, dynamical-isometry): one probed pass at initialization, seed
summaries and the lectures' figures (a row of per-layer histograms per configuration,
per-layer curves on a log axis).

Not a study itself (the leading underscore keeps it out of the study registry).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.probes import ActivationStats, GradientStats, ProbeLog, collect, observe
from trainlab.report.figures import pyplot

__all__ = [
    "abs_fraction",
    "geo_mean_ratio",
    "mean_spread",
    "plot_hist_rows",
    "plot_layer_curves",
    "probe_at_init",
    "series",
]


def probe_at_init(model: nn.Module, x: Tensor, y: Tensor | None = None,
                  loss_fn: Callable | None = None, *, bins: int = 40,
                  gradients: bool = True, extra: Sequence[Any] = ()) -> ProbeLog:
    """One recorded forward (and, with ``loss_fn``, backward) pass of ``model`` on ``x``
    with :class:`~trainlab.probes.ActivationStats` (every activation module) and
    :class:`~trainlab.probes.GradientStats` (every Linear: ``∂L/∂s`` and ``∂L/∂W``); the
    model is left as it was. ``extra``: more (unattached) probes for the same pass, e.g. a
    :class:`~trainlab.probes.JacobianSpectrum`. Returns the probes' records, histograms and
    spectra."""
    probes: list[Any] = [ActivationStats(bins=bins, pre=False)]
    if gradients and loss_fn is not None:
        probes.append(GradientStats(bins=bins))
    probes.extend(extra)
    for p in probes:
        p.attach(model)
    try:
        observe(model, probes, x, y, loss_fn if gradients else None)
        return collect(probes)
    finally:
        for p in probes:
            p.detach()


def series(log: ProbeLog, quantity: str, layers: Sequence[str]) -> list[float]:
    """``quantity`` at the first recorded step for each of ``layers``, in order."""
    step = min(log.steps(quantity))
    return [log.value(step, layer, quantity) for layer in layers]


def abs_fraction(hist: dict[str, Any], level: float) -> float:
    """Fraction of the histogram's mass in bins lying wholly at ``|value| >= level``."""
    edges, counts = hist["edges"], hist["counts"]
    total = sum(counts) or 1.0
    mass = sum(c for a, b, c in zip(edges[:-1], edges[1:], counts)
               if min(abs(a), abs(b)) >= level - 1e-9 and a * b >= 0)
    return mass / total


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of per-seed values."""
    v = [float(a) for a in values]
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, 0.0
    return m, math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1))


def geo_mean_ratio(values: Sequence[float]) -> float:
    """Geometric mean of ``values[l+1] / values[l]``: the factor applied per layer."""
    return (values[-1] / values[0]) ** (1.0 / (len(values) - 1))


def _rebinned(hist: dict[str, Any], lo: float, hi: float, bins: int) -> list[float]:
    """The histogram's fractions moved onto ``bins`` equal bins of ``[lo, hi]``, each source
    bin's mass shared among the target bins it overlaps in proportion to the overlap (no
    aliasing stripes), so panels with their own ranges share one x axis and a narrower
    distribution shows as a narrower peak. Mass outside ``[lo, hi]`` goes to the end bins."""
    edges, counts = hist["edges"], hist["counts"]
    total = sum(counts) or 1.0
    out = [0.0] * bins
    w = (hi - lo) / bins
    for a, b, c in zip(edges[:-1], edges[1:], counts):
        if c == 0:
            continue
        a, b = min(max(a, lo), hi), min(max(b, lo), hi)
        if b - a <= 0:
            out[0 if a <= lo else bins - 1] += c / total
            continue
        k0, k1 = int((a - lo) / w), min(bins - 1, int((b - lo) / w))
        for k in range(k0, k1 + 1):
            left, right = lo + k * w, lo + (k + 1) * w
            share = max(0.0, min(b, right) - max(a, left)) / (b - a)
            out[min(k, bins - 1)] += c / total * share
    return out




def plot_hist_rows(rows: Sequence[tuple[str, Sequence[dict[str, Any]]]], *, xlabel: str,
                   title: str, shared: str = "row", bins: int = 40,
                   symmetric: bool = True, logy: bool = False,
                   panel_note: Callable[[int, int], str] | None = None) -> Any:
    """One row of histogram panels per configuration, one panel per layer (lecture 001's
    activation histograms; Glorot & Bengio 2010 figs. 6–7).

    ``rows``: ``(label, [histogram dict per layer])``. ``shared``: the x range is common to
    a row (``"row"``) or to the whole figure (``"all"``), so a distribution that narrows
    layer after layer shows as a narrowing peak. ``panel_note(r, l)`` writes a short text
    (e.g. the std) in panel ``l`` of row ``r``.
    """
    plt = pyplot()
    n_rows = len(rows)
    n_cols = max(len(h) for _, h in rows)

    def extent(hs: Sequence[dict[str, Any]]) -> tuple[float, float]:
        lo = min(h["edges"][0] for h in hs)
        hi = max(h["edges"][-1] for h in hs)
        if symmetric:
            r = max(abs(lo), abs(hi))
            lo, hi = -r, r
        return (lo, hi) if hi > lo else (lo, lo + 1.0)

    from matplotlib.ticker import MaxNLocator, NullLocator

    every = [h for _, hs in rows for h in hs]
    fig_range = extent(every)
    width, height = 1.9 * n_cols + 1.2, 1.45 * n_rows + 0.9
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False,
                             sharey="row")
    for r, (label, hs) in enumerate(rows):
        lo, hi = fig_range if shared == "all" else extent(hs)
        edges = [lo + (hi - lo) * k / bins for k in range(bins + 1)]
        row_max = 0.0
        for col in range(n_cols):
            ax = axes[r][col]
            if col >= len(hs):
                ax.set_visible(False)
                continue
            frac = _rebinned(hs[col], lo, hi, bins)
            row_max = max(row_max, max(frac))
            ax.stairs(frac, edges, fill=True, color=f"C{r % 10}", alpha=0.8)
            ax.set_xlim(lo, hi)
            if logy:
                ax.set_yscale("log")
                ax.set_ylim(bottom=1e-4)
            # few ticks: drawing tick labels is most of the cost of a 30-panel figure
            ax.xaxis.set_major_locator(MaxNLocator(3))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_minor_locator(NullLocator())
            if not logy:
                ax.yaxis.set_major_locator(MaxNLocator(3))
            ax.tick_params(labelsize=6)
            if col > 0:  # the row shares its y axis: ticks only in the first panel
                ax.tick_params(axis="y", left=False, labelleft=False)
            if r == 0:
                ax.set_title(f"layer {col + 1}", fontsize=8)
            if panel_note is not None:
                ax.text(0.97, 0.95, panel_note(r, col), transform=ax.transAxes, ha="right",
                        va="top", fontsize=6,
                        bbox={"boxstyle": "round", "fc": "white", "alpha": 0.7, "lw": 0})
            if r == n_rows - 1:
                ax.set_xlabel(xlabel, fontsize=7)
        if panel_note is not None and not logy and row_max > 0:
            axes[r][0].set_ylim(0, row_max * 1.6)  # head room: the note never hides a peak
        axes[r][0].set_ylabel(f"{label}\nfraction", fontsize=7)
    fig.suptitle(title, fontsize=9)
    # fixed margins in inches (tight_layout costs seconds on a grid this size)
    fig.subplots_adjust(left=1.0 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=1 - 0.5 / height, wspace=0.25, hspace=0.35)
    return fig


def plot_layer_curves(curves: Sequence[tuple[str, Sequence[float], Sequence[float] | None]], *,
                      xlabel: str, ylabel: str, title: str, logy: bool = True,
                      x: Sequence[float] | None = None, reference: float | None = None,
                      styles: Sequence[dict[str, Any]] | None = None, ax: Any = None,
                      legend: bool = True) -> Any:
    """Per-layer curves, one per configuration: ``(label, values, spread or None)``; the
    spread (std over seeds) is drawn as error bars. ``reference`` draws a dashed line.
    ``ax``: draw into these axes (a panel of a larger figure) instead of a new figure."""
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
    else:
        fig = ax.figure
    markers = "osD^vP*X"
    for k, (label, vals, spread) in enumerate(curves):
        xs = list(x) if x is not None else list(range(1, len(vals) + 1))
        style = {"marker": markers[k % len(markers)], "ms": 4, "lw": 1.4, "capsize": 3}
        if styles is not None:
            style.update(styles[k])
        ax.errorbar(xs, vals, yerr=spread, label=label, **style)
    if curves:
        ax.set_xticks(list(x) if x is not None else list(range(1, len(curves[0][1]) + 1)))
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=0.9)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if legend:
        ax.legend(fontsize=8, loc="best")
    return fig


def gaussian_input(n: int, d: int, generator: torch.Generator, std: float = 1.0) -> Tensor:
    """``n`` inputs of ``d`` i.i.d. ``N(0, std²)`` coordinates (the lectures'
    ``np.random.randn(n, d)``)."""
    return torch.randn(n, d, generator=generator) * std
