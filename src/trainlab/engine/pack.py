"""Vectorized packs: ``M`` models of one structure trained as one.

A :class:`Pack` holds the parameters and buffers of ``M`` models that have the same
structure (same module tree, same parameter and buffer names and shapes) stacked along a new
leading *member* dimension, ``(M, *shape)``. One forward pass runs every member on its own
batch, ``(M, B, ...) -> (M, B, out)``; the loss is the sum of the members' mean losses, so one
backward pass gives each member exactly its own gradient (``∂(Σ_m L_m)/∂θ_m = ∂L_m/∂θ_m``:
members share no computation). :class:`PackOptimizer` then updates every member with one
kernel per parameter tensor, each member with its own learning rate, momentum, weight decay
(``(M, 1, ..., 1)`` tensors), and :class:`PackTrainer` draws each member's batches from its
own generator, in the order ``Trainer(model, seed=s)`` would.

**Kernels: batched matmuls for MLPs, ``torch.func.vmap`` for the rest.** Two forms run
the members at once:

- *the fast path* (sequential models made of ``Linear``, ``Flatten``, dropout, batch and
  layer norm over features and elementwise activations: every ``mlp`` of the builders except
  with ``gn`` or maxout): activations are ``(M, B, F)`` tensors, each ``Linear`` is one
  ``torch.baddbmm`` over the members, and batch norm is one ``F.batch_norm`` over ``M * C``
  channels (the members' statistics and running buffers side by side);
- *vmap* (every other model: convnets, where vmap's rule turns a convolution into one
  grouped convolution over ``M`` groups, ``preact_resnet``, group norm, maxout ...):
  ``vmap(functional_call(template, stacked), randomness="different")``.

Measured on the shared 2-core CPU this was written on (one thread, so noisy; the benchmark
``benchmarks/sweep_speed.py`` gives the numbers to quote): one ``Linear(100, 100)`` on
``(M, 128, 100)`` ran 1.1 ms (``baddbmm``) against 3.3 ms (``vmap(F.linear)``) at ``M = 3``
and 11.6 ms against 24 ms at ``M = 32`` (forward), so the fast path is the MLP default; a
grouped ``conv1d`` standing in for the linear layers was 3x slower than ``baddbmm``, and
``matmul``, ``einsum`` and a loop of ``mm`` were within the noise of it. A whole training step
of 32 members of the 5 x 100 MLP, where the matmuls dominate, was 287 ms (fast path) against
302 ms (vmap). What a pack saves over ``M`` Trainers is the per-model overhead: one Python
step, one optimizer kernel per tensor and one host sync per window for all members. A pack of
one member uses neither form: plain ``functional_call`` on views of the stacked tensors, the
model's own kernels, so it costs what the plain Trainer costs. ``pack.use_plan = False``
forces vmap (both forms are tested against the Trainer).

**BatchNorm and the other norms.** Buffers are stacked too; under vmap each member's
``running_mean``/``running_var``/``num_batches_tracked`` are its own slice, updated in place
in training mode and used in eval mode, exactly as the member alone would. Layer, group,
instance norm and weight norm have per-member affine parameters and no cross-member
statistics, so they reduce to the member alone by construction (tested for ``bn``, ``ln``,
``gn``).

**Divergence.** At each sync point (every ``log_every`` and ``eval_every`` steps and at the
end, as the Trainer) the window's per-member losses and the largest ``|w|`` of every stacked
tensor per member are read in one host sync. A member with a non-finite value is *replayed
alone* from the snapshot taken at the previous sync point (its parameters, buffers, optimizer
state and batch generator) with forward and gradient hooks on its modules, as the Trainer
does, which names the step and the first module whose output or gradient is non-finite. The
member is then *frozen*: its parameters and buffers are reset to the snapshot (the last
finite state) and kept there after every later step, its History gets ``status="diverged"``
and ``divergence``, and :attr:`PackTrainer.divergences` lists ``(step, member, module)``.
The other members go on, unchanged.

**Probes.** ``PackTrainer(probes=[...])`` runs the Trainer's
:class:`~trainlab.probes.ActivationStats`, :class:`~trainlab.probes.GradientStats`,
:class:`~trainlab.probes.WeightStats` and :class:`~trainlab.probes.UpdateRatio` (names or
instances, :data:`PACK_PROBES`; their ``layers``, ``every`` and ``hist_every`` settings, no
``probe_data``) inside the pack: each member's ``History.probe_records`` and ``histograms``
get the rows the probe gives on the member alone, in the same format and order (tested
against ``Trainer(member, probes=...)``: equal within float tolerance, the same percentile
subsample, the same histogram counts but for a value at a bin edge). The probe's hooks
cannot run on the stacked tensors, so at a step its schedule logs the pack hands it
``(M, ...)`` tensors instead: on the fast path ``Pack._run_plan`` keeps each watched step's
input and output and registers a tensor hook on the output for ``∂L/∂s``; under vmap and in
a pack of one, forward hooks on the template's modules do the same with the physical tensor
behind vmap's batched one (every member along one axis;
``torch._C._functorch.get_unwrapped``), so convnets and the other vmap models are probed
too. Each statistic is one reduction over the member axis (sum, sum of squares, min, max),
the percentiles and saturated fraction use the probe's own fixed subsample (a copy of its
generator, drawn in the probe's order, so every member's subsample is the one it gets
alone); the probe's own ``_finish`` names the records (layers, quantities, their order) and
every member's values are finished at once with its formulas. The values stay on the device
until the sync point's one host read. On the fast path the watched layers must be modules it
runs as one step (any activation, ``Linear``, norm: the default layers), else a
``ValueError`` says so. Cost (``benchmarks/probe_overhead.py --pack 32``, one thread of a
loaded 2-core CPU): ActivationStats and GradientStats at every step made a step of 32
members of ``mlp(40, [100] * 5, 10)`` 1.5x slower (1.26x and 1.22x each), about 1.8 ms per
member against 10.5 ms for the same probes on one member in the Trainer (2.15x); the
reductions, four passes over every watched tensor, and the percentile sort are most of it.
``probes=True`` records instead, at every sync point, the weight statistics (``w_mean``,
``w_std``, ``w_norm``, ``w_min``, ``w_max`` per weight layer) and each layer's gradient norm
(``grad_norm``). For other probes (Jacobian, landscape ...), :meth:`Pack.unstack` a member
and run them on it.

**Equality with the sequential Trainer.** With the members built as
``seed_everything(s); build_model(spec)`` and trained with ``seeds=[s, ...]``, each member's
initial weights and batch order are those of ``Trainer(model, seed=s).fit(...)``, and
:meth:`Pack.unstack` returns plain modules equal to the Trainer's within float tolerance
(the batched matmul sums in another order; tested). Dropout masks are drawn independently
per member from the global generator, so with dropout a member is a correct run of its own
but not bit-for-bit the Trainer's.

Example::

    >>> from trainlab.train import train_pack
    >>> res = train_pack({"name": "mlp", "in_features": 40, "widths": [100] * 5,
    ...                   "out_features": 10},
    ...                  members=[{"seed": s, "lr": lr} for s in range(4) for lr in (0.1, 0.03)],
    ...                  data=ds, steps=1000, optimizer="sgd")
    >>> res.histories[0].last("test_acc"); model_0 = res.models[0]
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from trainlab.engine.history import Divergence, History
from trainlab.engine.loop import (
    Cadence,
    advance_bar,
    check_count,
    eval_split,
    evaluate_in_batches,
    fit_data,
    history_row,
    layer_of,
    locate,
    progress_bar,
    window_divergence,
)
from trainlab.engine.trainer import Trainer, _probe_objects
from trainlab.nn import build_model
from trainlab.nn.activations import activation_info
from trainlab.optim import build_optimizer, build_schedule
from trainlab.probes.activations import ActivationStats
from trainlab.probes.base import Probe, Schedule, first_tensor
from trainlab.probes.gradients import GradientStats
from trainlab.probes.weights import UpdateRatio, WeightStats
from trainlab.utils import resolve_device, seed_everything

__all__ = [
    "PACK_PROBES",
    "Pack",
    "MemberDivergedWarning",
    "PackDivergence",
    "PackOptimizer",
    "PackResult",
    "PackTrainer",
    "pack_probes",
    "probe_problem",
    "probe_settings",
    "structure_key",
    "train_pack",
    "unpackable_probes",
]


class MemberDivergedWarning(RuntimeWarning):
    """A pack member hit a non-finite value and was frozen while the others go on (its
    History says ``diverged``). A category of its own, so that callers that expect
    divergence (a study measuring a blow-up) can silence it without matching its text."""


# -- structure -------------------------------------------------------------------------------
def structure_key(model: nn.Module) -> tuple:
    """What two models must share to be packed: the module types by name with their
    settings (``extra_repr``) and every parameter and buffer name, shape and dtype. Equal
    keys mean stackable models."""
    # extra_repr holds the settings a module runs with that are not tensors (WN's mode
    # "wn" or "cwn", a leaky slope, a dropout rate): the pack runs every member with the
    # first member's modules, so members whose settings differ must not share a pack
    mods = tuple((n, type(m).__qualname__, m.extra_repr()) for n, m in model.named_modules())
    ps = tuple((n, tuple(p.shape), str(p.dtype)) for n, p in model.named_parameters())
    bs = tuple((n, tuple(b.shape), str(b.dtype)) for n, b in model.named_buffers())
    return mods, ps, bs


def _member_view(t: Tensor, ndim: int) -> Tensor:
    """``t`` of shape ``(M,)`` as ``(M, 1, ..., 1)`` to broadcast against a stacked tensor."""
    return t.view(-1, *([1] * (ndim - 1)))


class _PackedLinear(torch.autograd.Function):
    """Every member's ``Linear`` in one batched matmul: ``y_m = x_m W_m^T + b_m``,
    ``(M, B, in) @ (M, in, out) [+ (M, 1, out)]``. Written out (not left to ``baddbmm``'s own
    backward) so that the weight gradient is computed in the weight's layout,
    ``dW_m = dY_m^T X_m`` (``(M, out, in)``, as ``F.linear`` computes it for one member),
    instead of ``(X_m^T dY_m)^T`` which autograd then copies into a contiguous gradient every
    step. The backward uses differentiable ops, so double backward works."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        wt = w.transpose(1, 2)
        return torch.bmm(x, wt) if b is None else torch.baddbmm(b.unsqueeze(1), x, wt)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        gx = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        gb = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def packed_linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``(M, B, in)`` inputs through ``M`` stacked ``Linear`` s: weights ``(M, out, in)``,
    biases ``(M, out)`` (see :class:`_PackedLinear`)."""
    return _PackedLinear.apply(x, w, b)


def _plan_of(model: nn.Module) -> tuple[list[tuple[Any, ...]] | None, list[str]]:
    """``(steps, module names)`` of the fast path of ``model`` (see :meth:`Pack._make_plan`;
    parameter and buffer indices in ``named_parameters`` / ``named_buffers`` order), or
    ``(None, [])``."""
    leaves: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, mod: nn.Module) -> bool:
        if isinstance(mod, nn.Sequential):
            return all(walk(f"{prefix}{n}.", c) for n, c in mod.named_children())
        leaves.append((prefix.rstrip("."), mod))
        return True

    if not isinstance(model, nn.Sequential) or not walk("", model):
        return None, []
    plan: list[tuple[Any, ...]] = []
    names: list[str] = []  # the module of each step (what the probes call the layer)
    pidx = {n: i for i, (n, _) in enumerate(model.named_parameters())}
    bidx = {n: i for i, (n, _) in enumerate(model.named_buffers())}
    for name, mod in leaves:
        pre = f"{name}." if name else ""
        own_p = [n for n, _ in mod.named_parameters(recurse=True)]
        if type(mod) is nn.Linear:
            plan.append(("linear", pidx[pre + "weight"],
                         pidx.get(pre + "bias") if mod.bias is not None else None))
        elif type(mod) is nn.Flatten and mod.start_dim == 1 and mod.end_dim == -1:
            plan.append(("flatten",))
        elif type(mod) is nn.Identity:
            continue
        elif type(mod) is nn.Dropout:
            plan.append(("dropout", mod.p))
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm) and \
                type(mod).__name__ in ("BatchNorm", "BatchNorm1d") and mod.momentum is not None:
            track = mod.track_running_stats
            plan.append(("bn", mod.eps, mod.momentum,
                         pidx.get(pre + "weight") if mod.affine else None,
                         pidx.get(pre + "bias") if mod.affine else None,
                         bidx[pre + "running_mean"] if track else None,
                         bidx[pre + "running_var"] if track else None,
                         bidx[pre + "num_batches_tracked"] if track else None))
        elif type(mod).__name__ == "LayerNorm" and getattr(mod, "num_features", None) \
                and hasattr(mod, "affine"):  # trainlab's LayerNorm on (N, C)
            plan.append(("ln", mod.num_features, mod.eps,
                         pidx.get(pre + "weight") if mod.affine else None,
                         pidx.get(pre + "bias") if mod.affine else None))
        elif not own_p and not list(mod.buffers()) and activation_info(mod) is not None \
                and not activation_info(mod).replaces_linear \
                and not activation_info(mod).stochastic:
            plan.append(("act", mod))
        else:
            return None, []
        names.append(name)
    return plan, names


class Pack(nn.Module):
    """``M`` models of one structure, their parameters and buffers stacked as ``(M, ...)``.

    Args:
        models: the members, all of one :func:`structure_key`. They are copied: the pack
            does not share storage with them.

    ``pack(x)`` maps ``x`` of shape ``(M, B, ...)`` (each member its own batch) to
    ``(M, B, ...)``; ``pack(x, shared=True)`` runs every member on the same ``(B, ...)``;
    ``pack(x, capture=...)`` also hands the watched modules' inputs, outputs and output
    gradients to a :class:`PackTrainer`'s probes (see the module docstring).
    :meth:`unstack` gives the members back as plain modules.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise ValueError(
                "Pack needs a non-empty sequence of nn.Module members. Received: "
                f"{[type(m).__name__ for m in models]!r}."
            )
        key = structure_key(models[0])
        for i, m in enumerate(models[1:], start=1):
            if structure_key(m) != key:
                raise ValueError(
                    f"member {i} does not have the structure of member 0 (module types, "
                    "parameter and buffer names, shapes and dtypes must all match to be "
                    "packed); train it in another pack or on its own."
                )
        self.num_members = len(models)
        self.param_names = [n for n, _ in models[0].named_parameters()]
        self.buffer_names = [n for n, _ in models[0].named_buffers()]
        with torch.no_grad():
            self.stacked = nn.ParameterList(
                nn.Parameter(torch.stack([dict(m.named_parameters())[n].detach() for m in models]),
                             requires_grad=dict(models[0].named_parameters())[n].requires_grad)
                for n in self.param_names
            )
            for i, n in enumerate(self.buffer_names):
                self.register_buffer(
                    f"_buf{i}", torch.stack([dict(m.named_buffers())[n].detach() for m in models])
                )
        # The structure only, on the meta device (no storage): functional_call swaps the
        # stacked slices in at each call. Kept out of the module tree, so .to() and
        # state_dict() see the stacked tensors alone.
        template = copy.deepcopy(models[0]).to("meta")
        template.requires_grad_(False)
        self._template = [template]
        self._plan_names: list[str] = []
        self._plan = self._make_plan()
        #: run sequential MLPs with hand-written batched matmuls (see the module docstring);
        #: False forces vmap (kept to measure and test one against the other)
        self.use_plan = True

    @classmethod
    def from_specs(cls, model_spec: Any, members: Sequence[Mapping[str, Any]]) -> Pack:
        """A pack of one model per member, each built as ``seed_everything(seed);
        build_model(spec)`` with the member's ``seed`` and its ``init`` / ``model``
        overrides (see :func:`build_members`)."""
        return cls(build_members(model_spec, members))

    # -- tensors ----------------------------------------------------------------------------
    @property
    def buffers_stacked(self) -> list[Tensor]:
        return [getattr(self, f"_buf{i}") for i in range(len(self.buffer_names))]

    def _params(self) -> list[Tensor]:
        """The stacked parameters in order (read from the ParameterList's dict: indexing it
        costs a string conversion per element, which showed in the per-step profile)."""
        return list(self.stacked._parameters.values())  # type: ignore[arg-type]

    def _tensors(self) -> dict[str, Tensor]:
        out = dict(zip(self.param_names, self._params()))
        out.update(zip(self.buffer_names, self.buffers_stacked))
        return out

    def named_stacked(self) -> list[tuple[str, Tensor]]:
        """``(name, stacked parameter)`` in the members' ``named_parameters`` order."""
        return list(zip(self.param_names, self.stacked))

    # -- forward ----------------------------------------------------------------------------
    def _call(self, tensors: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.template, tensors, (x,), tie_weights=False, strict=False)

    def forward(self, x: Tensor, shared: bool = False, capture: _Capture | None = None) -> Tensor:
        if self.runs_plan:
            return self._run_plan({}, x, shared, capture)  # reads the stacked tensors itself
        tensors = self._tensors()
        handles = self._hook_capture(capture) if capture is not None else []
        try:
            if self.num_members == 1:  # no vmap: a pack of one costs what the model costs
                one = {n: t[0] for n, t in tensors.items()}
                return self._call(one, x if shared else x[0]).unsqueeze(0)
            fn = vmap(self._call, in_dims=(0, None if shared else 0), randomness="different")
            return fn(tensors, x)
        finally:
            for h in handles:
                h.remove()

    @property
    def runs_plan(self) -> bool:
        """Whether a forward pass takes the fast path (batched matmuls, no vmap)."""
        return self.num_members > 1 and self._plan is not None and self.use_plan

    def _hook_capture(self, cap: _Capture) -> list[Any]:
        """Forward hooks on the template's watched modules that hand their inputs, outputs
        and output gradients to ``cap`` as ``(M, ...)`` tensors (vmap and the pack of one;
        removed after the pass)."""
        mods = dict(self.template.named_modules())
        m = self.num_members
        handles = []
        for name in sorted(cap.want[0] | cap.want[1] | cap.want_grad):
            mod = mods[name]
            if name in cap.want[0]:
                def pre(module: Any, args: Any, name: str = name) -> None:
                    x = first_tensor(args)
                    if x is not None:
                        phys, to_m, _ = _physical(x, m)
                        cap.input(name, to_m(phys.detach()), getattr(module, "inplace", False))
                handles.append(mod.register_forward_pre_hook(pre))

            if name in cap.want[1] or name in cap.want_grad:
                def post(module: Any, args: Any, out: Any, name: str = name) -> None:
                    y = first_tensor(out)
                    if y is not None:
                        cap.output(name, *_physical(y, m))
                handles.append(mod.register_forward_hook(post))
        return handles

    # -- the fast path of sequential MLPs ---------------------------------------------------
    def _make_plan(self) -> list[tuple[Any, ...]] | None:
        """Steps of a sequential model made only of ``Linear``, ``Flatten``, dropout,
        ``Identity``, batch and layer norm over features and elementwise activations, run
        on ``(M, B, F)`` tensors without vmap; ``None`` for any other model (vmap). Sets
        ``_plan_names``, the module of each step."""
        plan, self._plan_names = _plan_of(self.template)
        return plan

    def _run_plan(self, tensors: dict[str, Tensor], x: Tensor, shared: bool,
                  capture: _Capture | None = None) -> Tensor:
        import torch.nn.functional as F

        m = self.num_members
        ps, bs = self._params(), self.buffers_stacked
        cap = capture
        # A batch shared by every member stays (B, ...) through the flattens before the
        # first Linear, which is then one GEMM for all members: (B, in) @ (in, M·out).
        single = shared and cap is None
        h = x.unsqueeze(0).expand(m, *x.shape) if shared and not single else x
        for k, op in enumerate(self._plan):  # type: ignore[union-attr]
            kind = op[0]
            if single:
                if kind == "flatten":
                    h = h.flatten(1)
                    continue
                single = False
                if kind == "linear":
                    w, b = ps[op[1]], (ps[op[2]] if op[2] is not None else None)
                    y = F.linear(h, w.reshape(-1, w.shape[-1]),
                                 b.reshape(-1) if b is not None else None)
                    h = y.view(y.shape[0], m, -1).transpose(0, 1)
                    continue
                h = h.unsqueeze(0).expand(m, *h.shape)
            if cap is not None:
                name = self._plan_names[k]
                if name in cap.want[0]:
                    cap.input(name, h.detach(), kind == "act" and getattr(op[1], "inplace", False))
            if kind == "linear":
                w, b = ps[op[1]], (ps[op[2]] if op[2] is not None else None)
                h = packed_linear(h, w, b)
            elif kind == "flatten":
                h = h.flatten(2)
            elif kind == "dropout":
                h = F.dropout(h, op[1], self.training)
            elif kind == "act":
                h = op[1](h)
            elif kind == "bn":
                # (M, B, C) -> (B, M*C): one batch norm whose M*C channels are every
                # member's own, so each member's statistics and running buffers are its own
                _, eps, mom, wi, bi, rmi, rvi, nbi = op
                mm, bb, c = h.shape
                flat = h.transpose(0, 1).reshape(bb, mm * c)
                rm = bs[rmi].view(-1) if rmi is not None else None
                rv = bs[rvi].view(-1) if rvi is not None else None
                training = self.training or rm is None
                if self.training and nbi is not None:
                    bs[nbi].add_(1)
                out = F.batch_norm(flat, rm, rv,
                                   ps[wi].reshape(-1) if wi is not None else None,
                                   ps[bi].reshape(-1) if bi is not None else None,
                                   training, mom, eps)
                h = out.view(bb, mm, c).transpose(0, 1)
            elif kind == "ln":
                _, c, eps, wi, bi = op
                h = F.layer_norm(h, (c,), None, None, eps)
                if wi is not None:
                    h = h * ps[wi].unsqueeze(1) + ps[bi].unsqueeze(1)
            if cap is not None and (name in cap.want[1] or name in cap.want_grad):
                cap.output(name, h, None)
        return h

    @property
    def template(self) -> nn.Module:
        """The members' structure (meta tensors): modules to name, hook or inspect."""
        return self._template[0]

    def train(self, mode: bool = True) -> Pack:
        super().train(mode)
        self.template.train(mode)
        return self

    # -- members ----------------------------------------------------------------------------
    def member_state(self, m: int) -> dict[str, Tensor]:
        """Member ``m``'s parameters and buffers by their names in the plain model (views)."""
        return {n: t[m] for n, t in self._tensors().items()}

    def unstack(self, members: Sequence[int] | None = None) -> list[nn.Module]:
        """The members (all, or those listed) as plain ``nn.Module`` copies on the pack's
        device, in training mode as the pack."""
        idx = range(self.num_members) if members is None else members
        device = self.stacked[0].device if len(self.stacked) else torch.device("cpu")
        out = []
        for m in idx:
            if not 0 <= m < self.num_members:
                raise ValueError(
                    f"member must be in [0, {self.num_members}). Received: member={m!r}."
                )
            model = copy.deepcopy(self.template).to_empty(device=device)
            state = self.member_state(m)
            with torch.no_grad():
                for n, t in model.named_parameters():
                    t.copy_(state[n])
                for n, t in model.named_buffers():
                    t.copy_(state[n])
            model.requires_grad_(True)
            for n, p in model.named_parameters():
                p.requires_grad_(self.stacked[self.param_names.index(n)].requires_grad)
            model.train(self.training)
            out.append(model)
        return out

    def extra_repr(self) -> str:
        return f"members={self.num_members}, tensors={len(self.param_names)}"


# -- probes inside the pack ------------------------------------------------------------------
#: the probe classes a pack runs itself, per member (exact types: a subclass may record
#: something else in its hooks)
PACK_PROBES: tuple[type, ...] = (ActivationStats, GradientStats, WeightStats, UpdateRatio)


def _unsqueeze0(t: Tensor) -> Tensor:
    return t.unsqueeze(0)


def _physical(t: Tensor, m: int) -> tuple[Tensor, Callable[[Tensor], Tensor], bool]:
    """``(phys, to_members, per_member)`` for a tensor a hook sees in the pack's forward
    pass: ``phys`` is the tensor autograd tracks and ``to_members(z)`` turns a tensor shaped
    like ``phys`` into ``(M, ...)``, the member axis first. In a pack of one that is the
    tensor plus a member axis. Under vmap the hook sees a batched tensor of one member's
    shape; its physical tensor (``torch._C._functorch.get_unwrapped``) holds every member
    along the batch dimension (``maybe_get_bdim``), and a hook registered on it gets every
    member's gradient at once. ``per_member`` is false for a tensor that does not depend on
    the member (the same values for all, and no gradient of its own per member)."""
    if m == 1:
        return t, _unsqueeze0, True
    ft = torch._C._functorch
    if not ft.is_batchedtensor(t):
        return t, lambda z: z.unsqueeze(0).expand(m, *z.shape), False
    phys, bdim = ft.get_unwrapped(t), ft.maybe_get_bdim(t)
    if ft.is_batchedtensor(phys):
        raise RuntimeError("probes inside a pack cannot see through a vmap nested in the model; "
                           "train this run alone with the Trainer.")
    return phys, lambda z: z.movedim(bdim, 0), True


class _Capture:
    """What one training forward pass hands the pack's probes, as ``(M, ...)`` tensors (the
    member axis first): in ``stage``, the inputs (``which`` 0) and outputs (1) of the watched
    modules, keyed ``(module name, which)`` in the order they were first seen, every call of
    a module kept (as :class:`~trainlab.probes.ActivationStats` stages them); in ``grads``,
    filled during backward, the gradients w.r.t. the watched outputs, per module in the order
    backward reached them (as :class:`~trainlab.probes.GradientStats`' tensor hooks)."""

    def __init__(self, inputs: set[str], outputs: set[str], grads: set[str],
                 clone_outputs: bool) -> None:
        self.want = (frozenset(inputs), frozenset(outputs))
        self.want_grad = frozenset(grads)
        self.clone_outputs = clone_outputs
        self.stage: dict[tuple[str, int], list[Tensor]] = {}
        self.grads: dict[str, list[Tensor]] = {}

    def input(self, name: str, t: Tensor, inplace: bool) -> None:
        # an in-place module overwrites its input: keep a copy (as ActivationStats does)
        self.stage.setdefault((name, 0), []).append(t.clone() if inplace else t)

    def output(self, name: str, phys: Tensor,
               to_members: Callable[[Tensor], Tensor] | None = None,
               per_member: bool = True) -> None:
        """``phys``: the module's output as autograd tracks it; ``to_members`` and
        ``per_member`` as :func:`_physical` gives them (``None``: already ``(M, ...)``, the
        fast path)."""
        if name in self.want[1]:
            t = phys.detach() if to_members is None else to_members(phys.detach())
            # the statistics are taken after the pass: an in-place module further on would
            # have overwritten the output by then (ActivationStats alone notices that after
            # the fact, drops that one step's record of the layer and copies from then on)
            self.stage.setdefault((name, 1), []).append(t.clone() if self.clone_outputs else t)
        if name in self.want_grad and per_member and phys.requires_grad:
            def hook(g: Tensor, name: str = name) -> None:
                # reads only (returns None: the gradient flowing on is unchanged); keyed when
                # it fires, so the modules come in the order backward reaches them
                g = g.detach() if to_members is None else to_members(g.detach())
                self.grads.setdefault(name, []).append(g)

            phys.register_hook(hook)


def _pool_members(ts: Sequence[Tensor], unit_dim: int = 1) -> Tensor:
    """:func:`trainlab.probes.activations.pool_calls` on ``(M, ...)`` tensors: the calls of
    one module pooled per member (concatenated along the member's batch axis, or flattened
    when their shapes differ)."""
    if len(ts) == 1:
        return ts[0]
    m = ts[0].shape[0]
    if all(t.shape == ts[0].shape for t in ts) and ts[0].dim() >= 2:
        nd = ts[0].dim() - 1
        axis = 1 if nd >= 2 and unit_dim % nd == 0 else 0
        return torch.cat(list(ts), axis + 1)
    return torch.cat([t.reshape(m, -1) for t in ts], 1)


def _flat(t: Tensor) -> Tensor:
    """``(M, n)``: each member's elements, in float32 or float64 (as ``_Moments.rows``)."""
    flat = t.reshape(t.shape[0], -1)
    return flat if flat.dtype in (torch.float32, torch.float64) else flat.float()


def _moments(flat: Tensor) -> Tensor:
    """``(M, 4)``: each member's sum, sum of squares, min and max (``_Moments.rows``)."""
    return torch.stack([flat.sum(1), torch.linalg.vector_norm(flat, dim=1).square(),
                        flat.amin(1), flat.amax(1)], 1)


def _sums(flat: Tensor) -> Tensor:
    """``(M, 2)``: each member's sum and sum of squares."""
    return torch.stack([flat.sum(1), torch.linalg.vector_norm(flat, dim=1).square()], 1)


def _dead_members(rule: Any, t: Tensor, unit_dim: int) -> Tensor:
    """``(M,)``: :meth:`ActivationStats.dead_fractions` of each member of ``t`` ``(M, ...)``
    (the unit axis ``unit_dim`` of the member's tensor)."""
    d = unit_dim % (t.dim() - 1) + 1
    others = tuple(k for k in range(1, t.dim()) if k != d)
    below = getattr(rule, "at_or_below", None)
    above = getattr(rule, "at_or_above", None)
    if below is not None and above is None and hasattr(rule, "at_or_above"):
        return rule(t.amax(dim=others)).float().mean(1)
    if above is not None and below is None and hasattr(rule, "at_or_below"):
        return rule(t.amin(dim=others)).float().mean(1)
    return rule(t).all(dim=others).float().mean(1)


def pack_probes(probes: Any) -> list[Probe]:
    """The probe objects of ``probes`` (names as the Trainer's ``probes=`` takes them, built
    with each probe's default schedule, or :class:`~trainlab.probes.Probe` instances), checked
    to run inside a pack. Raises ``ValueError`` naming the probes that cannot: other kinds
    than :data:`PACK_PROBES`, and probes with ``probe_data`` (passes of their own)."""
    if isinstance(probes, Probe):
        probes = [probes]
    objs = _probe_objects(probes)
    why = unpackable_probes(objs)
    if why:
        raise ValueError(
            f"a pack cannot run {'; '.join(why)}. Inside a pack it runs "
            f"{', '.join(c.__name__ for c in PACK_PROBES)} per member (without probe_data); "
            "train the other runs alone with the Trainer, or run the probe on a member of "
            "Pack.unstack()."
        )
    return objs


def unpackable_probes(objs: Sequence[Any]) -> list[str]:
    """What in ``objs`` (probe objects) a pack cannot run, one phrase each (empty: all of
    them run inside a pack)."""
    out = []
    for p in objs:
        if type(p) not in PACK_PROBES:
            out.append(type(p).__name__)
        elif getattr(p, "probe_data", None) is not None:
            out.append(f"{type(p).__name__} with probe_data")
    return out


def _schedule_key(s: Any) -> Any:
    if type(s) is Schedule:
        return ("every", s.every, s.log, s.base, tuple(sorted(s.at)))
    return ("callable", id(getattr(s, "fn", s)))  # the same function only


def _layers_key(spec: Any) -> Any:
    if spec is None or isinstance(spec, (str, type)):
        return spec
    if isinstance(spec, (list, tuple)) and all(isinstance(x, (str, type)) for x in spec):
        return tuple(spec)
    return ("callable", id(spec))


def probe_settings(probes: Any) -> tuple:
    """A hashable key of ``probes`` (as :func:`pack_probes` takes them): equal keys record
    the same quantities of the same layers at the same steps, so the runs can share one
    pack. Raises ``ValueError`` as :func:`pack_probes`."""
    keys = []
    for p in pack_probes(probes):
        key: tuple = (type(p).__qualname__, _layers_key(p.layers_spec),
                      _schedule_key(p.schedule), _schedule_key(p.hist_schedule), p.bins)
        if isinstance(p, ActivationStats):
            mom = p.mom
            # the subsample generator's state: equal seeds draw equal subsamples (a probe
            # used before holds drawn subsamples of its own)
            gen = ("used", id(mom)) if mom._idx else bytes(mom._gen.get_state().numpy())
            key += (mom.percentiles, mom.sample_size, p.pre, p.unit_dim, gen)
        elif isinstance(p, GradientStats):
            key += (p.outputs, p.weights)
        else:
            key += (p.param,)
        keys.append(key)
    return tuple(keys)


def _own_copy(p: Probe, template: nn.Module) -> Probe:
    """A copy of ``p`` attached to the pack's template (meta tensors; its hooks are never
    installed): it gives the layer names, activation rules, the percentile subsample
    generator (a copy: the caller's probe does not advance) and :meth:`Probe._finish`,
    which turns a raw row into the probe's own records."""
    c = copy.copy(p)
    c.model, c._handles, c._rows, c._hists, c._pending_hists = None, [], [], [], []
    c._buffer, c._row_index, c._slot = None, {}, -1
    if hasattr(p, "mom"):
        c.mom = copy.deepcopy(p.mom)
    return c.attach(template)


def _probe_problems(copies: Sequence[Probe], stored: set[str], plan_names: list[str] | None,
                    m: int) -> list[str]:
    """Why the attached probe copies cannot run inside a pack: WeightStats and UpdateRatio
    read ``param`` from the stacked tensors (``stored``: the parameter and buffer names), so a
    computed one (a parametrization) is missing; on the fast path (``plan_names``: its
    modules) the watched modules must be steps of it (a container is not); vmap needs the
    functorch internals :func:`_physical` uses."""
    out = []
    watched: set[str] = set()
    for p in copies:
        if isinstance(p, (WeightStats, UpdateRatio)):
            missing = [n for n in p.layer_names if f"{n}.{p.param}" not in stored]
            if missing:
                out.append(f"{type(p).__name__} inside a pack reads {p.param!r} of each layer "
                           f"from the stacked tensors, and layers {missing} store none (a "
                           "parametrization computes it?)")
        elif isinstance(p, ActivationStats) or (isinstance(p, GradientStats) and p.outputs):
            watched.update(p.layer_names)
    if watched and plan_names is not None:
        missing_steps = sorted(watched - set(plan_names))
        if missing_steps:
            out.append(f"activation and gradient probes on the fast path of a pack watch the "
                       f"modules it runs one by one ({plan_names}); {missing_steps} are not "
                       "among them: choose those layers, or set pack.use_plan = False (vmap, "
                       "where any module can be watched)")
    elif watched and m > 1:
        ft = getattr(torch._C, "_functorch", None)
        if not all(hasattr(ft, f) for f in ("get_unwrapped", "maybe_get_bdim",
                                             "is_batchedtensor")):
            out.append("activation and gradient probes inside a vmap pack need "
                       "torch._C._functorch.get_unwrapped (missing in this torch)")
    return out


def probe_problem(model: nn.Module, probes: Any) -> str | None:
    """Why ``probes`` (names or instances, as ``PackTrainer(probes=...)`` takes them) cannot
    run inside a pack of models of ``model``'s structure, on the path such a pack takes
    (the fast path where there is one); ``None`` when they can. Attaches nothing to
    ``model``."""
    try:
        objs = _probe_objects([probes] if isinstance(probes, Probe) else probes)
    except ValueError as e:  # an unknown name
        return str(e)
    why = unpackable_probes(objs)
    if why:
        return (f"{', '.join(why)} have no pack form (a pack runs "
                f"{', '.join(c.__name__ for c in PACK_PROBES)}, without probe_data)")
    try:
        copies = [_own_copy(p, model) for p in objs]
    except ValueError as e:  # no layers to watch
        return str(e)
    plan, names = _plan_of(model)
    stored = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    return "; ".join(_probe_problems(copies, stored, names if plan is not None else None,
                                     2)) or None


def _finish_values(p: Probe, meta: dict[Any, Any], raw: np.ndarray) -> np.ndarray:
    """``(M, K)``: the values of the probe's ``_finish(step, meta, raw[j])`` rows for every
    member ``j`` of ``raw`` ``(M, layers, raw columns)``, in its order, with a few array
    operations for all members and layers: raw columns as they are, and ``(mean, std,
    norm)`` from a raw ``(sum, sum of squares)`` pair as
    :func:`~trainlab.probes.activations.finish_moments` computes them."""
    m, _, n_raw = raw.shape
    spec: list[tuple[str, Any]] = []  # per record: ("raw", column) | ("mom", (k, part)) | ...
    pairs: list[tuple[int, int, int]] = []  # (sum column, sum of squares column, n)

    def col(i: int, c: int) -> None:
        spec.append(("raw", i * n_raw + c))

    def moments(i: int, c: int, n: int, parts: tuple[int, ...] = (0, 1, 2)) -> None:
        pairs.append((i * n_raw + c, i * n_raw + c + 1, n))
        spec.extend(("mom", (len(pairs) - 1, k)) for k in parts)

    for i in range(len(p.layer_names)):
        if isinstance(p, ActivationStats):
            w = p.mom.width
            for which, off in (("pre", 0), ("act", w)):
                n = meta.get((i, f"{which}_n"))
                if n is not None:
                    moments(i, off, n, (0, 1))  # mean, std
                    for c in range(2, w):  # min, max, the percentiles
                        col(i, off + c)
            if meta.get((i, "sat")):
                col(i, 2 * w)
            if meta.get((i, "dead")):
                col(i, 2 * w + 1)
            if meta.get((i, "calls")):
                spec.append(("const", float(meta[(i, "calls")])))
        elif isinstance(p, GradientStats):
            n = meta.get((i, "out_n"))
            if n is not None:
                moments(i, 0, n)
                col(i, 2)
                col(i, 3)
                if meta.get((i, "calls")):
                    spec.append(("const", float(meta[(i, "calls")])))
            n = meta.get((i, "w_n"))
            if n is not None:
                moments(i, 4, n)
        elif isinstance(p, WeightStats):
            n = meta.get((i, "n"))
            if n is not None:
                moments(i, 0, n)
                col(i, 2)
                col(i, 3)
        elif isinstance(p, UpdateRatio) and meta.get("done"):
            col(i, 0)
            col(i, 1)
    flat = raw.reshape(m, -1)
    blocks = [flat]
    if pairs:
        si, qi, nn = (np.array(v) for v in zip(*pairs))
        s, q = flat[:, si], flat[:, qi]
        var = np.maximum(q - s * s / nn, 0.0) / np.maximum(nn - 1, 1)
        blocks.append(np.stack([s / nn, np.sqrt(var), np.sqrt(np.maximum(q, 0.0))], 2)
                      .reshape(m, -1))  # pair k's (mean, std, norm) at 3k, 3k + 1, 3k + 2
    consts = [v for kind, v in spec if kind == "const"]
    if consts:
        blocks.append(np.broadcast_to(np.array(consts), (m, len(consts))))
    base_mom, base_const = flat.shape[1], flat.shape[1] + 3 * len(pairs)
    idx, c = [], 0
    for kind, v in spec:
        if kind == "raw":
            idx.append(v)
        elif kind == "mom":
            idx.append(base_mom + 3 * v[0] + v[1])
        else:
            idx.append(base_const + c)
            c += 1
    return np.concatenate(blocks, 1)[:, idx]


@dataclass
class _Logged:
    """One logged step of one probe: its buffer meta (as the probe's own) and, per written
    cell, ``(layer, raw column, width, window column)``."""

    probe: int
    step: int
    meta: dict[Any, Any]
    cells: list[tuple[int, int, int, int]] = field(default_factory=list)


class _PackProbes:
    """:class:`~trainlab.probes.ActivationStats`, :class:`~trainlab.probes.GradientStats`,
    :class:`~trainlab.probes.WeightStats` and :class:`~trainlab.probes.UpdateRatio` run on the
    stacked tensors, giving every member the records the probe gives on the member alone.

    At a step the probe's schedule (or histogram schedule) logs, the same raw values as the
    probe's buffer holds are computed per member with one reduction over the member axis
    (sum, sum of squares, min, max; percentiles and the saturated fraction on the probe's own
    fixed subsample, drawn from a copy of its generator in the order the probe draws; dead
    units; histograms with ``torch.histc`` per member), kept on the device as ``(M, w)``
    columns, and read at the trainer's sync point with its one host read; each member's raw
    rows then go through the probe's own ``_finish`` (records) and histogram format.
    """

    def __init__(self, probes: Sequence[Probe], pack: Pack) -> None:
        self.pack, self.m = pack, pack.num_members
        self.probes = [_own_copy(p, pack.template) for p in probes]
        # an in-place module would overwrite a staged output before its statistics are taken
        self.clone_outputs = any(getattr(mod, "inplace", False) is True
                                 for mod in pack.template.modules())
        self._prev: dict[int, tuple[list[Tensor], Tensor]] = {}
        self.check_path()
        self.reset()

    def reset(self) -> None:
        """Forget the records (a new fit: new Histories)."""
        self.rows: list[list[list[tuple]]] = [[[] for _ in self.probes] for _ in range(self.m)]
        self.hists: list[list[list[dict]]] = [[[] for _ in self.probes] for _ in range(self.m)]
        self._clear_window()
        self.active: dict[int, bool] = {}

    def _clear_window(self) -> None:
        self.values: list[Tensor] = []
        self.width = 0
        self.logged: list[_Logged] = []
        self.pending_hists: list[tuple[int, int, str, str, int, int, Any]] = []

    def check_path(self) -> None:
        """Raise ``ValueError`` when the probes cannot run on the path the pack takes now
        (see :func:`_probe_problems`; checked again when ``pack.use_plan`` changes)."""
        pack = self.pack
        if getattr(self, "_checked", None) == pack.runs_plan:
            return
        problems = _probe_problems(self.probes, set(pack.param_names) | set(pack.buffer_names),
                                   pack._plan_names if pack.runs_plan else None, self.m)
        if problems:
            raise ValueError("; ".join(problems) + ".")
        self._checked = pack.runs_plan

    # -- one step -----------------------------------------------------------------------------
    def begin(self, step: int) -> _Capture | None:
        """Which probes log ``step`` (``self.active``: probe -> histograms too); the weight
        statistics (before the forward pass, as WeightStats' ``step_begin``); the capture the
        forward pass must fill, or ``None``."""
        self.step = step
        self.active = {}
        for k, p in enumerate(self.probes):
            log, hist = p.schedule(step), p.hist_schedule(step)
            if log or hist:
                self.active[k] = bool(hist)
        if not self.active:
            return None
        ins: set[str] = set()
        outs: set[str] = set()
        grads: set[str] = set()
        for k, hist in self.active.items():
            p = self.probes[k]
            if isinstance(p, WeightStats):
                self._weights(k, p, hist)
            elif isinstance(p, ActivationStats):
                outs.update(p.layer_names)
                if p.pre:
                    ins.update(p.layer_names)
            elif isinstance(p, GradientStats) and p.outputs:
                grads.update(p.layer_names)
        if not (ins or outs or grads):
            return None
        self.check_path()  # pack.use_plan may have changed since
        return _Capture(ins, outs, grads, self.clone_outputs)

    def after_forward(self, cap: _Capture | None) -> None:
        for k, hist in self.active.items():
            p = self.probes[k]
            if isinstance(p, ActivationStats) and cap is not None:
                self._activations(k, p, cap, hist)

    def after_backward(self, cap: _Capture | None) -> None:
        """Gradient statistics and UpdateRatio's copy of the weights (after backward,
        before clipping and the optimizer step, as the probes' ``after_backward``)."""
        for k, hist in self.active.items():
            p = self.probes[k]
            if isinstance(p, GradientStats):
                self._gradients(k, p, cap, hist)
            elif isinstance(p, UpdateRatio):
                ws = self._stacked(p)
                self._prev[k] = ([w.clone() for w in ws], torch.stack(
                    [torch.linalg.vector_norm(w.reshape(self.m, -1), dim=1) for w in ws]))

    def end(self) -> None:
        """UpdateRatio's ratios (after the optimizer step, as its ``step_end``)."""
        for k in self.active:
            p = self.probes[k]
            if isinstance(p, UpdateRatio) and k in self._prev:
                prev, wn = self._prev.pop(k)
                ws = self._stacked(p)
                dn = torch.stack([torch.linalg.vector_norm((a - b).reshape(self.m, -1), dim=1)
                                  for a, b in zip(prev, ws)])
                e = self._log(k, {"done": True})
                for i in range(len(ws)):
                    self._write(e, i, 0, torch.stack([dn[i] / wn[i], dn[i]], 1))
        self.active = {}

    # -- the statistics ---------------------------------------------------------------------
    def _stacked(self, p: Probe) -> list[Tensor]:
        tensors = self.pack._tensors()
        return [tensors[f"{n}.{p.param}"].detach() for n in p.layer_names]

    def _log(self, k: int, meta: dict[Any, Any]) -> _Logged:
        e = _Logged(k, self.step, meta)
        self.logged.append(e)
        return e

    def _put(self, vals: Tensor) -> int:
        """Append ``(M, w)`` device values to the window; their first column."""
        start = self.width
        v = vals.detach().reshape(self.m, -1).to(torch.float32)  # the probes' raw dtype
        self.values.append(v)
        self.width += v.shape[1]
        return start

    def _write(self, e: _Logged, layer: int, col: int, vals: Tensor) -> None:
        """``vals`` ``(M, w)`` are raw columns ``col:col+w`` of ``layer`` in the probe's row."""
        e.cells.append((layer, col, vals.shape[1], self._put(vals)))

    def _hist(self, k: int, p: Probe, i: int, qty: str, t: Tensor,
              rng: tuple[float, float] | None) -> None:
        """:meth:`Probe._hist` per member: fixed-range bins (tails clamped) or ±4·rms of the
        member's tensor."""
        m, bins = self.m, p.bins
        x = t.detach().float().reshape(m, -1)
        name = p.layer_names[i]
        if rng is not None:
            lo, hi = float(rng[0]), float(rng[1])
            counts = torch.stack([torch.histc(x[j].clamp(lo, hi), bins=bins, min=lo, max=hi)
                                  for j in range(m)])
            self.pending_hists.append((k, self.step, name, qty, self._put(counts), bins,
                                       (lo, hi)))
            return
        rms = torch.linalg.vector_norm(x, dim=1) / math.sqrt(max(x.shape[1], 1))
        r = (rms * 4.0).clamp_min(1e-30)
        y = (x / r[:, None]).clamp_(-1.0, 1.0)
        counts = torch.stack([torch.histc(y[j], bins=bins, min=-1.0, max=1.0)
                              for j in range(m)])
        start = self._put(counts)
        self._put(r[:, None])  # the column after the counts
        self.pending_hists.append((k, self.step, name, qty, start, bins, None))

    def _weights(self, k: int, p: WeightStats, hist: bool) -> None:
        meta: dict[Any, Any] = {}
        e = self._log(k, meta)
        for i, w in enumerate(self._stacked(p)):
            self._write(e, i, 0, _moments(_flat(w)))
            meta[(i, "n")] = w[0].numel()
        if hist:
            for i, w in enumerate(self._stacked(p)):
                self._hist(k, p, i, "w", w, None)

    def _activations(self, k: int, p: ActivationStats, cap: _Capture, hist: bool) -> None:
        """ActivationStats' ``_reduce`` per member: groups of one member shape in the order
        the probe forms them (so its subsample generator draws in the same order)."""
        meta: dict[Any, Any] = {}
        e = self._log(k, meta)
        layer = {n: i for i, n in enumerate(p.layer_names)}
        groups: dict[tuple, list[tuple[int, int, Tensor]]] = {}
        for (name, which), calls in cap.stage.items():
            i = layer.get(name)
            if i is None or (which == 0 and not p.pre):
                continue
            t = _pool_members(calls, p.unit_dim)
            groups.setdefault((tuple(t.shape[1:]), t.dtype, t.device), []).append((which, i, t))
            meta[(i, ("pre_n", "act_n")[which])] = t[0].numel()
            if which == 1 and len(calls) > 1:
                meta[(i, "calls")] = len(calls)
        mom, w = p.mom, p.mom.width
        subs: list[tuple[int, int, Tensor]] = []
        for (shape, _, device), items in groups.items():
            items.sort(key=lambda it: it[0])  # pre-activations first, as the probe
            n = math.prod(shape)
            idx = mom._index(n, device) if n > mom.sample_size else None
            for which, i, t in items:
                flat = _flat(t)
                self._write(e, i, which * w, _moments(flat))
                sub = flat if idx is None else flat.index_select(1, idx)
                if mom.percentiles:
                    subs.append((i, which * w + 4, sub))
                if which == 1:
                    info = p.infos[i]
                    sat, dead = getattr(info, "saturated", None), getattr(info, "dead", None)
                    if sat is not None:
                        self._write(e, i, 2 * w, sat(sub).float().mean(1, keepdim=True))
                        meta[(i, "sat")] = True
                    if dead is not None and len(shape) >= 2:
                        self._write(e, i, 2 * w + 1, _dead_members(dead, t, p.unit_dim)[:, None])
                        meta[(i, "dead")] = True
            if hist:
                for which, i, t in items:
                    self._hist(k, p, i, ("pre", "act")[which], t,
                               None if which == 0 else p._ranges[i])
        # the percentiles of all subsamples of one size: one sort
        by_size: dict[int, list[tuple[int, int, Tensor]]] = {}
        for cell in subs:
            by_size.setdefault(cell[2].shape[1], []).append(cell)
        for cells in by_size.values():
            pct = mom.percentiles_of(torch.cat([s for *_, s in cells]))
            for r, (i, col, _) in enumerate(cells):
                self._write(e, i, col, pct[r * self.m:(r + 1) * self.m])

    def _gradients(self, k: int, p: GradientStats, cap: _Capture | None, hist: bool) -> None:
        """GradientStats' ``after_backward`` per member: ``∂L/∂s`` of the watched outputs
        (pooled over calls) and ``∂L/∂W`` from the stacked weights' gradients."""
        meta: dict[Any, Any] = {}
        e = self._log(k, meta)
        layer = {n: i for i, n in enumerate(p.layer_names)}
        if p.outputs and cap is not None and cap.grads:
            # the tensor hooks fire in reverse call order: put the calls back in order
            items = [(layer[n], _pool_members(gs[::-1]), len(gs))
                     for n, gs in cap.grads.items() if n in layer and gs]
            groups: dict[tuple, list[tuple[int, Tensor]]] = {}
            for i, t, calls in items:
                groups.setdefault((tuple(t.shape[1:]), t.dtype, t.device), []).append((i, t))
                meta[(i, "out_n")] = t[0].numel()
                if calls > 1:
                    meta[(i, "calls")] = calls
            for group in groups.values():
                for i, t in group:
                    self._write(e, i, 0, _moments(_flat(t)))
                if hist:
                    for i, t in group:
                        self._hist(k, p, i, "grad_out", t, None)
        if p.weights:
            tensors = self.pack._tensors()
            grads = []
            for i, n in enumerate(p.layer_names):
                w = tensors.get(f"{n}.weight")
                if w is not None and w.grad is not None:
                    grads.append((i, w.grad.detach()))
            for i, g in grads:
                self._write(e, i, 4, _sums(_flat(g)))
                meta[(i, "w_n")] = g[0].numel()
            if hist:
                for i, g in grads:
                    self._hist(k, p, i, "grad_w", g, None)

    # -- the sync point ---------------------------------------------------------------------
    def parts(self) -> list[Tensor]:
        """The window's values, ``(M * width,)`` (member-major), for the one host read."""
        if not self.values:
            return []
        return [torch.cat(self.values, 1).double().reshape(-1)]

    def record(self, flat: np.ndarray, skip: set[int]) -> None:
        """Turn the window's host values into every member's records and histograms (the
        members in ``skip``, frozen before this window, get none); start a new window."""
        if self.width:
            host = np.asarray(flat, dtype=np.float64).reshape(self.m, self.width)
            keep = [j for j in range(self.m) if j not in skip]
            for e in self.logged:
                p = self.probes[e.probe]
                n_layers, n_raw = len(p.layer_names), p._n_raw()
                raw = np.full((self.m, n_layers * n_raw), np.nan)
                if e.cells:
                    dst = np.concatenate([np.arange(w) + i * n_raw + c for i, c, w, _ in e.cells])
                    src = np.concatenate([np.arange(w) + s for _, _, w, s in e.cells])
                    raw[:, dst] = host[:, src]
                raw = raw.reshape(self.m, n_layers, n_raw)
                # the probe's own _finish on one member names the rows (layer, quantity, in
                # its order); the values of every member come from _finish_values at once (a
                # Python _finish per member and step cost as much as the statistics)
                keys = [r[:3] for r in p._finish(e.step, e.meta, raw[0])]
                vals = _finish_values(p, e.meta, raw)
                if vals.shape[1] != len(keys):  # pragma: no cover - a probe changed its rows
                    raise RuntimeError(f"{type(p).__name__}: {len(keys)} records but "
                                       f"{vals.shape[1]} values per member")
                for j in keep:
                    self.rows[j][e.probe].extend(
                        [(st, la, q, v) for (st, la, q), v in zip(keys, vals[j].tolist())])
            for k, step, name, qty, start, bins, rng in self.pending_hists:
                for j in keep:
                    counts = host[j, start:start + bins]
                    if rng is None:
                        r = float(host[j, start + bins])
                        lo, hi = -r, r
                    else:
                        lo, hi = rng
                    self.hists[j][k].append({
                        "step": step, "layer": name, "quantity": qty,
                        "edges": [lo + (hi - lo) * i / bins for i in range(bins + 1)],
                        "counts": [float(v) for v in counts]})
        self._clear_window()


# -- the optimizer ---------------------------------------------------------------------------
# torch class -> (pack kind, the hyperparameters read from its param group)
_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "SGD": ("sgd", ("lr", "momentum", "dampening", "weight_decay", "nesterov")),
    "Adam": ("adam", ("lr", "betas", "eps", "weight_decay")),
    "AdamW": ("adam", ("lr", "betas", "eps", "weight_decay")),
    "RMSprop": ("rmsprop", ("lr", "alpha", "eps", "weight_decay", "momentum")),
    "Adagrad": ("adagrad", ("lr", "lr_decay", "eps", "weight_decay",
                            "initial_accumulator_value")),
    "Adadelta": ("adadelta", ("lr", "rho", "eps", "weight_decay")),
}
_UNSUPPORTED_FLAGS = ("amsgrad", "centered", "maximize", "differentiable")


def _group_of(opt: torch.optim.Optimizer) -> dict[str, Any]:
    cls = type(opt).__name__
    if cls not in _KINDS:
        raise ValueError(
            f"a pack can train the optimizers {', '.join(sorted(_KINDS))} (torch classes); "
            f"Received: {cls}."
        )
    if len(opt.param_groups) != 1:
        raise ValueError(
            f"a pack member's optimizer must have one param group. Received: "
            f"{len(opt.param_groups)} groups."
        )
    g = opt.param_groups[0]
    bad = [f for f in _UNSUPPORTED_FLAGS if g.get(f)]
    if bad:
        raise ValueError(
            f"a pack does not implement {cls} with {', '.join(f'{b}=True' for b in bad)}; "
            "train those runs one by one with the Trainer."
        )
    hp = {k: g[k] for k in _KINDS[cls][1]}
    hp["decoupled"] = cls == "AdamW"
    return {"kind": _KINDS[cls][0], **hp}


class PackOptimizer:
    """One optimizer for every member of a :class:`Pack`, each with its own hyperparameters.

    The update rules are torch's own (``torch.optim.SGD`` with momentum, dampening and
    Nesterov, ``Adam``/``AdamW``, ``RMSprop`` with momentum, ``Adagrad``, ``Adadelta``),
    written once over the stacked tensors with every hyperparameter an ``(M, 1, ..., 1)``
    tensor, so one kernel updates all members. Each member's step is that of the torch
    optimizer on the member alone (tested step by step). A pack holds one kind (members with
    ``momentum`` and plain ``sgd`` share the SGD kind: momentum 0 is plain SGD; ``adam`` and
    ``adamw`` share the Adam kind with a per-member decoupled flag).

    Args:
        params: the stacked parameters, ``(M, ...)`` each.
        groups: one dict per member, as :func:`PackOptimizer.from_torch` reads them from
            torch optimizers (``kind`` and the class's hyperparameters).
    """

    def __init__(self, params: Sequence[Tensor], groups: Sequence[Mapping[str, Any]]) -> None:
        self.params = [p for p in params if p.requires_grad]
        kinds = {g["kind"] for g in groups}
        if len(kinds) != 1:
            raise ValueError(
                "the members of a pack must use one kind of optimizer (sgd/momentum/nesterov, "
                f"adam/adamw, rmsprop, adagrad or adadelta). Received: {sorted(kinds)}."
            )
        self.kind = kinds.pop()
        self.groups = [dict(g) for g in groups]
        self.num_members = len(groups)
        device = self.params[0].device if self.params else torch.device("cpu")
        dtype = self.params[0].dtype if self.params else torch.float32
        self.device, self.dtype = device, dtype
        self.hyper: dict[str, Tensor] = {}
        for k in self.groups[0]:
            if k == "kind":
                continue
            if k == "betas":
                self.hyper["beta1"] = self._vec([g["betas"][0] for g in self.groups])
                self.hyper["beta2"] = self._vec([g["betas"][1] for g in self.groups])
            else:
                self.hyper[k] = self._vec([float(g[k]) for g in self.groups])
        self.state: list[dict[str, Tensor]] = [{} for _ in self.params]
        self.steps = 0
        self._flags: dict[str, bool] = {}  # _any's answers (the groups never change)
        self._views: dict[tuple[str, int], Tensor] = {}  # _h's (M, 1, ..., 1) views

    def _vec(self, values: Sequence[float]) -> Tensor:
        return torch.tensor(values, dtype=self.dtype, device=self.device)

    @classmethod
    def from_torch(cls, params: Sequence[Tensor],
                   optimizers: Sequence[torch.optim.Optimizer]) -> PackOptimizer:
        """Read each member's kind and hyperparameters from a torch optimizer built for it
        (for instance by :func:`trainlab.optim.build_optimizer` on a stand-in tensor), so a
        member gets exactly the defaults the Trainer would give it."""
        return cls(params, [_group_of(o) for o in optimizers])

    def set_lr(self, lrs: Sequence[float] | Tensor) -> None:
        """Per-member learning rates (a schedule's values)."""
        self.hyper["lr"] = torch.as_tensor(lrs, dtype=self.dtype, device=self.device).clone()
        self._views = {}

    def _h(self, name: str, p: Tensor) -> Tensor:
        key = (name, p.dim())
        v = self._views.get(key)
        if v is None:  # views of self.hyper, dropped whenever a hyperparameter is replaced
            v = self._views[key] = _member_view(self.hyper[name], p.dim())
        return v

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        getattr(self, f"_{self.kind}")()

    def _grads(self) -> list[tuple[Tensor, Tensor, dict[str, Tensor]]]:
        return [(p, p.grad, s) for p, s in zip(self.params, self.state) if p.grad is not None]

    def _any(self, name: str) -> bool:
        """Whether any member's ``name`` is non-zero (read from the groups once: no device
        sync, and no Python loop over the members each step)."""
        flag = self._flags.get(name)
        if flag is None:
            flag = self._flags[name] = any(float(g.get(name, 0) or 0) != 0 for g in self.groups)
        return flag

    def _l2(self, p: Tensor, g: Tensor) -> Tensor:
        if self._any("weight_decay"):
            return torch.addcmul(g, self._h("weight_decay", p), p)
        return g

    def _sgd(self) -> None:
        # torch.optim.SGD: d = g + λw; b = d (first step), else b = μ b + (1 - τ) d;
        # d = d + μ b (Nesterov) or b; w -= lr d.
        use_mom, damp = self._any("momentum"), self._any("dampening")
        nest = self._any("nesterov")
        all_nest = nest and all(bool(g.get("nesterov")) for g in self.groups)
        trio = self._grads()
        if not (nest or damp or self._any("weight_decay")) and trio and (
                not use_mom or all("momentum_buffer" in s for _, _, s in trio)):
            # the common case in one multi-tensor kernel per update (torch._foreach_*, as
            # torch.optim.SGD(foreach=True)): b = μ b + g; w -= lr b (or lr g)
            ps = [p for p, _, _ in trio]
            d = [g for _, g, _ in trio]
            if use_mom:
                bufs = [s["momentum_buffer"] for _, _, s in trio]
                torch._foreach_mul_(bufs, [self._h("momentum", p) for p in ps])
                torch._foreach_add_(bufs, d)
                d = bufs
            torch._foreach_addcmul_(ps, [self._h("lr", p) for p in ps], d, value=-1)
            return
        for p, g, s in trio:
            d = self._l2(p, g)
            if use_mom:
                mu = self._h("momentum", p)
                if "momentum_buffer" not in s:
                    s["momentum_buffer"] = d.clone()
                elif damp:
                    s["momentum_buffer"].mul_(mu).addcmul_(1 - self._h("dampening", p), d)
                else:
                    s["momentum_buffer"].mul_(mu).add_(d)
                b = s["momentum_buffer"]
                if all_nest:
                    d = torch.addcmul(d, mu, b)
                elif nest:
                    d = torch.where(self._h("nesterov", p) > 0, torch.addcmul(d, mu, b), b)
                else:
                    d = b
            p.addcmul_(self._h("lr", p), d, value=-1)

    def _adam(self) -> None:
        # torch.optim.Adam / AdamW (non-amsgrad): coupled λw or decoupled w *= 1 - lr λ;
        # m = lerp(m, g, 1 - β1); v = β2 v + (1 - β2) g²;
        # w -= lr / (1 - β1^k) · m / (sqrt(v) / sqrt(1 - β2^k) + ε).
        k = self.steps
        b1, b2 = self.hyper["beta1"].double(), self.hyper["beta2"].double()
        lr = self.hyper["lr"].double()
        step_size = (lr / (1 - b1 ** k)).to(self.dtype)
        bc2_sqrt = torch.sqrt(1 - b2 ** k).to(self.dtype)
        wd = self.hyper["weight_decay"]
        dec = self.hyper["decoupled"]
        any_coupled = bool(((wd != 0) & (dec == 0)).any())
        any_decoupled = bool(((wd != 0) & (dec != 0)).any())
        for p, g, s in self._grads():
            if any_decoupled:
                shrink = 1 - self._h("lr", p) * self._h("weight_decay", p) * self._h("decoupled", p)
                p.mul_(shrink)
            if any_coupled:
                g = g + (self._h("weight_decay", p) * (1 - self._h("decoupled", p))) * p
            if "exp_avg" not in s:
                s["exp_avg"] = torch.zeros_like(p)
                s["exp_avg_sq"] = torch.zeros_like(p)
            m, v = s["exp_avg"], s["exp_avg_sq"]
            m.lerp_(g, 1 - self._h("beta1", p))
            v.mul_(self._h("beta2", p)).add_((1 - self._h("beta2", p)) * g * g)
            denom = v.sqrt() / _member_view(bc2_sqrt, p.dim()) + self._h("eps", p)
            p.sub_(_member_view(step_size, p.dim()) * (m / denom))

    def _rmsprop(self) -> None:
        # torch.optim.RMSprop (not centered): E = α E + (1 - α) g²; a = sqrt(E) + ε;
        # b = μ b + g / a and w -= lr b (momentum), else w -= lr g / a.
        use_mom = bool((self.hyper["momentum"] != 0).any())
        for p, g, s in self._grads():
            g = self._l2(p, g)
            if "square_avg" not in s:
                s["square_avg"] = torch.zeros_like(p)
            e = s["square_avg"]
            e.mul_(self._h("alpha", p)).add_((1 - self._h("alpha", p)) * g * g)
            avg = e.sqrt() + self._h("eps", p)
            if use_mom:
                if "momentum_buffer" not in s:
                    s["momentum_buffer"] = torch.zeros_like(p)
                b = s["momentum_buffer"]
                b.mul_(self._h("momentum", p)).add_(g / avg)
                p.sub_(self._h("lr", p) * b)
            else:
                p.sub_(self._h("lr", p) * (g / avg))

    def _adagrad(self) -> None:
        # torch.optim.Adagrad: S = S0 + Σ g²; w -= lr / (1 + (k - 1) η) · g / (sqrt(S) + ε).
        k = self.steps
        clr = self.hyper["lr"] / (1 + (k - 1) * self.hyper["lr_decay"])
        for p, g, s in self._grads():
            g = self._l2(p, g)
            if "sum" not in s:
                s["sum"] = torch.ones_like(p) * self._h("initial_accumulator_value", p)
            s["sum"].addcmul_(g, g)
            std = s["sum"].sqrt() + self._h("eps", p)
            p.sub_(_member_view(clr, p.dim()) * (g / std))

    def _adadelta(self) -> None:
        # torch.optim.Adadelta: E = ρ E + (1 - ρ) g²; Δ = sqrt(D + ε) / sqrt(E + ε) · g;
        # D = ρ D + (1 - ρ) Δ²; w -= lr Δ.
        for p, g, s in self._grads():
            g = self._l2(p, g)
            if "square_avg" not in s:
                s["square_avg"] = torch.zeros_like(p)
                s["acc_delta"] = torch.zeros_like(p)
            e, dacc = s["square_avg"], s["acc_delta"]
            rho = self._h("rho", p)
            eps = self._h("eps", p)
            e.mul_(rho).add_((1 - rho) * g * g)
            std = (e + eps).sqrt()
            delta = (dacc + eps).sqrt() / std * g
            dacc.mul_(rho).add_((1 - rho) * delta * delta)
            p.sub_(self._h("lr", p) * delta)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "hyper": {k: v.clone() for k, v in self.hyper.items()},
                "state": [{k: v.clone() for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.hyper = {k: v.clone() for k, v in state["hyper"].items()}
        self.state = [{k: v.clone() for k, v in s.items()} for s in state["state"]]
        self._views = {}

    def select(self, params: Sequence[Tensor], members: Sequence[int]) -> PackOptimizer:
        """A new optimizer over ``params`` (the stacked parameters of a pack of the listed
        members) with those members' hyperparameters and state."""
        new = PackOptimizer(params, [self.groups[m] for m in members])
        idx = torch.as_tensor(list(members), device=self.device)
        new.steps = self.steps
        new.hyper = {k: v.index_select(0, idx).clone() for k, v in self.hyper.items()}
        new._views = {}
        new.state = [{k: v.index_select(0, idx).clone() for k, v in s.items()} for s in self.state]
        return new


# -- data ------------------------------------------------------------------------------------
class _PackBatcher:
    """Each member's batches as :class:`trainlab.data.DeviceBatcher` with ``seed=s`` would
    draw them: one ``torch.randperm`` per epoch from the member's own CPU generator, batch
    ``k`` being ``perm[k b : (k + 1) b]`` (the last one smaller); stacked ``(M, b, ...)``."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seeds: Sequence[int],
                 device: torch.device) -> None:
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size = batch_size
        self.seeds = list(seeds)
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.epoch = 0
        self.pos: int | None = None
        self.perm: Tensor | None = None
        self.n = int(x.shape[0])
        #: every member has one seed, so one batch order: :meth:`next` returns that batch
        #: once, ``(b, ...)``, and the pack runs it through every member (``shared=True``)
        self.shared = len(self.seeds) > 1 and len(set(self.seeds)) == 1

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def next(self) -> tuple[Tensor, Tensor]:
        if self.pos is None:
            self.epoch += 1
            self.pos = 0
            perms = [torch.randperm(self.n, generator=g) for g in self.generators]
            self.perm = torch.stack(perms).to(self.x.device, non_blocking=True)
        k, b = self.pos, self.batch_size
        idx = self.perm[:, k * b: min((k + 1) * b, self.n)]
        self.pos = k + 1 if k + 1 < len(self) else None
        if self.shared:
            return self.x.index_select(0, idx[0]), self.y.index_select(0, idx[0])
        m, nb = idx.shape
        flat = idx.reshape(-1)
        xb = self.x.index_select(0, flat).view(m, nb, *self.x.shape[1:])
        yb = self.y.index_select(0, flat).view(m, nb, *self.y.shape[1:])
        return xb, yb

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "perm": self.perm,
                "generators": [g.get_state() for g in self.generators]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.pos, self.perm = state["epoch"], state["pos"], state["perm"]
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(s)

    def select(self, members: Sequence[int]) -> _PackBatcher:
        new = _PackBatcher(self.x, self.y, self.batch_size, [self.seeds[m] for m in members],
                           self.x.device)
        new.epoch, new.pos = self.epoch, self.pos
        new.perm = None if self.perm is None else self.perm[list(members)].clone()
        for g, m in zip(new.generators, members):
            g.set_state(self.generators[m].get_state())
        return new


# -- the trainer -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PackDivergence:
    """Member ``member`` of a pack diverged: ``divergence`` says at which step and where."""

    member: int
    divergence: Divergence

    @property
    def step(self) -> int:
        return self.divergence.step

    @property
    def module(self) -> str:
        return self.divergence.module

    def message(self) -> str:
        return f"member {self.member}: {self.divergence.message()}"


def _per_member(values: Any, m: int, name: str) -> list[Any]:
    if isinstance(values, (list, tuple)):
        if len(values) != m:
            raise ValueError(
                f"{name} must be one value or one per member ({m}). Received {len(values)} "
                f"values: {name}={list(values)!r}."
            )
        return list(values)
    return [values] * m


class PackTrainer:
    """Train a :class:`Pack`: each member as ``Trainer(member, seed=seeds[m], ...)`` would.

    Args:
        pack: the members.
        optimizer: a name of :data:`trainlab.optim.OPTIMIZERS` or ``(name, kwargs)``, one for
            all or a list with one per member (all of one kind, see :class:`PackOptimizer`).
        lr: a learning rate, or one per member; ``None`` is each optimizer's default.
        optimizer_kwargs: one dict for all or one per member (momentum, weight_decay ...).
        loss: a name in :data:`trainlab.losses.LOSSES` or a callable ``(logits, y) -> loss``
            (evaluated per member under vmap).
        seeds: one seed per member (its batch order; ``0..M-1`` by default).
        schedule: a :data:`trainlab.optim.SCHEDULES` spec, one for all or one per member.
        clip_norm: per-member global gradient-norm clipping (as ``clip_grad_norm_``).
        log_every: steps between sync points.
        probes: probe names (as the Trainer's ``probes=``: ``"activations"``,
            ``["activations", "gradients"]``) or :class:`~trainlab.probes.Probe` instances of
            the kinds in :data:`PACK_PROBES` (``ActivationStats``, ``GradientStats``,
            ``WeightStats``, ``UpdateRatio``), with their ``every`` / ``hist_every``
            schedules: each member's ``History.probe_records`` and ``histograms`` get what the
            probe gives on the member alone (see the module docstring); another kind raises
            ``ValueError``. ``True``: per-member weight statistics and gradient norms at sync
            points only.
        progress: a tqdm bar over steps (``None``: only on a terminal).
        eval_batch_size: examples per evaluation pass.
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"`` ...
    """

    def __init__(
        self,
        pack: Pack,
        optimizer: Any = "sgd",
        lr: float | Sequence[float] | None = None,
        loss: Any = "cross_entropy",
        device: str | torch.device | None = None,
        seeds: Sequence[int] | None = None,
        schedule: Any = None,
        *,
        optimizer_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        clip_norm: float | None = None,
        log_every: int = 50,
        probes: Any = False,
        progress: bool | None = None,
        eval_batch_size: int = 1024,
    ) -> None:
        if not isinstance(pack, Pack):
            raise TypeError(f"pack must be a Pack. Received: {type(pack).__name__}.")
        m = pack.num_members
        check_count("log_every", log_every)
        check_count("eval_batch_size", eval_batch_size)
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None. Received: clip_norm={clip_norm!r}.")
        self.seeds = list(range(m)) if seeds is None else _per_member(list(seeds), m, "seeds")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ValueError(f"seeds must be non-negative integers. Received: seed={s!r}.")
        self.device = resolve_device(device)
        self.pack = pack.to(self.device)
        self.loss_fn = Trainer._build_loss(loss)
        self._ce = self._plain_cross_entropy()
        self._opt_specs = _per_member(optimizer, m, "optimizer")
        self._lrs = _per_member(lr, m, "lr")
        kw = optimizer_kwargs if optimizer_kwargs is not None else {}
        self._opt_kwargs = [dict(k) for k in _per_member(kw, m, "optimizer_kwargs")]
        self._schedule_specs = _per_member(schedule, m, "schedule")
        # A stand-in optimizer per member, over one scalar: the registry builds it with the
        # Trainer's defaults and checks; the pack reads its class and hyperparameters, and a
        # schedule steps it to give the member's learning rate at each step.
        self._standins = [self._standin(i) for i in range(m)]
        self.optimizer = PackOptimizer.from_torch(list(pack.stacked),
                                                  [o for o, _ in self._standins])
        self.clip_norm = clip_norm
        self.log_every = log_every
        #: the sync-point weight statistics of ``probes=True``
        self.probes = probes is True
        #: the Trainer's probes run inside the pack (``probes=`` names or instances)
        self.probe_set: _PackProbes | None = None
        if not (probes is None or isinstance(probes, bool)):
            objs = pack_probes(probes)
            self.probe_set = _PackProbes(objs, self.pack) if objs else None
        self.progress = progress
        self.eval_batch_size = eval_batch_size
        self.histories = [History() for _ in range(m)]
        self.divergences: list[PackDivergence] = []
        self.frozen: dict[int, dict[str, Tensor]] = {}  # member -> tensors kept fixed
        self.step = 0
        self.batcher: _PackBatcher | None = None
        self.schedules: list[Any] = [None] * m

    def _standin(self, i: int) -> tuple[torch.optim.Optimizer, Tensor]:
        w = torch.zeros((), requires_grad=True)
        spec = self._opt_specs[i]
        return build_optimizer(spec, [w], lr=self._lrs[i], **self._opt_kwargs[i]), w

    @staticmethod
    def _schedule(spec: Any, opt: torch.optim.Optimizer, total: int) -> Any:
        if spec is None:
            return None
        sched = build_schedule(spec, opt, total_steps=total)
        # the stand-in is never stepped (the pack optimizer is): tell torch's schedulers so,
        # or each warns that its step() came before optimizer.step()
        opt._opt_called = True  # type: ignore[attr-defined]
        return sched

    # -- public -----------------------------------------------------------------------------
    def fit(self, data: Any, epochs: int | None = None, steps: int | None = None,
            batch_size: int = 128, eval_every: int | None = None) -> list[History]:
        """Train for ``epochs`` or ``steps`` (exactly one), as :meth:`Trainer.fit`; returns
        one :class:`History` per member (also ``self.histories``)."""
        x, y, x_test, y_test = fit_data(data, epochs, steps, batch_size, eval_every)
        # the Trainer's own check on member 0: a model that does not fit the data (or targets
        # beyond its outputs) is one clear error naming both shapes, not a bmm error
        Trainer(self.pack.unstack([0])[0], optimizer="sgd", loss=self.loss_fn,
                device=self.device)._check_data_fits(x, y)
        # as Trainer.fit: a fresh History, step count and batch order for each fit (the
        # weights and the optimizer state go on)
        self.histories = [History() for _ in range(self.pack.num_members)]
        self.divergences, self.frozen, self.step = [], {}, 0
        if self.probe_set is not None:
            self.probe_set.reset()
        self.batcher = _PackBatcher(x, y, batch_size, self.seeds, self.device)
        per_epoch = len(self.batcher)
        total = steps if steps is not None else epochs * per_epoch  # type: ignore[operator]
        eval_every = eval_every or per_epoch
        self.total_steps = total
        self._test = eval_split(x_test, y_test, self.device)
        self.schedules = [
            self._schedule(spec, opt, total) for spec, (opt, _) in
            zip(self._schedule_specs, self._standins)
        ]
        self._lr_now()
        return self._run(total, [self.log_every, eval_every], eval_every)

    def unstack(self) -> list[nn.Module]:
        """The trained members as plain modules (:meth:`Pack.unstack`)."""
        return self.pack.unstack()

    # -- the loop ---------------------------------------------------------------------------
    def _lr_now(self) -> list[float]:
        lrs = [float(o.param_groups[0]["lr"]) for o, _ in self._standins]
        self.optimizer.set_lr(lrs)
        self._lr_values = lrs
        return lrs

    def _plain_cross_entropy(self) -> bool:
        f = self.loss_fn
        return (isinstance(f, nn.CrossEntropyLoss) and f.weight is None
                and f.label_smoothing == 0 and f.reduction == "mean")

    def _losses(self, out: Tensor, y: Tensor) -> Tensor:
        """``(M,)``: each member's mean loss on its batch."""
        m = self.pack.num_members
        if m == 1:
            return self.loss_fn(out[0], y[0]).reshape(1)
        if self._ce and out.dim() == 3 and y.dim() == 2 and not y.is_floating_point():
            # one kernel for all members, then the mean over each member's batch (the module's
            # own mean; class-index targets never equal its ignore_index)
            per = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                              reduction="none")
            return per.view(m, -1).mean(1)
        return vmap(self.loss_fn)(out, y)

    def _train_step(self, xb: Tensor, yb: Tensor) -> Tensor:
        # the probes at the points of the Trainer's protocol: step_begin, the forward pass,
        # after_backward (before clipping), step_end (after the optimizer and schedules)
        ps = self.probe_set
        cap = ps.begin(self.step) if ps is not None else None
        logged = ps is not None and bool(ps.active)
        shared = self.batcher is not None and self.batcher.shared
        out = self.pack(xb, shared=shared, capture=cap)
        if shared:  # one batch for every member: (b,) targets seen by each
            yb = yb.unsqueeze(0).expand(self.pack.num_members, *yb.shape)
        losses = self._losses(out, yb)
        if logged:
            ps.after_forward(cap)  # type: ignore[union-attr]
        self.optimizer.zero_grad()
        losses.sum().backward()
        if logged:
            ps.after_backward(cap)  # type: ignore[union-attr]
        if self.clip_norm is not None:
            self._clip()
        self.optimizer.step()
        if any(s is not None for s in self.schedules):
            for s in self.schedules:
                if s is not None:
                    s.step()
            self._lr_now()
        if logged:
            ps.end()  # type: ignore[union-attr]
        if self.frozen:
            self._hold_frozen()
        return losses.detach()

    @torch.no_grad()
    def _clip(self) -> None:
        # torch.nn.utils.clip_grad_norm_ per member: c = min(1, max / (‖g‖ + 1e-6))
        grads = [p.grad for p in self.optimizer.params if p.grad is not None]
        if not grads:
            return
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
        total = torch.linalg.vector_norm(norms, dim=0)
        coef = torch.clamp(self.clip_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(_member_view(coef, g.dim()))

    @torch.no_grad()
    def _hold_frozen(self) -> None:
        tensors = self.pack._tensors()
        for m, saved in self.frozen.items():
            for n, t in tensors.items():
                t[m].copy_(saved[n])

    def _run(self, total: int, sync_every: list[int], eval_every: int) -> list[History]:
        bar = progress_bar(self.progress, total, self.step,
                           desc=f"pack of {self.pack.num_members}")
        self.pack.train()
        t0 = time.perf_counter()
        window_start, losses = self.step, []
        snapshot = self._snapshot()
        cadence = Cadence(total, tuple(sync_every), eval_every)
        nxt = cadence.next(self.step)
        try:
            while self.step < total and len(self.frozen) < self.pack.num_members:
                xb, yb = self.batcher.next()  # type: ignore[union-attr]
                losses.append(self._train_step(xb, yb))
                self.step += 1
                s = self.step
                if s >= nxt:
                    self._sync(window_start, losses, cadence.evaluates(s), t0, snapshot)
                    advance_bar(bar, s)
                    window_start, losses = s, []
                    nxt = cadence.next(s)
                    snapshot = self._snapshot()
        finally:
            self._finish_probes()
            if bar is not None:
                bar.close()
        for h in self.histories:
            if h.status not in ("diverged",):
                h.status = "done"
        return self.histories

    def _finish_probes(self) -> None:
        """Every member's probe records and histograms into its History, probe by probe
        (the order ``Trainer.fit`` gives them)."""
        ps = self.probe_set
        if ps is None:
            return
        for j, h in enumerate(self.histories):
            for k in range(len(ps.probes)):
                h.probe_records.extend(ps.rows[j][k])
                h.histograms.extend(ps.hists[j][k])

    def probe_outputs(self, member: int) -> list[tuple[list[tuple], list[dict[str, Any]]]]:
        """Per probe (in the order of ``probes=``), member ``member``'s ``(records,
        histograms)`` of the last fit: what ``probe.records()`` and ``probe.histograms()``
        give after the member trains alone with that probe."""
        ps = self.probe_set
        if ps is None:
            return []
        return [(list(ps.rows[member][k]), list(ps.hists[member][k]))
                for k in range(len(ps.probes))]

    def give_records(self, member: int, probes: Sequence[Probe]) -> None:
        """Add member ``member``'s records and histograms to ``probes`` (one per probe of
        ``probes=``, in order: say the run's own instances), so that their ``records()`` and
        ``histograms()`` hold what they would after ``Trainer(model, probes=probes).fit``."""
        for p, (rows, hists) in zip(probes, self.probe_outputs(member)):
            p._rows.extend(rows)
            p._hists.extend(hists)

    @torch.no_grad()
    def _sync(self, window_start: int, losses: list[Tensor], evaluate: bool, t0: float,
              snapshot: dict[str, Any]) -> None:
        """One host sync: the window's losses, every tensor's max |w| per member, the test
        metrics; log a row per healthy member, replay and freeze the diverged ones."""
        m = self.pack.num_members
        params = [p.detach() for p in self.pack.stacked]
        parts = [torch.stack(losses).double().reshape(-1)]  # (W * M,)
        if params:
            parts.append(torch.stack([p.abs().flatten(1).amax(1) if p.numel() else
                                      p.new_zeros(m) for p in params]).double().reshape(-1))
        ev = self._evaluate() if evaluate and self._test is not None else None
        if ev is not None:
            parts.append(ev.double().reshape(-1))  # (2 * M,): losses then accuracies
        stats = self._probe_stats() if self.probes else None
        if stats is not None:
            parts.append(stats[1].double().reshape(-1))
        pparts = self.probe_set.parts() if self.probe_set is not None else []
        parts.extend(pparts)
        host = torch.cat([t.to(self.device) for t in parts]).cpu()  # the one sync
        n_probe = pparts[0].numel() if pparts else 0
        values = host[:host.numel() - n_probe].tolist()
        if pparts:  # the probes' values come last; members frozen before this window skipped
            self.probe_set.record(host[host.numel() - n_probe:].numpy(),  # type: ignore
                                  set(self.frozen))
        w = len(losses)
        win = [values[i * m:(i + 1) * m] for i in range(w)]
        off = w * m
        norms = [values[off + i * m: off + (i + 1) * m] for i in range(len(params))]
        off += len(params) * m
        if ev is not None:
            ev_loss, ev_acc = values[off: off + m], values[off + m: off + 2 * m]
            off += 2 * m
        elapsed = time.perf_counter() - t0
        per_epoch = len(self.batcher)  # type: ignore[arg-type]
        bad: list[tuple[int, Divergence]] = []
        for j in range(m):
            if j in self.frozen:
                continue
            mine = [r[j] for r in win]
            div = window_divergence(window_start, self.step, mine, [n[j] for n in norms])
            if div is not None:
                bad.append((j, div))
                continue
            row_d = history_row(self.step, per_epoch, mine, self._row_lr(j), elapsed)
            if ev is not None:
                row_d["test_loss"], row_d["test_acc"] = ev_loss[j], ev_acc[j]
            self.histories[j].metrics.append(row_d)
            if stats is not None:
                self._record_probes(j, stats[0], values[off:off + stats[1].numel()])
        for j, div in bad:
            self._freeze(j, self._locate(j, snapshot, div), snapshot)

    def _row_lr(self, j: int) -> float:
        return self._lr_values[j]

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, split: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``(2, M)``: every member's mean loss and accuracy on ``split`` (default: the test
        split), every member on the same batches (device tensor, no sync)."""
        x, y = split if split is not None else self._test
        m = self.pack.num_members

        def score(xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            out = self.pack(xb, shared=True)  # (M, b, C)
            yy = yb.unsqueeze(0).expand(m, *yb.shape)
            return out, self._losses(out, yy), yy

        return evaluate_in_batches(self.pack, x, y, self.eval_batch_size, score,
                                   device=self.device, members=m)

    def evaluate(self, x: Tensor, y: Tensor) -> list[dict[str, float]]:
        """Every member's mean loss and accuracy on ``(x, y)``."""
        loss, acc = self._evaluate((x.to(self.device), y.to(self.device))).tolist()
        return [{"loss": a, "acc": b} for a, b in zip(loss, acc)]

    # -- probes -----------------------------------------------------------------------------
    def _probe_stats(self) -> tuple[list[str], Tensor]:
        """Names and an ``(L, 6, M)`` tensor: w mean, std, norm, min, max and the gradient
        norm of every weight layer (a parameter named ``*.weight``) per member."""
        names, rows = [], []
        for n, p in self.pack.named_stacked():
            if not n.endswith("weight") or p.dim() < 3:
                continue
            flat = p.detach().flatten(1).float()
            g = p.grad.detach().flatten(1).float() if p.grad is not None else None
            gn = torch.linalg.vector_norm(g, dim=1) if g is not None else \
                torch.full_like(flat[:, 0], math.nan)
            rows.append(torch.stack([flat.mean(1), flat.std(1), torch.linalg.vector_norm(
                flat, dim=1), flat.amin(1), flat.amax(1), gn]))
            names.append(layer_of(n))
        if not rows:
            return [], torch.zeros(0)
        return names, torch.stack(rows)

    def _record_probes(self, j: int, names: list[str], flat: list[float]) -> None:
        m = self.pack.num_members
        qs = ("w_mean", "w_std", "w_norm", "w_min", "w_max", "grad_norm")
        rec = self.histories[j].probe_records
        for li, layer in enumerate(names):
            for qi, q in enumerate(qs):
                rec.append((self.step, layer, q, flat[(li * len(qs) + qi) * m + j]))

    # -- divergence -------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        """The state at this sync point: every stacked tensor, the optimizer, the batcher
        and the schedules (one copy per window, as the Trainer's snapshot)."""
        with torch.no_grad():
            tensors = {n: t.detach().clone() for n, t in self.pack._tensors().items()}
        return {
            "step": self.step,
            "tensors": tensors,
            "optimizer": self.optimizer.state_dict(),
            "batcher": self.batcher.state_dict() if self.batcher is not None else None,
            "schedules": [copy.deepcopy(s.state_dict()) if s is not None else None
                          for s in self.schedules],
            "standins": [copy.deepcopy(o.state_dict()) for o, _ in self._standins],
        }

    def _locate(self, j: int, snapshot: dict[str, Any], found: Divergence) -> Divergence:
        """Replay member ``j`` alone from ``snapshot`` to this step with hooks on its
        modules (:func:`~trainlab.engine.loop.locate`, as :meth:`Trainer._locate`); name the
        first bad module and step. The template's parameters live on the meta device and
        carry no hooks: the stacked gradients are checked after each backward pass."""
        sub = self._member_trainer(j, snapshot)

        def forward(step: int) -> Tensor:
            xb, yb = sub.batcher.next()  # type: ignore[union-attr]
            return sub._losses(sub.pack(xb), yb)

        def backward(loss: Tensor, step: int) -> None:
            sub.optimizer.zero_grad()
            loss.sum().backward()

        def gradients() -> list[tuple[str, Tensor | None]]:
            return [(n, p.grad) for n, p in sub.pack.named_stacked()]

        def finish(step: int) -> None:
            if sub.clip_norm is not None:
                sub._clip()
            sub.optimizer.step()
            for s in sub.schedules:
                if s is not None:
                    s.step()
            sub._lr_now()

        div = locate(sub.pack.template, range(snapshot["step"], self.step), forward, backward,
                     sub.pack.named_stacked, gradients=gradients, finish=finish)
        return div if div is not None else found

    def _member_trainer(self, j: int, snapshot: dict[str, Any]) -> PackTrainer:
        """A one-member trainer holding member ``j``'s state at ``snapshot``."""
        members = [j]
        models = self.pack.unstack(members)
        with torch.no_grad():
            for n, t in list(models[0].named_parameters()) + list(models[0].named_buffers()):
                t.copy_(snapshot["tensors"][n][j])
        sub = PackTrainer(Pack(models), optimizer=self._opt_specs[j], lr=self._lrs[j],
                          loss=self.loss_fn, device=self.device, seeds=[self.seeds[j]],
                          schedule=self._schedule_specs[j],
                          optimizer_kwargs=self._opt_kwargs[j], clip_norm=self.clip_norm,
                          log_every=self.log_every, progress=False)
        full = PackOptimizer(list(self.pack.stacked), self.optimizer.groups)
        full.load_state_dict(snapshot["optimizer"])
        sub.optimizer = full.select(list(sub.pack.stacked), members)
        batcher = _PackBatcher(self.batcher.x, self.batcher.y, self.batcher.batch_size,
                               self.seeds, self.device)
        batcher.load_state_dict(snapshot["batcher"])
        sub.batcher = batcher.select(members)
        opt, _ = sub._standins[0]
        opt.load_state_dict(snapshot["standins"][j])
        sub.schedules = [self._schedule(self._schedule_specs[j], opt, self.total_steps)]
        if sub.schedules[0] is not None:
            sub.schedules[0].load_state_dict(snapshot["schedules"][j])
            opt.load_state_dict(snapshot["standins"][j])
        sub._lr_values = [float(opt.param_groups[0]["lr"])]
        sub.optimizer.set_lr(sub._lr_values)
        sub.pack.train()
        return sub

    def _freeze(self, j: int, div: Divergence, snapshot: dict[str, Any]) -> None:
        self.frozen[j] = {n: t[j].clone() for n, t in snapshot["tensors"].items()}
        self._hold_frozen()
        h = self.histories[j]
        h.status, h.divergence = "diverged", div
        self.divergences.append(PackDivergence(j, div))
        warnings.warn(
            f"pack member {j} (seed {self.seeds[j]}) diverged and is frozen; the others go "
            f"on: {div.message()}", MemberDivergedWarning, stacklevel=4)


# -- the simple API --------------------------------------------------------------------------
_OPTIM_KEYS = ("momentum", "weight_decay", "dampening", "nesterov", "betas", "eps", "alpha",
               "rho", "lr_decay", "initial_accumulator_value")
_MEMBER_KEYS = ("seed", "lr", "optimizer", "optimizer_kwargs", "schedule", "model")


@dataclass
class PackResult:
    """What :func:`train_pack` returns: one History and one plain model per member, the
    divergences, and the trainer (its ``pack`` holds the stacked state)."""

    histories: list[History]
    models: list[nn.Module]
    divergences: list[PackDivergence] = field(default_factory=list)
    trainer: PackTrainer | None = None


def build_members(model_spec: Any, members: Sequence[Mapping[str, Any]]) -> list[nn.Module]:
    """One model per member, each built as ``seed_everything(seed); build_model(spec)``:
    the model the sequential ``Trainer(model, seed=seed)`` recipe would start from. A
    member's ``model`` dict (``{"init": "he_normal"}``) or ``init`` key overrides the spec
    (init scheme and scale differ per member; the structure must not)."""

    out = []
    for i, mem in enumerate(members):
        over = dict(mem.get("model", {}))
        if "init" in mem:
            over["init"] = mem["init"]
        seed = mem.get("seed", i)
        seed_everything(seed)
        if isinstance(model_spec, nn.Module):
            raise TypeError("model_spec must be a build_model spec (a dict with 'name'), not "
                            "a built module; give Pack(models) built modules instead.")
        spec = dict(model_spec) if isinstance(model_spec, Mapping) else model_spec
        out.append(build_model(spec, **over))
    return out


def train_pack(
    model_spec: Any,
    members: Sequence[Mapping[str, Any]],
    data: Any,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    eval_every: int | None = None,
    optimizer: Any = "sgd",
    lr: float | None = None,
    **trainer_kwargs: Any,
) -> PackResult:
    """Build one model per member from ``model_spec`` and train them all as one pack.

    Args:
        model_spec: a :func:`trainlab.nn.build_model` spec, ``{"name": "mlp", ...}``.
        members: one dict per member with ``seed`` (init and batch order), and any of ``lr``,
            ``optimizer`` (a name), ``optimizer_kwargs`` or the shorthands ``momentum``,
            ``weight_decay``, ``betas``, ``eps``, ``nesterov``, ``alpha`` ..., ``schedule``,
            ``init`` and ``model`` (overrides of the model spec that keep the structure).
        data, epochs, steps, batch_size, eval_every: as :meth:`Trainer.fit`.
        optimizer, lr: the defaults of members that do not say.
        trainer_kwargs: :class:`PackTrainer` arguments (``loss``, ``clip_norm``, ``device``,
            ``log_every``, ``probes`` ...).

    Returns a :class:`PackResult`.
    """
    members = [dict(m) for m in members]
    if not members:
        raise ValueError("members must list at least one member. Received: members=[].")
    allowed = set(_MEMBER_KEYS) | set(_OPTIM_KEYS) | {"init"}
    for i, mem in enumerate(members):
        unknown = sorted(set(mem) - allowed)
        if unknown:
            import difflib

            close = {u: difflib.get_close_matches(u, sorted(allowed), n=2) for u in unknown}
            hint = "; ".join(f"{u} (did you mean {', '.join(c)}?)" if c else u
                             for u, c in close.items())
            raise ValueError(f"member {i} has unknown key(s): {hint}. Allowed: "
                             f"{', '.join(sorted(allowed))}.")
    models = build_members(model_spec, members)
    default_schedule = trainer_kwargs.pop("schedule", None)
    kw = []
    for mem in members:
        k = dict(mem.get("optimizer_kwargs", {}))
        k.update({key: mem[key] for key in _OPTIM_KEYS if key in mem})
        kw.append(k)
    trainer = PackTrainer(
        Pack(models),
        optimizer=[m.get("optimizer", optimizer) for m in members],
        lr=[m.get("lr", lr) for m in members],
        seeds=[m.get("seed", i) for i, m in enumerate(members)],
        schedule=[m.get("schedule", default_schedule) for m in members],
        optimizer_kwargs=kw,
        **trainer_kwargs,
    )
    histories = trainer.fit(data, epochs=epochs, steps=steps, batch_size=batch_size,
                            eval_every=eval_every)
    return PackResult(histories, trainer.unstack(), list(trainer.divergences), trainer)

