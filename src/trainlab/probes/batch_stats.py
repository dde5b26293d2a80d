"""Exact statistics of layer outputs on one batch: per-unit percentiles, moments, fractions.

Where :class:`~trainlab.probes.ActivationStats` is built to be cheap on every batch (one-pass
sums, percentiles of a fixed subsample), these probes compute each statistic exactly, with
torch's own reductions over every element, as the papers' figures do on a fixed set of
examples:

- :class:`UnitPercentiles` — the 15th, 50th and 85th percentiles of every unit's input (or
  output) over the batch (Ioffe & Szegedy 2015, fig. 1(b, c): the input of one sigmoid of the
  last hidden layer drifts without batch normalization and stays put with it);
- :class:`LayerMoments` — mean, standard deviation and the fraction of ``|h| > threshold`` of
  each layer's outputs (Glorot & Bengio 2010, fig. 2: the top sigmoid layer saturates at 0);
- :class:`ActiveSaturated` — the fraction of outputs ``> 0`` (a ReLU unit active) and within
  ``margin`` of 0 or 1 (a sigmoid saturated), per layer and pooled over the watched layers
  (lecture 002: BN before the nonlinearity keeps a ReLU layer half active).

On a fixed batch: give ``probe_data=x`` (and ``mode="as_is"`` to see the model in the mode it
trains in: BN then normalizes with the fixed batch's statistics; its running statistics, the
``.grad`` and the RNG are left as they were). The statistics at step ``k`` describe the model
after ``k`` updates, as for every probe; the pass for ``k + 1`` is made at the end of step
``k``, so the model at the end of training can be scheduled too
(``every=Schedule(50, at=[steps])``). Without ``probe_data`` the training batch of each
logged step is used. :class:`AtLogPoints` records a probe on a fixed batch at the Trainer's
logged rows instead (a callback).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from trainlab.probes.activations import _pct_name, pool_calls
from trainlab.probes.base import Probe, first_tensor, observe

__all__ = ["ActiveSaturated", "AtLogPoints", "LayerMoments", "UnitPercentiles"]


class _BatchProbe(Probe):
    """Shared part: stage each watched module's input or output during the forward pass and
    reduce once it has run (:meth:`_reduce_layers`); the fixed-batch passes' timing."""

    default_layers = "activation"
    raw_dtype = torch.float64  # float32 statistics kept as they are, float64 ones too

    def __init__(self, layers: Any = None, *, inputs: bool = False, every: Any = None,
                 probe_data: Any = None, mode: str = "eval", capacity: int = 64) -> None:
        super().__init__(layers, every=every, hist_every=0, capacity=capacity,
                         probe_data=probe_data, mode=mode)
        self.inputs = bool(inputs)
        self.prefix = "in" if self.inputs else "out"
        self._stage: dict[int, list[tuple[Tensor, int]]] = {}
        self._clone: set[int] = set()
        self._covered: int | None = None  # the step the last end-of-step pass recorded

    # -- hooks -------------------------------------------------------------------------------
    def _install(self) -> None:
        for i, m in enumerate(self.modules):
            if self.inputs:
                self._handles.append(m.register_forward_pre_hook(self._pre_hook(i)))
            else:
                self._handles.append(m.register_forward_hook(self._post_hook(i)))
        # the model's own forward hook runs after every watched module: reduce there
        self._handles.append(self.model.register_forward_hook(lambda *a: self._reduce()))

    def _stage_tensor(self, i: int, t: Tensor | None, copy: bool) -> None:
        if t is None:
            return
        t = t.detach()
        if copy or i in self._clone:
            t = t.clone()
        self._stage.setdefault(i, []).append((t, t._version))

    def _pre_hook(self, i: int):
        def hook(module: Any, args: Any) -> None:
            if self.recording:  # an in-place module overwrites its input: copy it
                self._stage_tensor(i, first_tensor(args), getattr(module, "inplace", False))
        return hook

    def _post_hook(self, i: int):
        def hook(module: Any, args: Any, out: Any) -> None:
            if self.recording:
                self._stage_tensor(i, first_tensor(out), False)
        return hook

    def _on_after_backward(self) -> None:
        self._reduce()

    def _on_end(self) -> None:
        self._reduce()

    def _on_detach(self) -> None:
        self._stage = {}

    def _reduce(self) -> None:
        """A module called several times in one pass is pooled over its calls
        (:func:`~trainlab.probes.activations.pool_calls`); a tensor changed in place after its
        hook is dropped for this step and copied from the next one on."""
        stage, self._stage = self._stage, {}
        if not stage or not self.recording:
            return
        ts: dict[int, Tensor] = {}
        for i, calls in stage.items():
            if any(t._version != v for t, v in calls):
                self._clone.add(i)
                continue
            ts[i] = pool_calls([t for t, _ in calls])
        if ts:
            self._reduce_layers(ts)

    def _reduce_layers(self, ts: dict[int, Tensor]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the fixed batch: the model after k updates, the last one included -------------------
    def step_begin(self, step: int) -> None:
        if self.probe_data is None:
            super().step_begin(step)
            return
        self._slot = -1
        if self._covered != step and self.schedule(step):  # the first step of a fit
            self._fixed_pass(step)

    def step_end(self, step: int) -> None:
        super().step_end(step)
        if self.probe_data is not None and self.schedule(step + 1):
            self._fixed_pass(step + 1)
            self._covered = step + 1

    def _fixed_pass(self, step: int) -> None:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} is not attached; call attach(model) first.")
        x, _ = self.probe_data
        dev = next((p.device for p in self.model.parameters()), x.device)
        observe(self.model, [self], x.to(dev), step=step, mode=self.mode, histograms=False)


class UnitPercentiles(_BatchProbe):
    """Percentiles of every unit's input (``inputs=True``) or output over the batch, exactly
    (``torch.quantile``, linear interpolation, over all examples): Ioffe & Szegedy 2015,
    fig. 1(b, c).

    A unit is a feature of the ``(N, features)`` tensor (other shapes are flattened to
    ``(N, -1)``). Records, on layer ``"{name}[{unit}]"`` (``"block3.act[7]"``): ``in_p15``,
    ``in_p50``, ``in_p85`` (``out_*`` for outputs; the chosen ``percentiles``).
    :meth:`values` gives them back as one ``(steps, percentiles, units)`` tensor.

    Args:
        layers, every, probe_data, mode, capacity: see :class:`~trainlab.probes.base.Probe`
            and the module docstring (default layers: the activation modules).
        inputs: the modules' inputs (the pre-activations) instead of their outputs.
        percentiles: in percent.
    """

    def __init__(self, layers: Any = None, *, inputs: bool = False,
                 percentiles: Sequence[float] = (15.0, 50.0, 85.0), every: Any = None,
                 probe_data: Any = None, mode: str = "eval", capacity: int = 64) -> None:
        super().__init__(layers, inputs=inputs, every=every, probe_data=probe_data, mode=mode,
                         capacity=capacity)
        pcts = tuple(float(p) for p in percentiles)
        if not pcts or any(not 0.0 <= p <= 100.0 for p in pcts):
            raise ValueError("percentiles must be a non-empty list of numbers in [0, 100]. "
                             f"Received: percentiles={percentiles!r}.")
        self.percentiles = pcts
        self.keys = [f"{self.prefix}_p{_pct_name(p)}" for p in pcts]
        self._q: dict[tuple, Tensor] = {}
        self._pending: list[tuple[int, int, Tensor]] = []

    def _n_raw(self) -> int:
        return 0  # one (percentiles, units) tensor per layer and step, kept in _pending

    def _reduce_layers(self, ts: dict[int, Tensor]) -> None:
        for i, t in ts.items():
            if t.dtype not in (torch.float32, torch.float64):
                t = t.float()
            t = t if t.dim() == 2 else t.reshape(len(t), -1)
            key = (t.dtype, t.device)
            if key not in self._q:
                self._q[key] = torch.tensor([p / 100 for p in self.percentiles],
                                            dtype=t.dtype, device=t.device)
            self._pending.append((self._step, i, torch.quantile(t, self._q[key], dim=0)))

    def _flush(self) -> None:
        super()._flush()
        if self._pending:
            pend, self._pending = self._pending, []
            host = torch.cat([q.reshape(-1) for *_, q in pend]).cpu().tolist()  # one sync
            pos = 0
            for step, i, q in pend:
                n_p, n_u = q.shape
                vals, pos = host[pos:pos + q.numel()], pos + q.numel()
                name = self.layer_names[i]
                for u in range(n_u):
                    self._rows += [(step, f"{name}[{u}]", key, vals[k * n_u + u])
                                   for k, key in enumerate(self.keys)]

    def values(self, layer: str | None = None) -> tuple[list[int], Tensor]:
        """``(steps, (steps, percentiles, units) float64 tensor)`` of one watched layer
        (default: the first) from :meth:`records`."""
        name = self.layer_names[0] if layer is None else layer
        col = {k: j for j, k in enumerate(self.keys)}
        by_step: dict[int, dict[tuple[int, int], float]] = {}
        head = f"{name}["
        for step, lay, q, v in self.records():
            if lay.startswith(head) and lay.endswith("]") and q in col:
                by_step.setdefault(step, {})[(col[q], int(lay[len(head):-1]))] = v
        steps = sorted(by_step)
        if not steps:
            return [], torch.empty(0, len(self.keys), 0, dtype=torch.float64)
        n_u = 1 + max(u for cells in by_step.values() for _, u in cells)
        out = torch.full((len(steps), len(self.keys), n_u), float("nan"), dtype=torch.float64)
        for s, step in enumerate(steps):
            for (k, u), v in by_step[step].items():
                out[s, k, u] = v
        return steps, out


class LayerMoments(_BatchProbe):
    """Mean, standard deviation (``torch.std``: Bessel-corrected) and the fraction of
    elements with ``|h| > threshold`` of each layer's output (or input) over the whole batch,
    in the tensor's dtype: Glorot & Bengio 2010, fig. 2 (mean and std of each hidden layer's
    sigmoid outputs on 300 fixed test examples over training).

    Keys: ``out_mean``, ``out_std``, ``out_abs_gt`` (``in_*`` with ``inputs=True``).

    Args:
        layers, every, probe_data, mode, capacity: see :class:`~trainlab.probes.base.Probe`
            and the module docstring (default layers: the activation modules).
        inputs: the modules' inputs instead of their outputs.
        threshold: the ``|h|`` above which an element counts (0.95: a tanh or softsign unit
            near its ends ±1).
    """

    def __init__(self, layers: Any = None, *, inputs: bool = False, threshold: float = 0.95,
                 every: Any = None, probe_data: Any = None, mode: str = "eval",
                 capacity: int = 64) -> None:
        super().__init__(layers, inputs=inputs, every=every, probe_data=probe_data, mode=mode,
                         capacity=capacity)
        self.threshold = float(threshold)

    def _n_raw(self) -> int:
        return 3

    def _reduce_layers(self, ts: dict[int, Tensor]) -> None:
        meta = self._buffer.meta[self._slot]
        for i, t in ts.items():
            vals = [t.mean(), t.std(), (t.abs() > self.threshold).float().mean()]
            self._write(i, 0, torch.stack([v.double() for v in vals]))
            meta[(i, "done")] = True

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        p, out = self.prefix, []
        for i, name in enumerate(self.layer_names):
            if meta.get((i, "done")):
                out += [(step, name, f"{p}_mean", float(row[i, 0])),
                        (step, name, f"{p}_std", float(row[i, 1])),
                        (step, name, f"{p}_abs_gt", float(row[i, 2]))]
        return out


class ActiveSaturated(_BatchProbe):
    """Fraction of outputs (or inputs) ``> 0`` — the active units of a ReLU layer — and
    within ``margin`` of 0 or 1 — the saturated units of a sigmoid layer — per layer and
    pooled over every watched layer (lecture 002: BN before the nonlinearity keeps a ReLU
    layer half active and a sigmoid out of its saturated region).

    Keys: ``out_active``, ``out_saturated`` (``in_*`` with ``inputs=True``) per layer, and
    the same on layer ``"model"``: every watched layer's elements together.

    Args:
        layers, every, probe_data, mode, capacity: see :class:`~trainlab.probes.base.Probe`
            and the module docstring (default layers: the activation modules).
        inputs: the modules' inputs instead of their outputs.
        margin: an element within ``margin`` of 0 or of 1 counts as saturated (0.05: a
            sigmoid's derivative is then below 0.048).
    """

    def __init__(self, layers: Any = None, *, inputs: bool = False, margin: float = 0.05,
                 every: Any = None, probe_data: Any = None, mode: str = "eval",
                 capacity: int = 64) -> None:
        super().__init__(layers, inputs=inputs, every=every, probe_data=probe_data, mode=mode,
                         capacity=capacity)
        self.margin = float(margin)

    def _n_raw(self) -> int:
        return 4  # per layer: active, saturated; row 0 also holds the pooled pair

    def _fractions(self, t: Tensor) -> Tensor:
        m = self.margin
        return torch.stack([(t > 0).float().mean(),
                            ((t < m) | (t > 1 - m)).float().mean()]).double()

    def _reduce_layers(self, ts: dict[int, Tensor]) -> None:
        meta = self._buffer.meta[self._slot]
        for i, t in ts.items():
            self._write(i, 0, self._fractions(t))
            meta[(i, "done")] = True
        self._write(0, 2, self._fractions(torch.cat([t.flatten() for t in ts.values()])))
        meta["pooled"] = True

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        p, out = self.prefix, []
        for i, name in enumerate(self.layer_names):
            if meta.get((i, "done")):
                out += [(step, name, f"{p}_active", float(row[i, 0])),
                        (step, name, f"{p}_saturated", float(row[i, 1]))]
        if meta.get("pooled"):
            out += [(step, "model", f"{p}_active", float(row[0, 2])),
                    (step, "model", f"{p}_saturated", float(row[0, 3]))]
        return out


class AtLogPoints:
    """A Trainer callback recording ``probe`` on the fixed batch ``x`` when fitting starts
    and at every logged row (``row["step"]``), with the model in the mode it is in
    (``observe(..., mode="as_is")``: BN running statistics, ``.grad`` and the RNG untouched),
    so the records follow the Trainer's ``log_every``/``eval_every``. The probe is attached
    to the Trainer's model when fitting starts; read its records afterwards."""

    def __init__(self, probe: Probe, x: Tensor) -> None:
        if not isinstance(probe, Probe):
            raise TypeError(f"probe must be a trainlab Probe. Received: {type(probe).__name__}.")
        self.probe, self.x = probe, x

    def on_fit_begin(self, trainer: Any) -> None:
        if self.probe.model is not trainer.model:
            if self.probe.attached:
                self.probe.detach()
            self.probe.attach(trainer.model)
        self._record(trainer.model, int(getattr(trainer, "step", 0)))

    def on_log(self, trainer: Any, row: dict[str, Any]) -> None:
        self._record(trainer.model, int(row["step"]))

    def _record(self, model: Any, step: int) -> None:
        dev = next((p.device for p in model.parameters()), self.x.device)
        self.probe.observe(self.x.to(dev), step=step, mode="as_is", histograms=False)
