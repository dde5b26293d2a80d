"""Model builders: networks assembled from :mod:`trainlab.nn`'s layers, initialized by name.

- :mod:`~trainlab.models.builders`: ``mlp``, ``convnet``, ``preact_resnet``,
  ``seq_classifier`` — small specs in, plain ``nn.Module`` s with stable submodule names out;
- :mod:`~trainlab.models.build`: the ``model`` registry :data:`MODELS` and
  :func:`build_model` for configs and the CLI;
- :mod:`~trainlab.models.memory`: what a spec needs in memory, estimated on the ``meta``
  device before anything is allocated.

Example::

    >>> from trainlab.models import mlp
    >>> model = mlp(784, [100] * 3, 10, activation="tanh", norm="bn", init="xavier_uniform")
"""

from __future__ import annotations

from trainlab.models import build, builders, memory
from trainlab.models.build import MODELS, build_model
from trainlab.models.builders import *  # noqa: F403
from trainlab.models.memory import (
    OPTIMIZER_SLOTS,
    MemoryEstimate,
    available_memory,
    check_fits,
    estimate_memory,
    format_bytes,
)

__all__ = [
    *builders.__all__,
    "MODELS",
    "OPTIMIZER_SLOTS",
    "MemoryEstimate",
    "available_memory",
    "build",
    "build_model",
    "builders",
    "check_fits",
    "estimate_memory",
    "format_bytes",
    "memory",
]
