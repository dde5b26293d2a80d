"""Old module paths, kept working after Architecture II moved the modules into their layers.

``import trainlab.train.trainer`` (or ``from trainlab.nn.builders import mlp``) gives the very
module that now lives at ``trainlab.engine.trainer`` (``trainlab.models.builders``): the same
object, so its functions, classes and module state are shared and a ``monkeypatch`` on either
name patches both. A finder at the front of ``sys.meta_path`` maps each old name to its new
module on first import; nothing is imported before it is asked for, so ``import trainlab``
stays as quick as before. ``trainlab.nn`` also keeps the builder names it used to re-export
(``trainlab.nn.mlp``), resolved on first access.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

__all__ = ["MOVED", "install"]

#: old module path -> where it lives now
MOVED: dict[str, str] = {
    "trainlab.second_order": "trainlab.optim.second_order",
    "trainlab.pretrain": "trainlab.engine.pretraining",
    "trainlab.ccnn": "trainlab.engine.ccnn",
    "trainlab.nn.builders": "trainlab.models.builders",
    "trainlab.nn.memory": "trainlab.models.memory",
    "trainlab.train.trainer": "trainlab.engine.trainer",
    "trainlab.train.pack": "trainlab.engine.pack",
    "trainlab.train.ensemble": "trainlab.engine.ensemble",
    "trainlab.train.checkpoint": "trainlab.engine.checkpoint",
    "trainlab.train.history": "trainlab.engine.history",
    "trainlab.train.callbacks": "trainlab.engine.callbacks",
    "trainlab.train.distributed": "trainlab.engine.distributed",
    "trainlab.train.tensorboard": "trainlab.engine.tensorboard",
    "trainlab.train.config": "trainlab.runs.config",
    "trainlab.train.runs": "trainlab.runs.run",
    "trainlab.train.sweep": "trainlab.runs.sweep",
    "trainlab.train.objective": "trainlab.runs.objective",
    "trainlab.train.ray_executor": "trainlab.runs.ray_executor",
    "trainlab.train.demo": "trainlab.cli.demo_app",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name in :data:`MOVED` and loads it as the new module itself."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: Any) -> None:  # the new module is already executed
        pass


def _nn_getattr(name: str) -> Any:
    """``trainlab.nn.mlp`` and the other builder names ``trainlab.nn`` used to re-export."""
    builders = importlib.import_module("trainlab.models.builders")
    if name in builders.__all__:
        return getattr(builders, name)
    raise AttributeError(f"module 'trainlab.nn' has no attribute {name!r}")


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once) and give ``trainlab.nn`` its old
    builder names."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
    nn = sys.modules.get("trainlab.nn")
    if nn is not None and not hasattr(nn, "__getattr__"):
        nn.__getattr__ = _nn_getattr  # type: ignore[attr-defined]
