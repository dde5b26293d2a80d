"""Figures from probe records, one function per lecture figure.

- :func:`plot_layer_moments` — per-layer mean and std over training (Glorot & Bengio 2010
  fig. 2: mean, with the std as vertical bars, of each hidden layer's activations);
- :func:`plot_update_ratios` — ``‖ΔW‖/‖W‖`` per layer over training, log axis, with the 1e-3
  rule of thumb;
- :func:`plot_layer_histograms` — per-layer normalized histograms at chosen steps (lecture
  001's activation histograms; Glorot figs. 6–7 for activations and back-propagated
  gradients);
- :func:`plot_percentiles` — percentiles over time (Ioffe & Szegedy 2015 fig. 1: the 15th,
  50th and 85th percentiles of a sigmoid input over training);
- :func:`plot_jacobian_spectra` — sorted singular values of each layer's Jacobian;
- :func:`plot_histogram_heatmap` — one layer's histograms over time as a heat map.

Each takes records (a :class:`~trainlab.probes.ProbeLog`, a list of rows, or histogram /
spectrum dicts) and returns the matplotlib ``Figure``; given ``path``, it is also saved there as
PNG (:func:`~trainlab.report.figures.save_figure`: atomically, then closed). matplotlib is
imported on first use, with the Agg backend (:func:`~trainlab.report.figures.pyplot`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainlab.probes.records import ProbeLog
from trainlab.report.figures import pyplot, save_figure
from trainlab.report.html import HtmlPage

__all__ = [
    "plot_layer_moments",
    "plot_update_ratios",
    "plot_layer_histograms",
    "plot_percentiles",
    "plot_jacobian_spectra",
    "plot_histogram_heatmap",
]


def _log(records: Any):
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
    """Write ``fig`` at ``path`` (atomically; the figure is then closed) and return it."""
    if path is not None:
        save_figure(fig, path)
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


def _grid(plt: Any, n: int, ncols: int = 4, size: tuple[float, float] = (3.2, 2.4)) -> Any:
    """``n`` small axes in rows of ``ncols`` (spare axes hidden), shared x."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.6),
                             squeeze=False, sharex=True)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.set_visible(False)
    return fig, flat[:n]


def plot_layer_moments(records: Any, prefix: str = "act", layers: Sequence[str] | None = None,
                       *, path: str | os.PathLike | None = None, logx: bool = False) -> Any:
    """Per-layer mean of ``{prefix}_mean`` over steps with a ± std band (Glorot fig. 2), one
    small panel per layer (in forward order) so no layer's band hides another's.

    Every recorded step is drawn, the last one included; the y range is each panel's own
    (a layer whose scale is 1000 times smaller is still readable).
    """
    log = _log(records)
    names = _layers(log, f"{prefix}_mean", layers)
    plt = pyplot()
    fig, axes = _grid(plt, len(names))
    for k, (ax, name) in enumerate(zip(axes, names)):
        steps, mean = log.series(name, f"{prefix}_mean")
        s_std, std = log.series(name, f"{prefix}_std")
        ax.plot(steps, mean, marker="o", ms=2.5, lw=1, color="C0", label="mean")
        if s_std == steps:
            lo = [m - s for m, s in zip(mean, std)]
            hi = [m + s for m, s in zip(mean, std)]
            ax.fill_between(steps, lo, hi, color="C0", alpha=0.25, lw=0, label="mean ± std")
        ax.axhline(0.0, color="grey", lw=0.6)
        if logx:
            ax.set_xscale("symlog")
        ax.set_title(f"{k + 1}. {name}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[-min(4, len(axes)):]:
        ax.set_xlabel("step", fontsize=8)
    axes[0].set_ylabel(f"{prefix}", fontsize=8)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{prefix}: mean (line) and ± std (band) per layer over training, "
                 "one panel per layer in forward order", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_update_ratios(records: Any, layers: Sequence[str] | None = None, *,
                       path: str | os.PathLike | None = None, rule: float = 1e-3) -> Any:
    """``update_ratio = ‖ΔW‖ / ‖W‖`` per layer over training on a log axis, the rule of thumb
    ``rule`` (1e-3: CS231n, "updates about a thousandth of the weights") drawn as a line.

    Layers are coloured by depth on one colour scale (a colourbar gives the layer index), as
    the ratios of neighbouring layers are usually close.
    """
    log = _log(records)
    names = _layers(log, "update_ratio", layers)
    plt = pyplot()
    from matplotlib import cm, colors

    fig, ax = plt.subplots(figsize=(8, 4.2))
    cmap = plt.get_cmap("viridis")
    norm = colors.Normalize(vmin=1, vmax=max(len(names), 2))
    for k, name in enumerate(names):
        steps, vals = log.series(name, "update_ratio")
        pts = [(s, v) for s, v in zip(steps, vals) if math.isfinite(v) and v > 0]
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], color=cmap(norm(k + 1)), lw=1.2,
                    marker=".", ms=3)
    ax.axhline(rule, color="#a11", ls="--", lw=1, label=f"rule of thumb {rule:g}")
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="‖ΔW‖ / ‖W‖ per step (log)",
           title="update ratio per layer over training")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.18, 1.0))
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    bar = fig.colorbar(sm, ax=ax, pad=0.02)
    bar.set_label("layer (1 = input side)")
    bar.set_ticks(range(1, len(names) + 1))
    bar.set_ticklabels([f"{k + 1} {n}" for k, n in enumerate(names)], fontsize=6)
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
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
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


# -- the index page ---------------------------------------------------------------------------
_PREFIX_WORDS = {"act": "activations (outputs of the activation modules)",
                 "grad_out": "back-propagated gradients dL/ds at each layer's output",
                 "w": "weights"}


def probe_caption(name: str) -> str:
    """What the figure file ``name`` (as written by ``plot_probe_figures``) shows and how to
    read it; ``""`` for a name not known."""
    import re

    stem = name[:-4] if name.endswith(".png") else name
    m = re.fullmatch(r"probe_(act|grad_out|w)_moments", stem)
    if m:
        what = _PREFIX_WORDS[m.group(1)]
        return (f"Mean and ± std over training of the {what}, one panel per layer in forward "
                "order (Glorot & Bengio 2010, fig. 2). Read: a band that shrinks panel after "
                "panel is a scale vanishing with depth; a mean pinned away from 0 with a thin "
                "band is saturation. Each panel has its own y range.")
    m = re.fullmatch(r"probe_(act|grad_out|w)_hist_step(\d+)", stem)
    if m:
        what = _PREFIX_WORDS[m.group(1)]
        return (f"Histograms of the {what} at step {m.group(2)}, one curve per layer "
                "(lecture 001; Glorot & Bengio figs. 6-7). Read: peaks at ±1 for tanh are "
                "saturation; a spike at 0 that narrows with depth is vanishing.")
    m = re.fullmatch(r"probe_pre_percentiles_(.+)", stem)
    if m:
        return (f"15th, 50th and 85th percentiles of layer {m.group(1)}'s pre-activation over "
                "training (Ioffe & Szegedy 2015, fig. 1). Read: drifting percentiles are the "
                "input distribution of the nonlinearity changing during training.")
    m = re.fullmatch(r"probe_jacobian_step(\d+)", stem)
    if m:
        return (f"Sorted singular values of each block's Jacobian at step {m.group(1)}, log "
                "axis, dashed line at 1. Read: values near 1 keep signal and gradient scale "
                "through the block; far below 1 they vanish, far above they explode.")
    if stem == "probe_update_ratios":
        return ("‖ΔW‖/‖W‖ of each weight layer at each recorded step, log axis, the 1e-3 rule "
                "of thumb dashed; colour = depth (colourbar). Read: far above 1e-3 the "
                "learning rate is too high for that layer, far below it hardly learns.")
    if stem == "curves":
        return ("Training loss (each value the mean over the steps since the previous logged "
                "row, drawn as a step over that window), test loss and test accuracy.")
    return ""


def write_probe_index(folder: str | os.PathLike, figures: Sequence[str | os.PathLike],
                      title: str = "probe figures") -> Any:
    """Write ``folder/index.html``: each figure (a file in ``folder``) with its caption."""
    folder = Path(folder)
    page = HtmlPage(title)
    page.paragraph("What the probes recorded during training, one figure per quantity. The "
                   "raw numbers are in ../probes.csv (step, layer, quantity, value), "
                   "../probe_histograms.jsonl and ../probe_spectra.jsonl.")
    for f in figures:
        name = Path(f).name
        page.heading(name, level=3)
        page.figure(name, caption=probe_caption(name) or name)
    return page.write(folder / "index.html")
