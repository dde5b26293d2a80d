"""Probes: per-layer statistics recorded during training, cheaply and without side effects.

- :class:`ActivationStats` — pre-activations and activations: mean, std, min, max,
  percentiles, saturated and dead fractions, histograms (Glorot & Bengio 2010 figs. 2–6,
  Ioffe & Szegedy 2015 fig. 1);
- :class:`GradientStats` — gradients w.r.t. layer outputs and weights (Glorot figs. 7–9);
- :class:`WeightStats`, :class:`UpdateRatio` — weights and ``‖ΔW‖/‖W‖`` per step;
- :class:`JacobianSpectrum` — singular values of layer and input–output Jacobians;
- :class:`LossLandscape` — loss range, gradient change and effective β-smoothness along
  the gradient direction (Santurkar et al. 2018 fig. 4);
- :class:`RowSpread`, :class:`SameSignRows` — how alike a layer's units are (symmetry) and
  whether its gradient rows share one sign (positive inputs), lectures 004 and 001;
- :class:`UnitPercentiles`, :class:`LayerMoments`, :class:`ActiveSaturated` — exact
  statistics of layer outputs on a (fixed) batch: Ioffe & Szegedy fig. 1(b, c), Glorot &
  Bengio fig. 2, lecture 002; :class:`AtLogPoints` records a probe at a Trainer's logged rows;
- :data:`PROBES`, :func:`build_probes`, :func:`resolve_probe_names` — the probes by name
  (``trainlab list probe``; ``TrainConfig.probes``, ``trainlab train --probe``);
- :class:`ProbeLog`, :func:`collect`, :func:`save_records`, :func:`load_records` — records;
- :func:`set_fused` — the optional ``torch.compile`` path for the statistics (off by
  default; ``TRAINLAB_PROBE_COMPILE=1`` turns it on).

Each probe follows the C8 protocol (``attach``/``detach``, ``step_begin``,
``after_backward``, ``step_end``, ``records()``, ``histograms()``), see
:mod:`trainlab.probes.base`; :func:`observe` runs one recorded pass outside training::

    >>> from trainlab.probes import ActivationStats, GradientStats, observe, collect
    >>> probes = [ActivationStats().attach(model), GradientStats().attach(model)]
    >>> observe(model, probes, x, y, torch.nn.functional.cross_entropy)
    >>> log = collect(probes); log.table()
"""

from trainlab.probes.activations import ActivationStats, fused_enabled, set_fused
from trainlab.probes.base import (
    Probe,
    Schedule,
    as_schedule,
    observe,
    paused,
    preserved_state,
    select_layers,
)
from trainlab.probes.batch_stats import (
    ActiveSaturated,
    AtLogPoints,
    LayerMoments,
    UnitPercentiles,
)
from trainlab.probes.gradients import GradientStats
from trainlab.probes.jacobian import JacobianSpectrum, jacobian_singular_values
from trainlab.probes.landscape import LossLandscape
from trainlab.probes.records import ProbeLog, collect, load_records, save_records
from trainlab.probes.registry import (
    PROBE_NAMES,
    PROBES,
    build_probes,
    every_run_probes,
    resolve_probe_names,
)
from trainlab.probes.weight_rows import RowSpread, SameSignRows
from trainlab.probes.weights import UpdateRatio, WeightStats

__all__ = [
    "PROBES",
    "PROBE_NAMES",
    "ActivationStats",
    "ActiveSaturated",
    "AtLogPoints",
    "GradientStats",
    "JacobianSpectrum",
    "LayerMoments",
    "LossLandscape",
    "Probe",
    "ProbeLog",
    "RowSpread",
    "SameSignRows",
    "Schedule",
    "UnitPercentiles",
    "UpdateRatio",
    "WeightStats",
    "as_schedule",
    "build_probes",
    "collect",
    "every_run_probes",
    "fused_enabled",
    "jacobian_singular_values",
    "load_records",
    "observe",
    "paused",
    "preserved_state",
    "resolve_probe_names",
    "save_records",
    "select_layers",
    "set_fused",
]
