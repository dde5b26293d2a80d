"""The pages render in headless Chromium with no broken image or file link (issue 10)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "render_pages.py"


def _module():
    spec = importlib.util.spec_from_file_location("render_pages", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_broken_links_are_reported(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"x")
    page = tmp_path / "p.html"
    page.write_text('<img src="ok.png"><img src="gone.png"><a href="runs/run1/">r</a>'
                    '<a href="https://example.org">x</a><a href="#top">t</a>')
    problems = _module().broken_links(page)
    assert len(problems) == 2
    assert "gone.png" in problems[0] and "runs/run1/" in problems[1]


def test_missing_chromium_says_how_to_install(monkeypatch):
    mod = _module()
    monkeypatch.setattr(mod.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="apt-get install chromium"):
        mod.find_chromium()


@pytest.mark.slow
def test_pages_render(tmp_path):
    """Fails (not skips) without Chromium: the message says `apt-get install chromium`."""
    mod = _module()
    assert mod.main([str(tmp_path), "--steps", "30"]) == 0
    for png in ("demo/index.png", "probed/figures/index.png", "doctor/diagnosis.png"):
        assert (tmp_path / png).stat().st_size > 10_000, png
