"""The pages of the studies: one ``index.html`` per study, a summary page and a Markdown table.

A study page says, in this order: what the study reproduces and where it comes from, the
claims with their measured values and verdicts, the figures (each with the sentence that
says what to see), the tables (the first rows; the CSV beside the page holds all), notes
(data substitutes, caveats), the setup of the scale that ran, the time taken and the exact
command that reproduces it.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainlab.report.html import HtmlPage
from trainlab.utils import atomic_write_text

__all__ = ["claims_markdown", "data_condition", "data_short", "format_value",
           "reproductions_markdown", "write_study_page", "write_summary"]

def format_value(value: Any) -> str:
    """A measured number as a person reads it: 4 significant digits, scientific when tiny."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        v = float(value)
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        if float(v).is_integer() and abs(v) < 1e5:
            return str(int(v))
        return f"{v:.4g}"
    return str(value)


_MAX_ROWS = 40
_STATUS_CLASS = {"PASS": "pass", "FAIL": "fail", "NOT MEASURED": "fail", "NO DATA": "fail"}


def data_html(result: Any) -> str:
    """The header's data line: the data the verdicts rest on, and any substitution."""
    ds = getattr(result, "dataset", None)
    if ds is None:
        note = getattr(result, "data_note", "") or "generated inside the study"
        return f"<b>data:</b> {html.escape(note)}"
    sub = getattr(result, "substituted_for", None)
    if not sub:
        return f"<b>data:</b> {html.escape(ds)}"
    reason = getattr(result, "data_reason", "") or "chosen with --data"
    return (f"<b>data:</b> <span class=\"fail\">{html.escape(ds)}, substituted for "
            f"{html.escape(sub)}</span> ({html.escape(reason)}); the thresholds declared for "
            f"{html.escape(ds)} apply, and a verdict here is about {html.escape(ds)}, not "
            f"{html.escape(sub)}")


def _verdict_text(result: Any) -> str:
    n, k = len(result.claims), result.n_applicable
    if getattr(result, "error", None) and str(result.error).startswith("no data"):
        return "not run: data missing"
    text = "all claims hold" if result.passed and k == n else (
        f"all {k} claims tested hold" if result.passed else f"{result.n_passed} of {k} claims hold")
    return text + (f" ({n - k} not tested on these data)" if k < n else "")


def _claim_rows(result: Any) -> str:
    controls = any(getattr(c, "control", None) for c in result.claims)
    out = ["<table><tr><th>claim</th><th>measured quantity</th><th>expected</th>"
           "<th>measured</th><th>test</th><th>verdict</th>"
           + ("<th>control (must FAIL)</th>" if controls else "") + "</tr>"]
    for c in result.claims:
        ctl = ""
        if controls:
            cc = getattr(c, "control", None) or {}
            good = cc.get("status") == "FAIL"
            ctl = (f"<td class=\"{'pass' if good else 'fail'}\"><small>"
                   f"{html.escape(c.control_text)}</small></td>" if cc else "<td></td>")
        why = f"<br><small>why this threshold: {html.escape(c.why)}</small>" if c.why else ""
        detail = f"<br><small>{html.escape(c.detail)}</small>" if c.detail else ""
        cls = _STATUS_CLASS.get(c.status, "")
        out.append(
            f"<tr><td><b>{html.escape(c.id)}</b>: {html.escape(c.statement)}{why}</td>"
            f"<td>{html.escape(c.quantity)}</td><td>{html.escape(c.expected)}</td>"
            f"<td class=\"num\">{html.escape(c.measured_text)}{detail}</td>"
            f"<td><small>{html.escape(getattr(c, 'test_text', ''))}</small></td>"
            f"<td class=\"{cls}\">{html.escape(c.status)}</td>{ctl}</tr>"
        )
    out.append("</table>")
    return "\n".join(out)


#: how a verdict is decided, in words, for the pages and docs/reproductions.md
VERDICT_RULE = (
    "A claim measured over seeds passes when the one-sided 95% Student t bound of its mean "
    "(shown as the test's bounds; mean ± one standard deviation in the measured column) lies "
    "on the claim's side of the threshold, both bounds inside for an interval claim (an "
    "equivalence test); an exact quantity is compared as it is; a single measurement, with no "
    "interval, is compared as it is and says so.")


def anchor_rows(anchors: list[dict[str, Any]]) -> list[list[str]]:
    """One row per anchor: quantity, paper value, where, trainlab's value with its interval,
    same setup yes/no, differences."""
    rows = []
    for a in anchors:
        ours = format_value(a["mean"])
        if a.get("interval"):
            lo, hi = a["interval"]
            ours += f" [{format_value(lo)}, {format_value(hi)}]"
        ours += f" (n={a['n']})"
        rows.append([a["quantity"], format_value(a["paper"]), a["source"], ours,
                     "yes" if a["same_setup"] else "no", a.get("differences", "")])
    return rows


def runs_summary(runs: list[dict[str, Any]]) -> str:
    """``"12 training runs: 9 in 2 packs, 3 alone (hook-based probes need the member alone)"``."""
    packs = {r["pack"] for r in runs if r.get("pack")}
    in_packs = sum(1 for r in runs if r.get("pack"))
    reasons = sorted({r["alone"] for r in runs if not r.get("pack") and r.get("alone")})
    alone = len(runs) - in_packs
    text = f"{len(runs)} training run{'s' if len(runs) != 1 else ''}: {in_packs} in {len(packs)} " \
           f"pack{'s' if len(packs) != 1 else ''}, {alone} alone"
    return text + (f" ({'; '.join(reasons)})" if reasons else "")


def write_study_page(result: Any, spec: Any) -> Path:
    """Write ``index.html`` of one study run into ``result.out``."""
    page = HtmlPage(f"{result.name}: {result.title}")
    verdict = _verdict_text(result)
    page.paragraph(
        f"<b>Reproduces:</b> {html.escape(result.source)}<br>"
        f"<b>Scale:</b> {html.escape(result.scale)} · <b>seed</b> {result.seed} · "
        f"<b>device</b> {html.escape(result.device)} · <b>time</b> {result.seconds:.1f} s"
        f"{_cpu(result)}<br>"
        f"<b>verdict:</b> <span class=\"{'pass' if result.passed else 'fail'}\">"
        f"{html.escape(verdict)}</span> · {data_html(result)}", raw=True)
    page.paragraph(spec.summary)
    if result.error and str(result.error).startswith("no data"):
        page.paragraph(f"The study did not run: {result.error}.", cls="note")
    elif result.error:
        page.paragraph(f"The study stopped with an error: {result.error} (traceback in "
                       "error.txt); claims it did not reach are NOT MEASURED.", cls="note")
    page.heading("Claims")
    page.raw(_claim_rows(result))
    page.paragraph(
        f"{VERDICT_RULE} "
        "Each threshold is the one declared for the data this run used; N/A marks a claim "
        "the study does not test on these data (the reason is beside it).")
    if getattr(result, "anchors", None):
        page.heading("The paper's numbers beside trainlab's")
        page.table(anchor_rows(result.anchors),
                   ["quantity", "paper", "where", "trainlab (mean, 90% interval, n)",
                    "same setup", "how the setup differs"])
    if result.figures:
        page.heading("Figures")
        for f in result.figures:
            page.figure(f["file"], f["caption"])
    shown = [t for t in result.tables if t.get("show", True)]
    if shown:
        page.heading("Tables")
        for t in shown:
            if t["caption"]:
                page.paragraph(t["caption"])
            rows = t["rows"][:_MAX_ROWS]
            page.table([[r.get(c, "") for c in t["columns"]] for r in rows], t["columns"])
            more = (f" ({len(t['rows']) - _MAX_ROWS} more rows in the file)"
                    if len(t["rows"]) > _MAX_ROWS else "")
            page.paragraph(f'All rows: <a href="{html.escape(t["file"])}">'
                           f'{html.escape(t["file"])}</a>{more}', raw=True)
    if result.notes:
        page.heading("Notes")
        for n in result.notes:
            page.paragraph(n, cls="note")
    page.heading("Setup")
    page.table([[k, format_value(v) if isinstance(v, (int, float)) else str(v)]
                for k, v in result.config.items()], ["setting", result.scale])
    other = {s: c for s, c in spec.scales.items() if s != result.scale}
    if other:
        page.paragraph("Other scales: " + "; ".join(
            f"{s}: " + ", ".join(f"{k}={v!r}" for k, v in _fields(c).items())
            for s, c in other.items()))
    if result.runs:
        page.paragraph(f"{runs_summary(result.runs)}. Each run is recorded in the results store "
                       "(`trainlab runs list`) with its metrics in runs/LABEL/metrics.csv; a run "
                       "trained in a pack has the result it has alone, within float tolerance.")
    page.heading("Reproduce")
    page.code(result.command)
    page.paragraph('Machine-readable results: <a href="result.json">result.json</a>.', raw=True)
    return page.write(Path(result.out) / "index.html")


def _cpu(result: Any) -> str:
    c = getattr(result, "cpu_seconds", None)
    return "" if c is None else f" ({c:.1f} s CPU)"


def _fields(cfg: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def claims_markdown(results: Sequence[Any], links: bool = False,
                    base: str | os.PathLike | None = None) -> str:
    """The table study · data · claim · expected · measured · test · verdict, as Markdown."""
    controls = any(getattr(c, "control", None) for r in results for c in r.claims)
    lines = ["| study | data | claim | expected | measured | test | verdict |"
             + (" control (must FAIL) |" if controls else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if controls else "")]
    for r in results:
        name = r.name
        if links and base is not None:
            rel = os.path.relpath(Path(r.out) / "index.html", base)
            name = f"[{r.name}]({rel})"
        data = _md(data_short(r))
        if r.error and not str(r.error).startswith("no data"):
            lines.append(f"| {name} | {data} | (the study stopped: {_md(r.error)}) | | | | "
                         "ERROR |")
        for c in r.claims:
            lines.append(f"| {name} | {data} | {_md(c.id)}: {_md(c.statement)} "
                         f"({_md(c.quantity)}) | {_md(c.expected)} | {_md(c.measured_text)} | "
                         f"{_md(getattr(c, 'test_text', ''))} | {c.status} |"
                         + (f" {_md(c.control_text)} |" if controls else ""))
    return "\n".join(lines) + "\n"


def data_short(r: Any) -> str:
    if getattr(r, "error", None) and str(r.error).startswith("no data"):
        return "missing"
    ds = getattr(r, "dataset", None)
    if ds is None:
        return "generated"
    sub = getattr(r, "substituted_for", None)
    return f"{ds} (for {sub})" if sub else ds


def _counts(results: Sequence[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        for c in r.claims:
            out[c.status] = out.get(c.status, 0) + 1
    return out


def data_condition(results: Sequence[Any]) -> str:
    """What a batch of study runs had on its machine, read from what the studies used:
    ``"MNIST present"`` or ``"MNIST absent"``."""
    used = {p for r in results for p in (getattr(r, "dataset", None) or "").split("+")}
    missing = {p for r in results for p in (getattr(r, "substituted_for", None) or "").split("+")}
    if "mnist" in used:
        return "MNIST present"
    if "mnist" in missing or any(str(r.error or "").startswith("no data") for r in results):
        return "MNIST absent (what a newcomer sees before `trainlab data prepare mnist`)"
    return "no study needed MNIST"


def _summary_line(results: Sequence[Any]) -> str:
    n_claims = sum(len(r.claims) for r in results)
    n_pass = sum(r.n_passed for r in results)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(_counts(results).items()))
    n_sub = sum(bool(getattr(r, "substituted_for", None)) for r in results)
    seconds = sum(r.seconds for r in results)
    return (f"{len(results)} studies, {n_pass} of {n_claims} claims hold ({counts}), "
            f"{seconds:.0f} s of study time; {n_sub} studies ran on data substituted for the "
            "paper's")


def reproductions_markdown(sections: Sequence[tuple[str, Sequence[Any]]], command: str) -> str:
    """``docs/reproductions.md``: one claim table per batch of runs (``(title, results)``),
    each with its data column, and the command that regenerates the page."""
    scales = sorted({r.scale for _, rs in sections for r in rs})
    lines = [f"# Reproductions ({'+'.join(scales)} scale)", "",
             f"Generated by `{command}`. Each table is one `trainlab study run --all` on this "
             "project's 2-core machine; the data column names what each verdict rests on, and "
             "each threshold is the one the study declares for those data (N/A: the claim is "
             "not tested on them; NO DATA: the study declares no alternative to the missing "
             "data). " + VERDICT_RULE, ""]
    if len(sections) > 1:
        lines += ["Both tables are regenerated by `scripts/reproductions.sh DATA_ROOT` "
                  "(DATA_ROOT holding `mnist/`), which runs the two batches and then this "
                  "summary.", ""]
    for title, results in sections:
        lines += [f"## {title}", "", _summary_line(results) + ".", "",
                  "| study | data | wall time (s) | CPU time (s) | claims holding |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r.name} | {_md(data_short(r))} | {r.seconds:.1f} | "
                  f"{'—' if r.cpu_seconds is None else f'{r.cpu_seconds:.1f}'} | "
                  f"{r.n_passed}/{r.n_applicable} |" for r in results]
        lines += ["", claims_markdown(results)]
        anchored = [r for r in results if getattr(r, "anchors", None)]
        if anchored:
            lines += ["", f"### The papers' numbers beside trainlab's ({title})", "",
                      "| study | quantity | paper | where | trainlab (mean, 90% interval, n) | "
                      "same setup | how the setup differs |", "|---|---|---|---|---|---|---|"]
            for r in anchored:
                lines += ["| " + " | ".join([_md(r.name), *map(_md, row)]) + " |"
                          for row in anchor_rows(r.anchors)]
    return "\n".join(lines)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_summary(results: Sequence[Any], out: str | os.PathLike, *, scale: str,
                  seconds: float, command: str, markdown: str | os.PathLike | None = None
                  ) -> tuple[Path, Path]:
    """Write ``OUT/index.html`` linking every study page and the Markdown claim table
    (``markdown``, default ``OUT/reproductions.md``). Returns both paths."""
    out = Path(out)
    n_claims = sum(len(r.claims) for r in results)
    n_pass = sum(r.n_passed for r in results)
    counts = _counts(results)
    count_text = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    n_sub = sum(bool(getattr(r, "substituted_for", None)) for r in results)
    page = HtmlPage(f"trainlab studies ({scale} scale)")
    page.paragraph(
        f"{len(results)} studies, {n_pass} of {n_claims} claims hold ({count_text}), "
        f"{seconds:.0f} s in all. {n_sub} studies ran on data substituted for the paper's "
        "(the data column says which). Each study reproduces one experiment of the "
        "lectures; its page shows the figures, tables and the measured value of each claim.")
    rows = []
    for r in results:
        rel = os.path.relpath(Path(r.out) / "index.html", out)
        no_data = bool(r.error) and str(r.error).startswith("no data")
        state = "NO DATA" if no_data else "ERROR" if r.error else (
            "PASS" if r.passed else "FAIL")
        rows.append(f"<tr><td><a href=\"{html.escape(rel)}\">{html.escape(r.name)}</a></td>"
                    f"<td>{html.escape(r.title)}</td><td>{html.escape(data_short(r))}</td>"
                    f"<td class=\"num\">{r.n_passed}/"
                    f"{r.n_applicable}</td><td class=\"num\">{r.seconds:.1f} s</td>"
                    f"<td class=\"{_STATUS_CLASS.get(state, 'fail')}\">{state}</td></tr>")
    page.raw("<table><tr><th>study</th><th>what it reproduces</th><th>data</th>"
             "<th>claims holding (of those tested)</th>"
             "<th>time</th><th>verdict</th></tr>" + "\n".join(rows) + "</table>")
    page.heading("Every claim")
    for r in results:
        page.heading(f"{r.name} — {r.source}", level=3)
        page.raw(_claim_rows(r))
    page.heading("Reproduce")
    page.code(command)
    md_path = Path(markdown) if markdown is not None else out / "reproductions.md"
    body = (f"# Reproductions ({scale} scale)\n\n"
            f"Generated by `{command}`: {len(results)} studies, {n_pass} of {n_claims} claims "
            f"hold ({count_text}), {seconds:.0f} s on this machine; {n_sub} studies ran on "
            f"data substituted for the paper's. {VERDICT_RULE} The data "
            "column names what each verdict rests on; each threshold is the one the study "
            "declares for those data (N/A: not tested on them).\n\n"
            "| study | data | wall time (s) | CPU time (s) | claims holding |\n"
            "|---|---|---|---|---|\n"
            + "".join(f"| {r.name} | {_md(data_short(r))} | {r.seconds:.1f} | "
                      f"{'—' if r.cpu_seconds is None else f'{r.cpu_seconds:.1f}'} | "
                      f"{r.n_passed}/{r.n_applicable} |\n" for r in results)
            + "\n" + claims_markdown(results))
    atomic_write_text(md_path, body)
    rel = html.escape(os.path.relpath(md_path, out))
    page.paragraph(f'The same table in Markdown: <a href="{rel}">{html.escape(md_path.name)}</a>.',
                   raw=True)
    return page.write(out / "index.html"), md_path
