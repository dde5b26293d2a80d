"""RowSpread and SameSignRows: the rows of a layer's weight matrix and of its gradient.

Row ``i`` of a layer's weight (``out_features × in_features``; a conv filter bank flattened
per output channel) holds the incoming weights of unit ``i``. Two lecture arguments are read
off these rows after the backward pass (before ``optimizer.step()``):

- **symmetry** (lecture 004, "What happens if we initialize all weights to 0?"): equal
  initial weights give every unit the same gradient, so the units stay copies of each other.
  :func:`row_spread` is 0 exactly then::

      spread(M) = mean_i ||M_i − mean_j M_j|| / mean_i ||M_i||      (0 when M = 0)

  and about 1 for independent zero-mean rows;
- **zero-centred inputs** (lecture 001, "Consider what happens when the input to a neuron is
  always positive"): ``dL/dw_i = δ · x_i``, so with ``x ≥ 0`` a unit's gradient row lies in
  the all-positive or all-negative orthant. :func:`same_sign_fraction` is the fraction of
  rows (with a non-zero entry) whose non-zero entries share one sign.

Both are computed in float64 on the device and kept in a float64 buffer: the records hold the
values to the last digit, with one host synchronisation per ``capacity`` logged steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from trainlab.probes.base import Probe

__all__ = ["RowSpread", "SameSignRows", "row_spread", "same_sign_fraction"]


def _rows(m: Tensor) -> Tensor:
    return m.reshape(len(m), -1)


def row_spread(m: Tensor) -> Tensor:
    """``mean_i ||M_i − mean_j M_j|| / mean_i ||M_i||`` of the rows of ``m``, a float64
    0-dim tensor on ``m``'s device (0 when ``m`` is 0)."""
    m = _rows(m.detach().double())
    norm = m.norm(dim=1).mean()
    spread = (m - m.mean(0)).norm(dim=1).mean() / norm
    return torch.where(norm == 0, torch.zeros_like(spread), spread)


def same_sign_fraction(g: Tensor) -> Tensor:
    """Fraction of the rows of ``g`` with at least one non-zero entry whose non-zero entries
    all have one sign, a float64 0-dim tensor on ``g``'s device (NaN when every row is 0)."""
    g = _rows(g.detach())
    nz = g != 0
    pos = ((g > 0) | ~nz).all(1)
    neg = ((g < 0) | ~nz).all(1)
    live = nz.any(1)
    return ((pos | neg) & live).double().sum() / live.sum().double()


class RowSpread(Probe):
    """:func:`row_spread` of each layer's weight and weight gradient, read after backward
    (the weights the gradient was computed at): 0 when every unit of the layer has the same
    incoming weights (lecture 004's symmetry), about 1 for random rows.

    Keys: ``weight_row_spread``, ``grad_row_spread`` (no gradient row when ``.grad`` is
    ``None``). Needs a backward pass (the C8 protocol, or :meth:`observe` with a loss).

    Args:
        layers, every, capacity: see :class:`~trainlab.probes.base.Probe` (default layers:
            Linear, Conv*, Bilinear, Embedding).
        param: the parameter to read on each layer (default ``"weight"``).
    """

    default_layers = "weight"
    raw_dtype = torch.float64

    def __init__(self, layers: Any = None, *, every: Any = None, param: str = "weight",
                 capacity: int = 64) -> None:
        super().__init__(layers, every=every, hist_every=0, capacity=capacity)
        self.param = param

    def _n_raw(self) -> int:
        return 2

    def _setup_for(self, model: Any) -> None:
        self._ws = [getattr(m, self.param, None) for m in self.modules]
        missing = [n for n, w in zip(self.layer_names, self._ws) if not isinstance(w, Tensor)]
        if missing:
            raise ValueError(f"RowSpread: layers {missing} have no tensor {self.param!r}; "
                             "choose layers with weights (layers=...) or another param=.")

    def _on_after_backward(self) -> None:
        if not self.recording:
            return
        meta = self._buffer.meta[self._slot]
        for i, w in enumerate(self._ws):
            g = w.grad
            vals = [row_spread(w)] + ([] if g is None else [row_spread(g)])
            self._write(i, 0, torch.stack(vals), grad=g is not None)
            meta[(i, "done")] = True

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        out = []
        for i, name in enumerate(self.layer_names):
            if not meta.get((i, "done")):
                continue
            out.append((step, name, "weight_row_spread", float(row[i, 0])))
            if meta.get((i, "grad")):
                out.append((step, name, "grad_row_spread", float(row[i, 1])))
        return out


class SameSignRows(Probe):
    """:func:`same_sign_fraction` of each layer's weight gradient, read after backward: 1
    when every input is non-negative and each row is one example's ``δ · x`` (lecture 001),
    near 1 for mini-batches of positive inputs, lower for centred inputs.

    Keys: ``grad_same_sign`` (NaN when the gradient is 0; no row when ``.grad`` is
    ``None``) and, with ``follow=k``, ``w0`` … ``w{k-1}``: the first ``k`` incoming weights of
    unit ``unit`` (the path of one unit's weights, lecture 004's zig-zag).

    Args:
        layers, every, capacity: see :class:`~trainlab.probes.base.Probe` (default layers:
            Linear, Conv*, Bilinear, Embedding).
        follow: how many incoming weights of ``unit`` to record (default 0: none).
        unit: the unit (row) whose weights are followed (default -1: the last).
    """

    default_layers = "weight"
    raw_dtype = torch.float64

    def __init__(self, layers: Any = None, *, every: Any = None, follow: int = 0,
                 unit: int = -1, capacity: int = 64) -> None:
        super().__init__(layers, every=every, hist_every=0, capacity=capacity)
        if isinstance(follow, bool) or not isinstance(follow, int) or follow < 0:
            raise ValueError(f"follow must be an integer >= 0. Received: follow={follow!r}.")
        if isinstance(unit, bool) or not isinstance(unit, int):
            raise ValueError(f"unit must be an integer (a row index). Received: unit={unit!r}.")
        self.follow, self.unit = follow, unit

    def _n_raw(self) -> int:
        return 1 + self.follow

    def _setup_for(self, model: Any) -> None:
        self._ws = [getattr(m, "weight", None) for m in self.modules]
        for name, w in zip(self.layer_names, self._ws):
            if not isinstance(w, Tensor):
                raise ValueError(f"SameSignRows: layer {name!r} has no weight tensor.")
            if self.follow and (not -len(w) <= self.unit < len(w)
                                or _rows(w).shape[1] < self.follow):
                raise ValueError(
                    f"SameSignRows: layer {name!r} has {len(w)} units of "
                    f"{_rows(w).shape[1]} inputs; unit={self.unit}, follow={self.follow} "
                    "do not fit.")

    def _on_after_backward(self) -> None:
        if not self.recording:
            return
        meta = self._buffer.meta[self._slot]
        for i, w in enumerate(self._ws):
            g = w.grad
            if g is not None:
                self._write(i, 0, same_sign_fraction(g).reshape(1), grad=True)
            if self.follow:
                self._write(i, 1, _rows(w.detach())[self.unit, :self.follow])
            meta[(i, "done")] = True

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        out = []
        for i, name in enumerate(self.layer_names):
            if not meta.get((i, "done")):
                continue
            if meta.get((i, "grad")):
                out.append((step, name, "grad_same_sign", float(row[i, 0])))
            out += [(step, name, f"w{j}", float(row[i, 1 + j])) for j in range(self.follow)]
        return out
