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
                      one < ``VANISH_RATIO`` (or 0 at every hidden layer, not at the output
                      layer); or the input-output Jacobian's RMS singular value
                      < ``JACOBIAN_SV_MIN``
exploding_gradients   that ratio > ``EXPLODE_RATIO``; or the Jacobian's > ``JACOBIAN_SV_MAX``
saturation            a layer with saturated fraction > ``SATURATION_MAX``
dead_units            a layer with dead-unit fraction > ``DEAD_MAX``
symmetric_units       a hidden weight layer whose units can never become different: units
                      with equal incoming weights and bias, equal outgoing weights in the
                      layer that consumes them, equal values after the function between
                      the two and equal gradients; at most ``SYMMETRY_MAX_DISTINCT`` ×
                      units such classes (constant init of two consecutive layers)
inputs_not_centred    ``|mean(x)| > INPUT_CENTER_MAX · std(x)``
bn_mode               BatchNorm in eval mode while the model trains, or in eval mode with
                      running statistics never updated
non_finite            NaN/Inf in the loss, activations, gradients or weights (first layer)
====================  =================================================================

Symmetry needs the consumer: units with equal incoming weights get different gradients as
soon as their outgoing weights differ, and output units get different gradients through
their labels. So an output layer with equal rows (a zero-initialized head: ViT, timm, Fixup)
is no finding, and where the consumer cannot be determined (the next weight layer called
does not take this layer's output unit by unit) symmetry is not claimed; a note says so.

Activations written as functions (``x = torch.tanh(layer(x))``, ``F.relu``): when the model
has no activation module, the rows are the weight layers themselves: the std of their
outputs ``s`` replaces the activation std in the depth rules, ∂L/∂s gives the gradient
rules, the weight layers called before another one are the hidden ones, and the Jacobian
rule applies as always. What follows a layer is identified from the values where possible:
the next weight layer's input is compared with each elementwise activation the doctor knows
applied to this layer's output (``Tanh()``, ``ReLU()``, ``GELU()`` ...; the first that
matches on the batch is taken), and the saturation and dead-unit rules are applied to it.
Where nothing matches, those rules are not applied: :attr:`Diagnosis.not_applied` says which
rules, where and why, and ``healthy`` is then never ``True``.

The Jacobian rule reads the model's input-output Jacobian, computed in eval mode: it is left
out (with a note) for a model with BatchNorm in train mode (eval mode is then another
function) and when the output layer's weights are all zero (the Jacobian is 0 by design).

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
was flagged, nothing was left unexamined *and* every rule could be applied (``None``: nothing
flagged in what was seen; ``Diagnosis.not_applied`` lists the rules that could not be).
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

from trainlab.init import init_model
from trainlab.models.builders import build_model
from trainlab.nn.kinds import is_norm
from trainlab.nn.weight_norm import is_weight_normalized
from trainlab.optim import build_optimizer, check_lr
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
from trainlab.report.doctor_page import write_doctor_page

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
#: a layer is symmetric when its classes of interchangeable units (equal incoming and outgoing
#: weights, values and gradients) are at most this fraction of its units.
SYMMETRY_MAX_DISTINCT = 0.5
#: the input-output Jacobian's RMS singular value below this counts as vanishing gradients:
#: an input perturbation, and the gradient sent back to the input, scaled by < 1/1000.
JACOBIAN_SV_MIN = 1e-3
#: ... and above this as exploding (the tests' healthy nets without BatchNorm, at init:
#: 0.01 to 1.5; a 12-layer tanh net with N(0, 1) weights: 5e4).
JACOBIAN_SV_MAX = 1e3
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
    "JACOBIAN_SV_MIN": JACOBIAN_SV_MIN,
    "JACOBIAN_SV_MAX": JACOBIAN_SV_MAX,
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

    ``not_applied``: the rules that could not be applied, ``{rules: why}`` (the layers named
    in the reason): the saturation and dead-unit rules where no activation module is
    recognized and the function after a layer could not be identified; the gradients' depth
    ratio where no gradient reaches the hidden layers because the output layer is zero (a
    zero-initialized head) or the loss sends none. There is no verdict on what they check:
    ``healthy`` is then not ``True``.

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
    not_applied: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool | None:
        """``False`` when something was flagged; ``None`` when nothing was flagged but some
        parameters or modules were not examined (see ``coverage``) or some rules could not
        be applied (see ``not_applied``); ``True`` only when nothing was flagged, everything
        was examined and every rule applied."""
        if self.findings:
            return False
        if (self.coverage.get("params_not_examined") or self.coverage.get("modules_not_examined")
                or self.not_applied):
            return None
        return True

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def metrics(self) -> dict[str, float]:
        """Key numbers for before/after comparisons."""
        def vals(key: str) -> list[float]:
            return [r[key] for r in self.rows if isinstance(r.get(key), float)
                    and not math.isnan(r[key])]

        act = vals("act_std") or vals("out_std")  # no activation module: the layers' outputs
        grad = [r["grad_std"] for r in _main_path([r for r in self.rows if _hidden(r)
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
    def _columns(self) -> list[tuple[str, str]]:
        cols = list(self._COLUMNS)
        if any(_finite(r.get("out_std")) for r in self.rows):  # no activation module
            cols.insert(0, ("out std", "out_std"))
        return cols

    def table_rows(self) -> list[list[Any]]:
        cols = [key for _, key in self._columns()]
        return [[r["layer"], r.get("activation") or r.get("follows") or "-"]
                + [r.get(c, math.nan) for c in cols] for r in self.rows]

    HEADER = ("layer", "activation", "act std", "saturated", "dead", "grad std",
              "|gW|/|W|", "jac sv mean")
    _COLUMNS = (("act std", "act_std"), ("saturated", "saturated"), ("dead", "dead"),
                ("grad std", "grad_std"), ("|gW|/|W|", "gw_over_w"), ("jac sv mean", "jac_sv"))

    def table_header(self) -> list[str]:
        """The header of :meth:`table_rows`: :attr:`HEADER`, with an ``out std`` column (the
        std of the weight layers' outputs) when the model has no activation module."""
        return ["layer", "activation"] + [h for h, _ in self._columns()]

    @property
    def fix_texts(self) -> dict[str, str]:
        """What each named fix does (:data:`FIXES`), for the report pages."""
        return dict(FIXES)

    def to_text(self) -> str:
        lines = [_format_table(self.table_header(), self.table_rows())]
        lines.append(f"loss {self.loss:.4g}; inputs: mean {self.input_stats['mean']:.3g}, "
                     f"std {self.input_stats['std']:.3g}")
        io = self.context.get("input_output_jacobian_rms")
        if io is not None:
            lines.append(f"input-output Jacobian: RMS singular value {io:.3g}")
        lines += self._coverage_lines()
        lines += [f"note: {n}" for n in self.notes]
        if self.not_applied:
            lines.append("\nrules not applied (no verdict on what they check):")
            lines += [f"  - {rule}: {why}" for rule, why in self.not_applied.items()]
        if self.findings:
            lines.append(f"\n{len(self.findings)} finding(s):")
            for f in self.findings:
                lines.append(f"  - {f}")
                lines.append(f"      fixes: {', '.join(f.fixes)}")
        elif self.healthy is None:
            unseen = [why for why, where in (
                ("parts were not examined (see coverage)", self.coverage.get(
                    "params_not_examined") or self.coverage.get("modules_not_examined")),
                ("some rules could not be applied (see above)", self.not_applied)) if where]
            lines.append(f"\nNo problem found in what was examined, but {' and '.join(unseen)}"
                         ": no verdict on those.")
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


#: elements of a weight layer's output kept (a fixed random subsample) to identify the
#: function that follows it.
CHAIN_SAMPLE = 4096


def _candidate_activations() -> list[nn.Module]:
    """The elementwise activations tried on what follows a weight layer when the model has no
    activation module, in this order (the first that matches is taken): the common ones
    first, ``ReLU`` before ``ReLU6`` (equal below the cap) and ``Identity`` last (on tiny
    values ``tanh(s) == s`` in floating point: it is then still called tanh)."""
    return [nn.Tanh(), nn.Sigmoid(), nn.ReLU(), nn.LeakyReLU(), nn.LeakyReLU(0.1),
            nn.LeakyReLU(0.2), nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU(), nn.ELU(),
            nn.SELU(), nn.CELU(), nn.Softplus(), nn.Softsign(), nn.Mish(), nn.ReLU6(),
            nn.Hardtanh(), nn.Hardswish(), nn.Hardsigmoid(), nn.LogSigmoid(), nn.Identity()]


def _unit_dim(m: nn.Module) -> int | None:
    """The dim of a weight layer's output (and of its input) that indexes its units."""
    if isinstance(m, nn.Linear):
        return -1
    if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
        return 1
    return None


def _incoming(m: nn.Module) -> Tensor | None:
    """One row per output unit: its incoming weights and bias (``Linear``, and convolutions
    with ``groups=1``, whose units all see the same inputs); ``None`` for other layers."""
    if _unit_dim(m) is None or getattr(m, "groups", 1) != 1:
        return None
    w = m.weight.detach()
    rows = w.reshape(w.shape[0], -1)
    b = getattr(m, "bias", None)
    if isinstance(b, Tensor):
        rows = torch.cat([rows, b.detach().reshape(-1, 1).to(rows.dtype)], dim=1)
    return rows


def _outgoing(m: nn.Module) -> Tensor | None:
    """One row per *input* unit of a consumer: the weights that unit's value is multiplied
    by (``Linear`` columns, ``groups=1`` convolution input channels); ``None`` otherwise."""
    if _unit_dim(m) is None or getattr(m, "groups", 1) != 1:
        return None
    w = m.weight.detach()
    return w.transpose(0, 1).reshape(w.shape[1], -1)


def _first_equal(rows: Tensor) -> Tensor:
    """For each row, the index of the first row exactly equal to it."""
    _, inv = torch.unique(rows, dim=0, return_inverse=True)
    n = rows.shape[0]
    first = torch.full((int(inv.max()) + 1,), n, dtype=torch.long, device=rows.device)
    first = first.scatter_reduce(0, inv, torch.arange(n, device=rows.device), reduce="amin")
    return first[inv]


def _close(a: Tensor, b: Tensor, dim: int, rtol: float = 1e-4) -> Tensor:
    """Per slice along ``dim``: all elements of ``a`` within ``rtol`` of ``b`` (plus
    ``1e-6`` of the largest magnitude: equal values from different kernels may differ in
    the last bits)."""
    scale = float(b.abs().amax()) if b.numel() else 0.0
    return ((a - b).abs() <= rtol * b.abs() + 1e-6 * scale).all(dim=dim)


def _identify(s: Tensor, h: Tensor, full: Tensor, unit_dim: int) -> dict[str, Any]:
    """Which of :func:`_candidate_activations` maps the sampled values ``s`` of a weight
    layer's output onto ``h``, the same elements of the next weight layer's input ``full``;
    with the statistics of ``full`` under that activation's rules (device tensors)."""
    rtol = 1e-2 if s.dtype in (torch.float16, torch.bfloat16) else 1e-5
    with torch.no_grad():
        for cand in _candidate_activations():
            if not bool(_close(cand(s), h, 0, rtol)):
                continue
            info = activation_info(cand)
            f = full.detach()
            nan = f.new_full((), math.nan, dtype=torch.float32)
            sat = getattr(info, "saturated", None)
            dead = getattr(info, "dead", None)
            return {
                "follows": repr(cand), "info": info,
                "act_std": f.float().std() if f.numel() > 1 else nan,
                "saturated": nan if sat is None else sat(f).float().mean(),
                "dead": nan if dead is None or f.dim() < 2 else
                ActivationStats.dead_fractions(dead, [f], unit_dim)[0],
            }
    return {"why": "not one of the elementwise activations the doctor knows"}


class _Chain(Probe):
    """How the weight layers follow one another, seen from the next weight layer called.

    Records the order in which the weight layers are first called and, for each, the weight
    layer called next (its *successor*). Where the successor's input has the shape of the
    layer's output: with ``infer`` (the model has no activation module), which elementwise
    activation maps the output onto that input (:func:`_identify`, on a fixed subsample
    copied before any in-place op); for a layer with groups of equal incoming weights, which
    units' values are still equal to their group's first unit's there (the function between
    the two acts unit by unit), and after backward their weight gradients. Reads only.
    """

    default_layers = "weight"

    def __init__(self, infer: bool) -> None:
        super().__init__(hist_every=0)
        self.infer = infer

    def _n_raw(self) -> int:
        return 1

    def _setup_for(self, model: nn.Module) -> None:
        self.groups: dict[str, Tensor] = {}  # layer -> first unit with equal incoming weights
        for name, m in zip(self.layer_names, self.modules):
            rows = _incoming(m)
            if rows is not None and rows.shape[0] >= 2:
                first = _first_equal(rows)
                if bool((first != torch.arange(len(first), device=first.device)).any()):
                    self.groups[name] = first
        self._by_name = dict(zip(self.layer_names, self.modules))
        self.calls: dict[str, int] = {}  # first-call order
        self.successor: dict[str, str] = {}
        self.follow: dict[str, dict[str, Any]] = {}
        self.unitwise: dict[str, Tensor] = {}
        self.grads: dict[str, Tensor] = {}
        self._prev: tuple[str, Any] | None = None
        self._gen = torch.Generator().manual_seed(0)

    def _install(self) -> None:
        for name, m in zip(self.layer_names, self.modules):
            self._handles.append(m.register_forward_pre_hook(self._pre(name)))
            self._handles.append(m.register_forward_hook(self._post(name, m)))

    def _post(self, name: str, m: nn.Module):
        def hook(module: Any, args: Any, out: Any) -> None:
            if not self.recording:
                return
            self.calls[name] = self.calls.get(name, 0) + 1
            s = first_tensor(out)
            kept = None
            if s is not None and self.calls[name] == 1 and (self.infer or name in self.groups):
                idx = None
                if self.infer and s.numel():
                    idx = torch.randint(s.numel(), (min(s.numel(), CHAIN_SAMPLE),),
                                        generator=self._gen).to(s.device)
                sample = None if idx is None else s.detach().reshape(-1)[idx].clone()
                kept = (tuple(s.shape), idx, sample, _unit_dim(m))
            self._prev = (name, kept)

        return hook

    def _pre(self, name: str):
        def hook(module: Any, args: Any) -> None:
            if not self.recording or self._prev is None:
                return
            (prev, kept), self._prev = self._prev, None
            if prev in self.successor:
                return
            self.successor[prev] = name
            h = first_tensor(args)
            if kept is None or h is None:
                return
            shape, idx, sample, udim = kept
            if tuple(h.shape) != shape:
                self.follow[prev] = {"why": f"the input of {name}, the next weight layer called, "
                                     f"has shape {tuple(h.shape)}, not the output's {shape}"}
                return
            if self.infer and idx is not None and udim is not None:
                self.follow[prev] = _identify(sample, h.detach().reshape(-1)[idx], h, udim)
            first = self.groups.get(prev)
            if first is not None and udim is not None and h.shape[udim] == len(first):
                cols = h.detach().movedim(udim, -1).reshape(-1, len(first))
                self.unitwise[prev] = _close(cols, cols[:, first], 0)

        return hook

    def _on_after_backward(self) -> None:
        if not self.recording:
            return
        for name in self.groups:
            m = self._by_name[name]
            g = getattr(m.weight, "grad", None)
            if g is None:
                continue
            rows = g.detach().reshape(g.shape[0], -1)
            b = getattr(m, "bias", None)
            if isinstance(b, Tensor) and b.grad is not None:
                rows = torch.cat([rows, b.grad.detach().reshape(-1, 1).to(rows.dtype)], dim=1)
            self.grads[name] = rows.clone()

    def results(self) -> dict[str, dict[str, Any]]:
        """What follows each layer, on the host: ``follows`` (the activation's repr) and
        ``info``, ``act_std``, ``saturated``, ``dead``; or ``why`` it is not known."""
        out = {}
        for name, f in self.follow.items():
            out[name] = {k: float(v) if isinstance(v, Tensor) else v for k, v in f.items()}
        return out


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
        if not name or name in wl or name in taken or is_norm(m) or name not in outs:
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
    if weight_layers(model):  # (without any, GradientStats' note already says so)
        probes.append(_Chain(infer=not has_acts))
    loss, log, ok = _probed_pass(model, probes, x, y, loss_fn, mode, notes)
    cov = next((p for p in ok if isinstance(p, _Coverage)), None)
    chain = next((p for p in ok if isinstance(p, _Chain)), None)
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
    for r in rows:
        r["hidden"] = r["activation"] is not None
    if not has_acts:
        _functional_rows(model, rows, chain, notes)
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
    d.findings = _findings(model, d, losses, outs, params, chain=chain,
                           functional=not has_acts)
    timings["rules"] = time.perf_counter() - t
    return d


def _functional_rows(model: nn.Module, rows: list[dict[str, Any]], chain: _Chain | None,
                     notes: list[str]) -> None:
    """The rows of a model without activation modules (``x = torch.tanh(layer(x))``): the std
    of each weight layer's output ``s`` (``out_std``: ActivationStats watched the weight
    layers themselves), hidden = called before another weight layer (embeddings aside: a
    lookup has no pre-activation), and what follows each hidden layer where
    :func:`_identify` recognized it (``follows``, ``act_std``, ``saturated``, ``dead``;
    ``_why`` where not)."""
    follow = chain.results() if chain is not None else {}
    for k, r in enumerate(rows):
        r["out_std"] = r["_grad_row"].get("act_std", math.nan)
        r["hidden"] = not isinstance(model.get_submodule(r["layer"]), nn.Embedding) and (
            r["layer"] in chain.successor if chain is not None else k < len(rows) - 1)
        f = follow.get(r["layer"], {})
        if r["hidden"] and "follows" in f:
            r["follows"] = f"{f['follows']} (inferred)"
            r["act_std"], r["saturated"], r["dead"] = f["act_std"], f["saturated"], f["dead"]
            r["_info"], r["_inferred"] = f["info"], f["follows"]
        elif r["hidden"]:
            r["follows"] = "? (a function)"
            r["_why"] = f.get("why", "the probe that reads it did not run (see the notes)"
                              if chain is None else "its output was not kept")
    if not rows:
        return
    known = [r for r in rows if r.get("_inferred")]
    msg = ("no activation module recognized: the rows are the weight layers' outputs s "
           "(out std) and dL/ds")
    if known:
        names = list(dict.fromkeys(r["_inferred"] for r in known))
        msg += (f"; what follows {_names([r['layer'] for r in known])} was identified from the "
                f"values as {' / '.join(names)} (the next weight layer's input equals it "
                "applied to the layer's output, on the batch): act std, saturated and dead "
                "are of that function's output")
    notes.append(msg)


def _names(names: Sequence[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``."""
    names = list(names)
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def _probed_pass(model: nn.Module, probes: list[Any], x: Tensor, y: Tensor | None,
                 loss_fn: Callable, mode: str, notes: list[str]
                 ) -> tuple[Tensor | None, ProbeLog, list[Any]]:
    """One forward/backward pass with ``probes``; returns the loss, the records and the
    probes that ran. A probe that cannot attach or fails is left out, with a note; when the
    pass with all of them fails, each runs alone (the model's own error, without any probe,
    is raised)."""
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
    read = []
    for p in ok:
        try:
            log.extend(collect([p]))
            read.append(p)
        except Exception as e:  # noqa: BLE001
            notes.append(f"{type(p).__name__.lstrip('_')} records unreadable: {_why(e)}")
    return loss, log, read


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


def _hidden(r: dict[str, Any]) -> bool:
    """A hidden layer's row: followed by an activation (module or, without activation
    modules, a function before the next weight layer)."""
    return bool(r.get("hidden", r.get("activation") is not None))


def _findings(model: nn.Module, d: Diagnosis, losses: list[float],
              outs: dict[str, dict[str, Any]] | None = None,
              params: dict[str, dict[str, float]] | None = None, *,
              chain: _Chain | None = None, functional: bool = False) -> list[Finding]:
    """The rules (see the module docstring). Also fills ``d.not_applied`` and adds notes."""
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

    if not d.rows:
        d.not_applied["per-layer rules (activations, gradients, saturation, dead_units, "
                      "symmetric_units)"] = (
            "no weight layer (nn.Linear, nn.Conv*, nn.Bilinear, nn.Embedding) and no activation "
            "module recognized: there is nothing to read layer by layer")

    # Without activation modules the depth rules read the weight layers' outputs s.
    key, what = (("out_std", "std of the weight layers' outputs s (no activation module)")
                 if functional else ("act_std", "activation std"))

    def at(r: dict[str, Any]) -> str:
        return r["layer"] if functional else r["activation"]

    every_hidden = [r for r in d.rows if _hidden(r) and _finite(r.get(key))]
    hidden = _main_path(every_hidden)
    if len(hidden) >= 2:
        first, last = hidden[0], hidden[-1]
        ratio = last[key] / first[key] if first[key] > 0 else math.inf
        stds = ", ".join(f"{r[key]:.2g}" for r in hidden)
        if ratio < VANISH_RATIO:
            add("vanishing_activations", at(last),
                f"{what} falls from {first[key]:.3g} ({at(first)}) to {last[key]:.3g} "
                f"({at(last)}): ratio {ratio:.2g} < VANISH_RATIO={VANISH_RATIO:g}; per layer: "
                f"{stds}")
        elif ratio > EXPLODE_RATIO:
            add("exploding_activations", at(last),
                f"{what} grows from {first[key]:.3g} ({at(first)}) to {last[key]:.3g} "
                f"({at(last)}): ratio {ratio:.3g} > EXPLODE_RATIO={EXPLODE_RATIO:g}; per "
                f"layer: {stds}")
    if not any(f.kind == "vanishing_activations" for f in out):
        tiny = [r for r in every_hidden if r[key] < ACT_STD_MIN]
        if tiny:
            add("vanishing_activations", at(tiny[0]),
                f"{what} {tiny[0][key]:.3g} < ACT_STD_MIN={ACT_STD_MIN:g}")

    # Hidden layers only: the head's gradient (softmax − one-hot over a few outputs) is not
    # on the same per-element scale as the hidden layers' (Glorot compares hidden layers).
    grads = _main_path([r for r in d.rows if _finite(r["grad_std"]) and _hidden(r)])
    head = _head(model, chain)
    zero_head = head is not None and bool((model.get_submodule(head).weight == 0).all())
    if len(grads) >= 2:
        first, last = grads[0], grads[-1]
        head_grad = next((r["grad_std"] for r in d.rows if r["layer"] == head), math.nan)
        zeros = f"std of dL/ds is 0 at every hidden layer ({_names([r['layer'] for r in grads])})"
        if last["grad_std"] == 0 and not zero_head and _finite(head_grad) and head_grad > 0:
            add("vanishing_gradients", last["layer"],
                f"{zeros} but {head_grad:.3g} at the output layer {head}: no gradient "
                "reaches the hidden layers")
        elif last["grad_std"] == 0:
            why = (f"{head}'s weights are all zero (a zero-initialized head, as ViT, timm and "
                   "Fixup make it): no gradient reaches the layers below it before its first "
                   "step; diagnose(..., steps=1) to judge them" if zero_head else
                   "the loss sends no gradient back (0 at the output layer too)")
            d.not_applied["vanishing_gradients, exploding_gradients (depth ratio)"] = (
                f"{zeros}: {why}")
        else:
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

    _jacobian_rule(model, d, head, zero_head, add)

    def where(r: dict[str, Any]) -> tuple[str, str]:
        """(the finding's layer, how to say what was measured)"""
        inferred = r.get("_inferred")
        if not inferred:
            return r["activation"], ""
        return r["layer"], f" of what follows {r['layer']} ({inferred}, identified from the values)"

    for r in d.rows:
        if _finite(r["saturated"]) and r["saturated"] > SATURATION_MAX:
            info = r["_info"] if r.get("_inferred") else activation_info(
                model.get_submodule(r["activation"]))
            rule = getattr(info, "saturated", None)
            layer, of = where(r)
            add("saturation", layer,
                f"{r['saturated']:.0%} of outputs{of} saturated ({rule}) > "
                f"SATURATION_MAX={SATURATION_MAX:g}")
    for r in d.rows:
        if _finite(r["dead"]) and r["dead"] > DEAD_MAX:
            layer, of = where(r)
            add("dead_units", layer,
                f"{r['dead']:.0%} of units{of} output zero-derivative values for every "
                f"example of the batch > DEAD_MAX={DEAD_MAX:g}")
    unknown = [r for r in d.rows if functional and _hidden(r) and not r.get("_inferred")
               and r.get("source") != "module output"]
    if unknown:
        names = _names([r["layer"] for r in unknown])
        d.not_applied["saturation, dead_units"] = (
            f"no activation module recognized, and what follows {names} could not be "
            f"identified ({unknown[0]['layer']}: {unknown[0].get('_why', '')}): these rules "
            "need the function; use activation modules (nn.Tanh() ...) to have them applied")

    _symmetry_rule(model, d, chain, add)

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


def _head(model: nn.Module, chain: _Chain | None) -> str | None:
    """The output layer: the last weight layer called, embeddings aside (the last registered
    one when the call order is unknown); ``None`` without such layers."""
    wl = [n for n, m in weight_layers(model) if not isinstance(m, nn.Embedding)]
    called = [n for n in chain.calls if n in wl] if chain is not None else []
    if called:
        return called[-1]
    return wl[-1] if wl else None


def _jacobian_rule(model: nn.Module, d: Diagnosis, head: str | None, zero_head: bool,
                   add: Callable[[str, str | None, str], None]) -> None:
    """The input-output Jacobian's RMS singular value against ``JACOBIAN_SV_MIN/MAX``: the
    factor by which the whole network scales an input perturbation, and the gradient it
    sends back to the input (needs no activation module). Flagged only when it is out of range
    also with the output layer's own gain ``‖W‖_F/√fan_in`` divided out (a zero-initialized
    head after its first steps is small on purpose). Left out, with a note, where the
    eval-mode Jacobian is not the function that trains or is 0 by design."""
    io = d.context.get("input_output_jacobian_rms")
    if io is None or not math.isfinite(io):
        return
    bn = [n for n, m in model.named_modules() if isinstance(m, _BN) and m.training]
    if bn:
        d.notes.append(f"Jacobian rule not applied: {len(bn)} BatchNorm layer(s) in train mode "
                       f"({_names(bn)}); the Jacobian is computed in eval mode, with running "
                       "statistics, which is another function than the one that trains")
        return
    if zero_head:
        d.notes.append(f"Jacobian rule not applied: the output layer {head}'s weights are all "
                       "zero (a zero-initialized head), so the input-output Jacobian is 0 by "
                       "design until its first step")
        return
    # A small (just-moved zero-init) or large output layer scales the Jacobian by its own
    # gain ‖W‖_F/√fan_in: flagged only when what lies below it is out of range too.
    w = model.get_submodule(head).weight.detach() if head is not None else None
    gain = (float(torch.linalg.vector_norm(w.float())) / math.sqrt(w[0].numel())
            if w is not None and w.dim() >= 2 else 1.0)
    below = io / gain
    said = (f"input-output Jacobian: RMS singular value {io:.3g} ({below:.3g} with the output "
            f"layer {head}'s own gain {gain:.2g} divided out)")
    if io < JACOBIAN_SV_MIN and below < JACOBIAN_SV_MIN:
        add("vanishing_gradients", None,
            f"{said} < JACOBIAN_SV_MIN={JACOBIAN_SV_MIN:g}: the network scales an input "
            "perturbation, and the gradient it sends back to its input, by about that factor")
    elif io > JACOBIAN_SV_MAX and below > JACOBIAN_SV_MAX:
        add("exploding_gradients", None,
            f"{said} > JACOBIAN_SV_MAX={JACOBIAN_SV_MAX:g}: the network multiplies an input "
            "perturbation, and the gradient it sends back to its input, by about that factor")


def _symmetry_rule(model: nn.Module, d: Diagnosis, chain: _Chain | None,
                   add: Callable[[str, str | None, str], None]) -> None:
    """Units that can never become different (see the module docstring): equal incoming
    weights and bias, equal outgoing weights in the consumer (the next weight layer called,
    taking this layer's output unit by unit), equal values where the consumer reads them and
    equal weight gradients. An output layer (no consumer) is never symmetric: its units get
    different gradients through their labels."""
    if chain is None:
        return
    unjudged = []
    for name, first in chain.groups.items():
        m = model.get_submodule(name)
        units = len(first)
        ids = torch.arange(units, device=first.device)
        if int((first == ids).sum()) > SYMMETRY_MAX_DISTINCT * units:
            continue  # not enough equal incoming weights to matter
        nxt = chain.successor.get(name)
        if nxt is None:
            continue  # the output layer, or not called
        grads = chain.grads.get(name)
        consumer = model.get_submodule(nxt)
        out_rows = _outgoing(consumer)
        if not (chain.calls.get(name) == 1 and chain.calls.get(nxt) == 1
                and name in chain.unitwise and out_rows is not None
                and out_rows.shape[0] == units and _unit_dim(consumer) == _unit_dim(m)):
            if grads is None or bool(_close(grads, grads[first], 1).all()):
                unjudged.append(name)  # (gradients that already differ break it anyway)
            continue
        incoming = _incoming(m)
        cls = _first_equal(torch.cat([incoming, out_rows.to(incoming.dtype)], dim=1))
        same = chain.unitwise[name] & chain.unitwise[name][cls]
        if grads is not None:
            same &= _close(grads, grads[cls], 1)
        cls = torch.where(same, cls, ids)
        distinct = int((cls == ids).sum())
        if distinct <= SYMMETRY_MAX_DISTINCT * units:
            add("symmetric_units", name,
                f"{units} units but only {distinct} class(es) of interchangeable units: equal "
                f"incoming weights and bias, equal outgoing weights in {nxt} (the layer that "
                "consumes them), equal values where it reads them and equal gradients "
                f"(<= SYMMETRY_MAX_DISTINCT={SYMMETRY_MAX_DISTINCT:g} of the units): every "
                "update keeps them equal, whatever the data")
    if unjudged:
        d.notes.append(f"symmetry not judged at {_names(unjudged)}: units there share incoming "
                       "weights, but the layer that consumes them could not be determined (the "
                       "next weight layer called does not take this output unit by unit); such "
                       "units still become different where their outgoing weights differ")


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
    """Whether ``model`` normalizes: a norm layer, or a weight-normalized layer (WN, CWN,
    NormProp)."""
    return any(is_norm(m) or is_weight_normalized(m) for m in model.modules())


# --------------------------------------------------------------------------------------------
# fixes
# --------------------------------------------------------------------------------------------
def _init_fix(model: nn.Module, scheme: str, what: str, **kw: Any
              ) -> tuple[nn.Module, str] | str:
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

    new = build_model({"name": name, **{**spec, **changes, "init": None}})
    # keep the weights of every layer that still exists with the same shape
    own = new.state_dict()
    old = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
    new.load_state_dict({**own, **old})
    new.train(model.training)
    return new.to(next(model.parameters()).device)


def _apply_fix(fix: str, model: nn.Module, x: Tensor, lr: float, steps: int, seed: int,
               batch_dim: int = 0, inferred: Any = None
               ) -> tuple[nn.Module, Tensor, float, str] | str:
    """``(model, x, lr, what was done)`` with ``fix`` applied (copies), or the reason it
    does not apply. ``inferred``: the ActivationInfo identified from the values in a model
    without activation modules (the init fix's scheme then follows it)."""
    if fix == "init":
        m = copy.deepcopy(model)
        info = _activation(m) or inferred
        scheme = _init_scheme(info)
        with warnings.catch_warnings(record=True) as caught:  # said in the fix's note
            warnings.simplefilter("always")
            init_model(m, scheme, bias=0.0, generator=seed)
        left = "".join(f" ({w.message})" for w in caught if issubclass(w.category, UserWarning))
        how = f" (for the {info.name} identified from the values)" if (
            info is not None and info is inferred) else ""
        return m, x, lr, f"re-initialized with {scheme!r}{how}, biases 0{left}"
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
        inferred = next((r["_info"] for r in d.rows if r.get("_info") is not None), None)
        for fix in wanted:
            got = _apply_fix(fix, model, x, lr, steps, seed, bd, inferred)
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
