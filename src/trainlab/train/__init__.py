"""Training: the Trainer, its History, callbacks, checkpoints, configs and run folders.

``Trainer(model, optimizer="sgd", lr=None, loss="cross_entropy", ...).fit(data, steps=...)``
(``lr=None``: the optimizer's own default learning rate) returns a :class:`History`; see
:mod:`trainlab.train.trainer` for the design. ``train_pack`` / :class:`PackTrainer` train many
models of one structure as one vectorized pack (:mod:`trainlab.train.pack`).
"""

from __future__ import annotations

from trainlab.train.callbacks import Callback, EarlyStopping, LambdaCallback, MetricsCSV
from trainlab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainlab.train.history import Divergence, History
from trainlab.train.pack import (
    Pack,
    PackDivergence,
    PackOptimizer,
    PackResult,
    PackTrainer,
    train_pack,
)
from trainlab.train.trainer import DivergenceError, Trainer

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
