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
    # the moments figure plots one series per layer, with the recorded means
    ax = pp.plot_layer_moments(log, "act").axes[0]
    steps, means = log.series("1", "act_mean")
    assert len(ax.containers) == 2 and len(steps) == 6


def test_plot_errors(log):
    with pytest.raises(ValueError, match="No 'w' histograms"):
        pp.plot_layer_histograms(log, "w")
    with pytest.raises(ValueError, match="layers \\['nope'\\]"):
        pp.plot_layer_moments(log, "act", layers=["nope"])
    with pytest.raises(TypeError, match="records must be a ProbeLog"):
        pp.plot_layer_moments(42)
