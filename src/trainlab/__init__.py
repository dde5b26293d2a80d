"""trainlab: make deep networks trainable and see why.

Every technique of the lectures is reachable by name through its family's registry
(``trainlab.nn``, ``trainlab.init``, ``trainlab.optim``, ``trainlab.losses``,
``trainlab.data``); ``trainlab list`` prints them all::

    >>> import trainlab
    >>> model = trainlab.mlp([784, 256, 256, 10], activation="tanh", norm="bn",
    ...                      init="xavier_uniform")
    >>> trainlab.init_model(my_own_model, "he_normal")
"""

from __future__ import annotations

import importlib
from typing import Any

# The `trainlab` command: a Ctrl-C while torch loads prints one line, not a traceback.
from trainlab import _startup  # noqa: E402
from trainlab._version import __version__  # noqa: E402

_startup.install()

# Importing the families registers every name (the CLI's `list` reads the registries).
# Old module paths (trainlab.train.trainer, trainlab.nn.builders ...) keep working.
from trainlab import (  # noqa: E402
    _compat,  # noqa: E402
    init,
    losses,
    models,
    nn,
    optim,
)
from trainlab.init import init_model  # noqa: E402
from trainlab.models import build_model, convnet, mlp, preact_resnet  # noqa: E402
from trainlab.optim import build_optimizer, build_schedule  # noqa: E402
from trainlab.registry import Registry  # noqa: E402
from trainlab.utils import seed_everything  # noqa: E402

_compat.install()

# Heavier parts load on first use, so `import trainlab` stays quick.
_LAZY = {
    "data": ("trainlab.data", None),
    "load_dataset": ("trainlab.data", "load_dataset"),
    "probes": ("trainlab.probes", None),
    "engine": ("trainlab.engine", None),
    "runs": ("trainlab.runs", None),
    "train": ("trainlab.train", None),
    "Trainer": ("trainlab.engine", "Trainer"),
    "store": ("trainlab.store", None),
    "doctor": ("trainlab.doctor", None),
    "diagnose": ("trainlab.doctor", "diagnose"),
    "ccnn": ("trainlab.engine.ccnn", None),
    "CCNN": ("trainlab.engine.ccnn", "CCNN"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'trainlab' has no attribute {name!r}")


def load_all_families() -> None:
    """Import every part that owns a registry (for listings and reports)."""
    for module in ("trainlab.data", "trainlab.engine.pretraining", "trainlab.engine.ccnn"):
        try:
            importlib.import_module(module)
        except ImportError as e:  # pragma: no cover - a part missing from an install
            raise ImportError(f"trainlab could not import {module}: {e}") from e


__all__ = [
    "Registry",
    "__version__",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "convnet",
    "init",
    "init_model",
    "load_all_families",
    "losses",
    "models",
    "seed_everything",
    "mlp",
    "nn",
    "optim",
    "preact_resnet",
]
