"""WeightStats and UpdateRatio: the weights themselves and how fast they move.

``UpdateRatio`` is the ratio ``‖ΔW‖ / ‖W‖`` per layer per step (Frobenius norms, ``W``
before the update): the rule of thumb of the lectures' learning-rate advice is a ratio
around 1e-3 — much smaller and the layer barely learns, much larger and it thrashes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from trainlab.probes.activations import _Moments, finish_moments
from trainlab.probes.base import Probe

__all__ = ["WeightStats", "UpdateRatio"]


def _weight(module: Any, param: str) -> Tensor | None:
    w = getattr(module, param, None)
    return w if isinstance(w, Tensor) else None


class WeightStats(Probe):
    """Per-layer weight statistics at the start of each logged step (the weights that the
    step's forward pass uses).

    Keys: ``w_mean``, ``w_std``, ``w_norm`` (Frobenius), ``w_min``, ``w_max``.
    Histograms: ``w`` over ±4·rms of the layer's weights.

    Args:
        layers, every, hist_every, bins, capacity: see :class:`~trainlab.probes.base.Probe`.
        param: the parameter to watch on each layer (default ``"weight"``).
    """

    default_layers = "weight"

    def __init__(self, layers: Any = None, *, every: Any = None, hist_every: Any = None,
                 bins: int = 50, param: str = "weight", capacity: int = 64) -> None:
        super().__init__(layers, every=every, hist_every=hist_every, bins=bins,
                         capacity=capacity)
        if not isinstance(param, str):
            raise TypeError(f"param must be a parameter name. Received: param={param!r}.")
        self.param = param
        self.mom = _Moments((), 1, 0)

    def _n_raw(self) -> int:
        return 4

    def _setup_for(self, model: Any) -> None:
        missing = [n for n, m in zip(self.layer_names, self.modules)
                   if _weight(m, self.param) is None]
        if missing:
            raise ValueError(
                f"WeightStats: layers {missing} have no tensor attribute {self.param!r}; "
                "choose layers with weights (layers=...) or another param=."
            )

    def _on_begin(self) -> None:
        if not self.recording:
            return
        # One call for all layers of a device and dtype, whatever their shapes: sums per
        # tensor, the sums of squares with one multi-tensor norm, min and max per tensor.
        groups: dict[tuple, list[tuple[int, Tensor]]] = {}
        meta = self._buffer.meta[self._slot]
        for i, m in enumerate(self.modules):
            w = _weight(m, self.param).detach()
            groups.setdefault((w.dtype, w.device), []).append((i, w))
            meta[(i, "n")] = w.numel()
        for group in groups.values():
            stats, _ = self.mom.rows([w for _, w in group], sample=False)
            self._write_rows([i for i, _ in group], 0, stats)
            if self._hist_now:
                for i, w in group:
                    self._hist(i, "w", w, None)

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        out = []
        for i, name in enumerate(self.layer_names):
            n = meta.get((i, "n"))
            if n is None:
                continue
            mean, std, norm = finish_moments(row[i, 0:2], n)
            out += [(step, name, "w_mean", mean), (step, name, "w_std", std),
                    (step, name, "w_norm", norm), (step, name, "w_min", float(row[i, 2])),
                    (step, name, "w_max", float(row[i, 3]))]
        return out


class UpdateRatio(Probe):
    """``‖W_after − W_before‖ / ‖W_before‖`` per layer, over one optimizer step.

    The weights are copied into preallocated buffers in ``after_backward`` (before
    ``optimizer.step()``) on logged steps only, and compared in ``step_end``; the norms are
    two fused multi-tensor kernels (``torch._foreach_norm``) for all layers at once.

    Keys: ``update_ratio``, ``update_norm`` (``‖ΔW‖``). Needs the C8 protocol (a Trainer or
    explicit step_begin / after_backward / step_end calls); :meth:`observe` records nothing.
    """

    default_layers = "weight"

    def __init__(self, layers: Any = None, *, every: Any = None, param: str = "weight",
                 capacity: int = 64) -> None:
        super().__init__(layers, every=every, hist_every=0, capacity=capacity)
        self.param = param
        self._prev: list[Tensor] | None = None

    def _n_raw(self) -> int:
        return 2

    def _setup_for(self, model: Any) -> None:
        self._ws = [_weight(m, self.param) for m in self.modules]
        if any(w is None for w in self._ws):
            raise ValueError(f"UpdateRatio: every layer needs a tensor {self.param!r}.")

    def _on_detach(self) -> None:
        self._prev = None

    def _on_after_backward(self) -> None:
        if not self.recording:
            return
        ws = [w.detach() for w in self._ws]
        if self._prev is None or any(p.shape != w.shape or p.device != w.device
                                     for p, w in zip(self._prev, ws)):
            self._prev = [torch.empty_like(w) for w in ws]
        torch._foreach_copy_(self._prev, ws)
        self._wn = torch.stack(torch._foreach_norm(ws))
        self._buffer.meta[self._slot]["snap"] = True

    def _on_end(self) -> None:
        if not self.recording or not self._buffer.meta[self._slot].get("snap"):
            return
        ws = [w.detach() for w in self._ws]
        torch._foreach_sub_(self._prev, ws)  # in place: prev becomes W_before - W_after
        dn = torch.stack(torch._foreach_norm(self._prev))
        data = self._buffer.ensure(dn)
        torch.div(dn, self._wn, out=data[self._slot, :, 0])
        data[self._slot, :, 1].copy_(dn)
        self._buffer.meta[self._slot]["done"] = True

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        # A step that never reached step_end (its forward or backward raised) has a
        # snapshot but no ratio: it gives no rows, so the step's own error is what surfaces.
        if not meta.get("done") or row is None:
            return []
        out = []
        for i, name in enumerate(self.layer_names):
            out += [(step, name, "update_ratio", float(row[i, 0])),
                    (step, name, "update_norm", float(row[i, 1]))]
        return out
