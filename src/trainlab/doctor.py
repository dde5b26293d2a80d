"""The doctor: one probed forward/backward pass, the lectures' pathologies named, fixes tried.

``diagnose(model, batch)`` runs :class:`~trainlab.probes.ActivationStats`,
:class:`~trainlab.probes.GradientStats`, :class:`~trainlab.probes.WeightStats` and
:class:`~trainlab.probes.JacobianSpectrum` over one pass (optionally after a few SGD steps on
a copy), reports per layer the activation std, saturated and dead fractions, the std of the
back-propagated gradient, ``‖∂L/∂W‖/‖W‖`` and the mean Jacobian singular value, and flags,
with the numbers as evidence:

====================  =================================================================
finding               rule (thresholds are the named constants below)
====================  =================================================================
vanishing_activations std of the last hidden activation / first < ``VANISH_RATIO``, or a
                      hidden activation std < ``ACT_STD_MIN``
exploding_activations that ratio > ``EXPLODE_RATIO``
vanishing_gradients   std of ∂L/∂s at the first hidden weight layer / at the last hidden
                      one < ``VANISH_RATIO``
exploding_gradients   that ratio > ``EXPLODE_RATIO``
saturation            a layer with saturated fraction > ``SATURATION_MAX``
dead_units            a layer with dead-unit fraction > ``DEAD_MAX``
symmetric_units       a weight layer whose output units share weight vectors: at most
                      ``SYMMETRY_MAX_DISTINCT`` × units distinct rows (constant init)
inputs_not_centred    ``|mean(x)| > INPUT_CENTER_MAX · std(x)``
bn_mode               BatchNorm in eval mode while the model trains, or in eval mode with
                      running statistics never updated
non_finite            NaN/Inf in the loss, activations, gradients or weights (first layer)
====================  =================================================================

Like with like: the depth ratios (vanishing/exploding activations and gradients) compare
layers of one *kind* only, the kind of the first hidden layer (the start of the main path):
the weight layer's class (``Conv2d``, ``Linear`` …), a Transformer encoder/decoder layer, or a
recurrent/attention module; a convolution whose output is a 1×1 map while the model's
feature maps are larger acts on pooled channel descriptors (a squeeze-excite gate or a
similar branch) and is a kind of its own. So mobilenet's SE gates are never compared with its
feature maps. The per-layer rules (``ACT_STD_MIN``, saturation, dead units, symmetry) apply
to every layer.

Coverage: besides the layer probes, one pass records every parameter's norm and gradient
norm (NaN/Inf checked) and the output of every module that owns parameters (an ``nn.LSTM``,
``nn.MultiheadAttention``, a free ``cls_token`` on the model …); those outputs join the
table as rows of their own kind. ``Diagnosis.coverage`` lists the parameters and modules
examined and those that were not, with the reason; ``healthy`` is ``True`` only when nothing
was flagged *and* nothing was left unexamined (``None``: nothing flagged in what was seen).
Integer inputs (token ids) skip the input rules and fixes (centring means nothing there).

Time budget: ``diagnose(..., time_budget=10.0)`` gives the Jacobian (the costly part) what
the budget leaves after the probed pass, on at most 4 examples with few products per block
(see :func:`diagnose`); blocks not done in time are named in the notes. The other phases
are never cut; ``Diagnosis.timings`` has the seconds per phase.

Each finding names the lectures' fixes (an initialization matched to the activation, a
normalization, another activation, the learning rate, input preprocessing); with
``try_fixes=True`` the diagnosis is re-run with each applicable fix and the before/after
metrics are shown. The report renders as a terminal table (``str(report)``) and as an HTML
page (``report.to_html(path)``).
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.probes import (
    ActivationStats,
    GradientStats,
    JacobianSpectrum,
    ProbeLog,
    WeightStats,
    collect,
    observe,
)
from trainlab.probes.base import (
    _BLOCK_TYPES,
    Probe,
    activation_info,
    activation_layers,
    first_tensor,
    weight_layers,
)
from trainlab.probes.jacobian import module_batch_dim

__all__ = ["diagnose", "Diagnosis", "Finding", "FixResult", "THRESHOLDS", "FIXES"]

#: std ratio across depth below which activations/gradients count as vanishing.
VANISH_RATIO = 0.1
#: std ratio across depth above which activations/gradients count as exploding.
EXPLODE_RATIO = 10.0
#: a hidden activation std below this counts as vanishing whatever the ratio.
ACT_STD_MIN = 1e-3
#: largest acceptable fraction of saturated outputs in a layer.
SATURATION_MAX = 0.2
#: largest acceptable fraction of dead units in a layer.
DEAD_MAX = 0.2
#: a layer is symmetric when its distinct weight rows are at most this fraction of its units.
SYMMETRY_MAX_DISTINCT = 0.5
#: largest acceptable |mean(x)| / std(x) of the inputs.
INPUT_CENTER_MAX = 0.25

THRESHOLDS = {
    "VANISH_RATIO": VANISH_RATIO,
    "EXPLODE_RATIO": EXPLODE_RATIO,
    "ACT_STD_MIN": ACT_STD_MIN,
    "SATURATION_MAX": SATURATION_MAX,
    "DEAD_MAX": DEAD_MAX,
    "SYMMETRY_MAX_DISTINCT": SYMMETRY_MAX_DISTINCT,
    "INPUT_CENTER_MAX": INPUT_CENTER_MAX,
}

#: fix name -> what it does (the lectures' remedies).
FIXES = {
    "init": "re-initialize with the scheme matched to the activation (He for ReLU-like, "
    "Xavier/Glorot for tanh/sigmoid, LeCun for SELU), biases 0",
    "norm": "insert BatchNorm before each activation (trainlab-built models only)",
    "activation": "another activation: ReLU instead of a saturating tanh/sigmoid, leaky ReLU "
    "instead of a dying ReLU (trainlab-built models only)",
    "lr": "lower the learning rate tenfold (needs steps > 0)",
    "center": "center the inputs: subtract the per-feature mean (input preprocessing)",
    "bn_train": "put BatchNorm layers in train mode while training",
    "lsuv": "LSUV: orthonormal weights, then each layer rescaled until its output variance "
    "on the batch is 1 (Mishkin & Matas 2016)",
    "data_dependent": "data-dependent init: every channel's pre-activation set to mean 0, "
    "variance 1 on the batch, layers scaled to learn at the same rate (Kraehenbuehl et al. "
    "2016)",
    "fixup": "Fixup for a residual network without normalization: last layer of each branch "
    "and the head at 0, other branch layers scaled by L^(-1/(2m-2)), scalar biases and "
    "multipliers (Zhang, Dauphin & Ma 2019)",
}

_FIXES_FOR = {
    "vanishing_activations": ["init", "lsuv", "data_dependent", "norm"],
    "exploding_activations": ["init", "lsuv", "data_dependent", "norm"],
    "vanishing_gradients": ["init", "lsuv", "norm", "activation"],
    "exploding_gradients": ["init", "lsuv", "norm", "lr"],
    "saturation": ["init", "lsuv", "norm", "activation"],
    "dead_units": ["init", "activation", "lr"],
    "symmetric_units": ["init"],
    "inputs_not_centred": ["center"],
    "bn_mode": ["bn_train"],
    "non_finite": ["lr", "init", "norm"],
}

_BN = nn.modules.batchnorm._BatchNorm


@dataclass
class Finding:
    """One flagged problem: ``kind``, the ``layer`` (if any), the ``evidence`` (numbers and
    the threshold) and the names of the lectures' ``fixes`` (keys of :data:`FIXES`)."""

    kind: str
    layer: str | None
    evidence: str
    fixes: list[str]

    def __str__(self) -> str:
        where = f" [{self.layer}]" if self.layer else ""
        return f"{self.kind}{where}: {self.evidence}"


@dataclass
class FixResult:
    """A fix re-run: ``before``/``after`` key metrics, or why it was not applicable."""

    fix: str
    applied: bool
    note: str = ""
    after: Diagnosis | None = None


@dataclass
class Diagnosis:
    """The doctor's report. ``rows`` are per-layer dicts; ``findings`` the flagged problems;
    ``log`` the raw probe records; ``fix_results`` the ``--try-fixes`` re-runs.

    ``notes``: what could not be computed, and why (one line each), and what the doctor
    assumed. ``coverage``: ``modules_examined`` (names; ``"(model)"`` is the model itself),
    ``modules_not_examined`` (``{name: reason}``), ``params_examined``,
    ``params_not_examined`` (``{name: reason}``). ``context``: what was diagnosed (model
    class, parameter count, shapes and dtypes of ``x`` and ``y``, loss, steps, seed, device
    …; the CLI may add the command line). ``timings``: seconds per phase.
    """

    rows: list[dict[str, Any]]
    findings: list[Finding]
    loss: float
    input_stats: dict[str, float]
    log: ProbeLog
    notes: list[str] = field(default_factory=list)
    fix_results: list[FixResult] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=lambda: dict(THRESHOLDS))
    coverage: dict[str, Any] = field(default_factory=lambda: {
        "modules_examined": [], "modules_not_examined": {}, "params_examined": [],
        "params_not_examined": {}})
    context: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def healthy(self) -> bool | None:
        """``False`` when something was flagged; ``None`` when nothing was flagged but some
        parameters or modules were not examined (see ``coverage``); ``True`` only when
        nothing was flagged and everything was examined."""
        if self.findings:
            return False
        if self.coverage.get("params_not_examined") or self.coverage.get("modules_not_examined"):
            return None
        return True

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def metrics(self) -> dict[str, float]:
        """Key numbers for before/after comparisons."""
        def vals(key: str) -> list[float]:
            return [r[key] for r in self.rows if isinstance(r.get(key), float)
                    and not math.isnan(r[key])]

        act = vals("act_std")
        grad = [r["grad_std"] for r in _main_path([r for r in self.rows if r.get("activation")
                                                   and _finite(r.get("grad_std"))])]
        return {
            "findings": float(len(self.findings)),
            "act_std_ratio": _ratio(act),
            "grad_std_ratio": 1.0 / _ratio(grad) if _ratio(grad) else math.nan,
            "max_saturated": max(vals("saturated"), default=math.nan),
            "max_dead": max(vals("dead"), default=math.nan),
            "loss": self.loss,
        }

    # -- rendering -------------------------------------------------------------------------
    def table_rows(self) -> list[list[Any]]:
        cols = ("act_std", "saturated", "dead", "grad_std", "gw_over_w", "jac_sv")
        return [[r["layer"], r.get("activation") or "-"] + [r.get(c, math.nan) for c in cols]
                for r in self.rows]

    HEADER = ("layer", "activation", "act std", "saturated", "dead", "grad std",
              "|gW|/|W|", "jac sv mean")

    def to_text(self) -> str:
        lines = [_format_table(self.HEADER, self.table_rows())]
        lines.append(f"loss {self.loss:.4g}; inputs: mean {self.input_stats['mean']:.3g}, "
                     f"std {self.input_stats['std']:.3g}")
        io = self.context.get("input_output_jacobian_rms")
        if io is not None:
            lines.append(f"input-output Jacobian: RMS singular value {io:.3g}")
        lines += self._coverage_lines()
        lines += [f"note: {n}" for n in self.notes]
        if self.findings:
            lines.append(f"\n{len(self.findings)} finding(s):")
            for f in self.findings:
                lines.append(f"  - {f}")
                lines.append(f"      fixes: {', '.join(f.fixes)}")
        elif self.healthy is None:
            lines.append("\nNo problem found in what was examined, but parts were not "
                         "examined (see coverage): no verdict on those.")
        else:
            lines.append("\nNo problem found.")
        if self.fix_results:
            lines.append("\nfixes tried (before -> after):")
            lines.append(_format_table(*self._fix_table()))
        lines.append("\nthresholds: "
                     + ", ".join(f"{k}={v:g}" for k, v in self.thresholds.items()))
        return "\n".join(lines)

    def _coverage_lines(self, shown: int = 8) -> list[str]:
        c = self.coverage
        me, mn = c.get("modules_examined", []), c.get("modules_not_examined", {})
        pe, pn = c.get("params_examined", []), c.get("params_not_examined", {})
        lines = [f"coverage: {len(me)}/{len(me) + len(mn)} modules and "
                 f"{len(pe)}/{len(pe) + len(pn)} parameters examined"]
        for label, missing in (("module", mn), ("parameter", pn)):
            for name, why in list(missing.items())[:shown]:
                lines.append(f"  {label} not examined: {name}: {why}")
            if len(missing) > shown:
                lines.append(f"  ... and {len(missing) - shown} more {label}s not examined")
        return lines

    def _fix_table(self) -> tuple[Sequence[str], list[list[Any]]]:
        keys = list(self.metrics())
        header = ["fix", "applied"] + keys + ["remaining findings"]
        rows = [["(before)", "-"] + [self.metrics()[k] for k in keys]
                + [", ".join(sorted(self.kinds())) or "none"]]
        for fr in self.fix_results:
            if fr.after is None:
                rows.append([fr.fix, "no: " + fr.note] + ["-"] * len(keys) + ["-"])
            else:
                m = fr.after.metrics()
                rows.append([fr.fix, fr.note] + [m[k] for k in keys]
                            + [", ".join(sorted(fr.after.kinds())) or "none"])
        return header, rows

    def __str__(self) -> str:
        return self.to_text()

    def to_html(self, path: str | os.PathLike, title: str = "trainlab diagnosis") -> Path:
        """Write the report as an HTML page, figures beside it (see
        :func:`trainlab.report.doctor_page.write_doctor_page`)."""
        from trainlab.report.doctor_page import write_doctor_page

        return write_doctor_page(self, path, title)


def _ratio(v: list[float]) -> float:
    if len(v) < 2 or v[0] == 0 or math.isnan(v[0]):
        return math.nan
    return v[-1] / v[0]


def _dash(rows: list[list[Any]]) -> list[list[Any]]:
    """NaN cells mean "does not apply here" (a tanh unit cannot die): show them as "-"."""
    return [["-" if isinstance(v, float) and math.isnan(v) else v for v in r] for r in rows]


def _format_table(header: Sequence[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.3g}"  # nan: does not apply here
        return str(v)

    text = [[cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in text]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# the pass
# --------------------------------------------------------------------------------------------
def _split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 2 and isinstance(batch[0], Tensor):
        y = batch[1] if len(batch) == 2 else None
        if y is not None and not isinstance(y, Tensor):
            raise TypeError(f"batch targets must be a tensor. Received: {type(y).__name__}.")
        return batch[0], y
    raise TypeError(
        f"batch must be a tensor x or a pair (x, y). Received: {type(batch).__name__}."
    )


def _default_loss(y: Tensor | None) -> Callable:
    if y is None:
        # No targets: the mean square of the output, a label-free loss that still sends a
        # gradient through every layer.
        return lambda out: out.float().pow(2).mean()
    if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        return nn.functional.cross_entropy
    return nn.functional.mse_loss


def _forward_checked(model: nn.Module, x: Tensor) -> Tensor:
    try:
        with torch.no_grad(), _eval_if_bn_needs_it(model, x):
            return model(x[:2] if x.shape[0] > 2 else x)
    except (RuntimeError, ValueError, IndexError) as e:
        expected = _expected_input(model)
        raise ValueError(
            f"The batch does not fit the model: input shape {tuple(x.shape)} (batch first)"
            f"{'; the first layer expects ' + expected if expected else ''}. "
            f"torch said: {' '.join(str(e).split())[:300]}"
        ) from e


class _eval_if_bn_needs_it:
    def __init__(self, model: nn.Module, x: Tensor) -> None:
        self.model, self.modes = model, [(m, m.training) for m in model.modules()]

    def __enter__(self) -> None:
        self.model.eval()  # a shape check must not update BN statistics

    def __exit__(self, *exc: Any) -> None:
        for m, t in self.modes:
            m.training = t


def _expected_input(model: nn.Module) -> str:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return f"(N, {m.in_features}) features (nn.Linear in_features={m.in_features})"
        if isinstance(m, nn.modules.conv._ConvNd):
            return f"(N, {m.in_channels}, ...) channels ({type(m).__name__})"
    return ""


def _train_steps(model: nn.Module, x: Tensor, y: Tensor | None, loss_fn: Callable,
                 steps: int, lr: float, optimizer: Any) -> list[float]:
    from trainlab.optim import build_optimizer

    opt = build_optimizer(optimizer, model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, y) if y is not None else loss_fn(out)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    opt.zero_grad(set_to_none=True)
    return losses


class _Coverage(Probe):
    """What the layer probes do not see: every parameter's norm and gradient norm, and the
    output of every module that owns parameters (the model itself included).

    Output statistics accumulate over all calls of a module (a shared module: all its
    calls); the shape is that of the first call. Reads only, like every probe.
    """

    default_layers = "block"  # unused: the watched modules are chosen in _setup_for

    def _n_raw(self) -> int:
        return 1

    def _setup_for(self, model: nn.Module) -> None:
        self.watched = [(n, m) for n, m in model.named_modules()
                        if next(m.parameters(recurse=False), None) is not None]
        self._model = model
        self.out: dict[str, list[Any]] = {}  # name -> [calls, stats tensor, shape]
        self.no_float: set[str] = set()
        self.params: dict[str, Tensor] = {}

    def _install(self) -> None:
        for name, m in self.watched:
            self._handles.append(m.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module: Any, args: Any, out: Any) -> None:
            if not self.recording:
                return
            t = first_tensor(out)
            if t is None:
                self.no_float.add(name)
                return
            t = t.detach().float()
            st = torch.stack([t.sum(), t.square().sum(), t.new_tensor(float(t.numel())),
                              (~torch.isfinite(t)).sum().float()])
            rec = self.out.get(name)
            if rec is None:
                self.out[name] = [1, st, tuple(t.shape)]
            else:
                rec[0] += 1
                rec[1] = rec[1] + st

        return hook

    def _on_after_backward(self) -> None:
        if not self.recording:
            return
        for name, p in self._model.named_parameters():
            w = p.detach().float()
            g = None if p.grad is None else p.grad.detach().float()
            nan, zero = torch.full((), math.nan, device=w.device), torch.zeros((), device=w.device)
            self.params[name] = torch.stack([
                torch.linalg.vector_norm(w), (~torch.isfinite(w)).sum().float(),
                nan if g is None else torch.linalg.vector_norm(g),
                zero if g is None else (~torch.isfinite(g)).sum().float()])

    def results(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
        """``(outputs, params)`` on the host (one copy): per module ``calls``, ``mean``,
        ``std``, ``nonfinite``, ``shape``; per parameter ``norm``, ``nonfinite``,
        ``grad_norm`` (NaN: no gradient), ``grad_nonfinite``, ``numel``, ``requires_grad``."""
        keys = list(self.out)
        flat = [self.out[k][1] for k in keys] + list(self.params.values())
        host = torch.stack(flat).cpu().double().tolist() if flat else []
        outs: dict[str, dict[str, Any]] = {}
        for k, (sm, sq, n, bad) in zip(keys, host[:len(keys)]):
            var = max(sq - sm * sm / n, 0.0) / max(n - 1, 1)
            outs[k] = {"calls": self.out[k][0], "mean": sm / n, "std": var ** 0.5,
                       "nonfinite": bad, "shape": self.out[k][2]}
        named = dict(self._model.named_parameters())
        params = {}
        for k, (norm, bad, gn, gbad) in zip(self.params, host[len(keys):]):
            params[k] = {"norm": norm, "nonfinite": bad, "grad_norm": gn, "grad_nonfinite": gbad,
                         "numel": named[k].numel(), "requires_grad": named[k].requires_grad}
        return outs, params


_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def _output_rows(model: nn.Module, outs: dict[str, dict[str, Any]],
                 params: dict[str, dict[str, float]], taken: set[str]) -> list[dict[str, Any]]:
    """Rows for modules with a weight matrix of their own that the layer probes do not watch
    (recurrent and attention layers, custom modules): their output std, and ``|gW|/|W|`` over
    their own parameters. Modules whose own parameters are only vectors (norm layers,
    LayerScale-style gains, which may start tiny on purpose) and the model itself are left
    out of the table (they are still examined: see ``coverage``)."""
    wl = {n for n, _ in weight_layers(model)}
    rows = []
    for name, m in model.named_modules():
        if not name or name in wl or name in taken or isinstance(m, _NORMS) or name not in outs:
            continue
        if not any(p.dim() >= 2 for p in m.parameters(recurse=False)):
            continue
        own = [f"{name}.{p}" for p, _ in m.named_parameters(recurse=False)]
        gw = math.sqrt(sum(params[p]["grad_norm"] ** 2 for p in own if p in params))
        w = math.sqrt(sum(params[p]["norm"] ** 2 for p in own if p in params))
        rows.append({"layer": name, "activation": name, "act_std": outs[name]["std"],
                     "saturated": math.nan, "dead": math.nan, "grad_std": math.nan,
                     "gw_over_w": gw / w if w else math.nan, "jac_sv": math.nan,
                     "source": "module output", "_act_row": {}, "_grad_row": {}})
    return rows


def _pair_rows(model: nn.Module, log: ProbeLog, jac_blocks: list[str]) -> list[dict[str, Any]]:
    """One row per weight layer, with the activation that follows it."""
    order = [n for n, _ in model.named_modules()]
    wl = [n for n, _ in weight_layers(model)]
    acts = [n for n, _ in activation_layers(model)]
    t = log.table(log.steps()[-1]) if log.rows else {}
    rows = []
    for k, name in enumerate(wl):
        start = order.index(name)
        stop = order.index(wl[k + 1]) if k + 1 < len(wl) else len(order)
        act = next((a for a in acts if start < order.index(a) < stop), None)
        r: dict[str, Any] = {"layer": name, "activation": act}
        a = t.get(act, {}) if act else {}
        r["act_std"] = a.get("act_std", math.nan)
        r["saturated"] = a.get("act_saturated", math.nan)
        r["dead"] = a.get("act_dead", math.nan)
        g = t.get(name, {})
        r["grad_std"] = g.get("grad_out_std", math.nan)
        gw, w = g.get("grad_w_norm", math.nan), g.get("w_norm", math.nan)
        r["gw_over_w"] = gw / w if w else math.nan
        block = next((b for b in jac_blocks if name == b or name.startswith(b + ".")), None)
        j = t.get(block, {}) if block is not None else {}
        r["jac_sv"] = j.get("jac_sv_mean", j.get("jac_sv_rms", math.nan))
        r["_act_row"] = a
        r["_grad_row"] = g
        rows.append(r)
    return rows


def _run(model: nn.Module, x: Tensor, y: Tensor | None, loss_fn: Callable, *, steps: int,
         lr: float, optimizer: Any, jacobian: bool, mode: str, batch_dim: int,
         deadline: float | None) -> Diagnosis:
    """One diagnosis in phases (timed): training steps, the probed pass, the Jacobian, the
    rules. A probe or quantity that fails becomes a note; the rest goes on."""
    notes: list[str] = []
    timings: dict[str, float] = {}
    t = time.perf_counter()
    losses = []
    if steps:
        losses = _train_steps(model, x, y, loss_fn, steps, lr, optimizer)
        notes.append(f"{steps} {optimizer} steps at lr={lr:g} before the diagnosis; "
                     f"loss {losses[0]:.4g} -> {losses[-1]:.4g}")
    timings["steps"] = time.perf_counter() - t

    t = time.perf_counter()
    has_acts = bool(activation_layers(model))
    probes: list[Any] = [
        ActivationStats(layers=None if has_acts else tuple({type(m) for _, m in
                                                            weight_layers(model)}) or None,
                        hist_every=1),
        GradientStats(hist_every=1),
        WeightStats(hist_every=0),
        _Coverage(),
    ]
    if not has_acts:
        notes.append("no activation modules recognized; activation statistics are those of "
                     "the Linear/Conv outputs")
    loss, log, cov = _probed_pass(model, probes, x, y, loss_fn, mode, notes)
    timings["probes"] = time.perf_counter() - t

    t = time.perf_counter()
    jac_blocks: list[str] = []
    if jacobian:
        jac_blocks = _jacobian_pass(model, x, mode, batch_dim, deadline, log, notes)
    timings["jacobian"] = time.perf_counter() - t

    t = time.perf_counter()
    input_stats = _input_stats(x)
    outs, params = cov.results() if cov is not None else ({}, {})
    rows = _pair_rows(model, log, jac_blocks)
    if outs:
        order = {n: i for i, (n, _) in enumerate(model.named_modules())}
        taken = {r["layer"] for r in rows} | {r["activation"] for r in rows if r["activation"]}
        rows = sorted(rows + _output_rows(model, outs, params, taken),
                      key=lambda r: order[r["layer"]])
    for r in rows:
        r["kind"] = _row_kind(model, r, outs)
    coverage = _coverage(model, log, outs, params, cov, notes)
    d = Diagnosis(rows=rows, findings=[], loss=float(loss) if loss is not None else math.nan,
                  input_stats=input_stats, log=log, notes=notes, coverage=coverage,
                  timings=timings)
    io = log.table(log.steps()[-1]).get("model", {}) if log.rows else {}
    if "jac_sv_rms" in io and "model" in jac_blocks:
        d.context["input_output_jacobian_rms"] = io["jac_sv_rms"]
    d.findings = _findings(model, d, losses, outs, params)
    timings["rules"] = time.perf_counter() - t
    return d


def _probed_pass(model: nn.Module, probes: list[Any], x: Tensor, y: Tensor | None,
                 loss_fn: Callable, mode: str, notes: list[str]
                 ) -> tuple[Tensor | None, ProbeLog, _Coverage | None]:
    """One forward/backward pass with ``probes``. A probe that cannot attach or fails is
    left out, with a note; when the pass with all of them fails, each runs alone (the model's
    own error, without any probe, is raised)."""
    attached = []
    for p in probes:
        try:
            attached.append(p.attach(model))
        except (ValueError, TypeError, RuntimeError) as e:
            notes.append(f"{type(p).__name__.lstrip('_')} not run: {_why(e)}")
    try:
        loss = observe(model, attached, x, y, loss_fn, mode=mode)
        ok = list(attached)
    except Exception as first:  # noqa: BLE001 - a probe's failure must not cost the report
        loss = observe(model, [], x, y, loss_fn, mode=mode)  # the model's own error raises
        ok = []
        for p in attached:
            try:
                p.clear()
                observe(model, [p], x, y, loss_fn, mode=mode)
                ok.append(p)
            except Exception as e:  # noqa: BLE001
                notes.append(f"{type(p).__name__.lstrip('_')} failed on this model and was "
                             f"left out: {_why(e)}")
        if len(ok) == len(attached):  # failed only together
            notes.append(f"the probes failed together ({_why(first)}) and were run one by one")
    finally:
        for p in attached:
            p.detach()
    log = ProbeLog()
    cov = None
    for p in ok:
        try:
            log.extend(collect([p]))
            cov = p if isinstance(p, _Coverage) else cov
        except Exception as e:  # noqa: BLE001
            notes.append(f"{type(p).__name__.lstrip('_')} records unreadable: {_why(e)}")
    return loss, log, cov


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:240]}"


#: the doctor's Jacobian: few examples and products (the budget is for the whole diagnosis)
JACOBIAN_SETTINGS = {"n_examples": 4, "k": 8, "iters": 1, "exact_max": 64}


def _jacobian_pass(model: nn.Module, x: Tensor, mode: str, batch_dim: int,
                   deadline: float | None, log: ProbeLog, notes: list[str]) -> list[str]:
    """Jacobian singular values of the top-level blocks and of the model (reverse mode,
    see :mod:`trainlab.probes.jacobian`), in what is left of the time budget; records go
    into ``log``, what was not computed into ``notes``. Returns the blocks computed."""
    budget = None if deadline is None else deadline - time.perf_counter()
    if budget is not None and budget <= 0:
        notes.append("Jacobian not computed: the time budget was spent before it started "
                     "(diagnose(time_budget=...) to give it more)")
        return []
    try:
        jp = JacobianSpectrum(every=1, batch_dim=batch_dim, time_budget=budget,
                              errors="note", **JACOBIAN_SETTINGS).attach(model)
    except ValueError as e:
        notes.append(f"Jacobian not computed: {e}")
        return []
    try:
        observe(model, [jp], x, None, None, mode=mode)
        log.extend(collect([jp]))
    except Exception as e:  # noqa: BLE001 - the rest of the diagnosis goes on
        notes.append(f"Jacobian not computed: {_why(e)}")
        return []
    finally:
        notes.extend(jp.notes())
        jp.detach()
    done = {layer for _, layer, q, _ in log.rows if q.startswith("jac_")}
    return [n for n in jp.layer_names if n in done]


def _input_stats(x: Tensor) -> dict[str, Any]:
    xs = x.detach().float()
    return {"mean": float(xs.mean()), "std": float(xs.std()) if xs.numel() > 1 else 0.0,
            "min": float(xs.min()), "max": float(xs.max()),
            "integer": not (x.is_floating_point() or x.is_complex())}


def _row_kind(model: nn.Module, row: dict[str, Any], outs: dict[str, dict[str, Any]]) -> str:
    """The kind of a row, for like-with-like depth comparisons (see the module docstring)."""
    act = row.get("activation")
    if act and row.get("source") != "module output" and isinstance(
            model.get_submodule(act), _BLOCK_TYPES):
        return type(model.get_submodule(act)).__name__
    m = model.get_submodule(row["layer"])
    kind = type(m).__name__
    if isinstance(m, nn.modules.conv._ConvNd):
        shape = outs.get(row["layer"], {}).get("shape")
        biggest = max((math.prod(o["shape"][2:]) for n, o in outs.items() if len(o["shape"]) > 2
                       and isinstance(model.get_submodule(n), nn.modules.conv._ConvNd)),
                      default=1)
        if shape is not None and len(shape) > 2 and math.prod(shape[2:]) == 1 < biggest:
            kind += " on 1x1 maps (gate/branch)"
    return kind


def _coverage(model: nn.Module, log: ProbeLog, outs: dict[str, dict[str, Any]],
              params: dict[str, dict[str, float]], cov: _Coverage | None, notes: list[str]
              ) -> dict[str, Any]:
    """Which parameters and modules the diagnosis saw (see :class:`Diagnosis`)."""
    ran = cov is not None
    p_ok, p_not = [], {}
    for name, p in model.named_parameters():
        info = params.get(name)
        if not ran or info is None:
            p_not[name] = "the coverage pass did not run (see the notes)"
        elif not p.requires_grad or not math.isnan(info["grad_norm"]):
            p_ok.append(name)
        else:
            p_not[name] = ("received no gradient: not used in the forward pass on this batch, "
                           "or cut off from the loss")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        notes.append(f"{len(frozen)} frozen parameter(s) (requires_grad=False, e.g. "
                     f"{frozen[0]}): values checked, no gradient to check")
    seen_acts = {layer for _, layer, q, _ in log.rows if q.startswith("act_")}
    m_ok, m_not = [], {}
    for name, m in model.named_modules():
        label = name or "(model)"
        own = [f"{name}.{p}" if name else p for p, _ in m.named_parameters(recurse=False)]
        is_act = bool(name) and activation_info(m) is not None
        if not own and not is_act:
            continue  # containers and parameter-free reshapes: nothing of their own to see
        if name in outs or name in seen_acts:
            m_ok.append(label)
        elif own and all(p in p_ok for p in own):
            m_ok.append(label)  # used functionally by its parent (MultiheadAttention.out_proj)
        elif ran and name in cov.no_float:
            m_not[label] = "its output holds no floating-point tensor"
        else:
            m_not[label] = ("not called in the forward pass on this batch" if ran else
                            "the coverage pass did not run (see the notes)")
    return {"modules_examined": m_ok, "modules_not_examined": m_not,
            "params_examined": p_ok, "params_not_examined": p_not}


# --------------------------------------------------------------------------------------------
# the rules
# --------------------------------------------------------------------------------------------
def _finite(v: Any) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def _main_path(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the first row's kind: depth ratios compare like with like (see the
    module docstring)."""
    if not rows:
        return rows
    kind = rows[0].get("kind")
    return [r for r in rows if r.get("kind") == kind]


def _findings(model: nn.Module, d: Diagnosis, losses: list[float],
              outs: dict[str, dict[str, Any]] | None = None,
              params: dict[str, dict[str, float]] | None = None) -> list[Finding]:
    out: list[Finding] = []
    outs, params = outs or {}, params or {}

    def add(kind: str, layer: str | None, evidence: str) -> None:
        out.append(Finding(kind, layer, evidence, list(_FIXES_FOR[kind])))

    # non-finite values: the loss, then the first layer in forward order
    if not math.isfinite(d.loss) or any(not math.isfinite(v) for v in losses):
        add("non_finite", None, f"loss is {d.loss} (during {len(losses)} steps: "
            f"{[v for v in losses if not math.isfinite(v)][:1] or 'finite'})")
    for _, layer, q, v in d.log.rows:
        if not math.isfinite(v) and not q.startswith("jac"):
            add("non_finite", layer, f"{q}={v} at {layer} (first non-finite statistic in "
                "forward order)")
            break
    else:  # what the layer probes do not watch: module outputs, then every parameter
        bad = [(n, f"{o['nonfinite']:.0f} non-finite output value(s)") for n, o in outs.items()
               if o["nonfinite"]]
        bad += [(n, f"{p['nonfinite']:.0f} non-finite value(s), "
                 f"{p['grad_nonfinite']:.0f} in its gradient") for n, p in params.items()
                if p["nonfinite"] or p["grad_nonfinite"]]
        if bad:
            add("non_finite", bad[0][0] or None, f"{bad[0][0] or '(model)'}: {bad[0][1]} "
                "(first non-finite module output or parameter)")

    every_hidden = [r for r in d.rows if r["activation"] is not None and _finite(r["act_std"])]
    hidden = _main_path(every_hidden)
    if len(hidden) >= 2:
        first, last = hidden[0], hidden[-1]
        ratio = last["act_std"] / first["act_std"] if first["act_std"] > 0 else math.inf
        stds = ", ".join(f"{r['act_std']:.2g}" for r in hidden)
        if ratio < VANISH_RATIO:
            add("vanishing_activations", last["activation"],
                f"activation std falls from {first['act_std']:.3g} ({first['activation']}) to "
                f"{last['act_std']:.3g} ({last['activation']}): ratio {ratio:.2g} < "
                f"VANISH_RATIO={VANISH_RATIO:g}; per layer: {stds}")
        elif ratio > EXPLODE_RATIO:
            add("exploding_activations", last["activation"],
                f"activation std grows from {first['act_std']:.3g} to {last['act_std']:.3g}: "
                f"ratio {ratio:.3g} > EXPLODE_RATIO={EXPLODE_RATIO:g}; per layer: {stds}")
    if not any(f.kind == "vanishing_activations" for f in out):
        tiny = [r for r in every_hidden if r["act_std"] < ACT_STD_MIN]
        if tiny:
            add("vanishing_activations", tiny[0]["activation"],
                f"activation std {tiny[0]['act_std']:.3g} < ACT_STD_MIN={ACT_STD_MIN:g}")

    # Hidden layers only: the head's gradient (softmax − one-hot over a few outputs) is not
    # on the same per-element scale as the hidden layers' (Glorot compares hidden layers).
    grads = _main_path([r for r in d.rows if _finite(r["grad_std"])
                        and r["activation"] is not None])
    if len(grads) >= 2:
        first, last = grads[0], grads[-1]
        if last["grad_std"] > 0:
            ratio = first["grad_std"] / last["grad_std"]
            stds = ", ".join(f"{r['grad_std']:.2g}" for r in grads)
            if ratio < VANISH_RATIO or ratio > EXPLODE_RATIO:
                kind, bound = (("vanishing_gradients", f"< VANISH_RATIO={VANISH_RATIO:g}")
                               if ratio < VANISH_RATIO else
                               ("exploding_gradients", f"> EXPLODE_RATIO={EXPLODE_RATIO:g}"))
                add(kind, first["layer"],
                    f"std of dL/ds is {first['grad_std']:.3g} at {first['layer']} but "
                    f"{last['grad_std']:.3g} at {last['layer']}: ratio first/last {ratio:.2g} "
                    f"{bound}; per layer: {stds}")

    for r in d.rows:
        if _finite(r["saturated"]) and r["saturated"] > SATURATION_MAX:
            info = activation_info(model.get_submodule(r["activation"]))
            rule = getattr(info, "saturated", None)
            add("saturation", r["activation"],
                f"{r['saturated']:.0%} of outputs saturated ({rule}) > "
                f"SATURATION_MAX={SATURATION_MAX:g}")
    for r in d.rows:
        if _finite(r["dead"]) and r["dead"] > DEAD_MAX:
            add("dead_units", r["activation"],
                f"{r['dead']:.0%} of units output zero-derivative values for every example "
                f"of the batch > DEAD_MAX={DEAD_MAX:g}")

    for name, m in weight_layers(model):
        if isinstance(m, nn.Embedding):
            continue
        w = m.weight.detach()
        if w.shape[0] < 2:
            continue
        rows = w.reshape(w.shape[0], -1)
        b = getattr(m, "bias", None)
        if isinstance(b, Tensor):
            rows = torch.cat([rows, b.detach().reshape(-1, 1)], dim=1)
        distinct = torch.unique(rows, dim=0).shape[0]
        if distinct <= SYMMETRY_MAX_DISTINCT * w.shape[0]:
            add("symmetric_units", name,
                f"{w.shape[0]} output units but only {distinct} distinct weight vector(s) "
                f"(<= SYMMETRY_MAX_DISTINCT={SYMMETRY_MAX_DISTINCT:g} of the units): units "
                "that start equal get equal gradients and stay equal")

    mean, std = d.input_stats["mean"], d.input_stats["std"]
    if d.input_stats.get("integer"):
        pass  # token ids / class indices: centring them means nothing (noted in diagnose)
    elif std > 0 and abs(mean) > INPUT_CENTER_MAX * std:
        add("inputs_not_centred", None,
            f"input mean {mean:.3g} vs std {std:.3g}: |mean|/std = {abs(mean) / std:.2g} > "
            f"INPUT_CENTER_MAX={INPUT_CENTER_MAX:g}"
            + (" (all inputs >= 0: every weight gradient of a unit in the first layer has "
               "the same sign)" if d.input_stats["min"] >= 0 else ""))

    branches = _residual_branches(model)
    if branches and not _has_norm(model):
        # Zhang et al. 2019: a residual net without normalization whose signal vanishes or
        # explodes is what Fixup is for; it goes first in those findings' fixes.
        for f in out:
            if f.kind in _FIXUP_KINDS and "fixup" not in f.fixes:
                f.fixes.insert(0, "fixup")
                f.evidence += (f" (a residual network without normalization: "
                               f"{len(branches)} residual blocks)")

    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, _BN)]
    if model.training:
        frozen = [n for n, m in bns if not m.training]
        if frozen:
            add("bn_mode", frozen[0],
                f"{len(frozen)} BatchNorm layer(s) in eval mode while the model trains "
                f"({', '.join(frozen[:3])}): they normalize with running statistics")
    else:
        fresh = [n for n, m in bns if m.training is False and m.track_running_stats
                 and m.num_batches_tracked is not None and int(m.num_batches_tracked) == 0]
        if fresh:
            add("bn_mode", fresh[0],
                f"model in eval mode and BatchNorm running statistics never updated "
                f"({', '.join(fresh[:3])}: mean 0, var 1): train in train mode first")
    return out


_FIXUP_KINDS = ("vanishing_activations", "exploding_activations", "vanishing_gradients",
                "exploding_gradients", "non_finite")
#: class names of residual blocks (trainlab's, torchvision's, timm's and common spellings)
_RESIDUAL_NAMES = ("PreActBlock", "BasicBlock", "Bottleneck", "PreActBottleneck", "ResBlock",
                   "ResidualBlock", "ResNetBlock")


def _residual_branches(model: nn.Module) -> list[str]:
    """Names of the modules that look like residual blocks (outermost only)."""
    found = [n for n, m in model.named_modules() if n and type(m).__name__ in _RESIDUAL_NAMES]
    return [n for n in found if not any(n.startswith(o + ".") for o in found)]


def _has_norm(model: nn.Module) -> bool:
    from trainlab.init.apply import _is_norm

    return any(_is_norm(m) for m in model.modules() if not isinstance(m, nn.Identity))


# --------------------------------------------------------------------------------------------
# fixes
# --------------------------------------------------------------------------------------------
def _init_fix(model: nn.Module, scheme: str, what: str, **kw: Any
              ) -> tuple[nn.Module, str] | str:
    from trainlab.init import init_model

    m = copy.deepcopy(model)
    with warnings.catch_warnings(record=True) as caught:  # said in the fix's note
        warnings.simplefilter("always")
        try:
            init_model(m, scheme, **kw)
        except ValueError as e:
            return f"{scheme} does not apply: {e}"
    said = "".join(f" ({w.message})" for w in caught if issubclass(w.category, UserWarning))
    return m, what + said


_BUILDER_NAMES = {"MLP": "mlp", "ConvNet": "convnet", "PreActResNet": "preact_resnet"}


def _activation(model: nn.Module) -> Any:
    """The ActivationInfo of the model's first activation module, or None. (Its ``name``
    need not be a registry name: torch's Hardswish, Mish ... have infos but no entry.)"""
    for _, m in activation_layers(model):
        info = activation_info(m)  # None for Transformer layers (watched for their output)
        if info is not None:
            return info
    return None


def _activation_name(model: nn.Module) -> str | None:
    info = _activation(model)
    return None if info is None else info.name


def _init_scheme(info: Any) -> str:
    if info is None:
        return "xavier_uniform"
    if info.name == "selu":
        return "lecun_normal"
    if info.dead is not None:
        return "he_normal"  # rectifiers: He et al. 2015
    return "xavier_uniform"  # tanh, sigmoid, softsign: Glorot & Bengio 2010


def _rebuild(model: nn.Module, **changes: Any) -> nn.Module | None:
    spec = getattr(model, "spec", None)
    name = _BUILDER_NAMES.get(type(model).__name__)
    if not isinstance(spec, dict) or name is None:
        return None
    from trainlab.nn.builders import build_model

    new = build_model({"name": name, **{**spec, **changes, "init": None}})
    # keep the weights of every layer that still exists with the same shape
    own = new.state_dict()
    old = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
    new.load_state_dict({**own, **old})
    new.train(model.training)
    return new.to(next(model.parameters()).device)


def _apply_fix(fix: str, model: nn.Module, x: Tensor, lr: float, steps: int, seed: int,
               batch_dim: int = 0) -> tuple[nn.Module, Tensor, float, str] | str:
    """``(model, x, lr, what was done)`` with ``fix`` applied (copies), or the reason it
    does not apply."""
    if fix == "init":
        from trainlab.init import init_model

        m = copy.deepcopy(model)
        scheme = _init_scheme(_activation(m))
        with warnings.catch_warnings(record=True) as caught:  # said in the fix's note
            warnings.simplefilter("always")
            init_model(m, scheme, bias=0.0, generator=seed)
        left = "".join(f" ({w.message})" for w in caught if issubclass(w.category, UserWarning))
        return m, x, lr, f"re-initialized with {scheme!r}, biases 0{left}"
    if fix == "norm":
        spec = getattr(model, "spec", None)
        if isinstance(spec, dict) and spec.get("norm") not in (None, "none"):
            return f"the model already has norm={spec.get('norm')!r}"
        m = _rebuild(model, norm="bn", placement="before")
        if m is None:
            return ("inserting BatchNorm needs a trainlab-built model (from a spec); for your "
                    "own module, add nn.BatchNorm1d/2d between each Linear/Conv and activation")
        return m, x, lr, "inserted BatchNorm before each activation"
    if fix == "activation":
        act = _activation_name(model)
        new = "leaky_relu" if act in ("relu", "relu6") else "relu"
        m = _rebuild(model, activation=new)
        if m is None:
            return "swapping the activation needs a trainlab-built model (from a spec)"
        return m, x, lr, f"activation {act!r} -> {new!r} (weights kept)"
    if fix == "lr":
        if not steps:
            return "the learning rate only matters with steps > 0 (--steps)"
        return copy.deepcopy(model), x, lr / 10, f"learning rate {lr:g} -> {lr / 10:g}"
    if fix == "center":
        if not x.is_floating_point():
            return (f"the inputs are integers ({x.dtype}: token ids or indices): centring "
                    "them means nothing")
        return (copy.deepcopy(model), x - x.mean(dim=batch_dim, keepdim=True), lr,
                "inputs centred (batch mean subtracted)")
    if fix in ("lsuv", "data_dependent"):
        if x.shape[0] < 2:
            return f"{fix} needs at least 2 examples to estimate variances"
        got = _init_fix(model, fix, f"re-initialized with {fix!r} on the batch", data=x,
                        generator=seed)
        return got if isinstance(got, str) else (got[0], x, lr, got[1])
    if fix == "fixup":
        branches = _residual_branches(model)
        if not branches:
            return ("Fixup is for residual networks; found no residual block "
                    f"({', '.join(_RESIDUAL_NAMES)})")
        if _has_norm(model):
            return "Fixup replaces normalization; this model has normalization layers"
        got = _init_fix(model, "fixup", f"Fixup over {len(branches)} residual branches",
                        branches=branches, generator=seed)
        return got if isinstance(got, str) else (got[0], x, lr, got[1])
    if fix == "bn_train":
        m = copy.deepcopy(model)
        for mod in m.modules():
            if isinstance(mod, _BN):
                mod.train(True)
        m.training = True
        return m, x, lr, "BatchNorm layers put in training mode"
    raise ValueError(f"Unknown fix {fix!r}; known: {', '.join(FIXES)}.")


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def diagnose(
    model: nn.Module,
    batch: Any,
    loss_fn: Callable | None = None,
    *,
    steps: int = 0,
    lr: float = 0.01,
    optimizer: Any = "sgd",
    try_fixes: bool | Sequence[str] = False,
    jacobian: bool = True,
    mode: str = "as_is",
    seed: int = 0,
    batch_dim: int | None = None,
    time_budget: float | None = 10.0,
) -> Diagnosis:
    """Diagnose ``model`` on ``batch`` (``x`` or ``(x, y)``) and return a :class:`Diagnosis`.

    Args:
        model: any ``nn.Module`` (left unchanged: the pass saves and restores ``.grad``, BN
            buffers and the RNG; ``steps`` and fixes work on copies).
        batch: ``x`` or ``(x, y)`` on the model's device, with at least one example.
        loss_fn: ``loss_fn(output, y)`` (or ``loss_fn(output)`` without ``y``); default
            cross-entropy for integer targets, MSE for float targets, and the mean square of
            the output without targets.
        steps: training steps (on a copy, with ``optimizer`` at ``lr``) before the diagnosis.
        try_fixes: ``True`` to re-run with every fix the findings name, or a list of fix
            names (keys of :data:`FIXES`). The re-runs skip the Jacobian (it is not part of
            the before/after comparison).
        jacobian: also compute Jacobian singular values (reverse mode; on at most
            ``JACOBIAN_SETTINGS["n_examples"]`` examples, within the time budget).
        mode: module modes during the pass: ``"as_is"`` (default, as the model would train),
            ``"train"`` or ``"eval"``.
        seed: seed for re-initialization fixes.
        batch_dim: the dim of ``x`` that indexes examples. Default: 0, unless the model holds
            a sequence-first module (``nn.LSTM`` without ``batch_first`` …), where it is the
            dim of ``x`` whose size is the number of targets, or else the one along which
            examples are independent (found by perturbing one slice).
        time_budget: seconds for the whole diagnosis (``None``: no limit). Only the
            Jacobian is cut to fit: it gets what is left after the probed pass, and the
            blocks it could not do are named in the notes.

    Raises:
        ValueError: an empty batch; the batch does not fit the model (both shapes named);
            unknown fix names; bad ``steps``, ``lr``, ``batch_dim`` or ``time_budget``.
        TypeError: ``model`` is not a Module or ``batch`` is not a tensor or pair.
    """
    start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module. Received: {type(model).__name__}.")
    x, y = _split_batch(batch)
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0. Received: steps={steps!r}.")
    from trainlab.optim import check_lr  # the one lr rule

    check_lr(lr)
    if time_budget is not None and not (isinstance(time_budget, (int, float))
                                        and time_budget > 0):
        raise ValueError(f"time_budget must be None or seconds > 0. Received: "
                         f"time_budget={time_budget!r}.")
    if try_fixes not in (True, False):
        unknown = [f for f in try_fixes if f not in FIXES]
        if unknown:
            raise ValueError(f"Unknown fix(es) {unknown}; known: {', '.join(FIXES)}.")
    _check_not_empty(x, y, batch_dim)
    loss_fn = loss_fn or _default_loss(y)
    _forward_checked(model, x)
    bd = _find_batch_dim(model, x, y) if batch_dim is None else batch_dim
    _check_not_empty(x, y, bd)
    deadline = None if time_budget is None else start + time_budget
    checked = time.perf_counter() - start
    work = copy.deepcopy(model) if steps else model
    d = _run(work, x, y, loss_fn, steps=steps, lr=lr, optimizer=optimizer,
             jacobian=jacobian, mode=mode, batch_dim=bd, deadline=deadline)
    d.timings = {"check": checked, **d.timings}
    d.context.update(_context(model, x, y, loss_fn, steps=steps, lr=lr, optimizer=optimizer,
                              mode=mode, seed=seed, batch_dim=bd, time_budget=time_budget))
    if bd != 0:
        d.notes.append(f"examples taken along dim {bd} of x (the model holds a sequence-first "
                       "module); pass batch_dim= to choose")
    if d.input_stats.get("integer"):
        d.notes.append(f"inputs are integers ({x.dtype}: token ids or indices): the input "
                       "rules and the centring fix do not apply")
    t = time.perf_counter()
    if try_fixes:
        wanted = list(dict.fromkeys(f for fd in d.findings for f in fd.fixes)) \
            if try_fixes is True else list(try_fixes)
        for fix in wanted:
            got = _apply_fix(fix, model, x, lr, steps, seed, bd)
            if isinstance(got, str):
                d.fix_results.append(FixResult(fix, False, got))
                continue
            m2, x2, lr2, what = got
            after = _run(copy.deepcopy(m2) if steps else m2, x2, y, loss_fn, steps=steps,
                         lr=lr2, optimizer=optimizer, jacobian=False, mode=mode,
                         batch_dim=bd, deadline=None)
            d.fix_results.append(FixResult(fix, True, what, after))
    d.timings["fixes"] = time.perf_counter() - t
    d.timings["total"] = time.perf_counter() - start
    return d


def _check_not_empty(x: Tensor, y: Tensor | None, batch_dim: int | None) -> None:
    dim = 0 if batch_dim is None else batch_dim
    if x.dim() == 0 or not -x.dim() <= dim < x.dim():
        raise ValueError(f"batch_dim must index a dim of x (shape {tuple(x.shape)}). "
                         f"Received: batch_dim={batch_dim!r}.")
    n = x.shape[dim]
    if n == 0 or x.numel() == 0 or (y is not None and y.dim() > 0 and y.shape[0] == 0):
        got = f"x of shape {tuple(x.shape)}" + ("" if y is None else
                                               f", y of shape {tuple(y.shape)}")
        raise ValueError(f"batch must hold at least one example. Received: {got} "
                         f"(examples along dim {dim} of x).")


def _find_batch_dim(model: nn.Module, x: Tensor, y: Tensor | None) -> int:
    """The rule of :func:`diagnose`'s ``batch_dim``."""
    if not any(module_batch_dim(m) == 1 for m in model.modules()) or x.dim() < 2:
        return 0
    if y is not None and y.dim() > 0:
        dims = [d for d in range(x.dim()) if x.shape[d] == y.shape[0]]
        if len(dims) == 1:
            return dims[0]
    for d in (1, 0):
        if _examples_along(model, x, d):
            return d
    return 0


def _examples_along(model: nn.Module, x: Tensor, dim: int) -> bool:
    """True when changing slice 0 of ``x`` along ``dim`` leaves some outputs unchanged
    (examples are independent; a time step or a feature changes every output)."""
    if x.shape[dim] < 2:
        return False
    other = x.clone()
    other.select(dim, 0).copy_(x.select(dim, 1))
    if torch.equal(other, x):
        return False
    with torch.no_grad(), _eval_if_bn_needs_it(model, x):
        a, b = first_tensor(model(x)), first_tensor(model(other))
    if a is None or b is None or a.shape != b.shape:
        return False
    changed = (a != b)
    return bool(changed.any()) and not bool(changed.all())


def _context(model: nn.Module, x: Tensor, y: Tensor | None, loss_fn: Callable, **kw: Any
             ) -> dict[str, Any]:
    dev = next((p.device for p in model.parameters()), x.device)
    return {
        "model": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "x_shape": list(x.shape), "x_dtype": str(x.dtype).replace("torch.", ""),
        "y_shape": None if y is None else list(y.shape),
        "y_dtype": None if y is None else str(y.dtype).replace("torch.", ""),
        "loss": getattr(loss_fn, "__name__", type(loss_fn).__name__),
        "device": str(dev),
        **kw,
    }
