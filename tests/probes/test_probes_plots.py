"""Each lecture figure renders from real probe records."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.probes import ActivationStats, GradientStats, JacobianSpectrum, collect
from trainlab.report import probe_plots as pp


@pytest.fixture(scope="module")
def log(sgd_steps):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    ps = [p.attach(m) for p in (ActivationStats(every=1, hist_every=2),
                                GradientStats(every=1, hist_every=2), JacobianSpectrum(every=3))]
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    sgd_steps(m, opt, ps, [(x, y)] * 6)
    return collect(ps)


def test_all_figures_render(log, tmp_path):
    figs = {
        "moments.png": lambda p: pp.plot_layer_moments(log, "act", path=p),
        "hist.png": lambda p: pp.plot_layer_histograms(log.histograms, "grad_out", step=2, path=p),
        "pct.png": lambda p: pp.plot_percentiles(log.rows, "1", path=p),
        "jac.png": lambda p: pp.plot_jacobian_spectra(log.spectra, path=p),
        "heat.png": lambda p: pp.plot_histogram_heatmap(log, "3", "act", path=p),
    }
    for name, draw in figs.items():
        fig = draw(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000
        assert fig.axes
    # the moments figure: one panel per layer (no overlaid error bars), the recorded means,
    # every recorded step up to the last one
    fig = pp.plot_layer_moments(log, "act")
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == len(log.layers("act_mean")) == 2
    steps, means = log.series("1", "act_mean")
    line = panels[0].lines[0]
    assert list(line.get_xdata()) == steps and list(line.get_ydata()) == means
    assert max(line.get_xdata()) == max(log.steps("act_mean")) == 5


def test_update_ratio_figure_log_axis_with_rule_of_thumb(sgd_steps, tmp_path):
    from trainlab.probes import UpdateRatio

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    ps = [UpdateRatio(every=1).attach(m)]
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    sgd_steps(m, opt, ps, [(x, y)] * 4)
    log = collect(ps)
    fig = pp.plot_update_ratios(log, path=tmp_path / "u.png")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert any(list(line.get_ydata()) == [1e-3, 1e-3] for line in ax.lines)  # the rule
    steps, vals = log.series("0", "update_ratio")
    assert list(ax.lines[0].get_ydata()) == vals and (tmp_path / "u.png").exists()


def test_index_page_captions_every_figure(tmp_path):
    names = ["curves.png", "probe_act_moments.png", "probe_grad_out_hist_step10.png",
             "probe_pre_percentiles_block1.act.png", "probe_jacobian_step0.png",
             "probe_update_ratios.png"]
    for n in names:
        (tmp_path / n).write_bytes(b"png")
        assert pp.probe_caption(n), n
    text = pp.write_probe_index(tmp_path, [tmp_path / n for n in names]).read_text()
    for n in names:
        assert f'src="{n}"' in text
    assert "Glorot" in text and "1e-3" in text


def test_plot_errors(log):
    with pytest.raises(ValueError, match="No 'w' histograms"):
        pp.plot_layer_histograms(log, "w")
    with pytest.raises(ValueError, match="layers \\['nope'\\]"):
        pp.plot_layer_moments(log, "act", layers=["nope"])
    with pytest.raises(TypeError, match="records must be a ProbeLog"):
        pp.plot_layer_moments(42)
