"""The Trainer: a plain PyTorch training loop with no per-step host synchronisation.

One step is ``forward → loss → zero_grad → backward → (clip) → optimizer.step → schedule.step``
on batches drawn on the device by :class:`trainlab.data.DeviceBatcher`. The loss of each
step stays on the device; the host reads the losses of a whole window of steps at once, at
*sync points* (every ``log_every`` steps, every ``eval_every`` steps, at checkpoints and at the
end). So a healthy step costs what a hand-written loop costs.

Divergence. At each sync point the window's losses and the parameter norms are checked. When
one is NaN or Inf, training stops and the trainer *replays* the window from a snapshot taken
at the previous sync point (model, optimizer, schedule, batcher and RNG states: the batcher
draws the window's batches again, so none is kept alive in between) with temporary hooks on
every module. The first module whose output (forward) or
whose output gradient or parameter gradient (backward) is non-finite is named, with the exact
step. Healthy training pays only for one snapshot copy per window.

Resume. A checkpoint holds the model, optimizer, schedule and batcher states, every RNG state,
the step and the History, so on CPU a resumed run ends with exactly the weights of an
uninterrupted one, and the same History: a stop between two sync points does not log a row
for the partial window; the checkpoint keeps that window's losses (and the elapsed time), and
the resumed run logs the row at the same step, with the same mean loss, as an uninterrupted
run would.

Signals. Ctrl-C (SIGINT) and SIGTERM (a batch scheduler's stop) are handled alike: the first
only sets a flag; the loop stops at the next step boundary, saves a checkpoint and raises
:class:`TrainingInterrupted` (a ``KeyboardInterrupt`` carrying the signal number, so the CLI
exits with status 128 + signal: 130 for SIGINT, 143 for SIGTERM). A second signal before that
raises at once.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlab.data.batching import DeviceBatcher
from trainlab.engine.checkpoint import (
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from trainlab.engine.history import Divergence, History
from trainlab.engine.loop import (
    Cadence,
    advance_bar,
    check_count,
    eval_split,
    evaluate_in_batches,
    fit_data,
    history_row,
    locate,
    progress_bar,
    window_divergence,
)
from trainlab.losses import LOSSES
from trainlab.optim import build_optimizer, build_schedule, check_lr
from trainlab.probes.registry import build_probes
from trainlab.utils import resolve_device, seed_everything

__all__ = ["DivergenceError", "Trainer", "TrainingInterrupted"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped by a signal (or :meth:`Trainer.interrupt`).

    Attributes:
        signum: the signal (``signal.SIGINT`` for Ctrl-C and ``interrupt()``, ``SIGTERM``).
        step: the step reached (the checkpoint's step, when one was saved).
        exit_status: ``128 + signum``, the status a shell reports for that signal.
    """

    def __init__(self, signum: int = signal.SIGINT, step: int | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.step = step

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class _Snapshot:
    """The training state at the last sync point, kept for the divergence replay.

    Taken once per window, so it must be cheap: tensors are copied into buffers allocated
    once and reused (one fused ``_foreach_copy_``), not cloned. Model parameters and buffers,
    optimizer state tensors, the optimizer's hyperparameters, the schedule, the batcher's
    position (to draw the window's batches again: keeping the batches themselves alive would
    make every step allocate fresh memory, a few per cent of a step on CPU) and every RNG.
    """

    def __init__(self) -> None:
        self._sig: Any = None
        self._bufs: list[torch.Tensor] = []

    @staticmethod
    def _state(trainer: Trainer) -> tuple[list[torch.Tensor], list[tuple[int, str]], dict]:
        tensors = [t.detach() for t in trainer.model.state_dict(keep_vars=True).values()]
        keys, other = [], {}
        params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            for k, v in trainer.optimizer.state.get(p, {}).items():
                if isinstance(v, torch.Tensor):
                    tensors.append(v)
                    keys.append((i, k))
                else:
                    other[(i, k)] = copy.deepcopy(v)
        return tensors, keys, other

    def take(self, trainer: Trainer) -> None:
        self.step = trainer.step
        tensors, self._keys, self._other = self._state(trainer)
        sig = [(t.shape, t.dtype, t.device) for t in tensors]
        if sig != self._sig:
            self._bufs = [torch.empty_like(t) for t in tensors]
            self._sig = sig
        if tensors:
            torch._foreach_copy_(self._bufs, tensors)
        self._groups = [
            {k: copy.copy(v) for k, v in g.items() if k != "params"}
            for g in trainer.optimizer.param_groups
        ]
        sched = trainer.schedule
        self._schedule = copy.deepcopy(sched.state_dict()) if sched is not None else None
        self._rng = get_rng_state()
        self._batcher = trainer.batcher.state_dict() if trainer.batcher is not None else None

    def restore(self, trainer: Trainer) -> None:
        opt = trainer.optimizer
        params = [p for g in opt.param_groups for p in g["params"]]
        keep = {(i, k) for i, k in self._keys} | set(self._other)
        for i, p in enumerate(params):  # drop state created after the snapshot
            st = opt.state.get(p)
            if st is not None:
                for k in [k for k in st if (i, k) not in keep]:
                    del st[k]
                if not st:
                    del opt.state[p]
        for (i, k), v in self._other.items():
            opt.state[params[i]][k] = copy.deepcopy(v)
        targets = [t.detach() for t in trainer.model.state_dict(keep_vars=True).values()]
        targets += [opt.state[params[i]][k] for i, k in self._keys]
        with torch.no_grad():
            torch._foreach_copy_(targets, self._bufs)
        for g, saved in zip(opt.param_groups, self._groups):
            g.update(saved)
        if trainer.schedule is not None and self._schedule is not None:
            trainer.schedule.load_state_dict(self._schedule)
        set_rng_state(self._rng)
        if trainer.batcher is not None and self._batcher is not None:
            trainer.batcher.load_state_dict(self._batcher)


class DivergenceError(RuntimeError):
    """Training produced NaN or Inf; ``.divergence`` says where (step, module, kind)."""

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.message())
        self.divergence = divergence


def _takes_class_indices(spec: Any, fn: Any) -> bool:
    """Whether the loss reads ``y`` as class indices into the outputs (cross-entropy, NLL,
    multiclass hinge), so that a class beyond the outputs is a mistake worth naming."""
    from torch.nn import functional as F

    if isinstance(spec, str):
        return LOSSES.get(spec).meta.get("target") == "class indices"
    return fn in (F.cross_entropy, F.nll_loss, F.multi_margin_loss) or isinstance(
        fn, (nn.CrossEntropyLoss, nn.NLLLoss, nn.MultiMarginLoss))


def _probe_objects(probes: Any) -> list[Any]:
    """Probe objects, or names as on the command line (``"activations"``, ``"all"``,
    ``"activations,gradients"``), built with each probe's default schedule."""
    if isinstance(probes, str):
        probes = [probes]
    if not any(isinstance(p, str) for p in probes):
        return list(probes)
    out: list[Any] = []  # build_probes: an unknown name lists the close matches
    for p in probes:
        out.extend(build_probes([p]) if isinstance(p, str) else [p])
    return out


class Trainer:
    """Train a classifier; see the module docstring for the design.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits.
        optimizer: a name in :data:`trainlab.optim.OPTIMIZERS` (``"sgd"``, ``"adam"`` ...),
            a ``(name, kwargs)`` pair, a built ``torch.optim.Optimizer`` over the model's
            parameters, or a callable ``params -> Optimizer``.
        lr: learning rate for an optimizer built by name; ``None`` (the default) takes that
            optimizer's own default (its registry entry's ``default_lr``: 1e-3 for Adam). It
            is not used for a built optimizer or a callable.
        loss: a name in :data:`trainlab.losses.LOSSES` or a callable ``(logits, y) -> loss``.
        device: ``None``/``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"`` ...
        seed: seeds Python, NumPy and torch at the start of ``fit`` and the batch order.
        probes: probe names as on the command line (``"activations"``, ``"all"``) or
            objects following the probe protocol (``attach``, ``step_begin``,
            ``after_backward``, ``step_end``, ``records``, ``detach``; optionally
            ``histograms``, ``spectra``, ``clear``, and ``see_batch(x, y, loss_fn)``, called
            with each training batch and the loss before ``step_begin``). Their records are
            moved into the History (``probe_records``, ``histograms``, ``spectra``) at every
            checkpoint and at the end of ``fit``; a probe with ``clear()`` is cleared then, so
            each record reaches the History once.
        callbacks: see :mod:`trainlab.engine.callbacks`.
        schedule: a name in :data:`trainlab.optim.SCHEDULES`, a ``(name, kwargs)`` pair, a
            built ``LRScheduler`` or a callable ``(optimizer, total_steps) -> LRScheduler``;
            stepped once per training step.
        optimizer_kwargs: extra keyword arguments for an optimizer built by name.
        clip_norm: clip the global gradient norm to this value (``torch``'s fused kernel).
        grad_noise: an object with ``add_(params, step)`` called after backward.
        log_every: steps between sync points (loss read, divergence check, progress bar).
        checkpoint: file written at ``checkpoint_every`` steps, at the end and on Ctrl-C or
            SIGTERM.
        checkpoint_every: steps between checkpoints (None: only at the end / on Ctrl-C).
        progress: show a tqdm bar; ``None`` shows it only when stderr is a terminal.
        on_divergence: ``"raise"`` (:class:`DivergenceError`) or ``"stop"`` (return the
            History with ``status="diverged"``).
        eval_batch_size: batch size of the evaluation passes.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Any = "sgd",
        lr: float | None = None,
        loss: Any = "cross_entropy",
        device: str | torch.device | None = None,
        seed: int = 0,
        probes: Sequence[Any] = (),
        callbacks: Sequence[Any] = (),
        schedule: Any = None,
        *,
        optimizer_kwargs: dict[str, Any] | None = None,
        clip_norm: float | None = None,
        grad_noise: Any = None,
        log_every: int = 50,
        checkpoint: str | Path | None = None,
        checkpoint_every: int | None = None,
        progress: bool | None = None,
        on_divergence: str = "raise",
        eval_batch_size: int = 1024,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module. Received: {type(model).__name__}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}.")
        if lr is not None:
            check_lr(lr)
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None. Received: clip_norm={clip_norm!r}.")
        if on_divergence not in ("raise", "stop"):
            raise ValueError(
                "on_divergence must be one of ('raise', 'stop'). "
                f"Received: on_divergence={on_divergence!r}."
            )
        check_count("log_every", log_every)
        check_count("checkpoint_every", checkpoint_every)
        check_count("eval_batch_size", eval_batch_size)
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.seed = seed
        self.lr = lr
        self.optimizer = self._build_optimizer(optimizer, optimizer_kwargs or {})
        kind = getattr(self.optimizer, "closure_kind", None)
        if kind is not None and (clip_norm is not None or grad_noise is not None):
            raise ValueError(
                f"clip_norm and grad_noise act between backward and step, which "
                f"{type(self.optimizer).__name__} does inside its own step(closure); use them "
                f"with a first-order optimizer. Received: clip_norm={clip_norm!r}, "
                f"grad_noise={grad_noise!r}.")
        self.loss_fn = self._build_loss(loss)
        self._class_targets = _takes_class_indices(loss, self.loss_fn)
        self._schedule_spec = schedule
        self.schedule: Any = None
        self.probes = _probe_objects(probes)
        self.callbacks = list(callbacks)
        self.clip_norm = clip_norm
        self.grad_noise = grad_noise
        self.log_every = log_every
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.on_divergence = on_divergence
        self.eval_batch_size = eval_batch_size
        self.history = History()
        self.step = 0
        self.stop_training = False
        self._interrupted = False
        self._signum = int(signal.SIGINT)
        self._elapsed = 0.0  # seconds of training before this fit (a resumed run's)
        self._t0: float | None = None
        self._window: tuple[int, list[torch.Tensor]] | None = None  # unlogged partial window
        self.batcher: Any = None
        # per probe (by id): how many of its rows, histograms and spectra are already in a
        # History, for probes whose clear() is missing or does not clear everything
        self._probe_taken: dict[int, tuple[int, int, int]] = {}

    # -- construction helpers -----------------------------------------------------------------
    def _build_optimizer(self, spec: Any, kwargs: dict[str, Any]) -> torch.optim.Optimizer:
        if isinstance(spec, torch.optim.Optimizer):
            return spec
        if isinstance(spec, (str, tuple, dict)):
            return build_optimizer(spec, self.model.parameters(), lr=self.lr, **kwargs)
        if callable(spec):
            return spec(self.model.parameters())
        raise TypeError(
            "optimizer must be a name, a (name, kwargs) pair, a torch.optim.Optimizer or a "
            f"callable params -> Optimizer. Received: {type(spec).__name__}."
        )

    @staticmethod
    def _build_loss(spec: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if isinstance(spec, (str, tuple, dict)):
            return LOSSES.build(spec)
        if callable(spec):
            return spec
        raise TypeError(
            f"loss must be a name or a callable (logits, y) -> loss. Received: {spec!r}."
        )

    def _build_schedule(self, total_steps: int) -> Any:
        spec = self._schedule_spec
        if spec is None or isinstance(spec, torch.optim.lr_scheduler.LRScheduler):
            return spec
        if isinstance(spec, (str, tuple, dict)):
            return build_schedule(spec, self.optimizer, total_steps=total_steps)
        if callable(spec):
            return spec(self.optimizer, total_steps)
        raise TypeError(f"schedule must be a name, a scheduler or a callable. Received: {spec!r}.")

    # -- public API ---------------------------------------------------------------------------
    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Ask the loop to stop at the next step boundary, checkpoint, and raise
        :class:`TrainingInterrupted` (as the signal ``signum`` would)."""
        self._signum = int(signum)
        self._interrupted = True

    def fit(
        self,
        data: Any,
        epochs: int | None = None,
        steps: int | None = None,
        batch_size: int = 128,
        eval_every: int | None = None,
        resume: str | Path | bool | None = None,
    ) -> History:
        """Train for ``epochs`` epochs or ``steps`` steps (give exactly one).

        Args:
            data: a :class:`trainlab.data.Dataset` or ``(x_train, y_train[, x_test, y_test])``.
            batch_size: examples per step.
            eval_every: steps between evaluations on the test split (default: once per
                epoch); adds ``test_loss`` and ``test_acc`` to the History rows.
            resume: a checkpoint path, ``True`` for this trainer's ``checkpoint`` file, or a
                checkpoint dict already read with :func:`load_checkpoint` (read once).

        Returns the :class:`History` (also ``self.history``). Raises
        :class:`DivergenceError` on NaN/Inf (unless ``on_divergence="stop"``) and
        :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) after Ctrl-C or SIGTERM, once
        the checkpoint is saved.
        """

        x, y, x_test, y_test = fit_data(data, epochs, steps, batch_size, eval_every)
        self._check_data_fits(x, y)
        seed_everything(self.seed)
        self.batcher = DeviceBatcher(
            x, y, batch_size, shuffle=True, seed=self.seed, device=self.device
        )
        per_epoch = len(self.batcher)
        total = steps if steps is not None else epochs * per_epoch
        eval_every = eval_every or per_epoch
        self.total_steps = total
        self._test = eval_split(x_test, y_test, self.device)
        self.schedule = self._build_schedule(total)
        self.history = History()
        self.step = 0
        self.stop_training = False
        self._interrupted = False
        self._elapsed, self._window = 0.0, None
        if isinstance(resume, dict):
            self._load(resume)
        elif resume:
            path = self.checkpoint if resume is True else Path(resume)
            if path is None:
                raise ValueError("resume=True needs the trainer's checkpoint= path.")
            self._load(load_checkpoint(path, map_location=self.device))
        sync_every = [self.log_every, eval_every]
        if self.checkpoint is not None and self.checkpoint_every:
            sync_every.append(self.checkpoint_every)
        return self._run(total, sync_every, eval_every)

    def _check_data_fits(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One forward pass of two examples (eval mode, no grad, RNG untouched) before
        training, so a model that does not fit the data fails with both shapes named
        instead of a matmul error inside the first step; then integer targets are checked
        against the number of outputs."""
        xb = x[:2].to(self.device)
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()  # no BN statistics updated, no dropout drawn
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                out = self.model(xb)
        except (RuntimeError, ValueError, IndexError) as e:
            first = next((m for m in self.model.modules()
                          if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))), None)
            expects = ""
            if isinstance(first, nn.Linear):
                expects = f"; its first layer expects (N, {first.in_features}) features"
            elif first is not None:
                expects = f"; its first layer expects (N, {first.in_channels}, ...) channels"
            raise ValueError(
                f"the data does not fit the model: examples of shape {tuple(x.shape[1:])} "
                f"(x of shape {tuple(x.shape)}){expects}. torch said: "
                f"{' '.join(str(e).split())[:200]}"
            ) from e
        finally:
            for m, mode in modes:
                m.train(mode)
        if (self._class_targets and isinstance(out, torch.Tensor) and out.dim() == 2
                and not y.is_floating_point() and y.numel()):
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= out.shape[1]:
                raise ValueError(
                    f"the targets do not fit the model: y holds classes {lo}..{hi} but the "
                    f"model has {out.shape[1]} outputs (classes 0..{out.shape[1] - 1}). "
                    "Give the model as many outputs as the data has classes."
                )

    # -- the loop -----------------------------------------------------------------------------
    def _run(self, total: int, sync_every: list[int], eval_every: int) -> History:
        bar = progress_bar(self.progress, total, self.step)
        old_handlers = self._install_signals()
        # attach the probes not attached yet (a probe attached by the caller stays attached)
        mine = [p for p in self.probes if getattr(p, "model", None) is None]
        for p in mine:
            p.attach(self.model)
        for cb in self.callbacks:
            if hasattr(cb, "on_fit_begin"):
                cb.on_fit_begin(self)
        self.model.train()
        batches = self._stream()
        t0 = self._t0 = time.perf_counter() - self._elapsed  # `time` goes on after a resume
        # a resumed run continues the window its checkpoint was taken in (steps not logged)
        window_start, losses = self._window or (self.step, [])
        self._window = None
        snapshot = _Snapshot()
        snapshot.take(self)
        cadence = Cadence(total, tuple(sync_every), eval_every)
        nxt = cadence.next(self.step)
        try:
            while self.step < total and not self.stop_training and not self._interrupted:
                xb, yb = next(batches)
                loss = self._step(xb, yb, self.step, probes=True)
                losses.append(loss.detach())
                self.step += 1
                s = self.step
                if s >= nxt:  # an interrupt between sync points is handled after the loop
                    div = self._sync(window_start, losses, cadence.evaluates(s), t0, bar)
                    if div is not None:
                        return self._diverged(self._locate(snapshot, div))
                    if self.checkpoint is not None and (
                        (self.checkpoint_every and s % self.checkpoint_every == 0) or s == total
                    ):
                        self.save(self.checkpoint)
                    window_start, losses = s, []
                    nxt = cadence.next(s)
                    snapshot.take(self)
            if self._interrupted:
                if losses:  # check the partial window; its row is logged after the resume
                    div = self._sync(window_start, losses, False, t0, bar, log=False)
                    if div is not None:
                        return self._diverged(self._locate(snapshot, div))
                    self._window = (window_start, losses)
                if self.checkpoint is not None:
                    self.save(self.checkpoint)
                self.history.status = "interrupted"
                raise TrainingInterrupted(self._signum, self.step)
            if self.stop_training:
                self.history.status = "stopped"
                if self.checkpoint is not None:
                    self.save(self.checkpoint)
            for cb in self.callbacks:
                if hasattr(cb, "on_fit_end"):
                    cb.on_fit_end(self, self.history)
            return self.history
        finally:
            try:
                for p in mine:
                    p.detach()  # flushes device-side records to the host
                self._finish_probes()
                if bar is not None:
                    bar.close()
            finally:  # even when a second signal cut the lines above short
                self._elapsed, self._t0 = time.perf_counter() - t0, None
                self._restore_signals(old_handlers)

    def _stream(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from self.batcher

    def _forward(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model(xb), yb)

    def _update(self, loss: torch.Tensor, step: int, probes: bool) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if probes:
            for p in self.probes:
                p.after_backward(step)
        if self.grad_noise is not None:
            self.grad_noise.add_([p for p in self.model.parameters()], step)
        if self.clip_norm is not None:
            # torch's fused clip returns a device tensor: no host sync.
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()

    def _step(self, xb: torch.Tensor, yb: torch.Tensor, step: int, probes: bool) -> torch.Tensor:
        if probes:
            for p in self.probes:
                if hasattr(p, "see_batch"):  # probes that re-evaluate the loss (landscape)
                    p.see_batch(xb, yb, self.loss_fn)
                p.step_begin(step)
        kind = getattr(self.optimizer, "closure_kind", None)
        if kind is not None:
            loss = self._closure_step(xb, yb, step, probes, kind)
        else:
            loss = self._forward(xb, yb)
            self._update(loss, step, probes)
        if probes:
            for p in self.probes:
                p.step_end(step)
        return loss

    def _closure_step(self, xb: torch.Tensor, yb: torch.Tensor, step: int, probes: bool,
                      kind: str) -> torch.Tensor:
        """One step of an optimizer that evaluates the loss itself (``closure_kind``, see
        :mod:`trainlab.optim.second_order`): L-BFGS (``"backward"``), Newton (``"loss"``), the
        natural gradient (``"per_example"``). The probes' ``after_backward`` sees the
        gradient of the first evaluation (L-BFGS) or of the point the step started from."""
        first = [True]

        def backward_closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._forward(xb, yb)
            loss.backward()
            if probes and first[0]:
                for p in self.probes:
                    p.after_backward(step)
            first[0] = False
            return loss

        def loss_closure() -> torch.Tensor:
            return self._forward(xb, yb)

        def per_example_closure() -> torch.Tensor:
            # the loss of each example as a batch of one, vectorized (no loop over examples)
            out = self.model(xb)
            return torch.func.vmap(lambda o, t: self.loss_fn(o[None], t[None]))(out, yb)

        closures = {"backward": backward_closure, "loss": loss_closure,
                    "per_example": per_example_closure}
        if kind not in closures:
            raise ValueError(f"optimizer closure_kind must be one of {tuple(closures)}. "
                             f"Received: closure_kind={kind!r}.")
        if kind == "backward":
            first_loss: list[torch.Tensor] = []

            def recording() -> torch.Tensor:
                loss = backward_closure()
                if not first_loss:
                    first_loss.append(loss.detach())
                return loss

            self.optimizer.step(recording)
            loss = first_loss[0]  # the loss at the point the step started from, as SGD's
        else:
            loss = self.optimizer.step(closures[kind])
            if probes:
                for p in self.probes:
                    p.after_backward(step)
        if self.schedule is not None:
            self.schedule.step()
        return loss.detach()

    # -- sync points --------------------------------------------------------------------------
    def _sync(
        self,
        window_start: int,
        losses: list[torch.Tensor],
        evaluate: bool,
        t0: float,
        bar: Any,
        log: bool = True,
    ) -> Divergence | None:
        """Read the window's losses (one host sync), check them, log a History row (unless
        ``log`` is false). A non-finite loss or largest ``|w|`` of a parameter tensor is a
        divergence (:func:`~trainlab.engine.loop.window_divergence`)."""
        params = [p.detach() for p in self.model.parameters()]
        parts = [torch.stack(losses).float().reshape(-1)]
        if params:
            # max |w| per tensor: finite iff the tensor is (a 2-norm could overflow to inf)
            parts.append(torch.stack(torch._foreach_norm(params, math.inf)).float())
        ev = self._evaluate() if evaluate and self._test is not None else None
        if ev is not None:
            parts.append(ev)
        values = torch.cat([t.to(self.device) for t in parts]).tolist()  # the one sync
        window_losses = values[: len(losses)]
        norms = values[len(losses) : len(losses) + len(params)]
        div = window_divergence(window_start, self.step, window_losses, norms)
        if div is not None or not log:
            return div
        row = history_row(self.step, len(self.batcher), window_losses,
                          float(self.optimizer.param_groups[0]["lr"]), time.perf_counter() - t0)
        if ev is not None:
            row["test_loss"], row["test_acc"] = values[-2], values[-1]
        self.history.metrics.append(row)
        for cb in self.callbacks:
            if hasattr(cb, "on_log"):
                cb.on_log(self, row)
        if bar is not None:
            post = {"loss": f"{row['train_loss']:.4g}"}
            if "test_acc" in row:
                post["test_acc"] = f"{row['test_acc']:.3f}"
            advance_bar(bar, self.step, post)
        return None

    def _evaluate(self, split: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``[mean loss, accuracy]`` on ``split`` (default: the test split), as a device
        tensor (no sync)."""
        x, y = split if split is not None else self._test

        def score(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.model(xb)
            return out, self.loss_fn(out, yb), yb

        return evaluate_in_batches(self.model, x, y, self.eval_batch_size, score,
                                   device=self.device)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Mean loss and accuracy of the model on ``(x, y)``."""
        loss, acc = self._evaluate((x.to(self.device), y.to(self.device))).tolist()
        return {"loss": loss, "acc": acc}

    # -- divergence ---------------------------------------------------------------------------
    def _locate(self, snapshot: _Snapshot, found: Divergence) -> Divergence:
        """Replay the steps from the snapshot's (the last sync point, or the resume) to
        ``self.step - 1`` with hooks (:func:`~trainlab.engine.loop.locate`); name the first
        bad module."""
        window_start, window_end = snapshot.step, self.step
        snapshot.restore(self)  # the batcher too: it draws the window's batches again
        replay = self._stream()

        def forward(step: int) -> torch.Tensor:
            xb, yb = next(replay)
            self.step = step  # what step-dependent code saw the first time
            return self._forward(xb, yb)

        def update(loss: torch.Tensor, step: int) -> None:
            self._update(loss, step, probes=False)

        div = locate(self.model, range(window_start, window_end), forward, update,
                     self.model.named_parameters)
        return div if div is not None else found

    def _diverged(self, div: Divergence) -> History:
        self.history.status = "diverged"
        self.history.divergence = div
        for cb in self.callbacks:
            if hasattr(cb, "on_fit_end"):
                cb.on_fit_end(self, self.history)
        if self.on_divergence == "raise":
            raise DivergenceError(div)
        return self.history

    def _finish_probes(self) -> None:
        """Move what the probes recorded since the last call into the History.

        How many records of each probe were taken is remembered, so a second ``fit`` or a
        checkpoint followed by the end of training never adds a record twice. The probe keeps
        its records too (``probe.records()`` after ``fit`` returns them, as it does outside
        a Trainer): both lists hold the same row tuples, so the copy costs only references.
        """
        h = self.history
        for p in self.probes:
            key = id(p)
            got = self._probe_outputs(p)
            taken = self._probe_taken.get(key, (0, 0, 0))
            h.probe_records.extend(got[0][taken[0]:])
            h.histograms.extend(got[1][taken[1]:])
            h.spectra.extend(got[2][taken[2]:])
            self._probe_taken[key] = tuple(len(g) for g in got)  # type: ignore[assignment]

    @staticmethod
    def _probe_outputs(p: Any) -> tuple[list, list, list]:
        hists = list(p.histograms()) if hasattr(p, "histograms") else []
        spectra = list(p.spectra()) if hasattr(p, "spectra") else []
        return list(p.records()), hists, spectra

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume. The probes' records so far are moved into the History
        first, so a checkpoint holds every record up to its step, and a run resumed from it
        neither loses nor repeats one. ``window`` holds the losses of the steps since the last
        logged row when training stopped between sync points; ``elapsed`` the seconds of
        training so far (the History's ``time`` column goes on from it)."""
        self._finish_probes()
        cbs = [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in self.callbacks]
        start, losses = self._window or (self.step, [])
        elapsed = time.perf_counter() - self._t0 if self._t0 is not None else self._elapsed
        return {
            "step": self.step,
            "epoch": self.batcher.epoch if self.batcher is not None else 0,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "batcher": self.batcher.state_dict() if self.batcher is not None else None,
            "grad_noise": self.grad_noise.state_dict()
            if hasattr(self.grad_noise, "state_dict")
            else None,
            "rng": get_rng_state(),
            "history": self.history.state_dict(),
            "callbacks": cbs,
            "window": {
                "start": start,
                "losses": torch.stack(losses).detach().cpu() if losses else None,
            },
            "elapsed": float(elapsed),
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically (temporary file, fsync, rename)."""
        return save_checkpoint(path, self.state_dict())

    def _load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None and state.get("schedule") is not None:
            self.schedule.load_state_dict(state["schedule"])
        if self.batcher is not None and state.get("batcher") is not None:
            self.batcher.load_state_dict(state["batcher"])
        if state.get("grad_noise") is not None and hasattr(self.grad_noise, "load_state_dict"):
            self.grad_noise.load_state_dict(state["grad_noise"])
        self.history.load_state_dict(state.get("history", {}))
        for cb, s in zip(self.callbacks, state.get("callbacks") or []):
            if s is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(s)
        self.step = int(state["step"])
        window = state.get("window") or {}
        if window.get("losses") is not None:
            pending = window["losses"].to(self.device)
            self._window = (int(window["start"]), list(pending.unbind()))
        # a checkpoint without "elapsed" (older trainlab): the time of its last row
        self._elapsed = float(state.get("elapsed", self.history.last("time", 0.0)))
        set_rng_state(state["rng"])

    # -- plumbing -----------------------------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        """Handle SIGINT and SIGTERM alike while training (see the module docstring);
        return the previous handlers. Only the main thread can install handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        trainer = self

        def handler(signum: int, frame: Any) -> None:
            if trainer._interrupted:  # a second signal: stop now
                raise TrainingInterrupted(signum, trainer.step)
            trainer.interrupt(signum)

        old = {}
        for sig in _STOP_SIGNALS:
            try:
                old[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # pragma: no cover - unusual embedding
                pass
        return old

    @staticmethod
    def _restore_signals(old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            try:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, OSError):  # pragma: no cover
                pass
