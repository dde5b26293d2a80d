"""The engine: what trains — the Trainer, PackTrainer, History, callbacks, checkpoints.

``Trainer(model, optimizer="sgd", lr=None, loss="cross_entropy", ...).fit(data, steps=...)``
(``lr=None``: the optimizer's own default learning rate) returns a :class:`History`; see
:mod:`trainlab.engine.trainer` for the design. ``train_pack`` / :class:`PackTrainer` train many
models of one structure as one vectorized pack (:mod:`trainlab.engine.pack`). Also here:
:mod:`~trainlab.engine.distributed` (DDP under torchrun), :mod:`~trainlab.engine.pretraining`
(greedy layer-wise pre-training), :mod:`~trainlab.engine.ccnn` (convexified CNNs),
:mod:`~trainlab.engine.ensemble` (bagging, dropout as an ensemble) and
:mod:`~trainlab.engine.tensorboard` (the TensorBoard sink, an optional extra).
"""

from __future__ import annotations

from trainlab.engine.callbacks import Callback, EarlyStopping, LambdaCallback, MetricsCSV
from trainlab.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainlab.engine.history import Divergence, History
from trainlab.engine.pack import (
    Pack,
    PackDivergence,
    PackOptimizer,
    PackResult,
    PackTrainer,
    train_pack,
)
from trainlab.engine.trainer import DivergenceError, Trainer

__all__ = [
    "Callback",
    "CheckpointError",
    "Divergence",
    "DivergenceError",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "MetricsCSV",
    "Pack",
    "PackDivergence",
    "PackOptimizer",
    "PackResult",
    "PackTrainer",
    "Trainer",
    "load_checkpoint",
    "save_checkpoint",
    "train_pack",
]
