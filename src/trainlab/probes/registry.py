"""The probe registry: every probe by name, and the probes of a run built from names.

``PROBES`` holds one entry per probe class (``trainlab list probe``); its names are those of
``TrainConfig.probes`` and ``trainlab train --probe``. An entry's ``meta``:

- ``every_run``: part of ``"all"`` — the probes that make sense on every run (cheap enough
  and needing nothing but the training batches). The others (the loss landscape: nine extra
  passes per logged step; the probes written for one study's question) run by name only;
- ``options``: the keyword arguments the probe takes (``every`` is set from a run's
  ``probe_every``).

:func:`build_probes` makes the probe objects of a run, :func:`resolve_probe_names` checks and
orders the names of a config.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

from trainlab.probes.activations import ActivationStats
from trainlab.probes.base import Schedule
from trainlab.probes.batch_stats import ActiveSaturated, LayerMoments, UnitPercentiles
from trainlab.probes.gradients import GradientStats
from trainlab.probes.jacobian import JacobianSpectrum
from trainlab.probes.landscape import LossLandscape
from trainlab.probes.weight_rows import RowSpread, SameSignRows
from trainlab.probes.weights import UpdateRatio, WeightStats
from trainlab.registry import Registry, normalize_name

__all__ = ["PROBES", "PROBE_NAMES", "build_probes", "every_run_probes", "resolve_probe_names"]

PROBES = Registry("probe")


def _add(name: str, cls: type, description: str, reference: str, *,
         aliases: tuple[str, ...] = (), every_run: bool = False) -> None:
    params = inspect.signature(cls).parameters.values()
    options = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY
                    or (p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"))
    PROBES.add(name, cls, description=description, reference=reference, aliases=aliases,
               meta={"every_run": every_run, "options": options})


# -- every run ("all"), in the order they are built ------------------------------------------
_add("activations", ActivationStats,
     "pre-activations and activations per layer: mean, std, min, max, percentiles, saturated "
     "and dead fractions, histograms", "Glorot & Bengio 2010 figs. 2-6; Ioffe & Szegedy 2015 "
     "fig. 1", aliases=("activation", "act"), every_run=True)
_add("gradients", GradientStats,
     "gradients w.r.t. each layer's output and weights: moments, norms, histograms",
     "Glorot & Bengio 2010 figs. 7-9", aliases=("gradient", "grad", "grads"), every_run=True)
_add("weights", WeightStats, "each layer's weights: mean, std, norm, min, max, histograms",
     "lecture 004 (initialization)", aliases=("weight",), every_run=True)
_add("updates", UpdateRatio, "update ratio ||dW|| / ||W|| per layer and step (rule of thumb: "
     "about 1e-3)", "lecture 004 (learning-rate advice)",
     aliases=("update", "update_ratio"), every_run=True)
_add("jacobian", JacobianSpectrum, "singular values of each block's Jacobian and of the "
     "input-output Jacobian", "Saxe et al. 2014; Pennington et al. 2017 (dynamical isometry)",
     aliases=("jacobians", "jacobian_spectrum"), every_run=True)
# -- by name only ----------------------------------------------------------------------------
_add("landscape", LossLandscape, "loss range, gradient change and effective beta-smoothness "
     "along the gradient (9 extra passes per logged step)", "Santurkar et al. 2018 fig. 4",
     aliases=("loss_landscape",))
_add("row_spread", RowSpread, "how alike a layer's units are: spread of the rows of its "
     "weight and weight gradient (0: every unit the same)", "lecture 004 (symmetry breaking)")
_add("same_sign", SameSignRows, "fraction of weight-gradient rows whose entries share one "
     "sign (positive inputs: all of them)", "lecture 001 (zero-centred inputs)",
     aliases=("same_sign_rows",))
_add("unit_percentiles", UnitPercentiles, "15/50/85th percentiles of every unit's input or "
     "output over the batch, exactly", "Ioffe & Szegedy 2015 fig. 1(b, c)")
_add("layer_moments", LayerMoments, "mean, std and fraction of |h| > 0.95 of each layer's "
     "outputs over the batch, exactly", "Glorot & Bengio 2010 fig. 2", aliases=("moments",))
_add("active_saturated", ActiveSaturated, "fraction of outputs > 0 (active ReLU) and within "
     "0.05 of 0 or 1 (saturated sigmoid), per layer and pooled", "lecture 002 (BN before or "
     "after the nonlinearity)")


def every_run_probes() -> list[str]:
    """The names ``"all"`` stands for, in registry order."""
    return [e.name for e in PROBES if e.meta.get("every_run")]


class _Names(Mapping[str, str]):
    """Registered probe name -> class name, read from :data:`PROBES` (so a probe registered
    later is listed too)."""

    def __getitem__(self, name: str) -> str:
        for e in PROBES:
            if e.name == name:
                return e.factory.__name__
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(PROBES.names())

    def __len__(self) -> int:
        return len(PROBES)

    def __repr__(self) -> str:
        return repr(dict(self))


#: probe name -> class name, in the order :func:`resolve_probe_names` returns them
PROBE_NAMES: Mapping[str, str] = _Names()


def resolve_probe_names(names: Any) -> list[str]:
    """Canonical probe names, in :data:`PROBES` order, without repeats.

    ``names`` is a list of names or one comma-separated string (``"activations,jacobian"``);
    ``"all"`` stands for every probe whose entry is marked ``every_run`` (the others only by
    name). Case, ``-``/``_`` and spaces are ignored; aliases are accepted. An unknown name
    raises ``ValueError`` naming the close matches and every allowed name.
    """
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"probes must be a list of names or a comma-separated string. Received: {names!r}."
        )
    chosen: set[str] = set()
    for item in names:
        for raw in item.split(","):
            n = normalize_name(raw)
            if not n:
                continue
            if n == "all":
                chosen.update(every_run_probes())
            elif n in PROBES:
                chosen.add(PROBES.get(n).name)
            else:
                raise ValueError(_unknown(raw.strip(), n))
    return [n for n in PROBES.names() if n in chosen]


def _unknown(raw: str, key: str) -> str:
    lookup = {a: e.name for e in PROBES for a in (e.name, *e.aliases)}
    close = difflib.get_close_matches(key, [*lookup, "all"], n=3, cutoff=0.6)
    close = list(dict.fromkeys(lookup.get(c, c) for c in close))
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    by_name = [n for n in PROBES.names() if n not in every_run_probes()]
    more = f"; by name only: {', '.join(by_name)}" if by_name else ""
    return (f"unknown probe {raw!r}.{hint} Allowed: {', '.join(every_run_probes())}, all"
            f"{more}.")


def build_probes(names: list[str] | tuple[str, ...] | str, every: int | None = None, *,
                 last_step: int | None = None) -> list[Any]:
    """The probe objects named in ``names`` (see :func:`resolve_probe_names`), in
    :data:`PROBES` order.

    ``every`` sets each probe's record cadence (steps); ``None`` keeps each probe's own
    schedule (log-spaced early steps, then every 50; the Jacobian every 500). Histograms keep
    their default steps (0, 1, 10, 100, then every 1000). ``last_step`` (the run's last step,
    ``steps - 1``) is added to every schedule, moments and histograms alike, so the figures
    show where training ended and not only the last multiple of the cadence.
    """
    out = []
    for name in resolve_probe_names(names if isinstance(names, str) else list(names)):
        entry = PROBES.get(name)
        probe = entry.build() if every is None else entry.build(every=every)
        if last_step is not None:
            probe.schedule = _also_at(probe.schedule, last_step)
            if _ever(probe.hist_schedule):  # a probe with no histograms gets none
                probe.hist_schedule = _also_at(probe.hist_schedule, last_step)
        out.append(probe)
    return out


def _ever(schedule: Any) -> bool:
    return not isinstance(schedule, Schedule) or bool(schedule.every or schedule.log
                                                      or schedule.at)


def _also_at(schedule: Any, step: int) -> Any:
    """``schedule`` that also fires at ``step`` (kept a Schedule, so it still prints)."""
    if isinstance(schedule, Schedule):
        return Schedule(schedule.every, log=schedule.log, base=schedule.base,
                        at=set(schedule.at) | {step})
    return lambda s: s == step or schedule(s)
