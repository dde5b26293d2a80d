"""Train a grid of runs (seeds × variants), packing the runs that can share one pack.

A study or a script often trains many small models that differ only in their seed, their
initial weights or their optimizer's hyperparameters. :func:`train_grid` takes the whole grid
as a list of :class:`GridRun` (each what one ``Trainer(model, seed=...).fit(data, ...)`` call
would get), groups the runs that a :class:`~trainlab.engine.pack.PackTrainer` can train
together, trains each group as one pack and the rest one by one with the
:class:`~trainlab.engine.trainer.Trainer`, and returns one
:class:`~trainlab.engine.history.History` per run, in the grid's order, with the models
trained in place (``run.model`` holds the trained weights afterwards, as after
``Trainer.fit``).

**What a pack needs of its members** (:func:`pack_key`): the same module structure
(:func:`~trainlab.engine.pack.structure_key`), the *same data object*, the same
``steps``/``epochs``, ``batch_size``, ``eval_every``, ``log_every``, loss and clip norm, and
optimizers of one kind (SGD with or without momentum, Adam/AdamW, RMSprop, Adagrad,
Adadelta), and probes of equal settings (:func:`~trainlab.engine.pack.probe_settings`).
Each member keeps its own seed (its batch order), initial weights, learning rate, optimizer
hyperparameters and schedule. Probes of the kinds a pack runs per member
(:data:`~trainlab.engine.pack.PACK_PROBES`: ``ActivationStats``, ``GradientStats``,
``WeightStats``, ``UpdateRatio``, without ``probe_data``) run inside the pack: each run's
History gets its own records and histograms, and so do the run's probe instances
(``probe.records()`` after the grid, as after ``Trainer.fit``). A run with other probes,
callbacks, gradient noise, a checkpoint or ``on_divergence="raise"`` trains alone, and the
plan says why.

**Same results as alone.** A member's History is the one ``Trainer(model, seed=s)`` gives,
within float tolerance (the batched matmuls sum in another order; the pack's tests check
it); a member that diverges is frozen at its last finite state and reported as the Trainer's
``on_divergence="stop"`` would, while the others go on. With dropout, a member draws its
masks from the shared generator: a correct run of its own, not bit-for-bit the Trainer's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainlab.engine.history import History
from trainlab.engine.pack import (
    _KINDS,
    Pack,
    PackTrainer,
    probe_problem,
    probe_settings,
    structure_key,
)
from trainlab.engine.trainer import Trainer, _probe_objects
from trainlab.optim import build_optimizer

__all__ = ["GridGroup", "GridRun", "pack_key", "plan_grid", "train_grid", "train_group"]

#: Trainer keyword arguments a PackTrainer takes, one value per member or one for all
_PER_MEMBER = ("optimizer", "lr", "schedule", "optimizer_kwargs")
#: Trainer keyword arguments the members of a pack must share
_SHARED = ("loss", "clip_norm", "log_every", "eval_batch_size", "device")
#: Trainer keyword arguments that make no difference to the packing
_IGNORED = ("progress", "on_divergence")


@dataclass
class GridRun:
    """One run of a grid: what ``Trainer(model, seed=seed, **trainer).fit(data, ...)`` gets.

    Attributes:
        model: the initialized model (trained in place).
        data: a Dataset or an ``(x, y[, x_test, y_test])`` tuple; runs that pass the same
            object can share a pack.
        label: a name for the run (unique within the grid).
        seed: the batch order (and the Trainer's ``seed``).
        steps, epochs, batch_size, eval_every: as :meth:`Trainer.fit`.
        trainer: the other :class:`Trainer` keyword arguments (``optimizer``, ``lr``,
            ``optimizer_kwargs``, ``schedule``, ``loss``, ``log_every``, ``probes`` ...).
        config: what to record about the run (a study's store row); not used to train.
    """

    model: nn.Module
    data: Any
    label: str
    seed: int = 0
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 128
    eval_every: int | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class GridGroup:
    """Runs trained together (``packed``) or one run trained alone, with the reason."""

    members: list[int]
    packed: bool
    reason: str = ""


def _hashable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, (str, int, float, bool, type(None), torch.device)):
        return v
    return ("id", id(v))  # a callable or a module: the same object only


def _optimizer_kind(run: GridRun) -> str:
    """The pack kind of the run's optimizer (read from the one the Trainer would build)."""
    kw = run.trainer
    w = torch.zeros((), requires_grad=True)
    opt = build_optimizer(kw.get("optimizer", "sgd"), [w], lr=kw.get("lr"),
                          **dict(kw.get("optimizer_kwargs") or {}))
    cls = type(opt).__name__
    if cls not in _KINDS:
        raise ValueError(f"its optimizer {cls} has no pack form (packs train "
                         f"{', '.join(sorted(_KINDS))})")
    if len(opt.param_groups) != 1:
        raise ValueError("its optimizer has several param groups")
    g = opt.param_groups[0]
    flags = [f for f in ("amsgrad", "centered", "maximize", "differentiable") if g.get(f)]
    if flags:
        raise ValueError(f"its optimizer uses {', '.join(flags)}, which packs do not implement")
    return _KINDS[cls][0]


def pack_key(run: GridRun) -> tuple[Any, str]:
    """``(key, "")`` where runs with equal keys can share a pack, or ``(None, reason)`` when
    the run must train alone (the reason says why, for the plan and the study page)."""
    kw = dict(run.trainer)
    unknown = sorted(set(kw) - set(_PER_MEMBER) - set(_SHARED) - set(_IGNORED)
                     - {"probes", "callbacks", "grad_noise", "checkpoint", "checkpoint_every"})
    if unknown:
        return None, f"Trainer arguments {', '.join(unknown)} have no pack form"
    probes: tuple = ()
    if kw.get("probes"):
        why = probe_problem(run.model, kw["probes"])
        if why is not None:
            return None, f"its probes cannot run inside a pack: {why}"
        probes = probe_settings(kw["probes"])
    if kw.get("callbacks"):
        return None, "callbacks see one model"
    if kw.get("grad_noise") is not None:
        return None, "gradient noise has no pack form"
    if kw.get("checkpoint") is not None:
        return None, "checkpoints are written per Trainer"
    if kw.get("on_divergence", "raise") != "stop":
        return None, "on_divergence='raise' stops the whole pack"
    if any(isinstance(m, nn.RNNBase) for m in run.model.modules()):
        # torch has no vmap rule for aten::gru / lstm / rnn_tanh: a pack cannot run them
        return None, "recurrent layers (torch.nn.RNN/LSTM/GRU) have no vmap rule"
    if any(isinstance(m, nn.RReLU) for m in run.model.modules()):
        # torch.func.vmap: "we do not yet support aten::rrelu" (a random slope per element)
        return None, "RReLU has no vmap rule"
    try:
        kind = _optimizer_kind(run)
    except ValueError as e:
        return None, str(e)
    shared = tuple(_hashable(kw.get(k)) for k in _SHARED)
    key = (structure_key(run.model), id(run.data), run.steps, run.epochs, run.batch_size,
           run.eval_every, kind, shared, probes)
    return key, ""


def plan_grid(runs: Sequence[GridRun], max_pack: int = 64) -> list[GridGroup]:
    """Group ``runs`` into packs of at most ``max_pack`` members (in grid order, so a pack
    holds neighbouring runs) and runs trained alone (with the reason). A group of one
    packable run trains alone with the Trainer (its own kernels: nothing to share)."""
    groups: dict[Any, list[int]] = {}
    alone: list[GridGroup] = []
    for i, run in enumerate(runs):
        if not any(True for _ in run.model.parameters()):
            alone.append(GridGroup([i], False, "the model has no parameters"))
            continue
        key, reason = pack_key(run)
        if key is None:
            alone.append(GridGroup([i], False, reason))
        else:
            groups.setdefault(key, []).append(i)
    out = list(alone)
    for idx in groups.values():
        for start in range(0, len(idx), max_pack):
            chunk = idx[start:start + max_pack]
            if len(chunk) == 1:
                out.append(GridGroup(chunk, False, "no other run shares its structure, data, "
                                                   "training length and probes"))
            else:
                out.append(GridGroup(chunk, True))
    return sorted(out, key=lambda g: g.members[0])


def _as_list(probes: Any) -> Any:
    return probes if isinstance(probes, (str, list, tuple)) else [probes]


def _train_alone(run: GridRun) -> History:
    kw = dict(run.trainer)
    trainer = Trainer(run.model, seed=run.seed, **kw)
    trainer.fit(run.data, epochs=run.epochs, steps=run.steps, batch_size=run.batch_size,
                eval_every=run.eval_every)
    return trainer.history


def _train_pack(runs: Sequence[GridRun]) -> list[History]:
    first = runs[0].trainer
    shared = {k: first[k] for k in _SHARED if k in first}
    per = {k: [r.trainer.get(k, d) for r in runs]
           for k, d in (("optimizer", "sgd"), ("lr", None), ("schedule", None))}
    opt_kw = [dict(r.trainer.get("optimizer_kwargs") or {}) for r in runs]
    pack = Pack([r.model for r in runs])
    # equal probe settings (pack_key): the first run's probes serve as the settings of all
    probes = first.get("probes") or False
    trainer = PackTrainer(pack, optimizer=per["optimizer"], lr=per["lr"],
                          schedule=per["schedule"], optimizer_kwargs=opt_kw,
                          seeds=[r.seed for r in runs], probes=probes,
                          progress=first.get("progress", False), **shared)
    histories = trainer.fit(runs[0].data, epochs=runs[0].epochs, steps=runs[0].steps,
                            batch_size=runs[0].batch_size, eval_every=runs[0].eval_every)
    if probes:
        # each run's own probe instances get its records, as Trainer.fit leaves them (names
        # build fresh objects, which nobody else sees)
        for j, run in enumerate(runs):
            trainer.give_records(j, _probe_objects(_as_list(run.trainer["probes"])))
    # the trained weights back into the caller's models, as Trainer.fit leaves them
    for run, trained in zip(runs, trainer.unstack()):
        run.model.load_state_dict(trained.state_dict())
        run.model.to(trainer.device)
    return histories


def train_group(runs: Sequence[GridRun], group: GridGroup) -> list[History]:
    """Train one group of :func:`plan_grid`'s plan; its histories in ``group.members``
    order."""
    if group.packed:
        return _train_pack([runs[i] for i in group.members])
    return [_train_alone(runs[i]) for i in group.members]


def train_grid(runs: Sequence[GridRun], *, max_pack: int = 64,
               on_group: Callable[[GridGroup, list[History]], None] | None = None
               ) -> tuple[list[History], list[GridGroup]]:
    """Train every run of the grid; returns ``(histories, groups)``: one History per run in
    the grid's order, and the plan (:func:`plan_grid`) it followed.

    ``on_group(group, histories)`` is called after each group (packed or alone) with that
    group's histories (in ``group.members`` order): a study records its store rows there, so
    that a crash keeps the groups already trained.
    """
    runs = list(runs)
    labels = [r.label for r in runs]
    dup = sorted({n for n in labels if labels.count(n) > 1})
    if dup:
        raise ValueError(f"grid run labels must be unique. Received repeats: {dup}.")
    groups = plan_grid(runs, max_pack=max_pack)
    out: list[History | None] = [None] * len(runs)
    for g in groups:
        hs = train_group(runs, g)
        for i, h in zip(g.members, hs):
            out[i] = h
        if on_group is not None:
            on_group(g, hs)
    return out, groups  # type: ignore[return-value]
