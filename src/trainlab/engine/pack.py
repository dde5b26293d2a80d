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

**Probes.** The Trainer's hook-based probes cannot run inside vmap (their hooks would see
batched tensors). Per member, a pack records instead, at every sync point, the weight
statistics of the ``weights`` probe (``w_mean``, ``w_std``, ``w_norm``, ``w_min``,
``w_max`` per weight layer) and the gradient norm of each layer (``grad_norm``), into each
member's ``History.probe_records``; ``probes=True`` turns it on. For activation or Jacobian
probes, :meth:`Pack.unstack` a member and run the usual probes on it.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
from trainlab.engine.trainer import Trainer
from trainlab.nn import build_model
from trainlab.nn.activations import activation_info
from trainlab.optim import build_optimizer, build_schedule
from trainlab.utils import resolve_device, seed_everything

__all__ = [
    "Pack",
    "PackDivergence",
    "PackOptimizer",
    "PackResult",
    "PackTrainer",
    "structure_key",
    "train_pack",
]


# -- structure -------------------------------------------------------------------------------
def structure_key(model: nn.Module) -> tuple:
    """What two models must share to be packed: the module types by name and every
    parameter and buffer name, shape and dtype. Equal keys mean stackable models."""
    mods = tuple((n, type(m).__qualname__) for n, m in model.named_modules())
    ps = tuple((n, tuple(p.shape), str(p.dtype)) for n, p in model.named_parameters())
    bs = tuple((n, tuple(b.shape), str(b.dtype)) for n, b in model.named_buffers())
    return mods, ps, bs


def _member_view(t: Tensor, ndim: int) -> Tensor:
    """``t`` of shape ``(M,)`` as ``(M, 1, ..., 1)`` to broadcast against a stacked tensor."""
    return t.view(-1, *([1] * (ndim - 1)))


class Pack(nn.Module):
    """``M`` models of one structure, their parameters and buffers stacked as ``(M, ...)``.

    Args:
        models: the members, all of one :func:`structure_key`. They are copied: the pack
            does not share storage with them.

    ``pack(x)`` maps ``x`` of shape ``(M, B, ...)`` (each member its own batch) to
    ``(M, B, ...)``; ``pack(x, shared=True)`` runs every member on the same ``(B, ...)``.
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

    def _tensors(self) -> dict[str, Tensor]:
        out = dict(zip(self.param_names, self.stacked))
        out.update(zip(self.buffer_names, self.buffers_stacked))
        return out

    def named_stacked(self) -> list[tuple[str, Tensor]]:
        """``(name, stacked parameter)`` in the members' ``named_parameters`` order."""
        return list(zip(self.param_names, self.stacked))

    # -- forward ----------------------------------------------------------------------------
    def _call(self, tensors: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.template, tensors, (x,), tie_weights=False, strict=False)

    def forward(self, x: Tensor, shared: bool = False) -> Tensor:
        tensors = self._tensors()
        if self.num_members == 1:  # no vmap: a pack of one costs what the model costs
            one = {n: t[0] for n, t in tensors.items()}
            return self._call(one, x if shared else x[0]).unsqueeze(0)
        if self._plan is not None and self.use_plan:
            return self._run_plan(tensors, x, shared)
        fn = vmap(self._call, in_dims=(0, None if shared else 0), randomness="different")
        return fn(tensors, x)

    # -- the fast path of sequential MLPs ---------------------------------------------------
    def _make_plan(self) -> list[tuple[Any, ...]] | None:
        """Steps of a sequential model made only of ``Linear``, ``Flatten``, dropout,
        ``Identity``, batch and layer norm over features and elementwise activations, run
        on ``(M, B, F)`` tensors without vmap; ``None`` for any other model (vmap)."""

        leaves: list[tuple[str, nn.Module]] = []

        def walk(prefix: str, mod: nn.Module) -> bool:
            if isinstance(mod, nn.Sequential):
                return all(walk(f"{prefix}{n}.", c) for n, c in mod.named_children())
            leaves.append((prefix.rstrip("."), mod))
            return True

        if not isinstance(self.template, nn.Sequential) or not walk("", self.template):
            return None
        plan: list[tuple[Any, ...]] = []
        pidx = {n: i for i, n in enumerate(self.param_names)}
        bidx = {n: i for i, n in enumerate(self.buffer_names)}
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
                return None
        return plan

    def _run_plan(self, tensors: dict[str, Tensor], x: Tensor, shared: bool) -> Tensor:
        import torch.nn.functional as F

        m = self.num_members
        ps, bs = list(self.stacked), self.buffers_stacked
        h = x.unsqueeze(0).expand(m, *x.shape) if shared else x
        for op in self._plan:  # type: ignore[union-attr]
            kind = op[0]
            if kind == "linear":
                w, b = ps[op[1]], (ps[op[2]] if op[2] is not None else None)
                # one batched matmul for all members: (M, B, in) @ (M, in, out) [+ (M, 1, out)]
                h = torch.bmm(h, w.transpose(1, 2)) if b is None else \
                    torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
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

    def _h(self, name: str, p: Tensor) -> Tensor:
        return _member_view(self.hyper[name], p.dim())

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        getattr(self, f"_{self.kind}")()

    def _grads(self) -> list[tuple[Tensor, Tensor, dict[str, Tensor]]]:
        return [(p, p.grad, s) for p, s in zip(self.params, self.state) if p.grad is not None]

    def _any(self, name: str) -> bool:
        """Whether any member's ``name`` is non-zero (read from the groups: no device sync)."""
        return any(float(g.get(name, 0) or 0) != 0 for g in self.groups)

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
        for p, g, s in self._grads():
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

    def select(self, params: Sequence[Tensor], members: Sequence[int]) -> PackOptimizer:
        """A new optimizer over ``params`` (the stacked parameters of a pack of the listed
        members) with those members' hyperparameters and state."""
        new = PackOptimizer(params, [self.groups[m] for m in members])
        idx = torch.as_tensor(list(members), device=self.device)
        new.steps = self.steps
        new.hyper = {k: v.index_select(0, idx).clone() for k, v in self.hyper.items()}
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
        probes: record per-member weight statistics and gradient norms at sync points (see
            the module docstring).
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
        probes: bool = False,
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
        self.probes = bool(probes)
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
        losses = self._losses(self.pack(xb), yb)
        self.optimizer.zero_grad()
        losses.sum().backward()
        if self.clip_norm is not None:
            self._clip()
        self.optimizer.step()
        if any(s is not None for s in self.schedules):
            for s in self.schedules:
                if s is not None:
                    s.step()
            self._lr_now()
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
            if bar is not None:
                bar.close()
        for h in self.histories:
            if h.status not in ("diverged",):
                h.status = "done"
        return self.histories

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
        values = torch.cat([t.to(self.device) for t in parts]).tolist()  # the one sync
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
                self._record_probes(j, stats[0], values[off:])
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
            f"on: {div.message()}", RuntimeWarning, stacklevel=4)


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

