"""GradientStats: back-propagated gradients per layer (Glorot & Bengio 2010, figs. 7–9).

Two gradients per watched layer ``s = layer(x)``:

- ``∂L/∂s``, the gradient with respect to the layer's output (the back-propagated gradient
  of Glorot's fig. 7; for ``Linear`` followed by the activation, the gradient with respect
  to the pre-activation), read by a tensor hook registered on the output in a forward hook;
- ``∂L/∂W``, the weight gradient (figs. 8–9), read from ``weight.grad`` after backward.

Both only read: the tensor hook returns ``None``, so the gradient flowing on is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from trainlab.probes.activations import _Moments, finish_moments, pool_calls
from trainlab.probes.base import Probe, first_tensor

__all__ = ["GradientStats"]


class GradientStats(Probe):
    """Statistics of the gradients with respect to each layer's output and weight.

    Keys: ``grad_out_mean``, ``grad_out_std``, ``grad_out_norm`` (L2 norm over the batch),
    ``grad_out_min``, ``grad_out_max``; ``grad_w_mean``, ``grad_w_std``, ``grad_w_norm``.
    Histograms: ``grad_out`` and ``grad_w``, over ±4·rms of the tensor (the range is found
    on the device; the edges are reported in gradient units; tails go to the outer bins).

    A module called several times per forward pass records ``∂L/∂s`` of every call, pooled
    as :class:`~trainlab.probes.ActivationStats` pools its outputs (``grad_out_calls`` gives
    the count when it is more than one); ``∂L/∂W`` is the weight's total gradient, the sum
    over the calls.

    ``∂L/∂s`` of a mean-reduced loss scales as 1/batch size; compare runs at equal batch
    size. Default layers: Linear, Conv*, Bilinear, Embedding.

    Args:
        layers, every, hist_every, bins, capacity: see :class:`~trainlab.probes.base.Probe`.
        outputs: record ``∂L/∂s``.
        weights: record ``∂L/∂W``.
        probe_data: ``(x, y)`` fixed probe set: at the scheduled steps, gradients come from a
            separate forward/backward pass on it (``.grad`` saved and restored, so the
            training step is unchanged) with ``loss_fn`` (default cross-entropy).
        loss_fn: ``loss_fn(output, y)`` for probe-set passes.
        mode: ``"eval"`` or ``"train"`` for probe-set passes (see ActivationStats).
    """

    default_layers = "weight"
    needs_backward = True

    def __init__(
        self,
        layers: Any = None,
        *,
        every: Any = None,
        hist_every: Any = None,
        bins: int = 50,
        outputs: bool = True,
        weights: bool = True,
        probe_data: Any = None,
        loss_fn: Any = None,
        mode: str = "eval",
        capacity: int = 64,
    ) -> None:
        super().__init__(layers, every=every, hist_every=hist_every, bins=bins,
                         capacity=capacity, probe_data=probe_data, mode=mode, loss_fn=loss_fn)
        if not (outputs or weights):
            raise ValueError("GradientStats needs outputs=True or weights=True (both are False).")
        self.outputs, self.weights = bool(outputs), bool(weights)
        self.mom = _Moments((), 1, 0)

    def _n_raw(self) -> int:
        return 6

    def _setup_for(self, model: Any) -> None:
        self._hooks = [self._fwd_hook(i) for i in range(len(self.modules))]
        self._stage: dict[int, list[torch.Tensor]] = {}

    def _install(self) -> None:
        if self.outputs:
            for m, hook in zip(self.modules, self._hooks):
                self._handles.append(m.register_forward_hook(hook))

    def _fwd_hook(self, i: int):
        # The tensor hook only keeps a reference to the gradient (it returns None, so the
        # gradient flowing on is unchanged); the reductions run once, batched over layers
        # of equal shape, in after_backward.
        def grad_hook(g: torch.Tensor) -> None:
            if self.recording:  # every call of a shared module: pooled in after_backward
                self._stage.setdefault(i, []).append(g.detach())

        def hook(module: Any, args: Any, out: Any) -> None:
            if not self.recording:
                return
            y = first_tensor(out)
            if y is not None and y.requires_grad:
                y.register_hook(grad_hook)

        return hook

    def _on_detach(self) -> None:
        self._stage = {}

    def _reduce(self, items: list[tuple[int, torch.Tensor]], col: int, minmax: bool,
                key: str, qty: str) -> None:
        """Moments of the gradients ``items``: same-shaped ones batched together (outputs),
        or, with ``minmax=False`` (weight gradients: sums only), all in one call."""
        meta = self._buffer.meta[self._slot]
        groups: dict[tuple, list[tuple[int, torch.Tensor]]] = {}
        for i, t in items:
            k = (tuple(t.shape), t.dtype, t.device) if minmax else (t.dtype, t.device)
            groups.setdefault(k, []).append((i, t))
            meta[(i, key)] = t.numel()
        for group in groups.values():
            stats, _ = self.mom.rows([t for _, t in group], minmax=minmax, sample=False)
            self._write_rows([i for i, _ in group], col, stats)
            if self._hist_now:
                for i, t in group:
                    self._hist(i, qty, t, None)

    def _on_after_backward(self) -> None:
        stage, self._stage = self._stage, {}
        if not self.recording:
            return
        if stage:
            # the tensor hooks fire in reverse call order: put the calls back in order
            items = [(i, pool_calls(gs[::-1])) for i, gs in stage.items()]
            self._reduce(items, 0, True, "out_n", "grad_out")
            meta = self._buffer.meta[self._slot]
            for i, gs in stage.items():
                if len(gs) > 1:
                    meta[(i, "calls")] = len(gs)
        if self.weights:
            grads = [(i, m.weight.grad.detach()) for i, m in enumerate(self.modules)
                     if getattr(getattr(m, "weight", None), "grad", None) is not None]
            if grads:
                self._reduce(grads, 4, False, "w_n", "grad_w")

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        out: list[tuple[int, str, str, float]] = []
        for i, name in enumerate(self.layer_names):
            n = meta.get((i, "out_n"))
            if n is not None:
                mean, std, norm = finish_moments(row[i, 0:2], n)
                out += [(step, name, "grad_out_mean", mean), (step, name, "grad_out_std", std),
                        (step, name, "grad_out_norm", norm),
                        (step, name, "grad_out_min", float(row[i, 2])),
                        (step, name, "grad_out_max", float(row[i, 3]))]
                if meta.get((i, "calls")):
                    out.append((step, name, "grad_out_calls", float(meta[(i, "calls")])))
            n = meta.get((i, "w_n"))
            if n is not None:
                mean, std, norm = finish_moments(row[i, 4:6], n)
                out += [(step, name, "grad_w_mean", mean), (step, name, "grad_w_std", std),
                        (step, name, "grad_w_norm", norm)]
        return out
