#!/usr/bin/env python
"""Generate trainlab's three kinds of HTML page and render each with headless Chromium.

    python scripts/render_pages.py [OUT] [--steps N] [--keep]

Writes under OUT (default: a fresh temporary folder, printed at the end):

- ``demo/index.html`` — ``trainlab demo`` (``--steps`` steps per run);
- ``probed/figures/index.html`` — a ``trainlab train --probe all`` run folder;
- ``doctor/diagnosis.html`` — ``trainlab diagnose --try-fixes`` on a vanishing tanh MLP;

then ``<page>.png`` beside each page: a full-page screenshot taken by Chromium
(``chromium --headless --screenshot``), to look at. Fails (exit status 1, one line per
problem) when Chromium is missing, when a page links an image or a file that does not exist,
when a screenshot is not written, or when a command fails. Chromium comes from Debian's
package: ``apt-get install chromium``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str:
    """Path of a Chromium binary, or ``SystemExit`` with how to install it."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        "render_pages: error: Chromium not found (looked for "
        f"{', '.join(CHROMIUM_NAMES)} on PATH); install Debian's package: "
        "`apt-get install chromium`."
    )


class _Links(HTMLParser):
    """Collects ``<img src>`` and ``<a href>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.images.append(a["src"] or "")
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")


def broken_links(page: Path) -> list[str]:
    """Local images and links of ``page`` that do not exist (remote URLs are not checked)."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    problems = []
    for kind, refs in (("image", parser.images), ("link", parser.links)):
        for ref in refs:
            url = urlparse(ref)
            if url.scheme in ("http", "https", "mailto") or ref.startswith("#"):
                continue
            target = Path(unquote(url.path)) if url.scheme == "file" else \
                page.parent / unquote(url.path)
            if not target.exists():
                problems.append(f"{page}: broken {kind} {ref!r}")
    return problems


def screenshot(chromium: str, page: Path, height: int = 4000) -> Path:
    """Render ``page`` with headless Chromium into ``<page>.png``; return that path."""
    png = page.with_suffix(".png")
    if png.exists():
        png.unlink()
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--screenshot={png}", f"--window-size=1200,{height}", page.resolve().as_uri()]
    subprocess.run(cmd, check=False, capture_output=True, timeout=120)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot for {page} ({' '.join(cmd)})")
    return png


def _trainlab(*args: str, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "trainlab", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout)[-2000:]}")


def generate(out: Path, steps: int) -> list[Path]:
    """Run the three commands into ``out``; return the pages written."""
    env = dict(os.environ)
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MPLBACKEND"] = "Agg"
    db = str(out / "trainlab.db")
    _trainlab("demo", "--out", str(out / "demo"), "--steps", str(steps), "--db", db, "--force",
              env=env)
    _trainlab("train", "--dataset", "mnist1d", "--depth", "4", "--activation", "tanh",
              "--init", "xavier_uniform", "--steps", str(steps), "--probe", "all",
              "--out", str(out / "probed"), "--db", db, "-q", env=env)
    spec = ('{"name": "mlp", "in_features": 40, "widths": [256, 256, 256], '
            '"activation": "tanh", "init": ["normal", {"std": 0.01}]}')
    (out / "doctor").mkdir(parents=True, exist_ok=True)
    _trainlab("diagnose", "--spec", spec, "--dataset", "mnist1d", "--try-fixes",
              "--html", str(out / "doctor" / "diagnosis.html"), env=env)
    pages = [out / "demo" / "index.html", out / "probed" / "figures" / "index.html",
             out / "doctor" / "diagnosis.html"]
    missing = [str(p) for p in pages if not p.exists()]
    if missing:
        raise RuntimeError(f"pages not written: {', '.join(missing)}")
    return pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="folder for the pages (default: a temporary one)")
    ap.add_argument("--steps", type=int, default=200, help="training steps per run (200)")
    args = ap.parse_args(argv)
    chromium = find_chromium()  # fail before spending minutes on training
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="trainlab-pages-"))
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    try:
        pages = generate(out, args.steps)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"render_pages: error: {e}", file=sys.stderr)
        return 1
    for page in pages:
        problems += broken_links(page)
        try:
            png = screenshot(chromium, page)
            print(f"rendered {page} -> {png}")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            problems.append(str(e))
    for p in problems:
        print(f"render_pages: error: {p}", file=sys.stderr)
    print(f"pages and screenshots under {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
