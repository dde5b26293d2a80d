"""The doctor's HTML page: what was diagnosed, what was found, why it matters, what was tried.

:func:`write_doctor_page` renders a :class:`~trainlab.doctor.Diagnosis` as one
self-contained page (figures beside it, named ``<page stem>.<figure>.png``):

1. **What was diagnosed** — the model, the batch, the loss and the command (from the
   diagnosis' ``context``; the layers and the input statistics otherwise), and which modules
   and parameters the probes did not examine (``coverage``), with the reason;
2. **Per-layer statistics** with plain-words column headers and a glossary giving each
   column's formula;
3. **Findings**, each with its evidence, a "why it matters" line (the lectures'
   explanation) and the fixes it proposes — only those fixes are listed; and the rules that
   could not be applied (``not_applied``), with the reason;
4. **Across depth**: per-layer activation std and back-propagated gradient std on a log axis,
   and the saturated / dead fractions, with the doctor's thresholds drawn where they apply —
   the quantities the findings are computed from;
5. **Fixes tried**: the before/after table and, per applied fix, the per-layer activation and
   gradient std before and after.

The page reads ``notes``, ``coverage``, ``context`` and ``not_applied`` with ``getattr`` so a
diagnosis without them still renders.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

from trainlab.report.figures import pyplot, save_figure
from trainlab.report.html import HtmlPage

__all__ = ["write_doctor_page", "GLOSSARY", "WHY", "THRESHOLD_MEANING"]

#: column header -> (plain words, formula or rule).
GLOSSARY = {
    "layer": ("weight layer (Linear / Conv), by its name in model.named_modules()", ""),
    "activation": ("the activation module that follows the layer (without activation "
                   "modules: the function identified from the values, marked inferred)", ""),
    "out std": ("spread of the weight layer's own output over the batch (shown when the "
                "model has no activation module: the depth rules then read it)",
                "std of all values of s = W·x + b"),
    "act std": ("spread of the layer's activations over the batch",
                "std of all values of the activation's output h = f(s)"),
    "saturated": ("fraction of outputs in the flat part of a saturating activation",
                  "e.g. |tanh(s)| > 0.99, sigmoid(s) < 0.01 or > 0.99"),
    "dead": ("fraction of units whose derivative is zero for every example of the batch",
             "ReLU-like units with s <= 0 on the whole batch"),
    "grad std": ("spread of the back-propagated gradient at the layer's output",
                 "std of dL/ds, s = W·x + b the layer's pre-activation"),
    "|gW|/|W|": ("relative size of one gradient step on the weights (before the lr)",
                 "‖∂L/∂W‖ / ‖W‖ (Frobenius norms)"),
    "jac sv mean": ("mean singular value of the block's Jacobian ∂h_out/∂h_in",
                    "1: signal scale kept; < 1 shrinks, > 1 grows (Glorot & Bengio 2010)"),
}

#: finding kind -> why it matters (the lectures' explanation).
WHY = {
    "vanishing_activations":
        "Each layer multiplies the signal's scale by about std(W)·√fan_in; below 1 the "
        "activations shrink geometrically with depth, the top layers see almost constant "
        "inputs, and the gradients that flow back through them shrink the same way "
        "(Glorot & Bengio 2010; Xavier init keeps Var(h) constant across layers).",
    "exploding_activations":
        "Above 1 the same product grows geometrically with depth: activations blow up, "
        "saturating units saturate, and the loss overflows (Glorot & Bengio 2010).",
    "vanishing_gradients":
        "Back-propagation multiplies the gradient by each layer's Jacobian; with singular "
        "values below 1 the first layers get almost no gradient and stop learning while the "
        "last ones train (Glorot & Bengio 2010, their fig. 7).",
    "exploding_gradients":
        "Jacobian singular values above 1 make the first layers' gradients huge: steps "
        "overshoot and training diverges unless the learning rate is tiny (Glorot & Bengio "
        "2010).",
    "saturation":
        "A saturated sigmoid/tanh has derivative ≈ 0, so saturated neurons cause the gradient "
        "to vanish; Glorot & Bengio (2010, fig. 2) saw the top sigmoid layer saturate at 0 and "
        "slow down all learning. BatchNorm keeps the inputs out of the saturated regime "
        "(Ioffe & Szegedy 2015).",
    "dead_units":
        "A ReLU unit whose input is negative for every example outputs 0 and gets zero "
        "gradient: it never fires again. A large fraction of ReLU units can die when the "
        "learning rate is too high or the init is off; He et al. (2015) derive Var(W) = "
        "2/fan_in for ReLU layers.",
    "symmetric_units":
        "Units that start with equal weights compute the same function and get the same "
        "gradient, so they stay equal: this symmetry never breaks during training, and the "
        "layer acts as a single unit. Random init breaks it.",
    "inputs_not_centred":
        "When every input to a neuron is positive, the gradients of all its weights have the "
        "same sign, so each step moves them all up or all down and descent zig-zags; "
        "centre the inputs (LeCun et al. 1998, Efficient BackProp).",
    "bn_mode":
        "BatchNorm normalizes with the batch's mean and variance while training and with "
        "running averages at inference; in eval mode during training (or with running "
        "statistics never updated) it does not normalize the batch (Ioffe & Szegedy 2015).",
    "non_finite":
        "A NaN or Inf spreads to every number computed from it: the first layer where it "
        "appears is where to look (too large a learning rate or init, a log/division of 0).",
}

#: threshold name -> what it bounds.
THRESHOLD_MEANING = {
    "VANISH_RATIO": "std(last hidden layer) / std(first) below this: vanishing "
                    "(activations); std(first) / std(last) for gradients",
    "EXPLODE_RATIO": "the same ratios above this: exploding",
    "ACT_STD_MIN": "a hidden activation std below this counts as vanishing",
    "SATURATION_MAX": "largest acceptable saturated fraction in a layer",
    "DEAD_MAX": "largest acceptable dead-unit fraction in a layer",
    "SYMMETRY_MAX_DISTINCT": "symmetric when the classes of interchangeable units (equal "
                             "incoming and outgoing weights, values and gradients) are <= this "
                             "fraction of the units",
    "JACOBIAN_SV_MIN": "input-output Jacobian RMS singular value below this: vanishing "
                       "gradients (also with the output layer's gain divided out)",
    "JACOBIAN_SV_MAX": "... above this: exploding gradients",
    "INPUT_CENTER_MAX": "largest acceptable |mean(x)| / std(x) of the inputs",
}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _dash(rows: list[list[Any]]) -> list[list[Any]]:
    return [["-" if isinstance(v, float) and math.isnan(v) else v for v in r] for r in rows]


def _depth_series(d: Any, key: str) -> tuple[list[str], list[float]]:
    """(labels, values) of a per-layer quantity over the hidden layers (those followed by an
    activation: a module, or without activation modules a function), the layers the findings
    compare; non-positive values are dropped from a log plot by matplotlib, NaN kept as
    gaps. ``act_std`` of a model without activation modules is its weight layers' output
    std, which the doctor's depth rule reads."""
    rows = [r for r in d.rows if r.get("hidden", bool(r.get("activation")))]
    if key == "act_std" and _functional(d):
        key = "out_std"
    return [r["layer"] for r in rows], [float(r.get(key, math.nan)) for r in rows]


def _functional(d: Any) -> bool:
    """No activation module: the rows carry the weight layers' output std."""
    return any(_finite(r.get("out_std")) for r in d.rows)


# -- sections ----------------------------------------------------------------------------------
def _what_was_diagnosed(page: HtmlPage, d: Any) -> None:
    ctx = dict(getattr(d, "context", None) or {})
    page.heading("What was diagnosed")
    rows: list[list[Any]] = []
    labels = {"model": "model", "model_class": "model", "params": "parameters",
              "param_count": "parameters", "batch_shape": "batch shape",
              "batch_dtype": "batch dtype", "targets": "targets", "loss": "loss function",
              "loss_fn": "loss function", "steps": "training steps before the diagnosis",
              "seed": "seed", "device": "device", "data": "data", "dataset": "data"}
    command = ctx.pop("command", None)
    for k, v in ctx.items():
        rows.append([labels.get(k, k.replace("_", " ")), _fmt(v)])
    if not ctx:  # a diagnosis from before the context field: what the rows tell
        rows.append(["weight layers", f"{len(d.rows)} ({', '.join(r['layer'] for r in d.rows)})"])
    st = d.input_stats
    rows.append(["inputs", f"mean {st['mean']:.3g}, std {st['std']:.3g}, min "
                 f"{st.get('min', math.nan):.3g}, max {st.get('max', math.nan):.3g}"])
    rows.append(["loss on the batch", f"{d.loss:.4g}"])
    page.table(rows, header=["what", "value"])
    if command:
        page.paragraph("Command:")
        page.code(str(command))
    cov = getattr(d, "coverage", None) or {}
    not_mods = cov.get("modules_not_examined") or {}
    not_params = cov.get("params_not_examined") or {}
    if cov:
        page.paragraph(
            f"Examined: {_count(cov.get('modules_examined'))} module(s), "
            f"{_count(cov.get('params_examined'))} parameter(s). Not examined: "
            f"{len(not_mods)} module(s), {len(not_params)} parameter(s).")
    if not_mods or not_params:
        page.table([[n, "module", r] for n, r in not_mods.items()]
                   + [[n, "parameter", r] for n, r in not_params.items()],
                   header=["not examined", "kind", "why"])


def _count(v: Any) -> int:
    if isinstance(v, int):
        return v
    try:
        return len(v)
    except TypeError:
        return 0


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "×".join(str(x) for x in v) if all(isinstance(x, int) for x in v) else str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _glossary(page: HtmlPage) -> None:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(words)}</td>"
        f"<td>{html.escape(formula)}</td></tr>" for k, (words, formula) in GLOSSARY.items())
    page.raw("<table><tr><th>column</th><th>what it is</th><th>formula / rule</th></tr>"
             f"{rows}</table>")
    page.paragraph("A “-” cell does not apply here (a tanh unit cannot die; a layer with no "
                   "activation after it has no activation statistics).")


def _findings(page: HtmlPage, d: Any) -> list[str]:
    fixes = d.fix_texts  # what each named fix does (trainlab.doctor.FIXES)
    page.heading("Findings")
    not_applied = getattr(d, "not_applied", None) or {}
    if not_applied:
        page.paragraph("Rules not applied (no verdict on what they check):", cls="note")
        page.table([[rule, why] for rule, why in not_applied.items()],
                   header=["rule not applied", "why"])
    if not d.findings:
        complete = getattr(d, "healthy", True) is True
        page.paragraph("No problem found." if complete else "No problem found in what was "
                       "examined; no verdict on the rest (see above).",
                       cls="pass" if complete else "note")
        return []
    parts = ["<table><tr><th>finding</th><th>layer</th><th>evidence</th>"
             "<th>why it matters</th><th>fixes proposed</th></tr>"]
    for f in d.findings:
        parts.append(
            f"<tr><td class=\"fail\">{html.escape(f.kind)}</td>"
            f"<td>{html.escape(f.layer or '-')}</td><td>{html.escape(f.evidence)}</td>"
            f"<td>{html.escape(WHY.get(f.kind, ''))}</td>"
            f"<td>{html.escape(', '.join(f.fixes))}</td></tr>")
    parts.append("</table>")
    page.raw("\n".join(parts))
    proposed = list(dict.fromkeys(x for f in d.findings for x in f.fixes))
    tried = [fr.fix for fr in getattr(d, "fix_results", [])]
    shown = list(dict.fromkeys(proposed + tried))
    page.heading("The fixes these findings propose", level=3)
    page.table([[k, fixes.get(k, "?"), "yes" if k in proposed else "asked for"]
                for k in shown], header=["fix", "what it does", "proposed by a finding"])
    return shown


def _thresholds(page: HtmlPage, d: Any) -> None:
    page.heading("Thresholds")
    page.table([[k, v, THRESHOLD_MEANING.get(k, "")] for k, v in d.thresholds.items()],
               header=["name", "value", "meaning"])


# -- figures -----------------------------------------------------------------------------------
def _threshold_lines(ax: Any, values: list[float], *, lower: float, upper: float,
                     ref: str, extra: float | None = None) -> None:
    """Dashed lines where a value would be flagged, relative to the reference layer's value
    (``ref``: "first" for activations, "last" for gradients, as the doctor's rules read)."""
    good = [v for v in values if _finite(v) and v > 0]
    if len(good) < 2:
        return
    base = good[0] if ref == "first" else good[-1]
    ax.axhline(base * lower, color="#a11", ls="--", lw=1,
               label=f"VANISH_RATIO × {ref} layer's value")
    ax.axhline(base * upper, color="#c60", ls=":", lw=1,
               label=f"EXPLODE_RATIO × {ref} layer's value")
    if extra is not None:
        ax.axhline(extra, color="#555", ls="-.", lw=1, label=f"ACT_STD_MIN = {extra:g}")


def _legend_below(ax: Any) -> None:
    """Legend under the axes (below the tick labels and x label), never over a curve; none
    for a panel without labelled lines (no saturating or rectifying activation)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.42), frameon=False)


def _layer_ticks(ax: Any, names: list[str]) -> None:
    ax.set_xticks(range(1, len(names) + 1))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)


def plot_depth(d: Any, path: str | os.PathLike) -> Path:
    """Three panels across depth: activation std, gradient std (log axes) and the saturated /
    dead fractions (linear), thresholds drawn where the doctor's rules apply."""
    plt = pyplot()
    th = d.thresholds
    fig, axes = plt.subplots(1, 3, figsize=(14, 5.2))
    names, act = _depth_series(d, "act_std")
    _, grad = _depth_series(d, "grad_std")
    xs = list(range(1, len(names) + 1))
    for ax, vals, title, ylabel, ref in (
            (axes[0], act, "activation std across depth" if not _functional(d) else
             "weight layer output std across depth", "std of h (log)" if not _functional(d)
             else "std of s (log)", "first"),
            (axes[1], grad, "gradient std across depth", "std of dL/ds (log)", "last")):
        pos = [v if _finite(v) and v > 0 else math.nan for v in vals]
        ax.plot(xs, pos, marker="o", color="C0" if ref == "first" else "C1", label="per layer")
        ax.set_yscale("log")
        _threshold_lines(ax, vals, lower=th["VANISH_RATIO"], upper=th["EXPLODE_RATIO"], ref=ref,
                         extra=th.get("ACT_STD_MIN") if ref == "first" else None)
        ax.set(title=title, xlabel="hidden layer (input side → output side)", ylabel=ylabel)
        _layer_ticks(ax, names)
        ax.grid(alpha=0.3, which="both")
        _legend_below(ax)
    _, sat = _depth_series(d, "saturated")
    _, dead = _depth_series(d, "dead")
    ax = axes[2]
    if any(_finite(v) for v in sat):
        ax.plot(xs, sat, marker="o", color="C2", label="saturated fraction")
        ax.axhline(th["SATURATION_MAX"], color="C2", ls="--", lw=1,
                   label=f"SATURATION_MAX = {th['SATURATION_MAX']:g}")
    if any(_finite(v) for v in dead):
        ax.plot(xs, dead, marker="s", color="C3", label="dead fraction")
        ax.axhline(th["DEAD_MAX"], color="C3", ls=":", lw=1,
                   label=f"DEAD_MAX = {th['DEAD_MAX']:g}")
    if not (any(_finite(v) for v in sat) or any(_finite(v) for v in dead)):
        ax.text(0.5, 0.5, "no saturating or rectifying\nactivation here", ha="center",
                va="center", transform=ax.transAxes, color="#555")
    ax.set(title="saturated / dead units", xlabel="hidden layer", ylabel="fraction",
           ylim=(-0.02, 1.02))
    _layer_ticks(ax, names)
    ax.grid(alpha=0.3)
    _legend_below(ax)
    fig.tight_layout()
    return _save(fig, path)


def plot_fix_comparison(d: Any, path: str | os.PathLike) -> Path | None:
    """One row per applied fix: activation std and gradient std across depth, before (the
    diagnosis) and after (the fix's re-run), log axes. ``None`` when no fix was applied."""
    applied = [fr for fr in getattr(d, "fix_results", []) if fr.applied and fr.after is not None]
    if not applied:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(applied), 2, figsize=(11, 3.0 * len(applied)), squeeze=False)
    for i, fr in enumerate(applied):
        for j, (key, what) in enumerate((("act_std", "activation std"),
                                         ("grad_std", "gradient std"))):
            ax = axes[i][j]
            for diag, label, style in ((d, "before", dict(color="#a11", marker="o")),
                                       (fr.after, f"after '{fr.fix}'",
                                        dict(color="#176b2c", marker="s", ls="--"))):
                names, vals = _depth_series(diag, key)
                vals = [v if _finite(v) and v > 0 else math.nan for v in vals]
                ax.plot(range(1, len(vals) + 1), vals, label=label, **style)
            _layer_ticks(ax, names)
            ax.set_yscale("log")
            ax.set(title=f"fix '{fr.fix}': {what} per hidden layer", xlabel="hidden layer",
                   ylabel=f"{what} (log)")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    return save_figure(fig, path, dpi=100)


# -- the page ----------------------------------------------------------------------------------
def write_doctor_page(d: Any, path: str | os.PathLike, title: str = "trainlab diagnosis"
                      ) -> Path:
    """Write ``d`` (a :class:`~trainlab.doctor.Diagnosis`) as an HTML page at ``path``, its
    figures beside it; return the page's path."""
    path = Path(path)
    page = HtmlPage(title)
    _what_was_diagnosed(page, d)
    for n in getattr(d, "notes", None) or []:
        page.paragraph(n, cls="note")
    _findings(page, d)
    page.heading("Across depth")
    try:
        png = plot_depth(d, path.with_suffix(".depth.png"))
        page.figure(png.name, caption=(
            "Left: std of each hidden layer's activation; middle: std of the gradient dL/ds "
            "back-propagated to each hidden layer (both log scale: equal steps are equal "
            "factors). Dashed lines: where the doctor flags vanishing (VANISH_RATIO) or "
            "exploding (EXPLODE_RATIO) relative to the reference layer — the first hidden "
            "layer for activations, the last for gradients. Right: saturated and dead "
            "fractions with SATURATION_MAX and DEAD_MAX."))
    except Exception as e:  # a figure must not cost the report
        page.paragraph(f"(figure skipped: {e})", cls="note")
    page.heading("Per-layer statistics")
    header = d.table_header() if hasattr(d, "table_header") else list(d.HEADER)
    page.table(_dash(d.table_rows()), header=header)
    page.heading("What the columns mean", level=3)
    _glossary(page)
    if getattr(d, "fix_results", None):
        page.heading("Fixes tried: before and after")
        header, rows = d._fix_table()
        page.table(_dash(rows), header=header)
        page.paragraph("Each applied fix re-runs the same diagnosis on a copy of the model "
                       "(same batch); act_std_ratio is std(last hidden)/std(first), "
                       "grad_std_ratio std(first)/std(last) of dL/ds — both 1 when the scale "
                       "is kept through depth.")
        try:
            png = plot_fix_comparison(d, path.with_suffix(".fixes.png"))
            if png is not None:
                page.figure(png.name, caption=(
                    "Per applied fix: activation std (left) and gradient std (right) per "
                    "hidden layer, before (red, solid) and after the fix (green, dashed), "
                    "log scale. A flat line is a scale kept through depth."))
        except Exception as e:
            page.paragraph(f"(figure skipped: {e})", cls="note")
    _thresholds(page, d)
    return page.write(path)
