"""The figures of one run folder (``figures/`` of :mod:`trainlab.runs.run`).

- :func:`plot_curves` — ``curves.png``: loss (train, as window means, and test) and test
  accuracy against the step, one colour per run;
- :func:`plot_probe_figures` — the lecture figures of the probe records
  (``probe_*.png``, :mod:`trainlab.report.probe_plots`) and their ``index.html``;
- :func:`plot_pretrain_curves` — ``pretrain.png``: the per-layer reconstruction curves of
  greedy layer-wise pre-training.

Each takes a :class:`~trainlab.engine.history.History` (or anything with its ``series``,
``probe_records``, ``histograms``, ``spectra``, ``pretrain`` and ``pretrain_curves``) and writes
its PNG atomically (:func:`~trainlab.report.figures.save_figure`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainlab.probes.records import ProbeLog
from trainlab.report import probe_plots as pp
from trainlab.report.figures import pyplot, save_figure

__all__ = ["plot_curves", "plot_pretrain_curves", "plot_probe_figures"]


def plot_curves(histories: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """PNG of loss (train and test) and test accuracy against step, one colour per run.

    A History row is logged at every multiple of ``log_every`` *and* of ``eval_every`` (and
    at the end), and its ``train_loss`` is the mean over the steps since the previous row:
    windows of unequal length (32, 18, 14, 32, 4 ... steps). Joining those means by straight
    lines draws a zig-zag that is not in the data, so the train loss is drawn as a step
    function, each mean held over the window it averages.
    """
    plt = pyplot()
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, h) in enumerate(histories.items()):
        c = f"C{i}"
        s, v = h.series("train_loss")
        if s:  # value i is the mean over steps (s[i-1], s[i]]: hold it over that window
            ax_l.plot([0, *s], [v[0], *v], color=c, drawstyle="steps-pre",
                      label=f"{label} train (window mean)")
        s, v = h.series("test_loss")
        if s:
            ax_l.plot(s, v, color=c, linestyle="--", label=f"{label} test")
        s, v = h.series("test_acc")
        if s:
            ax_a.plot(s, v, color=c, marker=".", label=label)
    ax_l.set(xlabel="step", ylabel="loss", title="loss")
    ax_a.set(xlabel="step", ylabel="accuracy", title="test accuracy")
    if not ax_a.lines:  # no test split: say so instead of an empty legend (and its warning)
        ax_a.text(0.5, 0.5, "no test split", ha="center", va="center", transform=ax_a.transAxes)
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            # below the axes: a legend inside would cover a curve (the curves fill the plot)
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3),
                      frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _file_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _few(steps: list[int], k: int = 3) -> list[int]:
    """Up to ``k`` steps spread over ``steps`` (first, middle, last)."""
    steps = sorted(set(steps))
    if len(steps) <= k:
        return steps
    return sorted({steps[round(i * (len(steps) - 1) / (k - 1))] for i in range(k)})


def plot_probe_figures(history: Any, folder: str | os.PathLike) -> list[Path]:
    """Draw the lecture figures of ``history``'s probe records into ``folder``.

    Per-layer mean ± std over training (``probe_{act,grad_out,w}_moments.png``, Glorot &
    Bengio fig. 2), per-layer histograms at up to three recorded steps
    (``probe_{act,grad_out,w}_hist_step{S}.png``, lecture 001 / Glorot figs. 6-7), the 15th,
    50th and 85th percentiles of the first and last watched layer's pre-activation over
    training (``probe_pre_percentiles_{layer}.png``, Ioffe & Szegedy fig. 1) and the Jacobian
    singular values at the first and last recorded steps (``probe_jacobian_step{S}.png``)
    and the update ratios ``‖ΔW‖/‖W‖`` per layer with the 1e-3 rule of thumb
    (``probe_update_ratios.png``). Histograms and spectra include the last recorded step.
    ``index.html`` in ``folder`` shows every figure (``curves.png`` too, when present) with a
    caption saying what it shows and how to read it. A figure whose records are absent is
    skipped. Returns the paths written (the PNGs, then the index page).
    """
    log = ProbeLog(
        rows=list(history.probe_records),
        histograms=list(history.histograms),
        spectra=list(history.spectra),
    )
    folder = Path(folder)
    jobs: list[tuple[str, Any]] = []
    quantities = set(log.quantities())
    for prefix in ("act", "grad_out", "w"):
        if f"{prefix}_mean" in quantities:
            jobs.append((f"probe_{prefix}_moments.png",
                         lambda p, prefix=prefix: pp.plot_layer_moments(log, prefix, path=p)))
        for step in _few([h["step"] for h in log.hists(prefix)]):
            jobs.append((f"probe_{prefix}_hist_step{step}.png",
                         lambda p, prefix=prefix, step=step: pp.plot_layer_histograms(
                             log, prefix, step=step, path=p)))
    pct = log.layers("pre_p50")
    for layer in dict.fromkeys([pct[0], pct[-1]] if pct else []):
        jobs.append((f"probe_pre_percentiles_{_file_part(layer)}.png",
                     lambda p, layer=layer: pp.plot_percentiles(log, layer, "pre", path=p)))
    for step in _few([s["step"] for s in log.spectra], 2):
        jobs.append((f"probe_jacobian_step{step}.png",
                     lambda p, step=step: pp.plot_jacobian_spectra(log, step=step, path=p)))
    if "update_ratio" in quantities:
        jobs.append(("probe_update_ratios.png",
                     lambda p: pp.plot_update_ratios(log, path=p)))
    if not jobs:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in jobs:
        draw(folder / name)  # saved atomically and closed by save_figure
        written.append(folder / name)
    shown = ([folder / "curves.png"] if (folder / "curves.png").exists() else []) + written
    title = f"probe figures: {folder.parent.name}"
    written.append(pp.write_probe_index(folder, shown, title=title))
    return written


def plot_pretrain_curves(history: Any, path: str | os.PathLike, title: str = "") -> Path:
    """Per-layer reconstruction curves of greedy pre-training (``history.pretrain``): the
    clean reconstruction loss against each layer's own step, one line per layer."""
    plt = pyplot()
    curves = history.pretrain_curves("recon_loss")
    fig, ax = plt.subplots(figsize=(6, 4))
    for layer, (steps, values) in curves.items():
        ax.plot(steps, values, marker=".", label=layer)
    method = history.pretrain[0].get("method", "") if history.pretrain else ""
    ax.set_xlabel("pre-training step of the layer")
    ax.set_ylabel("reconstruction loss (clean inputs)")
    if all(v > 0 for _, vals in curves.values() for v in vals):
        ax.set_yscale("log")
    ax.set_title(title or f"greedy layer-wise pre-training ({method})")
    ax.legend(title="layer")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100, tight=False)
