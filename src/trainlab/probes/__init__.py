"""Probes: per-layer statistics recorded during training, cheaply and without side effects.

- :class:`ActivationStats` — pre-activations and activations: mean, std, min, max,
  percentiles, saturated and dead fractions, histograms (Glorot & Bengio 2010 figs. 2–6,
  Ioffe & Szegedy 2015 fig. 1);
- :class:`GradientStats` — gradients w.r.t. layer outputs and weights (Glorot figs. 7–9);
- :class:`WeightStats`, :class:`UpdateRatio` — weights and ``‖ΔW‖/‖W‖`` per step;
- :class:`JacobianSpectrum` — singular values of layer and input–output Jacobians;
- :class:`LossLandscape` — loss range, gradient change and effective β-smoothness along
  the gradient direction (Santurkar et al. 2018 fig. 4);
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
from trainlab.probes.gradients import GradientStats
from trainlab.probes.jacobian import JacobianSpectrum, jacobian_singular_values
from trainlab.probes.landscape import LossLandscape
from trainlab.probes.records import ProbeLog, collect, load_records, save_records
from trainlab.probes.weights import UpdateRatio, WeightStats

__all__ = [
    "ActivationStats",
    "GradientStats",
    "JacobianSpectrum",
    "LossLandscape",
    "Probe",
    "ProbeLog",
    "Schedule",
    "UpdateRatio",
    "WeightStats",
    "as_schedule",
    "collect",
    "fused_enabled",
    "jacobian_singular_values",
    "load_records",
    "observe",
    "paused",
    "preserved_state",
    "save_records",
    "select_layers",
    "set_fused",
]
