"""One function ``config -> metrics``: the unit of work that sweeps hand to other engines.

:func:`train_objective` trains one run described by a config mapping (the keys of
:class:`~trainlab.runs.config.TrainConfig`, nested ``{"model": {"width": 64}}`` or dotted
``{"model.width": 64}``) and returns its final metrics. It is what ``trainlab sweep
--executor ray`` runs as Ray tasks, and a user can hand it to Ray Tune or Optuna as is::

    from ray import tune
    from trainlab.runs.objective import train_objective
    tune.Tuner(train_objective, param_space={"optim.lr": tune.loguniform(1e-3, 1),
                                             "model.init": tune.choice(["xavier_normal",
                                                                        "he_normal"])}).fit()

    import optuna
    study = optuna.create_study()
    study.optimize(lambda t: train_objective({"optim.lr": t.suggest_float("lr", 1e-3, 1,
                                                                          log=True)})["test_loss"],
                   n_trials=20)

With ``out`` the run gets a run folder (config, metrics, checkpoint, curves) and, with
``db``, a row in the results store — the same files ``trainlab train`` writes. Without
``out`` it trains in memory (no files), which is what a tuner that keeps its own records
wants.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from trainlab.runs.config import from_dict
from trainlab.runs.run import (
    build_model_from_config,
    build_trainer,
    execute_run,
    load_data_from_config,
)
from trainlab.utils import seed_everything

__all__ = ["train_objective", "nest"]


def nest(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model.width": 64, "seed": 1}`` -> ``{"model": {"width": 64}, "seed": 1}``
    (nested entries are merged; a key given both ways is an error)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        parts = str(key).split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ValueError(f"config key {key!r} goes inside {p!r}, which is not a "
                                 f"section. Received: {config!r}.")
        last = parts[-1]
        if isinstance(value, Mapping):
            value = nest(value)
            if isinstance(d.get(last), dict):
                clash = set(d[last]) & set(value)
                if clash:
                    raise ValueError(f"config keys given twice: {sorted(clash)} in {last!r}.")
                d[last] = {**d[last], **value}
                continue
        if last in d and not (isinstance(d[last], dict) and isinstance(value, dict)):
            raise ValueError(f"config key {key!r} is given twice.")
        d[last] = value
    return out


def train_objective(config: Mapping[str, Any], *, out: str | os.PathLike | None = None,
                    db: str | os.PathLike | None = None, force: bool = False,
                    progress: bool | None = False) -> dict[str, float]:
    """Train the run ``config`` describes; return its final metrics.

    The metrics are the History's last values (``train_loss``, ``test_loss``, ``test_acc``,
    ``step`` ...) plus ``diverged`` (1.0 when training hit NaN/Inf, else 0.0). Unknown keys
    and bad values raise ``ValueError`` before anything trains.
    """

    cfg = from_dict(nest(config))
    if out is not None:
        result = execute_run(cfg, out, force=force, db=db, progress=progress)
        history, status = result.history, result.status
    else:
        seed_everything(cfg.seed)
        dataset = load_data_from_config(cfg)
        model = build_model_from_config(cfg, dataset)
        trainer = build_trainer(cfg, model, progress=progress, on_divergence="stop")
        epochs = cfg.epochs if (cfg.epochs is not None or cfg.steps is not None) else 10
        history = trainer.fit(dataset, epochs=epochs, steps=cfg.steps,
                              batch_size=cfg.batch_size, eval_every=cfg.eval_every)
        status = history.status
    metrics = {k: float(v) for k, v in history.final().items()
               if isinstance(v, (int, float))}
    metrics["diverged"] = 1.0 if status == "diverged" else 0.0
    return metrics
