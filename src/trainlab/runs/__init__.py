"""The run layer: what orchestrates training runs.

- :mod:`~trainlab.runs.config`: :class:`TrainConfig` (YAML/TOML/JSON files, ``--set``
  overrides, every registry's options);
- :mod:`~trainlab.runs.run`: run folders and the lifecycle of one run
  (:func:`execute_run`: data, model, trainer, store row, checkpoints, figures, resume);
- :mod:`~trainlab.runs.sweep`: grids of runs, packed where the shapes allow;
- :mod:`~trainlab.runs.objective`: ``train_objective(config) -> metrics`` for Ray Tune and
  Optuna; :mod:`~trainlab.runs.ray_executor`: runs as Ray tasks (optional extra).
"""

from __future__ import annotations

from trainlab.runs.config import TrainConfig, load_config
from trainlab.runs.run import RunFolder, RunResult, execute_run

__all__ = ["RunFolder", "RunResult", "TrainConfig", "execute_run", "load_config"]
