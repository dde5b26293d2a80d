"""A small, dependency-free HTML page builder for reports.

Pages are self-contained: figures are referenced by relative path (they live beside the
page), tables are plain HTML, and a short stylesheet is inlined so the page reads well when
opened straight from disk::

    page = HtmlPage("trainlab demo")
    page.heading("Results")
    page.table([["tanh, 0.01", 2.30]], header=["model", "final loss"])
    page.figure("curves.png", caption="Loss and accuracy")
    page.write("out/index.html")
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from trainlab.utils import atomic_write_text

__all__ = ["HtmlPage", "format_cell"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #345; padding-bottom: .2em; }
h2 { margin-top: 1.6em; color: #234; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccd; padding: .3em .7em; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #dde; }
figcaption { color: #555; font-size: .9em; }
.pass { color: #176b2c; font-weight: bold; }
.fail { color: #a11; font-weight: bold; }
.note { background: #f7f7ef; border-left: 4px solid #cc9; padding: .5em 1em; }
code, pre { background: #f4f4f6; padding: .1em .3em; }
"""


def format_cell(value: Any) -> str:
    """Text for one table cell: floats with 4 significant digits, the rest as ``str``."""
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        return f"{value:.4g}"
    return str(value)


class HtmlPage:
    """An HTML report built piece by piece and written atomically."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> HtmlPage:
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def paragraph(self, text: str, *, cls: str | None = None, raw: bool = False) -> HtmlPage:
        body = text if raw else html.escape(text)
        attr = f' class="{cls}"' if cls else ""
        self._parts.append(f"<p{attr}>{body}</p>")
        return self

    def code(self, text: str) -> HtmlPage:
        self._parts.append(f"<pre>{html.escape(text)}</pre>")
        return self

    def table(
        self, rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None
    ) -> HtmlPage:
        out = ["<table>"]
        if header:
            ths = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
            out.append(f"<tr>{ths}</tr>")
        for row in rows:
            cells = []
            for v in row:
                text = html.escape(format_cell(v))
                cls = {"PASS": ' class="pass"', "FAIL": ' class="fail"'}.get(str(v), "")
                if not cls and isinstance(v, (int, float)) and not isinstance(v, bool):
                    cls = ' class="num"'  # numbers line up on the right
                cells.append(f"<td{cls}>{text}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        self._parts.append("\n".join(out))
        return self

    def figure(self, src: str | os.PathLike, caption: str = "") -> HtmlPage:
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        img = f'<img src="{html.escape(str(src))}" alt="{html.escape(caption)}">'
        self._parts.append(f"<figure>{img}{cap}</figure>")
        return self

    def raw(self, fragment: str) -> HtmlPage:
        """Append an HTML fragment as is (the caller escapes it)."""
        self._parts.append(fragment)
        return self

    def render(self) -> str:
        body = "\n".join(self._parts)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>\n"
            f"<body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n"
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write the page atomically; return its path."""
        return atomic_write_text(path, self.render())
