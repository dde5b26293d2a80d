"""The one figure writer: save_figure writes atomically and closes the figure; pyplot is
matplotlib with the Agg backend, loaded on first use; the run's and the sweep's figures come
from report/ and are still importable from runs.run / runs.sweep."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from trainlab.engine.history import History
from trainlab.report import run_plots, sweep_plots
from trainlab.report.figures import pyplot, save_figure

PNG_END = b"IEND\xaeB`\x82"


def _fig(size=(4, 3)):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    ax.plot([0, 1, 2], [1, 0, 2])
    return fig


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_pyplot_is_agg_and_matplotlib_loads_on_first_use():
    plt = pyplot()
    assert plt.get_backend().lower() == "agg"
    code = ("import sys, trainlab, trainlab.report, trainlab.report.figures, "
            "trainlab.report.run_plots, trainlab.report.sweep_plots, trainlab.runs.run, "
            "trainlab.runs.sweep; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported with trainlab'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_save_figure_writes_the_png_and_closes_the_figure(tmp_path):
    plt = pyplot()
    fig = _fig()
    path = save_figure(fig, tmp_path / "sub" / "f.png", dpi=50, tight=False)
    assert path == tmp_path / "sub" / "f.png"
    assert not plt.fignum_exists(fig.number)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (200, 150)  # figsize × dpi, not cropped
    assert _listing(path.parent) == ["f.png"]  # no temporary file left
    # tight (the default) crops to the drawn content; dpi defaults to 110
    with Image.open(save_figure(_fig(), tmp_path / "t.png")) as im:
        w, h = im.size
        assert w <= 4 * 110 and h <= 3 * 110 and (w, h) != (440, 330)
        assert round(im.info["dpi"][0]) == 110


def test_save_figure_goes_through_a_temporary_file_in_the_same_folder(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        data = open(src, "rb").read()
        seen.append((os.path.dirname(src), os.path.basename(src), data.endswith(PNG_END)))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    save_figure(_fig(), tmp_path / "a.png")
    ((folder, name, whole),) = seen
    assert folder == str(tmp_path) and name.startswith(".a.png.") and name != "a.png"
    assert whole  # the temporary file is the complete PNG before it takes the name


def test_a_failure_while_drawing_leaves_no_file_and_no_temporary(tmp_path):
    plt = pyplot()
    fig = _fig()

    def broken(fname, **kw):
        fname.write(b"\x89PNG half a figure")  # some bytes, then the crash
        raise RuntimeError("renderer died")

    fig.savefig = broken
    with pytest.raises(RuntimeError, match="renderer died"):
        save_figure(fig, tmp_path / "f.png")
    assert _listing(tmp_path) == []
    assert not plt.fignum_exists(fig.number)  # closed all the same


def test_an_existing_file_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(b"the old figure")
    fig = _fig()
    fig.savefig = lambda fname, **kw: (_ for _ in ()).throw(MemoryError())
    with pytest.raises(MemoryError):
        save_figure(fig, path)
    assert path.read_bytes() == b"the old figure" and _listing(tmp_path) == ["f.png"]

    save_figure(_fig(), path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and data.endswith(PNG_END)
    assert _listing(tmp_path) == ["f.png"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # the mode of a plain file


def _history() -> History:
    h = History(metrics=[{"step": s, "train_loss": 2.0 / (s + 1), "test_loss": 2.1 / (s + 1),
                          "test_acc": s / 10} for s in (1, 4, 8)])
    for s in (0, 4, 8):
        for layer in ("1", "3"):
            h.probe_records += [(s, layer, "act_mean", 0.1 * s), (s, layer, "act_std", 0.5),
                                (s, layer, "pre_p15", -1.0), (s, layer, "pre_p50", 0.0),
                                (s, layer, "pre_p85", 1.0), (s, layer, "update_ratio", 1e-3)]
            h.histograms.append({"step": s, "layer": layer, "quantity": "act",
                                 "edges": [-1.0, 0.0, 1.0], "counts": [3.0, 5.0]})
            h.spectra.append({"step": s, "layer": layer, "singular_values": [2.0, 1.0, 0.5],
                              "exact": True})
    h.pretrain = [{"method": "autoencoder", "layer": layer, "step": s, "train_loss": 1.0 / s,
                   "recon_loss": 1.0 / s, "time": 0.0} for layer in ("0", "2") for s in (1, 2, 3)]
    return h


def test_run_figures_from_report_and_from_runs_run(tmp_path):
    import trainlab.runs.run as runs

    assert runs.plot_curves is run_plots.plot_curves
    assert runs.plot_probe_figures is run_plots.plot_probe_figures
    assert runs.plot_pretrain_curves is run_plots.plot_pretrain_curves
    plt = pyplot()
    before = set(plt.get_fignums())
    h = _history()
    figs = tmp_path / "run" / "figures"
    curves = run_plots.plot_curves({"run": h}, figs / "curves.png", title="t")
    pre = run_plots.plot_pretrain_curves(h, figs / "pretrain.png")
    written = run_plots.plot_probe_figures(h, figs)
    with Image.open(pre) as im:
        assert im.size == (600, 400)  # 6 × 4 in at 100 dpi, not cropped
    assert curves.stat().st_size > 5000
    names = {p.name for p in written}
    assert {"probe_act_moments.png", "probe_act_hist_step0.png", "probe_act_hist_step8.png",
            "probe_pre_percentiles_1.png", "probe_pre_percentiles_3.png",
            "probe_jacobian_step0.png", "probe_jacobian_step8.png", "probe_update_ratios.png",
            "index.html"} <= names
    for p in written[:-1]:
        assert p.read_bytes().endswith(PNG_END)
    assert not [n for n in _listing(figs) if n.startswith(".")]  # no temporary left
    assert set(plt.get_fignums()) == before  # every figure closed


def test_sweep_figures_from_report_and_from_runs_sweep(tmp_path):
    import trainlab.runs.sweep as sweep

    assert sweep.plot_heatmap is sweep_plots.plot_heatmap
    assert sweep.plot_best_curves is sweep_plots.plot_best_curves
    mean = np.array([[0.5, math.nan], [0.7, 0.9]])
    counts = np.array([[2, 0], [1, 2]])
    p = sweep_plots.plot_heatmap(mean, counts, ["relu", "tanh"], ["0.1", "0.01"],
                                 row_axis="act", col_axis="lr", metric="test_acc",
                                 title="g: test_acc by act and lr", path=tmp_path / "h.png")
    with Image.open(p) as im:
        assert im.size == (560, 360)  # (1.3·2 + 3) × (0.7·2 + 2.2) in at 100 dpi
    curves = [("lr=0.1", [0, 10, 20], [2.0, 1.0, 0.5], "C0"),
              ("lr=0.01", [0, 10, 20], [2.0, 1.5, 1.2], "C1")]
    b = sweep_plots.plot_best_curves(curves, metric="train_loss", title="g: best run per lr",
                                     path=tmp_path / "b.png")
    assert b.read_bytes().endswith(PNG_END)
    assert sweep_plots.plot_best_curves([], metric="test_acc", title="x",
                                        path=tmp_path / "none.png") is None
    assert _listing(tmp_path) == ["b.png", "h.png"]
