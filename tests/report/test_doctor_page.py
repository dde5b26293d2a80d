"""The doctor's page says what was diagnosed, explains its names, lists only proposed fixes,
and draws the quantities behind the findings (issue 10, item 8)."""

from __future__ import annotations

from html import escape

import torch

import trainlab
from trainlab.doctor import FIXES, diagnose
from trainlab.report.doctor_page import GLOSSARY, WHY, write_doctor_page


def _vanishing_diagnosis(**kw):
    torch.manual_seed(0)
    m = trainlab.mlp([32, 64, 64, 64, 10], activation="tanh", init=("normal", {"std": 0.01}))
    x, y = torch.randn(128, 32), torch.randint(0, 10, (128,))
    return diagnose(m, (x, y), jacobian=False, **kw)


def test_page_explains_names_and_findings(tmp_path):
    d = _vanishing_diagnosis(try_fixes=["init", "norm"])
    page = d.to_html(tmp_path / "d.html")
    text = page.read_text()
    assert "What was diagnosed" in text and "loss on the batch" in text
    for column, (words, formula) in GLOSSARY.items():  # every column header is explained
        assert column in text and escape(words) in text and escape(formula) in text
    assert "‖∂L/∂W‖ / ‖W‖" in text and "VANISH_RATIO" in text
    for f in d.findings:  # a "why it matters" line per finding
        assert escape(WHY[f.kind]) in text
    proposed = {x for f in d.findings for x in f.fixes}
    for fix, what in FIXES.items():  # only the fixes a finding proposed (or that were tried)
        assert (escape(what) in text) == (fix in proposed | {"init", "norm"}), fix
    assert "center the inputs" not in text
    # figures: depth (log axes) and before/after; the old fixed-range histogram is gone
    assert (tmp_path / "d.depth.png").stat().st_size > 1000
    assert (tmp_path / "d.fixes.png").stat().st_size > 1000
    assert 'src="d.depth.png"' in text and 'src="d.fixes.png"' in text
    assert not (tmp_path / "d.act_hist.png").exists()


def test_depth_figure_plots_the_per_layer_stds_on_log_axes(tmp_path):
    from trainlab.report.doctor_page import plot_depth

    d = _vanishing_diagnosis()
    import matplotlib.pyplot as plt

    assert plot_depth(d, tmp_path / "x.png").stat().st_size > 1000
    # redraw to inspect: the plotted values are the rows' act_std / grad_std
    import trainlab.report.doctor_page as dp

    seen = {}
    orig = dp._save
    dp._save = lambda fig, path: seen.setdefault("fig", fig)
    try:
        dp.plot_depth(d, tmp_path / "y.png")
    finally:
        dp._save = orig
    ax_act, ax_grad, _ = seen["fig"].axes
    assert ax_act.get_yscale() == "log" and ax_grad.get_yscale() == "log"
    hidden = [r for r in d.rows if r["activation"]]
    assert list(ax_act.lines[0].get_ydata()) == [r["act_std"] for r in hidden]
    assert list(ax_grad.lines[0].get_ydata()) == [r["grad_std"] for r in hidden]
    # the VANISH_RATIO line sits at VANISH_RATIO x the first layer's activation std
    line = ax_act.lines[1]
    assert line.get_ydata()[0] == d.thresholds["VANISH_RATIO"] * hidden[0]["act_std"]
    plt.close("all")


def test_page_shows_context_coverage_and_notes_when_present(tmp_path):
    d = _vanishing_diagnosis()
    d.context = {"model": "MLP", "params": 8906, "batch_shape": [128, 32],
                 "command": "trainlab diagnose --spec ..."}
    d.coverage = {"modules_examined": 4, "modules_not_examined": {"emb": "no hook fits"},
                  "params_examined": 8, "params_not_examined": {}}
    d.notes = ["a note for the reader"]
    text = write_doctor_page(d, tmp_path / "p.html").read_text()
    assert "MLP" in text and "8906" in text and "128×32" in text
    assert "trainlab diagnose --spec ..." in text
    assert "emb" in text and "no hook fits" in text and "a note for the reader" in text
