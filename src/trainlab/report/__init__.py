"""Figures (PNG, matplotlib) and HTML pages for runs, studies and diagnoses."""

from trainlab.report.html import HtmlPage

__all__ = ["HtmlPage"]
