"""Initializations that look at the model as a whole, or at a batch of data.

Five schemes, registered in the ``"init"`` family and applied by
:func:`trainlab.init.init_model` on any ``nn.Module``::

    init_model(model, "lsuv", data=x)                          # Mishkin & Matas 2016
    init_model(model, "data_dependent", data=x)                # Kraehenbuehl et al. 2016
    init_model(model, "wn_data", data=x)                       # Salimans & Kingma 2016, §3
    init_model(model, "fixup", branches=["layer*.*"])          # Zhang, Dauphin & Ma 2019
    init_model(model, "random_walk", nonlinearity="tanh")      # Sussillo & Abbott 2014

All but ``random_walk`` are *model-level* (``meta["applies_to"] == "model"``): their factory
takes the model, not one tensor. :func:`lsuv_`, :func:`data_dependent_`, :func:`wn_data_`
and :func:`fixup_` can also be called directly; they return an :class:`InitReport` (one row
per layer: iterations, variances, scales), which ``init_model`` does not (it returns the
model).
``random_walk`` is a per-tensor scheme like He or Xavier (:func:`random_walk_`).

What a forward pass on ``data`` sees: the model runs in ``mode`` (default ``"train"``, as
in training: BatchNorm normalizes with batch statistics); BatchNorm running statistics,
``.grad`` and the global RNG are restored afterwards
(:func:`trainlab.probes.base.preserved_state`), so only the weights change. A layer's
output is read by a forward hook; layers are visited in the order of their first call in a
forward pass on ``data`` ("from the input"). A module called several times per pass (shared
weights) is measured on its first call. Weights used by functional code rather than through
a module call (attention's packed ``in_proj_weight``, a recurrent layer's gate matrices) are
not seen by hooks: each scheme names them in its report's notes and in one warning.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from trainlab.init.apply import _as_generator as conv
from trainlab.init.apply import _is_norm, init_model
from trainlab.init.schemes import INITS, compute_fans
from trainlab.nn.activations import Maxout
from trainlab.nn.blocks import PreActBlock
from trainlab.nn.weight_norm import is_weight_normalized, weight_norm_init_
from trainlab.probes.base import first_tensor, preserved_state

__all__ = [
    "MIN_EXAMPLES",
    "InitReport",
    "data_dependent_",
    "fixup_",
    "fixup_scale",
    "lsuv_",
    "random_walk_",
    "random_walk_gain",
    "wn_data_",
]

#: the fewest examples a data-dependent scheme accepts: a variance needs two values.
MIN_EXAMPLES = 2

_FEED_FORWARD = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                 nn.ConvTranspose2d, nn.ConvTranspose3d)


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
@dataclass
class InitReport:
    """What a model-level initialization did: ``rows`` (one dict per layer, in the order the
    scheme visited them), ``notes`` (what it could not handle, and why) and ``scheme``.

    ``report["block1.conv1"]`` is that layer's row; ``str(report)`` is a table.
    """

    scheme: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, layer: str) -> dict[str, Any]:
        for r in self.rows:
            if r["layer"] == layer:
                return r
        raise KeyError(f"no row for layer {layer!r}; layers: {[r['layer'] for r in self.rows]}")

    def layers(self) -> list[str]:
        return [r["layer"] for r in self.rows]

    def __str__(self) -> str:
        if not self.rows:
            return f"{self.scheme}: no layer initialized" + "".join(
                f"\n  note: {n}" for n in self.notes)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))

        def cell(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.4g}"
            return str(v)

        table = [keys] + [[cell(r.get(k, "")) for k in keys] for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(keys))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
        return "\n".join([f"{self.scheme}:", *lines, *(f"note: {n}" for n in self.notes)])


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
def _input(data: Any, scheme: str) -> Tensor:
    """The input tensor of ``data`` (a tensor, or the first item of an ``(x, y)`` pair)."""
    if data is None:
        raise ValueError(
            f"init {scheme!r} is data-dependent: it needs a batch of inputs. Pass "
            f"data=x (a tensor of inputs, or an (x, y) pair) to init_model. Received: data=None."
        )
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], Tensor):
        data = data[0]
    if not isinstance(data, Tensor):
        raise TypeError(
            f"init {scheme!r}: data must be a tensor of inputs or an (x, y) pair of tensors. "
            f"Received: data of type {type(data).__name__}."
        )
    n = data.shape[0] if data.dim() else 0
    if n < MIN_EXAMPLES:
        raise ValueError(
            f"init {scheme!r} estimates variances from data and needs at least "
            f"{MIN_EXAMPLES} examples (along dim 0) to estimate one. Received: data of shape "
            f"{tuple(data.shape)} ({n} example(s))."
        )
    return data.detach()


def _as_generator(generator: Any) -> torch.Generator | None:
    return conv(generator)


def _check_mode(mode: str) -> None:
    if mode not in ("train", "eval", "as_is"):
        raise ValueError(f"mode must be 'train', 'eval' or 'as_is'. Received: mode={mode!r}.")


def _check_positive(name: str, value: Any, integer: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0 \
        and math.isfinite(value)
    if integer:
        ok = ok and isinstance(value, numbers.Integral)
    if not ok:
        what = "an integer >= 1" if integer else "a finite number > 0"
        raise ValueError(f"{name} must be {what}. Received: {name}={value!r}.")


def _device_input(model: nn.Module, x: Tensor) -> Tensor:
    dev = next((p.device for p in model.parameters()), x.device)
    return x.to(dev)


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the watched layer has run."""


def _first_tensor(x: Any) -> Tensor | None:
    return first_tensor(x)


def _output_of(model: nn.Module, module: nn.Module, x: Tensor) -> Tensor:
    """``module``'s output (its first call) in a forward pass of ``model`` on ``x``; the pass
    stops there (the layers above do not run: LSUV's cost is then ~ half of L full passes)."""
    got: list[Tensor] = []

    def hook(mod: nn.Module, args: Any, out: Any) -> None:
        t = _first_tensor(out)
        if t is not None:
            got.append(t.detach())
            raise _Stop

    h = module.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        h.remove()
    if not got:
        raise RuntimeError("layer not reached")  # callers check the call order first
    return got[0]


def _call_order(model: nn.Module, x: Tensor, candidates: dict[str, nn.Module]
                ) -> tuple[list[str], list[str]]:
    """Names of ``candidates`` in the order of their first call on ``x``; those never called."""
    order: list[str] = []
    handles = []
    for name, m in candidates.items():
        def hook(mod: nn.Module, args: Any, out: Any, name: str = name) -> None:
            if name not in order:
                order.append(name)
        handles.append(m.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return order, [n for n in candidates if n not in order]


def _parent(model: nn.Module, name: str) -> nn.Module | None:
    if "." not in name:
        return model if name else None
    return model.get_submodule(name.rsplit(".", 1)[0])


def _set(module: nn.Module, pname: str, value: Tensor) -> None:
    """Write ``value`` into ``module.<pname>``, through a parametrization's right_inverse when
    the tensor is parametrized (weight norm), in place otherwise."""
    with torch.no_grad():
        if parametrize.is_parametrized(module, pname):
            setattr(module, pname, value)
        else:
            getattr(module, pname).copy_(value)


def _scale(module: nn.Module, pname: str, factor: float | Tensor) -> None:
    with torch.no_grad():
        _set(module, pname, getattr(module, pname) * factor)


def _pre_init(model: nn.Module, scheme: Any, generator: torch.Generator | None) -> None:
    """init_model with ``scheme`` and zero biases; Fixup's scalars, if the model has them,
    are left as they are (without init_model's note on free parameters)."""

    scalars = [n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1].startswith(
        "fixup_")]
    init_model(model, scheme, bias=0.0, generator=generator,
               overrides={n: None for n in scalars} or None)


def _unhandled(model: nn.Module, handled: set[str]) -> list[str]:
    """Recurrent, attention and embedding modules a scheme does not rescale from data."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.RNNBase, nn.RNNCellBase)):
            out.append(f"{name} ({type(m).__name__}: gate matrices, not a feed-forward layer)")
        elif isinstance(m, nn.MultiheadAttention) and name not in handled:
            out.append(f"{name} (MultiheadAttention)")
        elif isinstance(m, nn.Embedding):
            out.append(f"{name} (Embedding: a lookup table)")
    return out


# --------------------------------------------------------------------------------------------
# LSUV
# --------------------------------------------------------------------------------------------
def _lsuv_layers(model: nn.Module) -> dict[str, tuple[nn.Module, nn.Module, str]]:
    """``{name: (watched module, owner of the scaled weight, weight name)}``.

    A Linear/Conv is watched itself; a maxout layer's ``linear`` is watched through the
    Maxout module (the output the next layer sees, the max of the pieces: scaling the pieces
    scales the max); ``nn.MultiheadAttention`` is watched as one layer whose output scales
    with ``out_proj.weight`` (its q/k/v projections keep the orthonormal init)."""

    out: dict[str, tuple[nn.Module, nn.Module, str]] = {}
    attn = {n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            out[name] = (m, m.out_proj, "weight")
        elif isinstance(m, _FEED_FORWARD):
            parent_name = name.rsplit(".", 1)[0] if "." in name else ""
            if parent_name in attn and name.endswith("out_proj"):
                continue  # scaled with its attention module
            parent = _parent(model, name)
            if isinstance(parent, Maxout) and parent.linear is m:
                out[parent_name] = (parent, m, "weight")
            else:
                out[name] = (m, m, "weight")
    return out


def lsuv_(
    model: nn.Module,
    data: Any,
    *,
    tol: float = 0.1,
    max_iter: int = 10,
    orthonormal: bool = True,
    mode: str = "train",
    generator: torch.Generator | int | None = None,
) -> InitReport:
    """Layer-sequential unit-variance initialization (Mishkin & Matas, "All you need is a good
    init", ICLR 2016, Algorithm 1).

    1. Pre-initialize every weight with an orthonormal matrix (Saxe et al. 2014; biases 0)
       unless ``orthonormal=False`` (the current weights are kept).
    2. For each Linear / Conv / maxout / attention layer ``l``, from the input to the output:
       while ``|Var(B_l) − 1| ≥ tol`` and fewer than ``max_iter`` rescalings were made,
       ``W_l ← W_l / √Var(B_l)``, where ``B_l`` is the layer's output on the batch and
       ``Var`` the variance over **all** its elements (batch, channels and positions, as the
       paper). Normalization and activation layers are not rescaled (they have no weight of
       this kind); a maxout layer is measured at its output (the max of the pieces).

    With zero biases a layer's output is linear in ``W_l``, so one rescaling usually reaches
    the tolerance; the loop matters for layers with biases (``orthonormal=False``) and for
    batch-dependent layers (BatchNorm before the layer in train mode).

    Args:
        model: any ``nn.Module``.
        data: a batch of inputs ``x`` (or ``(x, y)``), at least :data:`MIN_EXAMPLES` examples.
        tol: tolerance on the variance (paper: 0.1).
        max_iter: largest number of rescalings per layer (paper: ``T_max = 10``).
        orthonormal: do step 1.
        mode: module modes during the passes (``"train"``, ``"eval"``, ``"as_is"``).
        generator: seed or ``torch.Generator`` for the orthonormal draws.

    Returns:
        :class:`InitReport` with per layer ``iterations`` (rescalings made), ``variance``
        (of the output after the last one), ``scale`` (product of the factors applied) and
        ``converged``.

    Warns:
        UserWarning: a layer whose variance is not within ``tol`` after ``max_iter``
            rescalings (naming the layer and its variance); layers that are never called
            as modules (their weights keep the pre-initialization).
    """
    x = _input(data, "lsuv")
    _check_positive("tol", tol)
    _check_positive("max_iter", max_iter, integer=True)
    _check_mode(mode)

    report = InitReport("lsuv")
    gen = _as_generator(generator)
    if orthonormal:
        _pre_init(model, "orthogonal", gen)
    layers = _lsuv_layers(model)
    x = _device_input(model, x)
    with preserved_state(model, mode), torch.no_grad():
        order, missed = _call_order(model, x, {n: w for n, (w, _, _) in layers.items()})
        for name in order:
            watched, owner, pname = layers[name]

            def var(watched: nn.Module = watched) -> float:
                out = _output_of(model, watched, x)
                return float(out.double().var(correction=0))

            v = var()
            iters, total = 0, 1.0
            while math.isfinite(v) and v > 0 and abs(v - 1.0) >= tol and iters < max_iter:
                f = 1.0 / math.sqrt(v)
                _scale(owner, pname, f)
                total *= f
                iters += 1
                v = var()
            ok = math.isfinite(v) and abs(v - 1.0) < tol
            report.rows.append({"layer": name, "type": type(watched).__name__,
                                "iterations": iters, "variance": v, "scale": total,
                                "converged": ok})
            if not ok:
                why = ("its output is constant on this batch (variance 0): no rescaling can "
                       "reach 1" if v == 0 else
                       "its output is not finite" if not math.isfinite(v) else
                       f"after max_iter={max_iter} rescalings")
                warnings.warn(
                    f"lsuv: layer {name!r} did not reach variance 1 ± tol={tol:g}: "
                    f"variance {v:.4g} ({why}). Raise max_iter, or check the layers before "
                    "it (a saturated or dead activation).",
                    UserWarning, stacklevel=3,
                )
    unreached = [f"{n} ({type(layers[n][0]).__name__}: never called as a module on data)"
                 for n in missed] + _unhandled(model, set(layers))
    if unreached:
        msg = ("lsuv left these layers with their pre-initialization (not rescaled from "
               f"data): {', '.join(unreached)}")
        report.notes.append(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
    return report


# --------------------------------------------------------------------------------------------
# Kraehenbuehl et al. 2016
# --------------------------------------------------------------------------------------------
def _channels_last(out: Tensor, module: nn.Module) -> Tensor:
    """``(values, channels)``: a Linear's channels are its last dim, a Conv's dim 1."""
    if isinstance(module, nn.Linear):
        return out.reshape(-1, out.shape[-1])
    return out.movedim(1, -1).reshape(-1, out.shape[1])


def _weight_layers_called(model: nn.Module, x: Tensor) -> tuple[list[str], list[str]]:
    cands = {n: m for n, m in model.named_modules() if isinstance(m, _FEED_FORWARD)}
    attn = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    cands = {n: m for n, m in cands.items() if not any(n == f"{a}.out_proj" for a in attn)}
    return _call_order(model, x, cands)


def data_dependent_(
    model: nn.Module,
    data: Any,
    *,
    beta: float = 0.0,
    between_layer: bool = True,
    iterations: int = 10,
    mode: str = "train",
    generator: torch.Generator | int | None = None,
) -> InitReport:
    """Data-dependent initialization of Kraehenbuehl, Doersch, Donahue & Darrell,
    "Data-dependent Initializations of Convolutional Neural Networks", ICLR 2016.

    **Within-layer** (their Algorithm 1), layer by layer from the input: draw
    ``W_k ~ N(0, 1)``, run the batch up to layer ``k`` and, per output channel ``i``
    (over the batch and all positions), with mean ``μ_i`` and std ``σ_i`` of its output,

        W_k,i ← W_k,i / σ_i,      b_k,i ← β − μ_i / σ_i,

    so that every channel's pre-activation has mean ``β`` and unit variance on the data.

    **Between-layer** (their Algorithm 2, as the authors' code ``magic_init`` implements it):
    make every layer change at the same rate. With a random Gaussian vector ``η ~ N(0, I)``
    back-propagated from the output (no labels needed), the rate of layer ``k`` is
    ``C_k = √(mean(∂(η·y)/∂W_k)²) / √(mean W_k²)``; with ``C̄`` their geometric mean and
    ``s_out`` the mean std of the output channels, the target is ``C* = C̄ · s_out^(1/K)``
    (K layers) and each layer is scaled, weights and biases, by ``√(C_k / C*)`` (in a
    ReLU net scaling ``W_k`` by ``s`` changes ``C_k`` by ``1/s²`` and the others by ``s``);
    a bias is also multiplied by the change of its layer's mean absolute input, so that it
    keeps its share of the pre-activation. Repeated up to ``iterations`` times, until every
    ``C_k`` is within 1 % of ``C*``.

    Not implemented: the PCA and k-means variants of the random draw (Gaussian only).

    Args:
        model: any ``nn.Module``.
        data: a batch of inputs (or ``(x, y)``), at least :data:`MIN_EXAMPLES` examples.
        beta: the target mean of every pre-activation (the authors' command line uses 0.1).
        between_layer: do the between-layer step.
        iterations: most between-layer iterations.
        mode: module modes during the passes.
        generator: seed or ``torch.Generator`` (the Gaussian draws and ``η``).

    Returns:
        :class:`InitReport`: per layer ``std_min``/``std_max`` (of the channels before the
        within-layer step), ``scale`` (the between-layer factor) and ``rate`` (its final
        ``C_k``); the notes give the iterations and the rates' spread.
    """
    x = _input(data, "data_dependent")
    _check_positive("iterations", iterations, integer=True)
    _check_mode(mode)
    if not isinstance(beta, numbers.Real) or not math.isfinite(beta):
        raise ValueError(f"beta must be a finite number. Received: beta={beta!r}.")

    gen = _as_generator(generator)
    report = InitReport("data_dependent")
    x = _device_input(model, x)
    with preserved_state(model, mode):
        with torch.no_grad():
            order, missed = _weight_layers_called(model, x)
            mods = dict(model.named_modules())
            for name in order:
                m = mods[name]
                w = m.weight
                draw = torch.randn(w.shape, generator=gen, dtype=torch.float32,
                                   device=gen.device if gen is not None else w.device)
                _set(m, "weight", draw.to(device=w.device, dtype=w.dtype))
                has_bias = getattr(m, "bias", None) is not None
                if has_bias:
                    m.bias.zero_()
                out = _channels_last(_output_of(model, m, x).double(), m)
                if out.shape[0] < 2:
                    raise ValueError(
                        f"init 'data_dependent' needs at least 2 values per channel of layer "
                        f"{name!r} to estimate its variance; the batch gives {out.shape[0]}. "
                        f"Give at least {MIN_EXAMPLES} examples."
                    )
                mu, sd = out.mean(0), out.std(0, correction=0)
                dead = sd <= 0
                sd_safe = torch.where(dead, torch.ones_like(sd), sd)
                shape = (-1,) + (1,) * (w.dim() - 1)
                if isinstance(m, nn.modules.conv._ConvTransposeNd):
                    # weight (C_in, C_out/groups, *k): output channel j is column j (per group)
                    g = m.groups
                    f = sd_safe.reshape(g, -1)  # (groups, C_out/groups)
                    factor = (1.0 / f).reshape(g, 1, -1, *([1] * (w.dim() - 2)))
                    cin = w.shape[0] // g
                    wv = m.weight.reshape(g, cin, *w.shape[1:])
                    _set(m, "weight", (wv * factor.to(w.dtype)).reshape(w.shape))
                else:
                    _scale(m, "weight", (1.0 / sd_safe).reshape(shape).to(w.dtype))
                if has_bias:
                    m.bias.copy_((beta - mu / sd_safe).to(m.bias.dtype))
                row = {"layer": name, "type": type(m).__name__,
                       "std_min": float(sd.min()), "std_max": float(sd.max())}
                if int(dead.sum()):
                    report.notes.append(f"{name}: {int(dead.sum())} channel(s) constant on the "
                                        "batch (std 0) were left unscaled")
                if not has_bias:
                    report.notes.append(f"{name} has no bias: its channel means stay "
                                        "as the data gives them (not set to beta)")
                report.rows.append(row)
        if between_layer and order:
            _between_layer(model, x, [(n, mods[n]) for n in order], iterations, gen, report)
    unreached = [f"{n} ({type(mods[n]).__name__}: never called as a module on data)"
                 for n in missed] + _unhandled(model, set())
    if unreached:
        msg = ("data_dependent left these layers as they were (not initialized from data): "
               f"{', '.join(unreached)}")
        report.notes.append(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
    return report


def _between_layer(model: nn.Module, x: Tensor, layers: list[tuple[str, nn.Module]],
                   iterations: int, gen: torch.Generator | None, report: InitReport) -> None:
    names = [n for n, _ in layers]

    def input_scales() -> dict[str, float]:
        got: dict[str, float] = {}
        hs = []
        for n, m in layers:
            def pre(mod: nn.Module, args: Any, n: str = n) -> None:
                t = _first_tensor(args)
                if n not in got and t is not None:
                    got[n] = float(t.detach().abs().double().mean())
            hs.append(m.register_forward_pre_hook(pre))
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in hs:
                h.remove()
        return got

    def rates() -> tuple[dict[str, float], float]:
        weights = [m.weight for _, m in layers]
        out = _first_tensor(model(x))
        eta = torch.randn(out.shape, generator=gen, dtype=torch.float32,
                          device=gen.device if gen is not None else out.device)
        eta = eta.to(device=out.device, dtype=out.dtype)
        grads = torch.autograd.grad((out * eta).sum(), weights, allow_unused=True)
        r = {}
        for (n, m), g in zip(layers, grads):
            gw = 0.0 if g is None else float(g.double().pow(2).mean())
            ww = float(m.weight.detach().double().pow(2).mean())
            r[n] = math.sqrt(gw / ww) if ww > 0 else 0.0
        flat = out.detach().double().reshape(out.shape[0], -1)
        s_out = float(flat.std(0, correction=0).mean())
        return r, s_out

    bottom = input_scales()
    done = 0
    spread = math.nan
    r: dict[str, float] = {}
    for _ in range(iterations):
        r, s_out = rates()
        good = {n: v for n, v in r.items() if v > 0 and math.isfinite(v)}
        if len(good) < 1 or not (s_out > 0 and math.isfinite(s_out)):
            report.notes.append("between-layer step stopped: no usable gradient rate")
            break
        logs = [math.log(v) for v in good.values()]
        target = math.exp(sum(logs) / len(logs)) * s_out ** (1.0 / len(good))
        spread = max(abs(v - math.log(target)) for v in logs)
        if spread < 0.01:
            break
        factors = {n: math.sqrt(v / target) for n, v in good.items()}

        # one pass, layer by layer: each pre-hook sees the input as the layers below have
        # already changed it, rescales its bias by that input's change, then scales itself.
        hs = []
        seen: set[str] = set()
        for n, m in layers:
            def pre(mod: nn.Module, args: Any, n: str = n, seen: set[str] = seen,
                    factors: dict[str, float] = factors) -> None:
                if n in seen or n not in factors:
                    return
                seen.add(n)
                t = _first_tensor(args)
                cur = float(t.detach().abs().double().mean()) if t is not None else 0.0
                with torch.no_grad():
                    if getattr(mod, "bias", None) is not None and bottom.get(n, 0) > 0:
                        mod.bias.mul_(cur / bottom[n])
                    bottom[n] = cur
                    _scale(mod, "weight", factors[n])
                    if getattr(mod, "bias", None) is not None:
                        mod.bias.mul_(factors[n])
                for row in report.rows:
                    if row["layer"] == n:
                        row["scale"] = row.get("scale", 1.0) * factors[n]
            hs.append(m.register_forward_pre_hook(pre))
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in hs:
                h.remove()
        done += 1
    for row in report.rows:
        row.setdefault("scale", 1.0)
        row["rate"] = r.get(row["layer"], math.nan)
    report.notes.append(f"between-layer: {done} iteration(s); max |ln C_k − ln C*| = "
                        f"{spread:.3g} at the last check ({len(names)} layers)")


# --------------------------------------------------------------------------------------------
# Fixup
# --------------------------------------------------------------------------------------------
def fixup_scale(num_branches: int, branch_layers: int) -> float:
    """Fixup's factor ``L^(−1/(2m−2))`` for ``L`` residual branches of ``m`` layers each
    (Zhang, Dauphin & Ma 2019, rule 2); 1 for ``m = 1`` (a branch with one layer, zero)."""
    _check_positive("num_branches", num_branches, integer=True)
    _check_positive("branch_layers", branch_layers, integer=True)
    if branch_layers == 1:
        return 1.0
    return float(num_branches) ** (-1.0 / (2 * branch_layers - 2))


class _FixupInputBias:
    """Forward pre-hook: ``x + block.<name>`` (a scalar bias before a branch layer)."""

    def __init__(self, block: nn.Module, name: str) -> None:
        self.block, self.name = block, name

    def __call__(self, module: nn.Module, args: tuple) -> tuple | None:
        if not args or not isinstance(args[0], Tensor):
            return None
        return (args[0] + getattr(self.block, self.name), *args[1:])


class _FixupOutput:
    """Forward hook: ``y · block.<scale> + block.<bias>`` (``scale`` may be None)."""

    def __init__(self, block: nn.Module, bias: str, scale: str | None = None) -> None:
        self.block, self.bias, self.scale = block, bias, scale

    def __call__(self, module: nn.Module, args: tuple, out: Any) -> Any:
        if not isinstance(out, Tensor):
            return None
        if self.scale is not None:
            out = out * getattr(self.block, self.scale)
        return out + getattr(self.block, self.bias)


def _match(names: Sequence[str], pattern: Any) -> list[str]:
    pats = [pattern] if isinstance(pattern, str) else list(pattern)
    for p in pats:
        if not isinstance(p, str):
            raise TypeError(f"branches must be module names or fnmatch patterns (strings). "
                            f"Received: {p!r}.")
    return [n for n in names if n and any(fnmatch.fnmatchcase(n, p) for p in pats)]


def _default_branches(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, PreActBlock)]


def fixup_(
    model: nn.Module,
    data: Any = None,
    *,
    branches: Any = None,
    shortcut: Sequence[str] = ("shortcut", "downsample", "skip", "proj"),
    head: Any = "auto",
    scheme: Any = "he_normal",
    biases: bool = True,
    generator: torch.Generator | int | None = None,
) -> InitReport:
    """Fixup initialization for residual networks without normalization (Zhang, Dauphin & Ma,
    "Fixup Initialization: Residual Learning Without Normalization", ICLR 2019, §3).

    With ``L`` residual branches of ``m`` weight layers each:

    1. the classification layer (``head``) and the **last** layer of every branch start at 0;
    2. every other layer gets a standard init (``scheme``, He by default), and the weight
       layers inside the branches are then scaled by ``L^(−1/(2m−2))``;
    3. (``biases=True``) scalar parameters are added to each branch, registered on the branch
       module: a bias before each of its weight layers (``fixup_bias_in{j}``, 0), a bias after
       each but the last (``fixup_bias_out{j}``, 0: the bias before the activation), and at
       its end a multiplier ``fixup_scale`` (1) and a bias ``fixup_bias_out`` (0). They act
       through forward hooks on the branch's layers, so the block's own ``forward`` is
       unchanged. (In the paper's basic block: bias1a, bias1b, bias2a, scale, bias2b.)

    A branch's weight layers are those inside the branch module except those under a child
    named in ``shortcut`` (the projection of the skip path), taken in registration order, or
    in the order of their first call when ``data`` is given. ``m`` is counted per branch.

    Args:
        model: any ``nn.Module``.
        data: optional batch (only to order the branch layers by their calls).
        branches: names or fnmatch patterns of the residual branch modules (e.g.
            ``"layer*.*"`` for torchvision's ResNet, whose blocks hold branch and shortcut).
            Default: every :class:`trainlab.models.builders.PreActBlock` (``preact_resnet``).
        shortcut: child names that hold the skip path inside a branch module.
        head: name of the classification layer to zero; ``"auto"``: the last ``nn.Linear``
            outside the branches; ``None``: leave it.
        scheme: the standard init of step 2.
        biases: add the scalar biases and multipliers.
        generator: seed or ``torch.Generator`` for ``scheme``.

    Returns:
        :class:`InitReport`: per branch layer its ``role`` (``"scaled"`` or ``"zero"``),
        ``L``, ``m`` and ``factor``; the head's row has role ``"head (zero)"``.

    Raises:
        ValueError: no branch found (naming the patterns and the model's modules), a branch
            without a weight layer, an unknown head.

    Warns:
        UserWarning: normalization layers inside a branch (Fixup replaces normalization).
    """
    if not isinstance(biases, bool):
        raise TypeError(f"biases must be True or False. Received: biases={biases!r}.")
    names = [n for n, _ in model.named_modules()]
    mods = dict(model.named_modules())
    if branches is None:
        found = _default_branches(model)
        if not found:
            blocks = sorted({type(m).__name__ for m in model.modules()})
            raise ValueError(
                "fixup needs the residual branches: pass branches= with the names (or fnmatch "
                "patterns) of the modules that hold them, e.g. branches='layer*.*' for a "
                "torchvision ResNet. Found no trainlab PreActBlock to use by default; the model "
                f"contains: {', '.join(blocks)}."
            )
    else:
        found = _match(names, branches)
        # a pattern may match a branch and modules inside it: keep the outermost
        found = [n for n in found if not any(n.startswith(o + ".") for o in found if o != n)]
        if not found:
            tops = [n for n in names if n and "." not in n]
            raise ValueError(
                f"fixup: branches={branches!r} matches no module. Top-level modules: "
                f"{', '.join(tops)}; nested names look like 'layer1.0'."
            )

    x = None if data is None else _device_input(model, _input(data, "fixup"))
    plan: list[tuple[str, list[str]]] = []
    normed: list[tuple[str, str]] = []
    for b in found:
        block = mods[b]
        layer_names = []
        for n, m in block.named_modules():
            if not n or not isinstance(m, _FEED_FORWARD):
                continue
            if n.split(".")[0] in shortcut:
                continue
            layer_names.append(f"{b}.{n}")
        if not layer_names:
            raise ValueError(
                f"fixup: branch {b!r} ({type(block).__name__}) holds no Linear/Conv layer "
                f"outside its shortcut ({', '.join(shortcut)}); name the modules that hold a "
                "residual branch."
            )
        normed += [(b, f"{b}.{n}") for n, m in block.named_modules() if n and _is_norm(m)
                   and not isinstance(m, nn.Identity)]
        plan.append((b, layer_names))
    if normed:
        where = ", ".join(repr(b) for b in dict.fromkeys(b for b, _ in normed))
        warnings.warn(
            f"fixup: branches {where} hold normalization layers "
            f"({', '.join(n for _, n in normed[:3])}, ...): Fixup is meant to replace "
            "normalization; its scaling assumes none.", UserWarning, stacklevel=3,
        )
    if x is not None:
        every = {n: mods[n] for _, ls in plan for n in ls}
        with preserved_state(model, "train"), torch.no_grad():
            order, _ = _call_order(model, x, every)
        rank = {n: i for i, n in enumerate(order)}
        plan = [(b, sorted(ls, key=lambda n: rank.get(n, len(rank)))) for b, ls in plan]

    in_branch = {n for _, ls in plan for n in ls}
    if head == "auto":
        lin = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)
               and n not in in_branch and not any(n.startswith(b + ".") for b, _ in plan)]
        head_name = lin[-1] if lin else None
    elif head is None:
        head_name = None
    else:
        if head not in mods or not isinstance(mods[head], _FEED_FORWARD):
            layers = [n for n, m in model.named_modules() if isinstance(m, _FEED_FORWARD)]
            raise ValueError(f"fixup: head={head!r} is not a Linear/Conv layer of the model. "
                             f"Layers: {', '.join(layers)}.")
        head_name = head

    gen = _as_generator(generator)
    report = InitReport("fixup")
    _pre_init(model, scheme, gen)
    L = len(plan)
    with torch.no_grad():
        for b, ls in plan:
            m_layers = len(ls)
            factor = fixup_scale(L, m_layers)
            for j, n in enumerate(ls):
                layer = mods[n]
                last = j == m_layers - 1
                if last:
                    _set(layer, "weight", torch.zeros_like(layer.weight))
                else:
                    _scale(layer, "weight", factor)
                if getattr(layer, "bias", None) is not None:
                    layer.bias.zero_()
                report.rows.append({"layer": n, "branch": b, "role": "zero" if last else
                                    "scaled", "L": L, "m": m_layers,
                                    "factor": 0.0 if last else factor})
            if biases:
                _add_fixup_scalars(mods[b], [mods[n] for n in ls])
        if head_name is not None:
            h = mods[head_name]
            _set(h, "weight", torch.zeros_like(h.weight))
            if getattr(h, "bias", None) is not None:
                h.bias.zero_()
            report.rows.append({"layer": head_name, "branch": "", "role": "head (zero)",
                                "L": L, "m": 0, "factor": 0.0})
    return report


def _add_fixup_scalars(block: nn.Module, layers: list[nn.Module]) -> None:
    """Register the scalar biases and the multiplier on ``block`` and their hooks on its
    layers; a second Fixup on the same block resets them instead of adding more."""
    for h in getattr(block, "_fixup_handles", []):
        h.remove()
    handles = []
    ref = layers[0].weight

    def param(name: str, value: float) -> None:
        t = torch.full((1,), value, dtype=ref.dtype, device=ref.device)
        if isinstance(getattr(block, name, None), nn.Parameter):
            getattr(block, name).data.copy_(t)
        else:
            block.register_parameter(name, nn.Parameter(t))

    for j, layer in enumerate(layers, start=1):
        last = j == len(layers)
        param(f"fixup_bias_in{j}", 0.0)
        handles.append(layer.register_forward_pre_hook(_FixupInputBias(block,
                                                                       f"fixup_bias_in{j}")))
        if last:
            param("fixup_scale", 1.0)
            param("fixup_bias_out", 0.0)
            handles.append(layer.register_forward_hook(
                _FixupOutput(block, "fixup_bias_out", "fixup_scale")))
        else:
            param(f"fixup_bias_out{j}", 0.0)
            handles.append(layer.register_forward_hook(_FixupOutput(block,
                                                                    f"fixup_bias_out{j}")))
    block._fixup_handles = handles


# --------------------------------------------------------------------------------------------
# random walk (Sussillo & Abbott 2014)
# --------------------------------------------------------------------------------------------
_RW_NONLINEARITIES = ("relu", "tanh", "linear")


def random_walk_gain(nonlinearity: str, fan_in: int) -> float:
    """The scale ``g`` of Sussillo & Abbott, "Random Walk Initialization for Training Very
    Deep Feedforward Networks" (2014), for layers of width ``N = fan_in``:

    - linear: ``g = exp(1/(2N))``;
    - ReLU: ``g = √2 · exp(1.2 / (max(N, 6) − 2.4))``;
    - tanh: no closed form in the paper (its experiments find 1.1–1.3 good); ``g = 1.13``,
      the value TensorFlow's implementation of the paper uses.

    The correction makes ``ln |δ|`` of the back-propagated error an unbiased random walk
    across depth: ``⟨ln z⟩ = −ln g²`` per layer."""
    if nonlinearity not in _RW_NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {_RW_NONLINEARITIES}. "
                         f"Received: nonlinearity={nonlinearity!r}.")
    _check_positive("fan_in", fan_in, integer=True)
    if nonlinearity == "linear":
        return math.exp(1.0 / (2.0 * fan_in))
    if nonlinearity == "relu":
        return math.sqrt(2.0) * math.exp(1.2 / (max(fan_in, 6) - 2.4))
    return 1.13


def random_walk_(
    tensor: Tensor,
    nonlinearity: str = "relu",
    g: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random-walk initialization (Sussillo & Abbott 2014): ``W ~ N(0, g²/N)``, ``N =
    fan_in``, with ``g`` from :func:`random_walk_gain` (or given). Also known as: TensorFlow's
    (unexported) ``_random_walk`` initializer."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"random_walk_ needs a tensor. Received: {type(tensor).__name__}.")
    if tensor.dim() < 2:
        raise ValueError("random_walk_ needs a weight with at least 2 dimensions (out, in, "
                         f"*kernel). Received: a tensor of shape {tuple(tensor.shape)}.")
    fan_in, _ = compute_fans(tensor)
    if g is None:
        g = random_walk_gain(nonlinearity, int(fan_in))
    else:
        if nonlinearity not in _RW_NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {_RW_NONLINEARITIES}. "
                             f"Received: nonlinearity={nonlinearity!r}.")
        _check_positive("g", g)
    if tensor.numel() == 0:
        return tensor
    with torch.no_grad():
        return torch.nn.init.normal_(tensor, 0.0, g / math.sqrt(fan_in), generator=generator)


# --------------------------------------------------------------------------------------------
# weight normalization's data-dependent init
# --------------------------------------------------------------------------------------------
def wn_data_(
    model: nn.Module,
    data: Any,
    *,
    init_scale: float = 1.0,
    eps: float = 1e-8,
    mode: str = "train",
    generator: torch.Generator | int | None = None,
) -> InitReport:
    """Data-dependent initialization of weight normalization (Salimans & Kingma 2016, §3).

    One forward pass of the batch, layer by layer in forward order: each weight-normalized
    layer (``norm="wn"``, ``"cwn"``, ``"wn_mobn"``; :func:`trainlab.nn.weight_norm_`) first
    computes ``t = v·x/‖v‖`` (``g = 1``, ``b = 0``); then, per output unit with mean
    ``μ[t]`` and standard deviation ``σ[t]`` over the batch (and positions),

        g ← s/σ[t],      b ← −μ[t]·s/σ[t]      (s = ``init_scale``, 1 in the paper)

    so that its pre-activation ``g·t + b`` has mean 0 and variance ``s²`` on that batch, and
    the layers above see the initialized output (:func:`trainlab.nn.weight_norm_init_`).
    The directions ``v`` are kept as built (the output does not depend on their scale), so
    nothing is drawn: ``generator`` is accepted for the model-level interface only.
    NormProp layers are data-independent and left alone.

    Args:
        model: a model with weight-normalized layers.
        data: a batch of inputs (or ``(x, y)``), at least :data:`MIN_EXAMPLES` examples.
        init_scale: ``s``, the standard deviation each pre-activation gets.
        eps: added to ``σ²`` before the square root.
        mode: module modes during the pass (``"train"``: BatchNorm statistics of the batch,
            running statistics restored afterwards).

    Returns:
        :class:`InitReport`: per layer ``mean`` and ``std`` of ``t`` before the init
        (averaged over units), and ``g_mean``, the mean of the lengths set.
    """
    x = _input(data, "wn_data")
    _check_positive("init_scale", init_scale)
    _check_positive("eps", eps)
    _check_mode(mode)
    _as_generator(generator)  # a malformed generator is still an error
    x = _device_input(model, x)
    report = InitReport("wn_data")
    with preserved_state(model, mode):
        stats = weight_norm_init_(model, x, init_scale=float(init_scale), eps=float(eps))
    layers = dict(model.named_modules())
    for name, (mu, sigma) in stats.items():
        g = layers[name].weight_g
        report.rows.append({"layer": name, "mean": mu, "std": sigma,
                            "g_mean": float(g.detach().mean())})
    skipped = [n for n, m in model.named_modules()
               if is_weight_normalized(m) and n not in stats]
    if skipped:
        report.notes.append(f"left alone (NormProp, or not called in the pass): "
                            f"{', '.join(skipped)}")
    return report


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
def _model_meta(data: bool, variance: str) -> dict[str, Any]:
    return {"data_dependent": data, "applies_to": "model", "random": True,
            "variance": variance, "needs_fans": False}


INITS.add("lsuv", lsuv_,
          description="orthonormal, then each layer rescaled until Var(output on a batch) "
          "= 1 ± tol (layer by layer from the input)",
          reference="Mishkin & Matas 2016, All you need is a good init", aliases=("lsuv_init",),
          meta=_model_meta(True, "1/Var(output) per layer, from data"))
INITS.add("data_dependent", data_dependent_,
          description="Gaussian, then per channel mean β and unit variance on a batch, then "
          "layers scaled to change at the same rate",
          reference="Kraehenbuehl, Doersch, Donahue & Darrell 2016",
          aliases=("kraehenbuehl", "krahenbuhl", "magic_init"),
          meta=_model_meta(True, "per channel 1/Var(output), from data"))
INITS.add("fixup", fixup_,
          description="residual nets without norm: branch last layers and head 0, other "
          "branch layers ×L^(-1/(2m-2)), scalar biases and multipliers",
          reference="Zhang, Dauphin & Ma 2019, Fixup Initialization",
          meta=_model_meta(False, "He·L^(-1/(m-1)) in branches; 0 for last layers"))
INITS.add("random_walk", random_walk_,
          description="N(0, g²/fan_in), g = √2·exp(1.2/(max(N,6)−2.4)) (ReLU), 1.13 (tanh), "
          "exp(1/(2N)) (linear)",
          reference="Sussillo & Abbott 2014, Random Walk Initialization",
          meta={"data_dependent": False, "random": True, "variance": "g²/fan_in",
                "needs_fans": True})
INITS.add("wn_data", wn_data_,
          description="weight norm's data init: per unit g = 1/σ[t], b = -μ[t]/σ[t] on a batch, "
          "so every WN pre-activation has mean 0, variance 1 (needs weight-normalized "
          "layers, e.g. norm wn)",
          reference="Salimans & Kingma 2016, Weight Normalization, §3",
          aliases=("weight_norm_data", "wn_init", "wn_data_init"),
          meta={**_model_meta(True, "1/Var(pre-activation) per unit, from data"),
                "needs": "weight_norm"})
