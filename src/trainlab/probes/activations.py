"""ActivationStats: per-layer statistics of pre-activations and activations.

What Glorot & Bengio (2010) plot in figs. 2–6 and Ioffe & Szegedy (2015) in fig. 1: the mean
and standard deviation of each hidden layer's activations over training, their percentiles
(15/50/85 as Ioffe, 98 as Glorot), the fraction of saturated units and normalized histograms.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trainlab.probes.base import Probe, activation_info, first_tensor

__all__ = ["ActivationStats", "moment_keys", "finish_moments", "pool_calls", "set_fused",
           "fused_enabled"]

_log = logging.getLogger(__name__)

#: same-shaped tensors with at most this many elements each are stacked and reduced together
#: (a few kernels for the whole group: below this size the per-kernel overhead of one
#: reduction per tensor costs more than the copy); larger ones are reduced one by one.
STACK_MAX = 2048
#: the sums of squares are one multi-tensor ``_foreach_norm`` call (no per-tensor overhead),
#: except for tensors larger than this on a CPU with several threads: there ``dot``, which
#: unlike ``_foreach_norm`` uses the threads, is 1.6x faster on 2 threads for a 1.6M-element
#: activation (and 2x slower on one thread; torch 2.13).
FOREACH_MAX = 65536


#: with the fused path on, a call of :meth:`_Moments.rows` whose tensors hold at least this
#: many elements in all gets the sum, sum of squares, min and max of all its tensors from one
#: compiled function (one read of each tensor); smaller calls stay eager: a compiled call
#: costs ~40 us of guards and dispatch, more than the eager kernels of one 32k-element
#: tensor (28 us); 12 such tensors take 167 us compiled against 281 us eager, and one
#: 1.6M-element tensor 300 us against 660 us (2-core CPU, torch 2.13).
FUSED_MIN = 1 << 16

_FUSED: dict[str, Any] = {"on": None, "fns": {}, "failed": False}


def set_fused(enabled: bool | None) -> None:
    """Switch the fused (``torch.compile``) statistics path of the probes on or off.

    Policy: off by default. ``None`` restores the default, which reads the environment
    variable ``TRAINLAB_PROBE_COMPILE`` (``1`` on, anything else off). When on, a group of
    tensors reduced together (the weights of a probe, same-shaped activations or gradients)
    holding at least :data:`FUSED_MIN` elements in all gets its sums, sums of squares, mins
    and maxes from one Inductor-compiled call (one pass over each tensor instead of four,
    one dispatch for the group). Compiling happens lazily, at the first logged step that
    needs it (about 1-7 s on a 2-core CPU); the function takes the flattened tensors, so
    sizes are marked dynamic after a second size and only a new number of tensors per group
    recompiles (a handful per model, once; past torch's recompile limit torch runs the
    function eagerly). If compiling or running the compiled
    function fails (no C compiler, an unsupported backend), one warning is issued and the
    eager path is used from then on. Results equal the eager path's within float32
    rounding (a different summation order).
    """
    _FUSED["on"] = None if enabled is None else bool(enabled)
    _FUSED["failed"] = False


def fused_enabled() -> bool:
    """Whether the fused statistics path is on (see :func:`set_fused`)."""
    on = _FUSED["on"]
    if on is None:
        on = os.environ.get("TRAINLAB_PROBE_COMPILE", "0").strip() == "1"
    return on and not _FUSED["failed"]


def _stats4(*ts: Tensor) -> Tensor:
    return torch.stack([torch.stack([x.sum(), (x * x).sum(), x.amin(), x.amax()]) for x in ts])


def _stats2(*ts: Tensor) -> Tensor:
    return torch.stack([torch.stack([x.sum(), (x * x).sum()]) for x in ts])


def _eager_stats(ts: Sequence[Tensor], minmax: bool) -> Tensor:
    """``(k, 4)`` rows ``[sum, sum of squares, min, max]`` (``(k, 2)`` without ``minmax``)
    of the tensors ``ts``, eagerly: the fallback of the fused path."""
    rows = []
    for v in ts:
        parts = [v.sum(), torch.linalg.vector_norm(v).square()]
        if minmax:
            parts += [v.amin(), v.amax()]
        rows.append(torch.stack(parts))
    return torch.stack(rows)


def _fused_stats(ts: Sequence[Tensor], minmax: bool) -> Tensor:
    """The rows of :func:`_eager_stats` from one compiled call for all tensors (flattened,
    so only their sizes vary: marked dynamic after a second size instead of recompiling);
    the eager path, with one warning, if compiling or running it fails."""
    key = "4" if minmax else "2"
    try:
        fn = _FUSED["fns"].get(key)
        if fn is None:  # lazily: the first logged step that needs it
            fn = torch.compile(_stats4 if minmax else _stats2, fullgraph=True)
            _FUSED["fns"][key] = fn
        return fn(*[v.reshape(-1) for v in ts])
    except Exception as exc:  # no compiler, unsupported backend, ...: eager from now on
        _FUSED["failed"] = True
        first = str(exc).splitlines()[0] if str(exc) else ""
        msg = (f"trainlab probes: torch.compile of the statistics failed "
               f"({type(exc).__name__}: {first}); using the eager path")
        _log.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return _eager_stats(ts, minmax)


def moment_keys(prefix: str, percentiles: Sequence[float]) -> list[str]:
    """Quantity names produced for one tensor: mean, std, min, max and the percentiles."""
    return [f"{prefix}_{k}" for k in ("mean", "std", "min", "max")] + [
        f"{prefix}_p{_pct_name(p)}" for p in percentiles
    ]


def _pct_name(p: float) -> str:
    return f"{p:g}".replace(".", "_")


def finish_moments(raw: Sequence[float], n: int) -> tuple[float, float, float]:
    """``(mean, std, norm)`` from a raw ``(sum, sum of squares)`` pair over ``n`` elements.

    ``std`` uses Bessel's correction (as ``torch.std``): ``var = (Σx² − (Σx)²/n) / (n − 1)``,
    evaluated in float64 on the host from float32 device sums; the relative error of the
    variance is about ``1e-7·(mean/std)²`` (one-pass formula), negligible unless the
    std is below ~1e-3 of the mean.
    """
    s, q = float(raw[0]), float(raw[1])
    mean = s / n
    var = max(q - s * s / n, 0.0) / max(n - 1, 1)
    return mean, var**0.5, max(q, 0.0) ** 0.5


def _rule_key(rule: Any) -> Any:
    """Rules that compare equal (the registry's frozen ``ThresholdRule`` records: every
    ``nn.Tanh`` has its own equal copy) share one key, so one reduction serves them all."""
    try:
        hash(rule)
    except TypeError:
        return ("id", id(rule))
    return rule


class _Moments:
    """Device-side reductions: sum, sum of squares, min, max, and percentiles on a fixed
    random subsample (indices from a private generator), batched over same-shaped tensors."""

    def __init__(self, percentiles: Sequence[float], sample_size: int, seed: int) -> None:
        self.percentiles = tuple(float(p) for p in percentiles)
        self.sample_size = sample_size
        self._gen = torch.Generator().manual_seed(seed)  # private: never the global RNG
        self._idx: dict[tuple[int, torch.device], Tensor] = {}
        self._q: dict[tuple, Any] = {}

    @property
    def width(self) -> int:
        return 4 + len(self.percentiles)

    def _index(self, n: int, device: torch.device) -> Tensor:
        key = (n, device)
        if key not in self._idx:
            idx = torch.randperm(n, generator=self._gen)[: self.sample_size].sort().values
            self._idx[key] = idx.to(device)
        return self._idx[key]

    def rows(self, ts: Sequence[Tensor], minmax: bool = True,
             sample: bool = True) -> tuple[Tensor, Tensor | None]:
        """Statistics of tensors: ``((k, width) stats, (k, m) subsamples or None)``.

        Columns: sum, sum of squares, then (``minmax``) min, max, then (``sample`` and
        percentiles chosen) the percentiles of a fixed random subsample. Without ``minmax``
        the stats have 2 columns. ``sample`` needs tensors of equal size.

        Same-shaped small tensors (``<= STACK_MAX`` elements) are stacked and reduced
        together — four kernels for the whole group, since per-kernel overhead dominates
        there. Otherwise (large or mixed shapes: the weights) every tensor is reduced
        without a copy (the sums of squares of small ones with one multi-tensor call).
        ``amin``/``amax`` and ``vector_norm``, not ``aminmax``/``var_mean``: on a CPU the
        former are 3-50x faster (torch 2.13). With the fused path on (:func:`set_fused`),
        a call outside the stacked case holding at least :data:`FUSED_MIN` elements in all is
        reduced by one compiled function (one read of each tensor for all four statistics).
        """
        flat = [t if t.dtype in (torch.float32, torch.float64) else t.float() for t in ts]
        n = flat[0].numel()
        same = all(v.numel() == n for v in flat)
        sub = None
        if same and n <= STACK_MAX and len(flat) > 1:
            X = torch.stack([v.reshape(-1) for v in flat])
            parts = [X.sum(1), torch.linalg.vector_norm(X, dim=1).square()]
            if minmax:
                parts += [X.amin(1), X.amax(1)]
            if sample:
                sub = self.subsample_rows(X)
        elif fused_enabled() and sum(v.numel() for v in flat) >= FUSED_MIN:
            parts = list(_fused_stats(flat, minmax).unbind(1))  # one compiled call for all
            if sample:
                sub = self._subsample_each(flat, same, n)
        else:
            if (max(v.numel() for v in flat) <= FOREACH_MAX or flat[0].device.type != "cpu"
                    or torch.get_num_threads() == 1):  # one call for all
                sq = torch.stack(torch._foreach_norm(flat)).square()
            else:  # one dot per tensor: torch spreads it over its threads
                sq = torch.stack([torch.dot(v.reshape(-1), v.reshape(-1)) for v in flat])
            parts = [torch.stack([v.sum() for v in flat]), sq]
            if minmax:
                parts += [torch.stack([v.amin() for v in flat]),
                          torch.stack([v.amax() for v in flat])]
            if sample:
                sub = self._subsample_each(flat, same, n)
        out = torch.stack(parts, 1)
        if sample and self.percentiles:
            out = torch.cat([out, self.percentiles_of(sub)], 1)
        return out, sub

    def _subsample_each(self, flat: Sequence[Tensor], same: bool, n: int) -> Tensor:
        """The fixed random subsample of each of the equal-sized tensors ``flat``."""
        if not same:  # pragma: no cover - internal
            raise ValueError("subsamples need tensors of equal size")
        idx = self._index(n, flat[0].device) if n > self.sample_size else None
        return torch.stack([v.reshape(-1) if idx is None
                            else v.reshape(-1).index_select(0, idx) for v in flat])

    def percentiles_of(self, sub: Tensor) -> Tensor:
        """torch.quantile's 'linear' rule, row by row: the value at position p·(m−1) of the
        sorted row, interpolated between its neighbours (one batched sort for all rows)."""
        if sub.device.type == "cpu":
            # Same data, same host: NumPy's sort is ~20x faster than torch.sort along dim 1
            # on a CPU (torch 2.13), and the percentiles are the probe's largest cost there.
            srt = torch.from_numpy(np.sort(sub.detach().contiguous().numpy(), axis=1))
        else:
            srt = torch.sort(sub, dim=1).values
        lohi, frac = self._positions(srt.shape[1], srt.device)
        pair = srt.index_select(1, lohi)
        p = len(self.percentiles)
        return torch.lerp(pair[:, :p], pair[:, p:], frac.to(pair.dtype))

    def subsample_rows(self, X: Tensor) -> Tensor:
        """The same fixed random subset of columns of every row of ``X``."""
        n = X.shape[1]
        return X if n <= self.sample_size else X.index_select(1, self._index(n, X.device))

    def _positions(self, m: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (m, device)
        if key not in self._q:
            pos = [p / 100.0 * (m - 1) for p in self.percentiles]
            lo = [int(math.floor(x)) for x in pos]
            hi = [min(k + 1, m - 1) for k in lo]
            frac = torch.tensor([x - k for x, k in zip(pos, lo)], dtype=torch.float32)
            self._q[key] = (torch.tensor(lo + hi, device=device), frac.to(device))
        return self._q[key]

    def finish(self, raw: Any, n: int) -> list[float]:
        mean, std, _ = finish_moments(raw[:2], n)
        return [mean, std, float(raw[2]), float(raw[3])] + [float(v) for v in raw[4:]]


class ActivationStats(Probe):
    """Statistics of each watched layer's input (pre-activation) and output (activation).

    By default the probe watches every activation module the registry knows (C1:
    ``trainlab.nn.activations.activation_info``), so ``pre`` is the pre-activation
    ``s = Wx + b`` (or its normalized version) and ``act`` is ``h = f(s)``. Layers chosen by
    name may be of any type; ``pre`` is then the layer's input. Transformer encoder/decoder
    layers are watched by default too (their output; pass ``unit_dim=-1`` for the dead rule
    of ``(N, T, F)`` tensors), and so are recurrent layers (their output sequence).

    A module called several times in one forward pass (the ReLU torchvision's ResNet block
    applies twice, a weight-shared layer of an unrolled network) records every call, pooled:
    the statistics are those of all its calls' tensors together (concatenated along the
    batch axis when their shapes agree, flattened otherwise — then without the dead-unit
    rule, which needs units), and the quantity ``act_calls`` gives the number of calls (only
    when it is more than one). :class:`~trainlab.probes.GradientStats` pools ``∂L/∂s`` the
    same way, so activations and gradients describe the same calls.

    Keys (quantity names in :meth:`records`), for ``which`` in ``pre``, ``act``:
        ``{which}_mean``, ``{which}_std`` (Bessel-corrected, over all elements of the batch),
        ``{which}_min``, ``{which}_max``, ``{which}_p15``, ``_p50``, ``_p85``, ``_p98`` (the
        chosen ``percentiles``); and ``act_saturated`` (fraction of elements the activation's
        ``saturated`` rule flags), ``act_dead`` (fraction of units whose ``dead`` rule holds
        for every example and position of the batch; the unit axis is ``unit_dim``, 1 = the
        channel/feature axis of ``(N, C, *)`` tensors; use -1 for ``(N, T, F)`` sequences).
        The last two appear only for activations that can saturate / die.
    Histograms: quantities ``act`` (over the activation's ``hist_range``, tails clamped into
    the outer bins) and ``pre`` (over ±4·rms of the pre-activation, tails clamped).

    Percentiles and the saturated fraction are computed on a fixed random subsample of
    ``sample_size`` elements (exact when the tensor is smaller): the standard error of a
    p-quantile's rank, and of a saturated fraction p, is ``sqrt(p(1-p)/sample_size)`` — at
    most 1.6 percentile points for the default 1024 (0.44 at p98; tested). Sorting the
    subsample is the largest cost of the probe on a CPU, hence the modest default. Moments
    and the dead fraction use every element.

    Args:
        layers, every, hist_every, bins, capacity: see :class:`~trainlab.probes.base.Probe`.
        percentiles: in percent; ``()`` for none.
        pre: also record the layer inputs.
        sample_size: subsample size for percentiles.
        unit_dim: the unit axis for the dead-unit rule.
        probe_data: ``x`` or ``(x, y)``: a fixed probe set (Glorot used 300 test examples)
            evaluated at the scheduled steps, before the step's forward pass, instead of the
            training batch; see ``mode``.
        mode: ``"eval"`` (default: dropout off, BatchNorm with running statistics) or
            ``"train"`` for probe-set passes; either way the pass leaves no trace (BN buffers,
            RNG and ``.grad`` are saved and restored; see ``preserved_state``).
        seed: seed of the probe's private generator for the percentile subsample.
    """

    default_layers = "activation"

    def __init__(
        self,
        layers: Any = None,
        *,
        every: Any = None,
        hist_every: Any = None,
        bins: int = 50,
        percentiles: Sequence[float] = (15, 50, 85, 98),
        pre: bool = True,
        sample_size: int = 1024,
        unit_dim: int = 1,
        probe_data: Any = None,
        mode: str = "eval",
        capacity: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(layers, every=every, hist_every=hist_every, bins=bins,
                         capacity=capacity, probe_data=probe_data, mode=mode)
        for p in percentiles:
            if not isinstance(p, (int, float)) or not 0 <= p <= 100:
                raise ValueError(
                    "percentiles must be numbers in [0, 100]. "
                    f"Received: percentiles={percentiles!r}."
                )
        if not isinstance(sample_size, int) or sample_size < 1:
            raise ValueError(
                f"sample_size must be an integer >= 1. Received: sample_size={sample_size!r}."
            )
        if not isinstance(unit_dim, int):
            raise TypeError(f"unit_dim must be an int. Received: unit_dim={unit_dim!r}.")
        self.pre, self.unit_dim = bool(pre), unit_dim
        self.mom = _Moments(percentiles, sample_size, seed)
        self.infos: list[Any] = []

    def _n_raw(self) -> int:
        return 2 * self.mom.width + 2

    def _setup_for(self, model: Any) -> None:
        self.infos = [activation_info(m) for m in self.modules]
        self._ranges = []
        for info in self.infos:
            rng = getattr(info, "hist_range", None)
            finite = rng is not None and all(abs(float(r)) < float("inf") for r in rng)
            self._ranges.append(tuple(rng) if finite else None)
        self._stage: dict[tuple[int, int], list[tuple[Tensor, int]]] = {}
        self._clone: set[tuple[int, int]] = set()
        self._hooks = []
        for i in range(len(self.modules)):
            self._hooks.append((self._pre_hook(i) if self.pre else None, self._post_hook(i)))

    def _install(self) -> None:
        for m, (pre, post) in zip(self.modules, self._hooks):
            if pre is not None:
                self._handles.append(m.register_forward_pre_hook(pre))
            self._handles.append(m.register_forward_hook(post))
        # The model's own forward hook runs after every watched module: reduce there.
        self._handles.append(self.model.register_forward_hook(lambda *a: self._reduce()))

    # Hooks only stage tensors (a reference, or a copy when an in-place module would
    # overwrite it); the reductions run once per forward pass in _reduce, batched over all
    # layers with the same tensor shape (a few kernels for the whole group instead of a
    # few per layer: on a CPU the per-kernel overhead dominates for small layers).
    def _pre_hook(self, i: int):
        def hook(module: Any, args: Any) -> None:
            if not self.recording:
                return
            x = first_tensor(args)
            if x is None:
                return
            x = x.detach()
            if getattr(module, "inplace", False) or (i, 0) in self._clone:
                x = x.clone()
            self._stage.setdefault((i, 0), []).append((x, x._version))

        return hook

    def _post_hook(self, i: int):
        def hook(module: Any, args: Any, out: Any) -> None:
            if not self.recording:
                return
            y = first_tensor(out)
            if y is None:
                return
            y = y.detach()
            if (i, 1) in self._clone:
                y = y.clone()
            self._stage.setdefault((i, 1), []).append((y, y._version))

        return hook

    def _on_after_backward(self) -> None:
        self._reduce()

    def _on_end(self) -> None:
        self._reduce()

    def _on_detach(self) -> None:
        self._stage = {}

    def _reduce(self) -> None:
        """Reduce everything staged in this forward pass: one group per tensor shape, with
        the pre-activations and activations of all layers of that shape together (one call
        of :meth:`_Moments.rows`, one sort of the subsamples and one write for the group)."""
        stage, self._stage = self._stage, {}
        if not stage or not self.recording:
            return
        meta = self._buffer.meta[self._slot]
        groups: dict[tuple, list[tuple[int, int, Tensor]]] = {}
        for (i, which), calls in stage.items():
            if any(t._version != v for t, v in calls):  # changed in place after the hook:
                self._clone.add((i, which))             # copy from now on
                continue
            t = pool_calls([t for t, _ in calls], self.unit_dim)
            groups.setdefault((tuple(t.shape), t.dtype, t.device), []).append((which, i, t))
            meta[(i, ("pre_n", "act_n")[which])] = t.numel()
            if which == 1 and len(calls) > 1:
                meta[(i, "calls")] = len(calls)
        w = self.mom.width
        for (shape, _, _), items in groups.items():
            items.sort(key=lambda it: it[0])  # pre-activations first, then activations
            stats, sub = self.mom.rows([t for *_, t in items])
            self._write_cells([(i, which * w) for which, i, _ in items], stats)
            n_pre = sum(1 for which, *_ in items if which == 0)
            acts = items[n_pre:]
            if acts:
                self._sat_dead([i for _, i, _ in acts], [t for *_, t in acts],
                               sub[n_pre:], shape, meta)
            if self._hist_now:
                for which, i, t in items:
                    self._hist(i, ("pre", "act")[which], t, None if which == 0 else
                               self._ranges[i])

    def _sat_dead(self, layers: list[int], ts: list[Tensor], sub: Tensor, shape: tuple,
                  meta: dict) -> None:
        """Saturated fraction (on the subsample, as the percentiles) and dead fraction of
        the activations ``ts``, one reduction per distinct rule (layers of one activation
        type share theirs)."""
        w = self.mom.width
        for kind, col in (("saturated", 2 * w), ("dead", 2 * w + 1)):
            by_rule: dict[int, tuple[Any, list[int]]] = {}
            for r, i in enumerate(layers):
                rule = getattr(self.infos[i], kind, None)
                if rule is not None and (kind == "saturated" or len(shape) >= 2):
                    by_rule.setdefault(_rule_key(rule), (rule, []))[1].append(r)
            for rule, rows in by_rule.values():
                if kind == "saturated":
                    sr = sub if len(rows) == len(layers) else sub[rows]
                    frac = rule(sr).float().mean(1)
                else:
                    frac = self.dead_fractions(rule, [ts[r] for r in rows], self.unit_dim)
                self._write_rows([layers[r] for r in rows], col, frac[:, None])
                for r in rows:
                    meta[(layers[r], ("sat", "dead")[col - 2 * w])] = True

    @staticmethod
    def dead_fractions(rule: Any, ys: Sequence[Tensor], unit_dim: int = 1) -> Tensor:
        """Fraction of dead units of each of the same-shaped outputs ``ys`` (a ``(k,)``
        tensor). For a one-sided threshold rule (``h <= c``, the rectifiers' zero side) a
        unit is dead exactly when its largest output is ``<= c``, so the rule is applied to
        the per-unit maximum (one reduction, no full-size mask); likewise ``h >= c`` with the
        minimum. Other rules are applied elementwise."""
        d = unit_dim % ys[0].dim()
        others = tuple(k for k in range(ys[0].dim()) if k != d)
        below = getattr(rule, "at_or_below", None)
        above = getattr(rule, "at_or_above", None)
        if below is not None and above is None and hasattr(rule, "at_or_above"):
            ext = torch.stack([y.amax(dim=others) for y in ys])
        elif above is not None and below is None and hasattr(rule, "at_or_below"):
            ext = torch.stack([y.amin(dim=others) for y in ys])
        else:
            return torch.stack([rule(y).all(dim=others).float().mean() for y in ys])
        return rule(ext).float().mean(1)

    @staticmethod
    def dead_fraction(mask: Tensor, unit_dim: int = 1) -> Tensor:
        """Fraction of units whose mask is true for every example and position (device)."""
        d = unit_dim % mask.dim()
        others = tuple(k for k in range(mask.dim()) if k != d)
        return mask.all(dim=others).float().mean()

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        out: list[tuple[int, str, str, float]] = []
        w = self.mom.width
        pct = self.mom.percentiles
        for i, name in enumerate(self.layer_names):
            for which, off in (("pre", 0), ("act", w)):
                n = meta.get((i, f"{which}_n"))
                if n is None:
                    continue
                vals = self.mom.finish(row[i, off:off + w], n)
                out.extend((step, name, k, v) for k, v in zip(moment_keys(which, pct), vals))
            if meta.get((i, "sat")):
                out.append((step, name, "act_saturated", float(row[i, 2 * w])))
            if meta.get((i, "dead")):
                out.append((step, name, "act_dead", float(row[i, 2 * w + 1])))
            if meta.get((i, "calls")):
                out.append((step, name, "act_calls", float(meta[(i, "calls")])))
        return out


def pool_calls(ts: Sequence[Tensor], unit_dim: int = 1) -> Tensor:
    """One tensor holding the tensors of all calls of a module in one pass.

    One call: the tensor itself (no copy). Same shapes: concatenated along the batch axis
    (axis 0, or axis 1 when ``unit_dim`` is 0), so a unit stays a unit and the dead-unit rule
    still applies. Different shapes (a layer applied at several resolutions): flattened and
    concatenated, which keeps the moments and percentiles exact but has no units.
    """
    if len(ts) == 1:
        return ts[0]
    if all(t.shape == ts[0].shape for t in ts) and ts[0].dim() >= 1:
        axis = 1 if ts[0].dim() >= 2 and unit_dim % ts[0].dim() == 0 else 0
        return torch.cat(list(ts), axis)
    return torch.cat([t.reshape(-1) for t in ts])
