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
from trainlab.probes.base import activation_info, activation_layers, weight_layers

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
}

_FIXES_FOR = {
    "vanishing_activations": ["init", "norm"],
    "exploding_activations": ["init", "norm"],
    "vanishing_gradients": ["init", "norm", "activation"],
    "exploding_gradients": ["init", "norm", "lr"],
    "saturation": ["init", "norm", "activation"],
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
    ``log`` the raw probe records; ``fix_results`` the ``--try-fixes`` re-runs."""

    rows: list[dict[str, Any]]
    findings: list[Finding]
    loss: float
    input_stats: dict[str, float]
    log: ProbeLog
    notes: list[str] = field(default_factory=list)
    fix_results: list[FixResult] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=lambda: dict(THRESHOLDS))

    @property
    def healthy(self) -> bool:
        return not self.findings

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def metrics(self) -> dict[str, float]:
        """Key numbers for before/after comparisons."""
        def vals(key: str) -> list[float]:
            return [r[key] for r in self.rows if isinstance(r.get(key), float)
                    and not math.isnan(r[key])]

        act = vals("act_std")
        grad = [r["grad_std"] for r in self.rows if r.get("activation") and
                _finite(r.get("grad_std"))]
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
        lines += [f"note: {n}" for n in self.notes]
        if self.findings:
            lines.append(f"\n{len(self.findings)} finding(s):")
            for f in self.findings:
                lines.append(f"  - {f}")
                lines.append(f"      fixes: {', '.join(f.fixes)}")
        else:
            lines.append("\nNo problem found (thresholds: "
                         + ", ".join(f"{k}={v:g}" for k, v in self.thresholds.items()) + ").")
        if self.fix_results:
            lines.append("\nfixes tried (before -> after):")
            lines.append(_format_table(*self._fix_table()))
        lines.append("thresholds: " + ", ".join(f"{k}={v:g}" for k, v in self.thresholds.items()))
        return "\n".join(lines)

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
         lr: float, optimizer: Any, jacobian: bool, mode: str) -> Diagnosis:
    notes: list[str] = []
    losses = []
    if steps:
        losses = _train_steps(model, x, y, loss_fn, steps, lr, optimizer)
        notes.append(f"{steps} {optimizer} steps at lr={lr:g} before the diagnosis; "
                     f"loss {losses[0]:.4g} -> {losses[-1]:.4g}")
    has_acts = bool(activation_layers(model))
    probes: list[Any] = [
        ActivationStats(layers=None if has_acts else tuple({type(m) for _, m in
                                                            weight_layers(model)}) or None,
                        hist_every=1),
        GradientStats(hist_every=1),
        WeightStats(hist_every=0),
    ]
    if not has_acts:
        notes.append("no activation modules recognized; activation statistics are those of "
                     "the Linear/Conv outputs")
    jac_blocks: list[str] = []
    if jacobian:
        try:
            jp = JacobianSpectrum(every=1, n_examples=min(8, x.shape[0]))
            probes.append(jp)
        except ValueError:
            jacobian = False
    attached = []
    try:
        for p in probes:
            try:
                attached.append(p.attach(model))
            except ValueError as e:
                if isinstance(p, (JacobianSpectrum, ActivationStats)):
                    notes.append(str(e))
                    continue
                raise
        loss = observe(model, attached, x, y, loss_fn, mode=mode)
        log = collect(attached)
        for p in attached:
            if isinstance(p, JacobianSpectrum):
                jac_blocks = [n for n in p.layer_names if n != "model"]
    finally:
        for p in attached:
            p.detach()
    xs = x.detach().float()
    input_stats = {"mean": float(xs.mean()), "std": float(xs.std()) if xs.numel() > 1 else 0.0,
                   "min": float(xs.min()), "max": float(xs.max())}
    rows = _pair_rows(model, log, jac_blocks)
    d = Diagnosis(rows=rows, findings=[], loss=float(loss) if loss is not None else math.nan,
                  input_stats=input_stats, log=log, notes=notes)
    d.findings = _findings(model, d, losses)
    return d


# --------------------------------------------------------------------------------------------
# the rules
# --------------------------------------------------------------------------------------------
def _finite(v: Any) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def _findings(model: nn.Module, d: Diagnosis, losses: list[float]) -> list[Finding]:
    out: list[Finding] = []

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

    hidden = [r for r in d.rows if r["activation"] is not None and _finite(r["act_std"])]
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
        tiny = [r for r in hidden if r["act_std"] < ACT_STD_MIN]
        if tiny:
            add("vanishing_activations", tiny[0]["activation"],
                f"activation std {tiny[0]['act_std']:.3g} < ACT_STD_MIN={ACT_STD_MIN:g}")

    # Hidden layers only: the head's gradient (softmax − one-hot over a few outputs) is not
    # on the same per-element scale as the hidden layers' (Glorot compares hidden layers).
    grads = [r for r in d.rows if _finite(r["grad_std"]) and r["activation"] is not None]
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
    if std > 0 and abs(mean) > INPUT_CENTER_MAX * std:
        add("inputs_not_centred", None,
            f"input mean {mean:.3g} vs std {std:.3g}: |mean|/std = {abs(mean) / std:.2g} > "
            f"INPUT_CENTER_MAX={INPUT_CENTER_MAX:g}"
            + (" (all inputs >= 0: every weight gradient of a unit in the first layer has "
               "the same sign)" if d.input_stats["min"] >= 0 else ""))

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


# --------------------------------------------------------------------------------------------
# fixes
# --------------------------------------------------------------------------------------------
_BUILDER_NAMES = {"MLP": "mlp", "ConvNet": "convnet", "PreActResNet": "preact_resnet"}


def _activation_name(model: nn.Module) -> str | None:
    for _, m in activation_layers(model):
        return activation_info(m).name
    return None


def _init_scheme(act: str | None) -> str:
    if act is None:
        return "xavier_uniform"
    info = activation_info(act)
    if act in ("selu",):
        return "lecun_normal"
    if info is not None and info.dead is not None:
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


def _apply_fix(fix: str, model: nn.Module, x: Tensor, lr: float, steps: int, seed: int
               ) -> tuple[nn.Module, Tensor, float, str] | str:
    """``(model, x, lr, what was done)`` with ``fix`` applied (copies), or the reason it
    does not apply."""
    if fix == "init":
        from trainlab.init import init_model

        m = copy.deepcopy(model)
        scheme = _init_scheme(_activation_name(m))
        init_model(m, scheme, bias=0.0, generator=seed)
        return m, x, lr, f"re-initialized with {scheme!r}, biases 0"
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
        return (copy.deepcopy(model), x - x.mean(dim=0, keepdim=True), lr,
                "inputs centred (batch mean subtracted)")
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
) -> Diagnosis:
    """Diagnose ``model`` on ``batch`` (``x`` or ``(x, y)``) and return a :class:`Diagnosis`.

    Args:
        model: any ``nn.Module`` (left unchanged: the pass saves and restores ``.grad``, BN
            buffers and the RNG; ``steps`` and fixes work on copies).
        batch: ``x`` or ``(x, y)`` on the model's device.
        loss_fn: ``loss_fn(output, y)`` (or ``loss_fn(output)`` without ``y``); default
            cross-entropy for integer targets, MSE for float targets, and the mean square of
            the output without targets.
        steps: training steps (on a copy, with ``optimizer`` at ``lr``) before the diagnosis.
        try_fixes: ``True`` to re-run with every fix the findings name, or a list of fix
            names (keys of :data:`FIXES`).
        jacobian: also compute Jacobian singular values.
        mode: module modes during the pass: ``"as_is"`` (default, as the model would train),
            ``"train"`` or ``"eval"``.
        seed: seed for re-initialization fixes.

    Raises:
        ValueError: the batch does not fit the model (both shapes named); unknown fix names.
        TypeError: ``model`` is not a Module or ``batch`` is not a tensor or pair.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module. Received: {type(model).__name__}.")
    x, y = _split_batch(batch)
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0. Received: steps={steps!r}.")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be > 0. Received: lr={lr!r}.")
    if try_fixes not in (True, False):
        unknown = [f for f in try_fixes if f not in FIXES]
        if unknown:
            raise ValueError(f"Unknown fix(es) {unknown}; known: {', '.join(FIXES)}.")
    loss_fn = loss_fn or _default_loss(y)
    _forward_checked(model, x)
    work = copy.deepcopy(model) if steps else model
    d = _run(work, x, y, loss_fn, steps=steps, lr=lr, optimizer=optimizer,
             jacobian=jacobian, mode=mode)
    if try_fixes:
        wanted = list(dict.fromkeys(f for fd in d.findings for f in fd.fixes)) \
            if try_fixes is True else list(try_fixes)
        for fix in wanted:
            got = _apply_fix(fix, model, x, lr, steps, seed)
            if isinstance(got, str):
                d.fix_results.append(FixResult(fix, False, got))
                continue
            m2, x2, lr2, what = got
            after = _run(copy.deepcopy(m2) if steps else m2, x2, y, loss_fn, steps=steps,
                         lr=lr2, optimizer=optimizer, jacobian=jacobian, mode=mode)
            d.fix_results.append(FixResult(fix, True, what, after))
    return d
