"""LossLandscape: the loss and the gradient along the gradient direction (Santurkar et al. 2018).

Santurkar, Tsipras, Ilyas & Madry, "How Does Batch Normalization Help Optimization?",
NeurIPS 2018, fig. 4: at a training step with parameters ``θ`` and gradient
``g = ∇L(θ)`` on the batch, move along the gradient by several step sizes ``η`` and record

- the **loss** ``L(θ − η g)`` (fig. 4a: its range over ``η``, "variation in loss");
- the **ℓ2 change of the gradient** ``‖∇L(θ − η g) − ∇L(θ)‖`` (fig. 4b, "gradient
  predictiveness");
- the **effective β-smoothness** ``max_η ‖∇L(θ − η g) − ∇L(θ)‖ / ‖η g‖`` (fig. 4c: the
  largest change of the gradient per unit distance moved along it).

A smoother landscape (BatchNorm's, in the paper) has a smaller loss range, smaller gradient
changes and a smaller β. The paper moves up to ``η = 0.4`` (in units of the gradient, as
here); the default step sizes are 0.05, 0.1, …, 0.4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.probes.base import Probe, _Buffer, preserved_state

__all__ = ["LossLandscape", "DEFAULT_STEP_SIZES"]

#: the paper's range of distances, in units of the gradient: η = 0.05 … 0.4
DEFAULT_STEP_SIZES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)

_KEYS = ("loss", "grad_norm", "loss_min", "loss_max", "loss_range", "grad_change_min",
         "grad_change_max", "beta_smoothness")


class LossLandscape(Probe):
    """Loss range, gradient change and effective β-smoothness along the gradient direction
    at scheduled steps (Santurkar et al. 2018, fig. 4); see the module docstring.

    Keys, all on layer ``"model"``: ``loss`` (``L(θ)``) and ``grad_norm`` (``‖∇L(θ)‖``), then
    over the step sizes ``loss_min``, ``loss_max``, ``loss_range`` (max − min),
    ``grad_change_min``, ``grad_change_max`` (of ``‖∇L(θ − η g) − ∇L(θ)‖``) and
    ``beta_smoothness``. :meth:`curves` gives, per logged step, the loss and gradient change
    at every ``η``.

    The batch: in a :class:`~trainlab.train.Trainer` the training batch of the step and the
    Trainer's loss (handed to :meth:`see_batch` before each step); or a fixed
    ``probe_data=(x, y)`` with ``loss_fn``; or call :meth:`see_batch` yourself. The direction
    ``g`` is the gradient the training step computed (``.grad`` after backward); ``∇L(θ)`` is
    recomputed on the same batch in the probe's own pass, so that every point sees the same
    dropout masks (the RNG state is reset before each pass and restored afterwards).

    Cost: at a logged step, ``len(step_sizes) + 1`` extra forward and backward passes on the
    batch (9 with the defaults, about 9× a training step), plus one copy of the parameters
    and of the gradient; nothing at the other steps. Schedule it sparsely (``every=50`` or a
    log schedule).

    Side-effect free: parameters are restored bit for bit (copied back from a saved copy,
    not un-moved by arithmetic), ``.grad``, BatchNorm running statistics and the RNG as
    :func:`~trainlab.probes.base.preserved_state` restores them; so a run with this probe
    ends with the same weights as one without (tested).

    Args:
        every: schedule (see :class:`~trainlab.probes.base.Probe`); default every 50 steps
            with log-spaced steps before.
        step_sizes: the ``η`` (positive), in units of the gradient.
        probe_data: a fixed ``(x, y)`` used instead of the training batch.
        loss_fn: ``loss_fn(output, y)`` for ``probe_data`` (default cross-entropy) or for
            batches given to :meth:`see_batch` without one.
        mode: module modes during the probe's passes: ``"as_is"`` (default: as training
            runs, BatchNorm with batch statistics), ``"train"`` or ``"eval"``.
        capacity: logged steps kept on the device before a host copy.
    """

    default_layers = "block"
    needs_backward = True

    def __init__(
        self,
        *,
        every: Any = None,
        step_sizes: Sequence[float] = DEFAULT_STEP_SIZES,
        probe_data: Any = None,
        loss_fn: Callable | None = None,
        mode: str = "as_is",
        capacity: int = 64,
    ) -> None:
        super().__init__(None, every=every, hist_every=0, capacity=capacity,
                         probe_data=probe_data, mode=mode, loss_fn=loss_fn)
        etas = list(step_sizes) if isinstance(step_sizes, (list, tuple)) else None
        if not etas or not all(isinstance(e, (int, float)) and not isinstance(e, bool)
                               and math.isfinite(e) and e > 0 for e in etas):
            raise ValueError(
                "step_sizes must be a non-empty list of finite numbers > 0 (distances along "
                f"the gradient, in units of it). Received: step_sizes={step_sizes!r}."
            )
        self.step_sizes = [float(e) for e in etas]
        self._batch: tuple[Tensor, Tensor | None, Callable | None] | None = None
        self._curves: list[dict[str, Any]] = []

    # -- attach: one "layer", the model ----------------------------------------------------
    def attach(self, model: nn.Module) -> LossLandscape:
        if self.model is not None:
            raise RuntimeError("LossLandscape is already attached; call detach() first.")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module. Received: "
                            f"{type(model).__name__}.")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("LossLandscape needs a model with trainable parameters "
                             "(requires_grad=True); this one has none.")
        self.layer_names, self.modules = ["model"], [model]
        self.model = model
        self._buffer = _Buffer(1, self._n_raw(), self.capacity)
        return self

    def _n_raw(self) -> int:
        return len(_KEYS)

    # -- the batch -------------------------------------------------------------------------
    def see_batch(self, x: Tensor, y: Tensor | None = None,
                  loss_fn: Callable | None = None) -> None:
        """The batch (and loss) of the coming step; the Trainer calls this before each step.
        Only a reference is kept (no copy)."""
        self._batch = (x, y, loss_fn)

    def _on_after_backward(self) -> None:
        if not self.recording:
            return
        if self.probe_data is not None:
            x, y = self.probe_data
            dev = next(p.device for p in self.model.parameters())
            x, y = x.to(dev), None if y is None else y.to(dev)
            loss_fn = self.loss_fn or nn.functional.cross_entropy
        elif self._batch is not None:
            x, y, fn = self._batch
            loss_fn = self.loss_fn or fn or nn.functional.cross_entropy
        else:
            raise RuntimeError(
                "LossLandscape has no batch: use it in a Trainer, give probe_data=(x, y), "
                "or call see_batch(x, y, loss_fn) before each step."
            )
        vals, curve = self._measure(x, y, loss_fn)
        self._write(0, 0, vals)
        self._curves.append({"step": self._step, **curve})

    def _loss(self, loss_fn: Callable, x: Tensor, y: Tensor | None) -> Tensor:
        out = self.model(x)
        if y is None:
            return loss_fn(out)
        return loss_fn(out, y)

    def _measure(self, x: Tensor, y: Tensor | None, loss_fn: Callable
                 ) -> tuple[Tensor, dict[str, Any]]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        direction = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                     for p in params]
        saved = [p.detach().clone() for p in params]
        devices = sorted({p.device.index or 0 for p in params if p.is_cuda})

        def grad_at(eta: float) -> tuple[Tensor, list[Tensor]]:
            with torch.no_grad():
                if eta:
                    torch._foreach_copy_(params, saved)
                    torch._foreach_add_(params, direction, alpha=-eta)
                else:
                    torch._foreach_copy_(params, saved)
            torch.set_rng_state(cpu_rng)
            for d, s in zip(devices, cuda_rng):
                torch.cuda.set_rng_state(s, d)
            loss = self._loss(loss_fn, x, y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            return loss.detach(), [torch.zeros_like(p) if g is None else g
                                   for p, g in zip(params, grads)]

        losses, changes = [], []
        try:
            with preserved_state(self.model, self.mode):
                cpu_rng = torch.get_rng_state()
                cuda_rng = [torch.cuda.get_rng_state(d) for d in devices]
                loss0, g0 = grad_at(0.0)
                gnorm = torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(g.float()) for g in g0]))
                dnorm = torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(d.float()) for d in direction]))
                for eta in self.step_sizes:
                    loss, g = grad_at(eta)
                    diff = torch._foreach_sub(g, g0)
                    changes.append(torch.linalg.vector_norm(torch.stack(
                        [torch.linalg.vector_norm(t.float()) for t in diff])))
                    losses.append(loss.float())
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, saved)  # bit for bit
        lt, ct = torch.stack(losses), torch.stack(changes)
        dist = dnorm * torch.tensor(self.step_sizes, device=ct.device)
        beta = torch.where(dist > 0, ct / dist.clamp_min(1e-30),
                           torch.full_like(ct, float("nan"))).max()
        vals = torch.stack([loss0.float(), gnorm, lt.min(), lt.max(), lt.max() - lt.min(),
                            ct.min(), ct.max(), beta])
        return vals, {"step_sizes": list(self.step_sizes), "loss_t": lt.detach(),
                      "change_t": ct.detach()}

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        return [(step, "model", k, float(row[0, i])) for i, k in enumerate(_KEYS)]

    def curves(self) -> list[dict[str, Any]]:
        """Per logged step: ``{"step", "step_sizes", "loss", "grad_change"}`` (lists over
        the step sizes)."""
        out = []
        for c in self._curves:
            if "loss_t" in c:  # first read: one host copy per logged step
                c["loss"] = [float(v) for v in c.pop("loss_t").cpu()]
                c["grad_change"] = [float(v) for v in c.pop("change_t").cpu()]
            out.append(dict(c))
        return out

    def _on_detach(self) -> None:
        self._batch = None
