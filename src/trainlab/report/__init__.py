"""Figures (PNG, matplotlib) and HTML pages for runs, studies and diagnoses.

Every figure is written through :func:`~trainlab.report.figures.save_figure` (atomically,
then closed) and drawn with :func:`~trainlab.report.figures.pyplot` (matplotlib, Agg backend,
imported on first use). The figures of a run are in :mod:`~trainlab.report.run_plots`, of a
sweep in :mod:`~trainlab.report.sweep_plots`, of probe records in
:mod:`~trainlab.report.probe_plots`, of the loss landscape in
:mod:`~trainlab.report.landscape_plots`; the doctor's page in :mod:`~trainlab.report.doctor_page`.
"""

from trainlab.report.figures import pyplot, save_figure
from trainlab.report.html import HtmlPage

__all__ = ["HtmlPage", "pyplot", "save_figure"]
