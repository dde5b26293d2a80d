"""The probe base class, schedules, layer selection and the on-device record buffer.

A probe follows the C8 protocol (STYLE.md §8)::

    probe = ActivationStats(every=10).attach(model)   # or: with ActivationStats() as p: ...
    for step, (x, y) in enumerate(batches):
        probe.step_begin(step)        # before the forward pass
        loss = loss_fn(model(x), y); loss.backward()
        probe.after_backward(step)    # after backward, before optimizer.step()
        opt.step()
        probe.step_end(step)          # after optimizer.step()
    probe.records()      # [(step, layer, quantity, value), ...]
    probe.histograms()   # [{"step", "layer", "quantity", "edges", "counts"}, ...]
    probe.detach()

Cheap by construction: hooks do only device-side reductions written into one preallocated
``(capacity, layers, raw quantities)`` tensor; nothing is copied to the host until the buffer
is full or :meth:`Probe.records` is called, so there is at most one host synchronisation per
``capacity`` logged steps. Hooks do nothing on steps the schedule skips.

Side-effect free: hooks only read tensors (no in-place changes, no ``.grad`` changes, no use
of the global RNG; subsampling indices come from the probe's own ``torch.Generator``), so a
run with probes gives the same weights as one without (tested).
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.nn.activations import activation_info as _info
from trainlab.nn.kinds import WEIGHT_LAYERS_TEXT, weight_layers

__all__ = [
    "Probe",
    "Schedule",
    "as_schedule",
    "select_layers",
    "weight_layers",
    "activation_layers",
    "activation_info",
    "observe",
    "preserved_state",
    "first_tensor",
    "paused",
]

LayerSpec = Any  # None | str pattern | list of patterns | type | tuple of types | callable

# While > 0, every probe hook does nothing: set around the probes' own extra passes (the
# Jacobian's forward passes) so that other probes do not record them.
_PAUSED = [0]


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Within this block, no probe hook records anything."""
    _PAUSED[0] += 1
    try:
        yield
    finally:
        _PAUSED[0] -= 1


# --------------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------------
class Schedule:
    """When a probe runs: every ``every`` steps, optionally with log-spaced steps before.

    ``Schedule(every=50, log=True, base=2)`` runs at steps 0, 1, 2, 4, 8, 16, 32 (the powers
    of ``base`` below ``every``) and then at 50, 100, 150, ... — dense early, where the
    statistics change fastest (Glorot & Bengio 2010 fig. 2 spans the whole run on a log
    axis), sparse later, where they change slowly. ``every=1`` runs at every step;
    ``every=0`` never runs (except at steps listed in ``at``). ``at`` adds explicit steps.
    """

    def __init__(
        self, every: int = 1, *, log: bool = False, base: int = 2, at: Iterable[int] = ()
    ) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise ValueError(f"every must be an integer >= 0. Received: every={every!r}.")
        if not isinstance(base, int) or base < 2:
            raise ValueError(f"base must be an integer >= 2. Received: base={base!r}.")
        self.every, self.log, self.base = every, bool(log), base
        self.at = frozenset(int(s) for s in at)

    def __call__(self, step: int) -> bool:
        if step in self.at:
            return True
        if self.every and step % self.every == 0:
            return True
        if self.log and step >= 0 and (not self.every or step < self.every):
            if step == 0:
                return True
            k = round(math.log(step, self.base))
            return self.base**k == step
        return False

    def __repr__(self) -> str:
        extra = f", log=True, base={self.base}" if self.log else ""
        at = f", at={sorted(self.at)}" if self.at else ""
        return f"Schedule(every={self.every}{extra}{at})"


def as_schedule(spec: Any, name: str = "every") -> Schedule:
    """A :class:`Schedule` from ``spec``: a Schedule, an int k (every k), ``"log"`` (0, 1, 2,
    4, 8, ... forever), ``None`` / ``0`` / ``"never"`` (never), or a callable ``step -> bool``."""
    if isinstance(spec, Schedule):
        return spec
    if spec is None or spec == "never":
        return Schedule(0)
    if isinstance(spec, bool):
        raise TypeError(f"{name} must be an int, 'log', a Schedule or a callable. "
                        f"Received: {name}={spec!r}.")
    if isinstance(spec, int):
        if spec < 0:
            raise ValueError(f"{name} must be >= 0. Received: {name}={spec!r}.")
        return Schedule(spec)
    if spec == "log":
        return Schedule(0, log=True)
    if callable(spec):
        return _CallableSchedule(spec)
    raise ValueError(
        f"{name} must be an int k (every k steps), 'log', 'never', a Schedule or a callable "
        f"step -> bool. Received: {name}={spec!r}."
    )


class _CallableSchedule(Schedule):
    def __init__(self, fn: Callable[[int], bool]) -> None:
        super().__init__(0)
        self.fn = fn

    def __call__(self, step: int) -> bool:
        return bool(self.fn(step))

    def __repr__(self) -> str:
        return f"Schedule({self.fn!r})"


# --------------------------------------------------------------------------------------------
# layer selection
# --------------------------------------------------------------------------------------------
def activation_info(module: Any) -> Any:
    """``trainlab.nn.activations.activation_info(module)``, or ``None`` for ``nn.Identity``
    (builders use it as a placeholder) and identity-like activations."""
    if isinstance(module, nn.Identity):
        return None

    info = _info(module)
    if info is not None and getattr(info, "name", "") in ("identity", "linear"):
        return None
    return info


# The default layers of gradient and weight probes are trainlab.nn.kinds.weight_layers (the
# layers whose ``weight`` is a matrix or filter bank), re-exported here as weight_layers.
_BLOCK_TYPES = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.RNNBase,
                nn.RNNCellBase)


def activation_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Default layers for activation probes: modules the activation registry (C1) knows,
    Transformer encoder/decoder layers (their output, the residual stream: torch's
    layers apply their nonlinearity as a function, so there is no module to watch) and
    recurrent layers ``nn.RNN``/``nn.LSTM``/``nn.GRU`` and their cells (their output
    sequence or hidden state: the gates' sigmoids and tanhs run inside one fused kernel)."""
    return [(n, m) for n, m in model.named_modules()
            if n and (isinstance(m, _BLOCK_TYPES) or activation_info(m) is not None)]


_SUPPORTED = {
    "activation": "activation modules known to trainlab's registry (nn.Tanh, nn.Sigmoid, "
    "nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.SELU, nn.Softplus, nn.Hardswish, "
    "nn.Hardsigmoid, nn.Mish, trainlab.nn activations, Maxout ...), "
    "nn.TransformerEncoderLayer/DecoderLayer outputs and nn.RNN/LSTM/GRU outputs",
    "weight": WEIGHT_LAYERS_TEXT,
    "block": "the model's top-level children (an nn.Sequential or a trainlab builder model)",
}


def select_layers(
    model: nn.Module, layers: LayerSpec, default: str, probe: str = "probe"
) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs a probe watches.

    ``layers`` may be ``None`` (the default for ``default``: ``"activation"``, ``"weight"``
    or ``"block"``), a glob pattern on qualified names (``"block*.act"``), a list of
    patterns, a module type or tuple of types, or a callable ``(name, module) -> bool``.
    Raises ``ValueError`` naming the supported types and how to choose layers by name when
    nothing matches.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module. Received: {type(model).__name__}.")
    named = [(n, m) for n, m in model.named_modules() if n]
    if layers is None:
        if default == "activation":
            chosen = activation_layers(model)
        elif default == "weight":
            chosen = weight_layers(model)
        elif default == "block":
            skip = (nn.Identity, nn.Dropout, nn.Flatten, nn.Unflatten)  # reshapes: J = I
            chosen = [(n, m) for n, m in model.named_children() if not isinstance(m, skip)]
            if not chosen and len(list(model.parameters())):
                chosen = [("", model)]
        else:  # pragma: no cover - internal
            raise ValueError(f"unknown default {default!r}")
    elif isinstance(layers, str):
        chosen = [(n, m) for n, m in named if fnmatch.fnmatchcase(n, layers)]
    elif isinstance(layers, type) or (
        isinstance(layers, tuple) and layers and all(isinstance(t, type) for t in layers)
    ):
        chosen = [(n, m) for n, m in named if isinstance(m, layers)]
    elif isinstance(layers, (list, tuple)) and all(isinstance(p, str) for p in layers):
        chosen = [(n, m) for n, m in named if any(fnmatch.fnmatchcase(n, p) for p in layers)]
    elif callable(layers):
        chosen = [(n, m) for n, m in named if layers(n, m)]
    else:
        raise TypeError(
            "layers must be None, a name pattern, a list of patterns, a module type, a tuple of "
            f"types or a callable (name, module) -> bool. Received: layers={layers!r}."
        )
    if not chosen:
        what = _SUPPORTED.get(default, default)
        got = sorted({type(m).__name__ for _, m in named}) or ["no submodules"]
        sel = "default layer types" if layers is None else f"layers={layers!r}"
        raise ValueError(
            f"{probe} found no layers to watch in {type(model).__name__} ({sel}). "
            f"Supported by default: {what}. The model contains: {', '.join(got)}. "
            "Choose layers by name with layers='block*.act' (a glob on the names of "
            "model.named_modules()), a list of names, a module type, or a callable."
        )
    return chosen


def first_tensor(x: Any) -> Tensor | None:
    """The first floating tensor in a module's input/output (tuples, lists, dicts)."""
    if isinstance(x, Tensor):
        return x if x.is_floating_point() else None
    if isinstance(x, (tuple, list)):
        for v in x:
            t = first_tensor(v)
            if t is not None:
                return t
    if isinstance(x, dict):
        for v in x.values():
            t = first_tensor(v)
            if t is not None:
                return t
    return None


# --------------------------------------------------------------------------------------------
# the on-device buffer
# --------------------------------------------------------------------------------------------
class _Buffer:
    """A ``(capacity, layers, raw)`` tensor on the device (float32, or the probe's
    ``raw_dtype``), filled slot by slot.

    The host only keeps Python bookkeeping (which step owns which slot, which entries were
    written and the element counts needed to finish the statistics); the single ``.cpu()``
    happens in :meth:`drain`.
    """

    def __init__(self, n_layers: int, n_raw: int, capacity: int,
                 dtype: torch.dtype = torch.float32) -> None:
        self.n_layers, self.n_raw, self.capacity = n_layers, n_raw, capacity
        self.dtype = dtype
        self.data: Tensor | None = None
        self.steps: list[int] = []
        self.meta: list[dict[tuple[int, str], Any]] = []

    def ensure(self, like: Tensor) -> Tensor:
        if self.data is None or self.data.device != like.device:
            self.data = torch.full(
                (self.capacity, self.n_layers, self.n_raw), float("nan"),
                dtype=self.dtype, device=like.device,
            )
        return self.data

    @property
    def full(self) -> bool:
        return len(self.steps) >= self.capacity

    def new_slot(self, step: int) -> int:
        self.steps.append(step)
        self.meta.append({})
        return len(self.steps) - 1

    def drain(self, keep_last: bool = False) -> list[tuple[int, dict, Any]]:
        """``[(step, meta, host_row_array)]`` for the filled slots (all but the last one with
        ``keep_last``, which moves to slot 0); resets the buffer."""
        n = len(self.steps) - (1 if keep_last else 0)
        if n <= 0:
            return []
        # a copy (also for a float64 buffer on the CPU): the slots are refilled with NaN below
        host = (None if self.data is None else
                self.data[:n].detach().to("cpu", torch.float64, copy=True).numpy())
        out = [(self.steps[i], self.meta[i], None if host is None else host[i]) for i in range(n)]
        self.steps, self.meta = self.steps[n:], self.meta[n:]
        if self.data is not None:
            if keep_last:
                self.data[0].copy_(self.data[n])
            self.data[len(self.steps):].fill_(float("nan"))
        return out


# --------------------------------------------------------------------------------------------
# the base class
# --------------------------------------------------------------------------------------------
class Probe:
    """Base class: hook management, schedules, buffer, records.

    Subclasses set ``default_layers`` and implement :meth:`_setup_for` (checks, once, at
    attach), :meth:`_install` (register hooks into ``self._handles``; called at the start of
    each logged step, the hooks are removed at its end), :meth:`_n_raw` (raw buffer columns
    per layer), and optionally :meth:`_on_begin`, :meth:`_on_after_backward`,
    :meth:`_on_end` and :meth:`_finish` (turn a drained raw row into tidy rows).

    Args:
        layers: which layers (see :func:`select_layers`).
        every: moment schedule (int k, ``"log"``, a :class:`Schedule` or a callable);
            default ``Schedule(50, log=True)``: steps 0, 1, 2, 4, ..., 32, then every 50.
        hist_every: histogram schedule, default ``Schedule(1000, log=True, base=10)``:
            steps 0, 1, 10, 100, then every 1000; ``0`` or ``False`` for no histograms.
        bins: number of fixed-width histogram bins.
        capacity: logged steps kept on the device between host synchronisations.
    """

    default_layers = "weight"
    name = "probe"
    #: dtype of the raw buffer: float32 (device reductions of float32 tensors); a probe whose
    #: statistics are computed in float64 sets float64, so its records keep every digit
    raw_dtype = torch.float32

    def __init__(
        self,
        layers: LayerSpec = None,
        *,
        every: Any = None,
        hist_every: Any = None,
        bins: int = 50,
        capacity: int = 64,
        probe_data: Any = None,
        mode: str = "eval",
        loss_fn: Callable | None = None,
    ) -> None:
        self.layers_spec = layers
        if (isinstance(every, int) and not isinstance(every, bool) and every == 0) or (
                isinstance(every, str) and every == "never"):
            # hist_every=0 turns histograms off; a probe whose moments never run is a mistake
            raise ValueError(
                f"every={every!r} would never record anything: every must be an integer >= 1 "
                "(every k steps), 'log', a Schedule or a callable step -> bool. "
                f"Received: every={every!r}."
            )
        self.schedule = as_schedule(Schedule(50, log=True) if every is None else every)
        if hist_every is False:
            hist_every = 0
        self.hist_schedule = as_schedule(
            Schedule(1000, log=True, base=10) if hist_every is None else hist_every,
            "hist_every",
        )
        if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1. Received: bins={bins!r}.")
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1. Received: capacity={capacity!r}.")
        self.bins, self.capacity = bins, capacity
        if mode not in ("eval", "train", "as_is"):
            raise ValueError(
                f"mode must be 'eval', 'train' or 'as_is'. Received: mode={mode!r}."
            )
        self.mode, self.loss_fn = mode, loss_fn
        self.probe_data = _as_probe_data(probe_data)
        self.model: nn.Module | None = None
        self.layer_names: list[str] = []
        self.modules: list[nn.Module] = []
        self._handles: list[Any] = []
        self._rows: list[tuple[int, str, str, float]] = []
        self._hists: list[dict[str, Any]] = []
        self._pending_hists: list[tuple[int, str, str, Tensor, Any]] = []
        self._buffer: _Buffer | None = None
        self._row_index: dict[tuple, Tensor] = {}
        self._slot = -1  # buffer slot of the current step; -1 when the step is not logged
        self._step = -1
        self._hist_now = False

    # -- attach / detach ---------------------------------------------------------------------
    def attach(self, model: nn.Module) -> Probe:
        """Register hooks on ``model``; return ``self`` (also a context manager)."""
        if self.model is not None:
            raise RuntimeError(f"{type(self).__name__} is already attached; call detach() first.")
        chosen = select_layers(model, self.layers_spec, self.default_layers, type(self).__name__)
        self.layer_names = [n for n, _ in chosen]
        self.modules = [m for _, m in chosen]
        self._setup_for(model)
        self.model = model
        self._buffer = _Buffer(len(self.layer_names), self._n_raw(), self.capacity,
                               self.raw_dtype)
        return self

    # Hooks exist only around logged steps: step_begin registers them and step_end removes
    # them unless the next step is logged too, so a step the schedule skips runs the model
    # exactly as without probes (no Python hook calls, and torch keeps its hook-free fast
    # path for every module call).
    def _hooks_on(self) -> None:
        if not self._handles:
            self._install()

    def _hooks_off(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def detach(self) -> Probe:
        """Remove every hook this probe registered (safe to call twice). Records kept on the
        device are copied to the host first, so nothing recorded is lost."""
        self._hooks_off()
        self._slot = -1
        self._flush()
        self._on_detach()
        self.model = None
        return self

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    @property
    def recording(self) -> bool:
        """True while the current step is logged (hooks should reduce and write)."""
        return self._slot >= 0 and not _PAUSED[0]

    @property
    def attached(self) -> bool:
        return self.model is not None

    # -- the C8 protocol ---------------------------------------------------------------------
    needs_backward = False  # probe-set passes of this probe need a loss and a backward pass

    def step_begin(self, step: int) -> None:
        """Called before the forward pass of ``step``: decides whether this step is logged.

        With ``probe_data`` the statistics come from a pass on the fixed probe set made here,
        and the training batch of this step is not recorded.
        """
        log, hist = self.schedule(step), self.hist_schedule(step)
        if self.probe_data is None:
            self._begin(step, log, hist)
            return
        self._slot = -1
        if log or hist:
            x, y = self.probe_data
            dev = next((p.device for p in self.model.parameters()), x.device)
            x = x.to(dev)
            y = None if y is None else y.to(dev)
            loss_fn = None
            if self.needs_backward:
                if y is None and self.loss_fn is None:
                    raise ValueError(
                        f"{type(self).__name__} with probe_data needs targets: give "
                        "probe_data=(x, y) or a loss_fn(output)."
                    )
                loss_fn = self.loss_fn or torch.nn.functional.cross_entropy
            observe(self.model, [self], x, y, loss_fn, step=step, mode=self.mode,
                    histograms=hist)

    def after_backward(self, step: int) -> None:
        """Called after ``loss.backward()`` and before ``optimizer.step()``."""
        if self._slot >= 0:
            self._on_after_backward()

    def step_end(self, step: int) -> None:
        """Called after ``optimizer.step()``; closes the step."""
        if self._slot >= 0:
            self._on_end()
        # Hooks stay registered when the next step is logged too (every=1): registering and
        # removing a dozen hooks per step costs about as much as the reductions of a small
        # model. Between logged steps they do nothing (``recording`` is False); they are
        # removed as soon as the next step is one the schedule skips.
        nxt = step + 1
        if not (self.probe_data is None and (self.schedule(nxt) or self.hist_schedule(nxt))):
            self._hooks_off()
        self._slot = -1
        self._hist_now = False

    def _begin(self, step: int, log: bool, hist: bool) -> None:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} is not attached; call attach(model) first.")
        self._step = step
        self._slot = -1
        self._hist_now = bool(hist)
        if not (log or hist):
            return
        buf = self._buffer
        if buf.full:
            self._flush()
        self._slot = buf.new_slot(step)
        self._hooks_on()
        self._on_begin()

    # -- output ------------------------------------------------------------------------------
    def records(self) -> list[tuple[int, str, str, float]]:
        """Tidy rows ``(step, layer, quantity, value)`` recorded so far (syncs once)."""
        self._flush()
        return list(self._rows)

    def histograms(self) -> list[dict[str, Any]]:
        """``{"step", "layer", "quantity", "edges", "counts"}`` dicts recorded so far."""
        self._flush()
        return list(self._hists)

    def clear(self) -> None:
        """Forget the records kept so far."""
        self._flush()
        self._rows, self._hists = [], []

    def _flush(self) -> None:
        if self._buffer is not None and self._buffer.steps:
            # The current step may still be filling: keep its slot (it moves to slot 0).
            keep = self._slot >= 0
            for step, meta, row in self._buffer.drain(keep_last=keep):
                if row is not None:  # None: nothing reached the device for these steps
                    self._rows.extend(self._finish(step, meta, row))
            if keep:
                self._slot = 0
        if self._pending_hists:
            self._flush_hists()

    def _flush_hists(self) -> None:
        pend, self._pending_hists = self._pending_hists, []
        flat = [c.reshape(-1).float() for _, _, _, c, _ in pend]
        ranges = [r.reshape(-1).float() for *_, r in pend if isinstance(r, Tensor)]
        host = torch.cat(flat + ranges).cpu().double().numpy()  # the one sync
        off = sum(f.numel() for f in flat)
        pos = 0
        for step, layer, qty, counts, rng in pend:
            n = counts.numel()
            c = host[pos:pos + n]
            pos += n
            if isinstance(rng, Tensor):
                lo, hi = float(host[off]), float(host[off + 1])
                off += 2
            else:
                lo, hi = rng
            edges = [lo + (hi - lo) * i / n for i in range(n + 1)]
            self._hists.append({"step": step, "layer": layer, "quantity": qty,
                                "edges": edges, "counts": [float(v) for v in c]})

    # -- helpers for subclasses --------------------------------------------------------------
    def _write(self, layer: int, start: int, values: Tensor, **meta: Any) -> None:
        """Write device values into the current slot at ``[layer, start:start+len]``."""
        buf = self._buffer
        data = buf.ensure(values)
        data[self._slot, layer, start:start + values.numel()].copy_(values.detach().reshape(-1))
        m = buf.meta[self._slot]
        for k, v in meta.items():
            m[(layer, k)] = v

    def _write_rows(self, layers: list[int], col: int, vals: Tensor) -> None:
        """Write ``vals`` ``(k, w)`` into the current slot at ``[layers[r], col:col+w]``."""
        self._write_cells([(i, col) for i in layers], vals)

    def _write_cells(self, cells: Sequence[tuple[int, int]], vals: Tensor) -> None:
        """Write row ``r`` of ``vals`` ``(k, w)`` at ``[cells[r][0], cells[r][1]:+w]`` of the
        current slot with one ``index_copy_`` (the flat indices are cached): one kernel for
        many layers and columns instead of one per layer."""
        data = self._buffer.ensure(vals)
        w = vals.shape[1]
        key = (tuple(cells), w, vals.device)
        idx = self._row_index.get(key)
        if idx is None:
            n_raw = data.shape[2]
            idx = torch.tensor([i * n_raw + c + j for i, c in cells for j in range(w)],
                               device=vals.device)
            self._row_index[key] = idx
        data[self._slot].view(-1).index_copy_(0, idx, vals.detach().reshape(-1).to(data.dtype))

    def _hist(self, layer: int, qty: str, x: Tensor, rng: tuple[float, float] | None,
              scale: float = 4.0) -> None:
        """Queue a fixed-bin histogram of ``x`` (on the device).

        With a fixed ``rng`` values outside it are clamped into the outer bins. With
        ``rng=None`` the range is ``±scale·rms(x)``, computed on the device (no sync); the
        edges are reported in the units of ``x``.
        """
        x = x.detach().float()
        if rng is not None:
            lo, hi = float(rng[0]), float(rng[1])
            counts = torch.histc(x.clamp(lo, hi), bins=self.bins, min=lo, max=hi)
            self._pending_hists.append((self._step, self.layer_names[layer], qty, counts, (lo, hi)))
            return
        # rms from the norm (no full-size temporary) and one temporary for the scaled copy,
        # clamped in place: histograms are memory-bound, every full-size pass counts.
        rms = torch.linalg.vector_norm(x) / math.sqrt(max(x.numel(), 1))
        r = (rms * scale).clamp_min(1e-30)
        counts = torch.histc((x / r).clamp_(-1.0, 1.0), bins=self.bins, min=-1.0, max=1.0)
        self._pending_hists.append(
            (self._step, self.layer_names[layer], qty, counts, torch.stack([-r, r]))
        )

    # -- hooks for subclasses ----------------------------------------------------------------
    def _setup_for(self, model: nn.Module) -> None:
        """Check the chosen layers once, at attach (``self.model`` is not yet set)."""

    def _install(self) -> None:
        """Register this probe's hooks into ``self._handles`` (called on logged steps)."""

    def _n_raw(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_begin(self) -> None:
        pass

    def _on_after_backward(self) -> None:
        pass

    def _on_end(self) -> None:
        pass

    def _on_detach(self) -> None:
        pass

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        return []

    # -- one-shot use ------------------------------------------------------------------------
    def observe(self, x: Tensor, y: Tensor | None = None, loss_fn: Callable | None = None,
                *, step: int = 0, mode: str = "eval", histograms: bool = True) -> Probe:
        """Record this probe's statistics for one forward (and, with ``loss_fn``, backward)
        pass on ``x`` without changing the model; see :func:`observe`."""
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} is not attached; call attach(model) first.")
        observe(self.model, [self], x, y, loss_fn, step=step, mode=mode, histograms=histograms)
        return self

    def __repr__(self) -> str:
        state = f"{len(self.layer_names)} layers" if self.attached else "detached"
        return f"{type(self).__name__}({state}, every={self.schedule!r})"


def _as_probe_data(data: Any) -> tuple[Tensor, Tensor | None] | None:
    if data is None:
        return None
    if isinstance(data, Tensor):
        return data.detach(), None
    if isinstance(data, (tuple, list)) and 1 <= len(data) <= 2 and all(
        isinstance(t, Tensor) for t in data
    ):
        return data[0].detach(), (data[1].detach() if len(data) == 2 else None)
    raise TypeError(
        "probe_data must be a tensor x or a pair (x, y) of tensors. "
        f"Received: probe_data of type {type(data).__name__}."
    )


# --------------------------------------------------------------------------------------------
# one-shot passes that leave the model as they found it
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def preserved_state(model: nn.Module, mode: str = "eval") -> Iterator[None]:
    """Run a block on ``model`` and leave no trace.

    ``mode="eval"``: the model is put in eval mode (dropout off, BatchNorm uses — and does
    not update — its running statistics) and its previous modes are restored afterwards.
    ``mode="train"``: the model stays in train mode; BatchNorm running statistics (all
    buffers) are saved and restored, and the global RNG (CPU and the model's CUDA device)
    is forked so dropout masks drawn here do not shift the training run's random stream.
    ``mode="as_is"``: modules keep the modes they have (buffers and RNG handled as for
    ``"train"``) — what the doctor uses to see a model exactly as it would train.
    We save and restore instead of deep-copying: a copy would double the memory and would
    not carry the probes' hooks. ``.grad`` of every parameter is saved and restored too.
    """
    if mode not in ("eval", "train", "as_is"):
        raise ValueError(f"mode must be 'eval', 'train' or 'as_is'. Received: mode={mode!r}.")
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.grad) for p in model.parameters()]
    keep = mode != "eval"
    buffers = [(b, b.detach().clone()) for b in model.buffers()] if keep else []
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    try:
        with torch.random.fork_rng(devices=devices, enabled=keep):
            if mode != "as_is":
                model.train(mode == "train")
            for p, _ in grads:
                p.grad = None
            yield
    finally:
        for m, t in modes:
            m.training = t
        for p, g in grads:
            p.grad = g
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def observe(
    model: nn.Module,
    probes: Sequence[Probe],
    x: Tensor,
    y: Tensor | None = None,
    loss_fn: Callable | None = None,
    *,
    step: int = 0,
    mode: str = "eval",
    histograms: bool = True,
) -> Tensor | None:
    """One forward pass (and a backward pass when ``loss_fn`` is given) on ``x`` with
    ``probes`` forced to record at ``step``; the model's modes, buffers, ``.grad`` and the
    RNG are left as they were (see :func:`preserved_state`). Returns the loss (or ``None``).

    ``loss_fn(output, y)``; with ``y=None`` it is called as ``loss_fn(output)``.
    """
    for p in probes:
        if p.model is not model:
            raise ValueError(f"{type(p).__name__} is not attached to this model.")
    with preserved_state(model, mode):
        for p in probes:
            p._begin(step, True, histograms)
        try:
            if loss_fn is None:
                with torch.no_grad():
                    model(x)
                loss = None
            else:
                out = model(x)
                loss = loss_fn(out, y) if y is not None else loss_fn(out)
                loss.backward()
            for p in probes:
                p.after_backward(step)
        finally:
            for p in probes:
                p._hooks_off()
                p._slot = -1
                p._hist_now = False
    return None if loss is None else loss.detach()
