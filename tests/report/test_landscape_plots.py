"""plot_landscape: Santurkar et al.'s three panels from LossLandscape records."""

from __future__ import annotations

import pytest

from trainlab.report.landscape_plots import plot_landscape


def _rows(scale):
    rows = []
    for s in (0, 5, 10):
        for q, v in (("loss_min", 1.0 * scale), ("loss_max", 2.0 * scale),
                     ("grad_change_min", 0.1 * scale), ("grad_change_max", 0.5 * scale),
                     ("beta_smoothness", 3.0 * scale)):
            rows.append((s, "model", q, v + s * 0.01))
    return rows


def test_three_panels_one_band_per_run(tmp_path):
    fig = plot_landscape({"standard": _rows(2.0), "batch norm": _rows(1.0)},
                         tmp_path / "l.png")
    assert (tmp_path / "l.png").stat().st_size > 5000
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["loss landscape", "gradient predictiveness",
                                             "effective β-smoothness"]
    assert all(a.get_xlabel() == "training step" for a in axes)
    # bands (PolyCollections) in the first two panels, one per run; lines in the third
    assert len(axes[0].collections) == 2 and len(axes[1].collections) == 2
    labels = [t.get_text() for t in axes[2].get_legend().get_texts()]
    assert labels == ["standard", "batch norm"]
    top = axes[2].lines[0].get_ydata()
    assert list(top) == pytest.approx([6.0, 6.05, 6.1])


def test_errors():
    with pytest.raises(ValueError, match=r"no 'loss_min' records of LossLandscape"):
        plot_landscape({"a": [(0, "block1", "act_std", 1.0)]})
    with pytest.raises(ValueError, match=r"runs must be a non-empty mapping"):
        plot_landscape({})
