"""Run folders and the lifecycle of one training run from a :class:`TrainConfig`.

A run folder holds::

    config.json     the resolved config (every default filled in)
    env.json        versions, device, seed, git revision, host, command line
    status.json     running -> done / diverged / failed / interrupted (written in ``finally``)
    metrics.csv     one row per logging point
    pretrain.csv, figures/pretrain.png   per-layer reconstruction curves (with --pretrain)
    checkpoints/last.pt
    figures/curves.png
    probes.csv, probe_histograms.jsonl, probe_spectra.jsonl   (when probes were used;
                    the format of :mod:`trainlab.probes.records`)
    figures/probe_*.png   the lecture figures drawn from those records

An existing, non-empty folder is never overwritten unless the caller asks (``resume=True``
continues it from its checkpoint, ``force=True`` empties it first). The results store row is
marked finished only after every file above is written.

Policies of :func:`execute_run`:

- **Order.** The results store is opened (and checked) and the data, model and optimizer are
  built before the folder is touched, so an unusable store or a bad setting leaves no
  half-made folder. With ``force``, the earlier rows of the folder are marked
  ``overwritten`` only once the folder has actually been emptied.
- **Resume** (``trainlab train --out DIR --resume``) reads the run's ``config.json``
  (:func:`resume_config`): settings given with it must agree with the stored ones (a
  conflict is a one-line error naming the key, the stored and the given value). A run
  whose checkpoint is missing is refused (nothing is changed; ``--force`` starts it afresh).
  ``env.json`` keeps the environment of the first start and gains a ``resumes`` list (time,
  step, threads, device, torch, host, command line); a resume with another torch thread
  count, device or torch version warns that the result will not be bitwise identical.
- **Signals.** From the moment the folder is touched, SIGINT and SIGTERM never cut the
  bookkeeping short: during training the :class:`Trainer` handles them (checkpoint, status
  ``interrupted``); outside it they are deferred, the final files, ``status.json`` and the
  store row are written, and then the signal is delivered as
  :class:`~trainlab.engine.trainer.TrainingInterrupted`.
- **Temporary files.** Orphans of a kill during an atomic write (trainlab's own
  ``.NAME.XXXXXXXX.tmp`` and ``.NAME.tmp.png``) are removed from the run folder, its
  ``checkpoints/`` and ``figures/`` when the run is started or resumed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainlab._version import __version__
from trainlab.data import load_dataset, preprocess_dataset
from trainlab.engine import distributed
from trainlab.engine.callbacks import Callback, EarlyStopping, MetricsCSV
from trainlab.engine.checkpoint import load_checkpoint
from trainlab.engine.ensemble import ENSEMBLES, bagging_trainer
from trainlab.engine.history import History
from trainlab.engine.pretraining import check_pretrainable, pretrain
from trainlab.engine.trainer import DivergenceError, Trainer, TrainingInterrupted
from trainlab.init import init_model, model_level_entry
from trainlab.losses import PenalizedLoss
from trainlab.models.build import MODELS, build_model
from trainlab.models.memory import check_fits, estimate_memory
from trainlab.nn.natural import NATURAL_NETS
from trainlab.optim.gradients import GRAD_NOISES
from trainlab.probes import save_records
from trainlab.probes.registry import build_probes
from trainlab.report.html import format_cell
from trainlab.report.run_plots import plot_curves, plot_pretrain_curves, plot_probe_figures
from trainlab.runs.config import (
    TrainConfig,
    config_diff,
    from_dict,
    parse_overrides,
    read_config_file,
    seq_classifier_spec,
    with_defaults,
)
from trainlab.store import RunStore
from trainlab.utils import atomic_write_text, resolve_device, seed_everything

__all__ = [
    "RunFolder",
    "RunResult",
    "build_model_from_config",
    "build_probes",
    "collect_env",
    "execute_run",
    "load_data_from_config",
    "resume_command",
    "resume_config",
    "plot_curves",
    "plot_pretrain_curves",
    "plot_probe_figures",
    "summary_rows",
]


# trainlab's own temporary files: utils.atomic_write_bytes (mkstemp: ".NAME." + 8 random
# characters + ".tmp") and the figures' ".NAME.tmp.png"
_TMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$|^\..+\.tmp\.png$")


def _json(obj: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return str(o)

    return json.dumps(obj, indent=2, sort_keys=True, default=default) + "\n"


class RunFolder:
    """The folder of one run; creating it enforces the no-overwrite rule.

    Args:
        path: the folder.
        resume: continue a run already in ``path`` (it must hold ``config.json``).
        force: empty an existing folder first.

    Raises ``ValueError`` (one line) when the folder exists and neither flag is given, when
    there is nothing to resume, or when the folder cannot be created or written.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        resume: bool = False,
        force: bool = False,
        create: bool = True,
    ) -> None:
        if resume and force:
            raise ValueError("give resume or force, not both.")
        self.path = Path(path)
        self.resume, self.force = resume, force
        self.replaced: Path | None = None  # the old folder a --force replacement set aside
        exists = self.path.exists()
        if exists and not self.path.is_dir():
            raise ValueError(f"output folder {str(self.path)!r} exists and is not a folder.")
        nonempty = exists and any(self.path.iterdir())
        if resume:
            if not (self.path / "config.json").is_file():
                raise ValueError(
                    f"cannot resume: {str(self.path)!r} holds no run (no config.json)."
                )
        elif nonempty and not force:
            raise ValueError(
                f"output folder {str(self.path)!r} already exists and is not empty; "
                "pass --resume to continue that run or --force to overwrite it."
            )
        if create:
            self.create()

    def create(self, *, keep_replaced: bool = False) -> RunFolder:
        """Create the folder with its subfolders; with ``force``, replace an existing one.

        The old folder is first renamed aside (one atomic step, to ``.NAME.replaced-PID``
        next to it) and deleted only once the new one exists, so a replacement that fails
        leaves the old run whole. With ``keep_replaced`` it stays aside (``self.replaced``)
        until :meth:`drop_replaced` deletes it or :meth:`restore_replaced` puts it back:
        :func:`execute_run` keeps it until the store has recorded the new run."""
        self.replaced = None
        try:
            if self.force and self.path.is_dir() and not self.path.is_symlink():
                aside = self.path.with_name(f".{self.path.name}.replaced-{os.getpid()}")
                os.rename(self.path, aside)
                self.replaced = aside
            elif self.force and self.path.is_dir():  # a link to a folder: empty its target
                for child in self.path.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "checkpoints").mkdir(exist_ok=True)
            (self.path / "figures").mkdir(exist_ok=True)
            self.remove_orphan_temporaries()
            if not os.access(self.path, os.W_OK | os.X_OK):
                raise PermissionError(13, "not writable")
        except OSError as e:
            self.restore_replaced()
            raise ValueError(
                f"cannot create output folder {str(self.path)!r}: {e.strerror or e}."
            ) from e
        if not keep_replaced:
            self.drop_replaced()
        self.force = False  # replaced once
        return self

    def restore_replaced(self) -> None:
        """Undo a replacement by :meth:`create`: the new folder goes, the old one is back."""
        if self.replaced is None:
            return
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        os.rename(self.replaced, self.path)
        self.replaced = None

    def drop_replaced(self) -> None:
        """Delete the old folder a replacement by :meth:`create` kept aside."""
        if self.replaced is not None:
            shutil.rmtree(self.replaced, ignore_errors=True)
            self.replaced = None

    def remove_orphan_temporaries(self) -> list[Path]:
        """Delete trainlab's temporary files left by a kill during an atomic write (only
        its own name pattern, only in this folder, ``checkpoints/`` and ``figures/``);
        return the paths removed."""
        removed = []
        for d in (self.path, self.path / "checkpoints", self.path / "figures"):
            if not d.is_dir():
                continue
            for child in d.iterdir():
                if _TMP_FILE.match(child.name) and child.is_file() and not child.is_symlink():
                    child.unlink(missing_ok=True)
                    removed.append(child)
        return removed

    config_path = property(lambda self: self.path / "config.json")
    env_path = property(lambda self: self.path / "env.json")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.csv")
    checkpoint_path = property(lambda self: self.path / "checkpoints" / "last.pt")
    figures_dir = property(lambda self: self.path / "figures")

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.config_path, _json(config))

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read {str(self.config_path)!r}: {e}") from e

    def write_env(self, env: dict[str, Any]) -> None:
        atomic_write_text(self.env_path, _json(env))

    def read_env(self) -> dict[str, Any]:
        try:
            env = json.loads(self.env_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return env if isinstance(env, dict) else {}

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def set_status(self, status: str, **info: Any) -> None:
        """Write ``status.json`` atomically, keeping earlier keys not given again."""
        state = self.read_status()
        state.update(info)
        state["status"] = status
        state["updated"] = time.time()
        atomic_write_text(self.status_path, _json(state))


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def collect_env(device: str | torch.device | None = None, seed: int | None = None) -> dict:
    """Versions, device, seed, git revision, host and command line of this process."""
    import numpy


    dev = resolve_device(device)
    env: dict[str, Any] = {
        "trainlab": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": str(dev),
        "cuda": torch.version.cuda,
        "seed": seed,
        "git_revision": _git_revision(),
        "argv": list(sys.argv),
        "threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(dev)
    return env


# -- building from a config ------------------------------------------------------------------
def load_data_from_config(cfg: TrainConfig) -> Any:
    """Load the dataset and apply the preprocessing fitted on the training split."""

    ds = load_dataset(cfg.data.name, **cfg.data.options)
    if cfg.data.preprocess:
        spec: Any = cfg.data.preprocess
        if cfg.data.preprocess_options:
            spec = {"name": spec, **cfg.data.preprocess_options}
        ds, _ = preprocess_dataset(ds, spec)
    return ds


def build_model_from_config(cfg: TrainConfig, dataset: Any) -> torch.nn.Module:
    """Build the model of ``cfg.model`` for ``dataset`` (input shape and classes).

    A model-level init (lsuv, data_dependent, wn_data, fixup) runs after building, on one
    training batch. ``bagging = K``: a :class:`~trainlab.engine.ensemble.BaggedEnsemble` of
    K such models, each its own draw of the initial weights (member ``i``'s model-level init
    seeded with ``seed + i``). ``model.whitening``: the model (every member) made a natural
    network last (:meth:`~trainlab.nn.natural.NaturalNetwork.convert`, same function).
    """
    m = cfg.model
    shape = tuple(dataset.meta.input_shape)
    classes = dataset.meta.num_classes
    init: Any = None
    if m.init is not None:
        init = {"name": m.init, **m.init_options} if m.init_options else m.init
    level = model_level_entry(init) if init is not None else None
    if level is not None:  # lsuv, data_dependent, wn_data, fixup: after building, on data
        init = None
    activation: Any = (m.activation, dict(m.activation_options)) if m.activation_options \
        else m.activation
    norm: Any = (m.norm, dict(m.norm_options)) if m.norm_options else m.norm
    common = dict(activation=activation, norm=norm, dropout=m.dropout, init=init)
    builder = m.builder.lower()
    try:  # the registry's canonical name: aliases ("cnn") and spellings ("ConvNet")
        builder = MODELS.get(m.builder).name
    except (ValueError, TypeError):
        pass  # build_model below reports the unknown name with its close matches
    if builder == "mlp":
        spec = dict(
            name="mlp",
            in_features=math.prod(shape),
            widths=[m.width] * m.depth,
            out_features=classes,
            placement=m.placement,
            **common,
        )
    elif builder == "convnet":
        if len(shape) not in (2, 3):
            raise ValueError(
                f"model.builder 'convnet' needs images (C, H, W) or sequences (C, L); dataset "
                f"{cfg.data.name!r} has examples of shape {shape}. Use --builder mlp, or a "
                "dataset of images (mnist, fashion_mnist, cifar10, svhn, shapeset)."
            )
        spec = dict(
            name="convnet",
            in_channels=shape[0],
            channels=[m.width] * m.depth,
            out_features=classes,
            placement=m.placement,
            dims=len(shape) - 1,
            **common,
        )
    elif builder == "seq_classifier":  # its own keys: width, depth, a recurrent norm
        spec = seq_classifier_spec(cfg, shape, classes)
    else:  # other builders (preact_resnet ...) take depth as they define it
        spec = dict(name=m.builder, depth=m.depth, out_features=classes, **common)
        if len(shape) > 1:
            spec["in_channels"] = shape[0]
    if builder != "seq_classifier":  # seq_classifier_spec took its options
        spec.update(m.options)
    _check_memory(cfg, spec, shape)
    model = _build_member(cfg, dataset, spec, level, 0)
    if cfg.bagging is not None:
        members = [model, *(_build_member(cfg, dataset, spec, level, i)
                            for i in range(1, cfg.bagging))]
        model = ENSEMBLES.get("bagging").build(members, shape, **cfg.bagging_options)
    if m.whitening is not None:
        NATURAL_NETS.get(m.whitening).build(**m.whitening_options).convert(model)
    return model


def _build_member(cfg: TrainConfig, dataset: Any, spec: dict[str, Any], level: Any,
                  i: int) -> torch.nn.Module:
    """One model of ``spec``, with its model-level init (seeded ``cfg.seed + i``)."""
    model = build_model(spec)
    if level is not None:
        # the data-dependent schemes see one training batch (at most 256 examples)
        data = dataset.x_train[: max(2, min(cfg.batch_size, 256))]
        init_model(model, level[0].name, data=data, generator=cfg.seed + i, **level[1])
    return model


def _check_memory(cfg: TrainConfig, spec: dict[str, Any], shape: tuple[int, ...]) -> None:
    """Refuse, before anything is allocated, a run whose parameters, gradients, optimizer
    state and activations at ``batch_size`` exceed the device's memory, naming the keys
    (``bagging = K``: K members, each with its own batch)."""
    est = estimate_memory(spec, shape, cfg.batch_size, optimizer=cfg.optim.name)
    keys = (f"model.width={cfg.model.width}, model.depth={cfg.model.depth}, "
            f"batch_size={cfg.batch_size}")
    if cfg.bagging is not None:
        k = cfg.bagging
        est = dataclasses.replace(est, parameters=est.parameters * k,
                                  activations=est.activations * k)
        keys += f", bagging={k}"
    check_fits(est, resolve_device(cfg.device), keys)


def build_trainer(cfg: TrainConfig, model: torch.nn.Module, *,
                  trainer_class: type[Trainer] | None = None, **kwargs: Any) -> Trainer:
    """A :class:`Trainer` for ``cfg`` (optimizer, schedule, loss, device, seed ...).

    ``optim.grad_noise``: the Trainer's ``grad_noise``, drawn from a CPU generator seeded
    with ``seed``. ``model.whitening``: the callback re-estimating the natural network's
    whitening (after the given callbacks). ``bagging``: the Trainer class becomes its
    :func:`~trainlab.engine.ensemble.bagging_trainer` (``model`` must be the
    :class:`~trainlab.engine.ensemble.BaggedEnsemble` of :func:`build_model_from_config`).
    ``penalty``: the loss becomes :class:`~trainlab.losses.PenalizedLoss` (loss + ``R(W)``
    in training).
    """
    o = cfg.optim
    kwargs.setdefault("device", cfg.device)
    schedule = None
    if o.schedule is not None:
        schedule = (o.schedule, dict(o.schedule_options)) if o.schedule_options else o.schedule
    callbacks = list(kwargs.pop("callbacks", []))
    kwargs.setdefault("probes", build_probes(cfg.probes, cfg.probe_every,
                                             last_step=cfg.steps - 1 if cfg.steps else None))
    if cfg.early_stopping:
        callbacks.append(EarlyStopping(cfg.early_stopping, patience=cfg.patience))
    if cfg.model.whitening is not None:
        natural = NATURAL_NETS.get(cfg.model.whitening).build(**cfg.model.whitening_options)
        callbacks.append(natural.callback(seed=cfg.seed))
    if o.grad_noise is not None:
        kwargs.setdefault("grad_noise", GRAD_NOISES.get(o.grad_noise).build(
            generator=torch.Generator().manual_seed(cfg.seed), **o.grad_noise_options))
    cls = trainer_class or Trainer
    if cfg.bagging is not None:
        cls = bagging_trainer(cls)
    trainer = cls(
        model,
        optimizer=(o.name, dict(o.options)),
        lr=o.lr,
        loss=(cfg.loss, dict(cfg.loss_options)) if cfg.loss_options else cfg.loss,
        seed=cfg.seed,
        schedule=schedule,
        clip_norm=o.clip_norm,
        log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
        callbacks=callbacks,
        **kwargs,
    )
    if cfg.penalty is not None:  # after construction: the Trainer still checks the targets
        trainer.loss_fn = PenalizedLoss(trainer.loss_fn, (cfg.penalty, dict(cfg.penalty_options)),
                                        trainer.model)
    return trainer


# -- reporting -------------------------------------------------------------------------------
# The figures (plot_curves, plot_probe_figures, plot_pretrain_curves) live in
# trainlab.report.run_plots and are importable from here.
def summary_rows(history: History) -> list[tuple[str, str]]:
    """(metric, value) rows for the end-of-run table."""
    rows = [("status", history.status)]
    last = history.metrics[-1] if history.metrics else {}
    for key in ("step", "epoch", "train_loss", "test_loss", "test_acc", "time"):
        v = history.last(key) if key in ("test_loss", "test_acc") else last.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            rows.append((key, f"{v:.4g}" if isinstance(v, float) else str(v)))
    if history.divergence is not None:
        rows.append(("diverged", history.divergence.message()))
    return rows


def format_table(rows: list[list[Any]] | list[tuple[Any, ...]], header: list[str]) -> str:
    """A plain-text table with aligned columns."""

    cells = [[str(h) for h in header]] + [[format_cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- the lifecycle ---------------------------------------------------------------------------
@dataclass
class RunResult:
    """What :func:`execute_run` produced."""

    status: str
    folder: Path
    history: History
    run_id: int | None
    message: str | None = None
    probe_files: dict[str, Path] = field(default_factory=dict)  # save_records' paths
    probe_figures: list[Path] = field(default_factory=list)


def resume_command(out: str | os.PathLike) -> str:
    """The command that resumes the run in ``out``: ``trainlab train --out DIR --resume``."""
    return f"trainlab train --out {shlex.quote(str(out))} --resume"


def _merge_nested(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_nested(out[k], v)
        else:
            out[k] = v
    return out


def resume_config(
    out: str | os.PathLike,
    path: str | os.PathLike | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> TrainConfig:
    """The config to resume the run in ``out`` with: its stored ``config.json``.

    ``path`` (a config file), ``flags`` (dotted keys; ``None`` values are flags not given)
    and ``overrides`` (``--set KEY=VALUE``) may be given too, as for a new run; each must
    agree with the stored value (``device`` may change). A conflict raises one
    ``ValueError`` listing every ``key: stored X, given Y``.
    """
    folder = RunFolder(out, resume=True, create=False)
    stored = with_defaults(folder.read_config())
    given: dict[str, Any] = read_config_file(path) if path is not None else {}
    for key, value in (flags or {}).items():
        if value is not None:
            nested: dict[str, Any] = value
            for part in reversed(key.split(".")):
                nested = {part: nested}
            given = _merge_nested(given, nested)
    given = _merge_nested(given, parse_overrides(list(overrides)))
    base = from_dict(stored)
    cfg = from_dict(_merge_nested(stored, given))
    diffs = config_diff(base.to_dict(), cfg.to_dict())
    if diffs:
        raise ValueError(
            f"the config given with --resume differs from the one stored in "
            f"{str(folder.config_path)!r}: " + "; ".join(diffs)
            + ". Drop those settings to continue that run, or start a new one "
            "(another --out, or --force to replace it)."
        )
    return cfg


def _resume_env(folder: RunFolder, env: dict[str, Any], step: int,
                warn: Callable[[str], None]) -> dict[str, Any]:
    """``env.json`` of a resumed run: the first start's, plus one ``resumes`` entry. Warns
    when the thread count, device or torch version changed (not bitwise identical)."""
    first = folder.read_env() or dict(env)
    last = (first.get("resumes") or [first])[-1]
    changed = [k for k in ("threads", "device", "torch") if k in last and last[k] != env.get(k)]
    if changed:
        what = ", ".join(f"{k} {env.get(k)!r} instead of {last[k]!r}" for k in changed)
        warn(
            f"resuming {str(folder.path)!r} with {what}: the result will not be bitwise "
            "identical to an uninterrupted run (recorded in env.json under 'resumes')."
        )
    keys = ("threads", "device", "torch", "host", "argv", "git_revision", "trainlab")
    entry = {"time": time.time(), "step": step, "changed": changed,
             **{k: env.get(k) for k in keys}}
    first["resumes"] = [*first.get("resumes", []), entry]
    return first


class _DeferSignals:
    """Hold SIGINT and SIGTERM while the run's bookkeeping happens (see the module
    docstring): a signal is remembered in ``pending``, and asks the trainer to stop; the
    :class:`Trainer` installs its own handlers during ``fit`` and puts these back after."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.pending: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.pending is None:  # the first signal is the one delivered
            self.pending = signum
            self.trainer.interrupt(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except (ValueError, OSError):  # pragma: no cover - unusual embedding
                pass

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old = {}


class _StopIfSignalled(Callback):
    """A signal deferred before ``fit`` installed its handlers stops training at once."""

    def __init__(self, defer: _DeferSignals) -> None:
        self.defer = defer

    def on_fit_begin(self, trainer: Any) -> None:
        if self.defer.pending is not None:
            trainer.interrupt(self.defer.pending)


def _open_store(db: str | os.PathLike | None) -> Any:
    return RunStore(db) if db is not None else None


def _checkpoint_for_resume(folder: RunFolder) -> dict[str, Any]:
    """The run's checkpoint, read once; a missing one is refused (never a silent restart)."""
    if not folder.checkpoint_path.is_file():
        raise ValueError(
            f"cannot resume {str(folder.path)!r}: its checkpoint "
            f"{str(folder.checkpoint_path)!r} is missing (the run stopped before its first "
            "checkpoint, or the file was removed), so it would restart at step 0 and lose "
            "its history; nothing was changed. Start it afresh with --force."
        )
    return load_checkpoint(folder.checkpoint_path)  # refuses a corrupt or unsafe file


def execute_run(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    force: bool = False,
    db: str | os.PathLike | None = None,
    progress: bool | None = None,
    name: str | None = None,
    warn: Callable[[str], None] | None = None,
    extra_callbacks: Sequence[Any] = (),
    trainer_class: type[Trainer] | None = None,
) -> RunResult:
    """Train ``cfg`` into the run folder ``out`` and record it in the store ``db``.

    ``status.json`` moves ``running`` → ``done`` / ``diverged`` / ``failed`` /
    ``interrupted`` in a ``finally`` block; the store row is finished only after the
    folder's files are complete. :class:`~trainlab.engine.trainer.TrainingInterrupted` (a
    ``KeyboardInterrupt``) is re-raised after the checkpoint and status are written.
    Resuming with a config that differs from the stored one raises ``ValueError`` listing
    the differences; a missing checkpoint raises ``ValueError``; a corrupt one
    :class:`~trainlab.engine.checkpoint.CheckpointError` naming the file. ``warn`` receives
    warnings for the user (default :func:`warnings.warn`). See the module docstring for the
    order of the steps and the signal policy.
    """
    warn = warn or (lambda msg: warnings.warn(msg, RuntimeWarning, stacklevel=3))

    if distributed.is_distributed():
        return _execute_distributed(cfg, out, resume=resume, force=force, db=db,
                                    progress=progress, name=name, warn=warn,
                                    extra_callbacks=extra_callbacks)
    return _execute_single(cfg, out, resume=resume, force=force, db=db, progress=progress,
                           name=name, warn=warn, extra_callbacks=extra_callbacks,
                           trainer_class=trainer_class)


def _execute_single(cfg: TrainConfig, out: str | os.PathLike, *, resume: bool, force: bool,
                    db: str | os.PathLike | None, progress: bool | None, name: str | None,
                    warn: Callable[[str], None], extra_callbacks: Sequence[Any] = (),
                    trainer_class: type[Trainer] | None = None) -> RunResult:
    """``execute_run`` in this process (rank 0 of a torchrun job too)."""
    folder = RunFolder(out, resume=resume, force=force, create=False)
    config = cfg.to_dict()
    ckpt_state = None
    if resume:
        diffs = config_diff(with_defaults(folder.read_config()), config)
        if diffs:
            raise ValueError(
                f"the config differs from the one stored in {str(folder.path)!r}: "
                + "; ".join(diffs)
                + ". Resume with the same settings, or start a new run."
            )
        ckpt_state = _checkpoint_for_resume(folder)
    store = _open_store(db)  # checked now: an unusable store is found before the folder
    seed_everything(cfg.seed)
    dataset = load_data_from_config(cfg)
    model = build_model_from_config(cfg, dataset)
    if cfg.pretrain.method is not None:  # a model it cannot pre-train is refused up front

        check_pretrainable(model, dataset.x_train[:2], cfg.pretrain.method, cfg.pretrain.tied)
    trainer = build_trainer(
        cfg,
        model,
        checkpoint=folder.checkpoint_path,
        progress=progress,
        callbacks=[MetricsCSV(folder.metrics_path), *extra_callbacks],
        trainer_class=trainer_class,
    )
    return _run_in_folder(cfg, folder, store, trainer, dataset, ckpt_state, name, warn)


def _run_in_folder(cfg: TrainConfig, folder: RunFolder, store: Any, trainer: Trainer,
                   dataset: Any, ckpt_state: dict[str, Any] | None, name: str | None,
                   warn: Callable[[str], None]) -> RunResult:
    """Start the run in its folder, train, record; with the signal policy of the module."""
    defer = _DeferSignals(trainer)
    trainer.callbacks.append(_StopIfSignalled(defer))
    defer.install()
    status = "failed"
    try:
        run_id = _start(cfg, folder, store, trainer, ckpt_state, name, warn)
        status, result = _train_and_record(cfg, folder, store, trainer, dataset, run_id,
                                           ckpt_state)
    finally:
        defer.restore()
    if defer.pending is not None and status != "interrupted":
        # a signal came during the final bookkeeping: deliver it now that it is complete
        raise TrainingInterrupted(defer.pending, trainer.step)
    return result


def _start(cfg: TrainConfig, folder: RunFolder, store: Any, trainer: Trainer,
           ckpt_state: dict[str, Any] | None, name: str | None,
           warn: Callable[[str], None]) -> int | None:
    """Create (or empty) the folder, write config and env, record the run as running."""
    config = cfg.to_dict()
    existed = folder.path.exists()
    # with force: the old folder is set aside here, and deleted only once the store has
    # recorded the new run (which marks the old rows overwritten in the same transaction)
    folder.create(keep_replaced=True)
    try:
        env = collect_env(trainer.device, cfg.seed)
        if ckpt_state is not None:
            env = _resume_env(folder, env, int(ckpt_state["step"]), warn)
        folder.write_config(config)
        folder.write_env(env)
        run_id = folder.read_status().get("run_id") if ckpt_state is not None else None
        if store is not None:
            if run_id is not None and _store_has(store, run_id):
                store.mark_running(run_id)
            else:
                run_id = store.create_run(config, seed=cfg.seed, env=env, folder=folder.path,
                                          name=name or folder.path.name)
    except BaseException:
        if folder.replaced is not None:
            folder.restore_replaced()  # the old run comes back whole, its row untouched
        elif not existed:
            shutil.rmtree(folder.path, ignore_errors=True)  # leave no half-made folder
        raise
    folder.drop_replaced()
    folder.set_status("running", run_id=run_id, started=time.time(), message=None,
                      pid=os.getpid())
    return run_id


def _train_and_record(cfg: TrainConfig, folder: RunFolder, store: Any, trainer: Trainer,
                      dataset: Any, run_id: int | None,
                      ckpt_state: dict[str, Any] | None) -> tuple[str, RunResult]:
    """Train; then, whatever happened, write the files, status.json and the store row."""
    status, message = "failed", None
    probe_files: dict[str, Path] = {}
    probe_figures: list[Path] = []
    epochs = cfg.epochs if (cfg.epochs is not None or cfg.steps is not None) else 10
    try:
        if cfg.pretrain.method is not None and ckpt_state is None:
            _pretrain(cfg, trainer, dataset)
        trainer.fit(
            dataset,
            epochs=epochs,
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            eval_every=cfg.eval_every,
            resume=ckpt_state,
        )
        status = "done"
    except DivergenceError as e:
        status, message = "diverged", str(e)
    except KeyboardInterrupt as e:
        how = signal.Signals(getattr(e, "signum", signal.SIGINT)).name
        status = "interrupted"
        message = (f"interrupted by {how} at step {trainer.step}; resume with: "
                   f"{resume_command(folder.path)}")
        raise
    except BaseException as e:
        status, message = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        history = trainer.history
        try:
            history.to_csv(folder.metrics_path)
            if history.pretrain:
                history.pretrain_csv(folder.path / "pretrain.csv")
                plot_pretrain_curves(history, folder.figures_dir / "pretrain.png",
                                     title=f"pre-training: {folder.path.name}")
            if history.metrics:
                plot_curves({folder.path.name: history}, folder.figures_dir / "curves.png")
        except Exception as e:  # figures must not hide the run's real outcome
            message = (message or "") + f" (figure failed: {e})"
        if trainer.probes:
            try:
                probe_files = save_records(
                    folder.path, history.probe_records, history.histograms, history.spectra
                )
            except Exception as e:
                message = (message or "") + f" (probe records not written: {e})"
            try:
                probe_figures = plot_probe_figures(history, folder.figures_dir)
            except Exception as e:
                message = (message or "") + f" (probe figure failed: {e})"
        folder.set_status(
            status,
            message=message,
            step=trainer.step,
            final=history.final(),
            finished=time.time(),
        )
        if store is not None and run_id is not None:
            store.finish(
                run_id,
                status,
                final_metrics=history.final(),
                series=history.metrics,
                message=message,
            )
    result = RunResult(status, folder.path, history, run_id, message, probe_files,
                       probe_figures)
    return status, result


class _KeepPretrainRows(Callback):
    """``Trainer.fit`` starts a fresh History: put the pre-training rows back in it before
    the first checkpoint, so they are saved with it (and come back on a resume)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def on_fit_begin(self, trainer: Any) -> None:
        if not trainer.history.pretrain:
            trainer.history.pretrain = list(self.rows)


def _pretrain(cfg: TrainConfig, trainer: Trainer, dataset: Any) -> None:
    """Greedy layer-wise pre-training of the trainer's model (in place, on its device)
    before fine-tuning; an interrupt stops it after the current step, and ``fit`` then
    stops at once (status ``interrupted``, a checkpoint of the weights so far)."""

    p = cfg.pretrain
    hist = pretrain(
        trainer.model, dataset, p.method, steps=p.steps,
        batch_size=p.batch_size or cfg.batch_size, optimizer=p.optimizer, lr=p.lr,
        tied=p.tied, loss=p.loss, corruption=p.corruption, noise=p.noise, k=p.k,
        visible=p.visible, log_every=min(cfg.log_every, p.steps), seed=cfg.seed,
        should_stop=lambda: trainer._interrupted, progress=trainer.progress,
    )
    trainer.history.pretrain = hist.pretrain
    trainer.callbacks.insert(0, _KeepPretrainRows(hist.pretrain))


def _store_has(store: Any, run_id: int) -> bool:
    try:
        store.get_run(run_id)
    except ValueError:
        return False
    return True


def _execute_distributed(cfg: TrainConfig, out: str | os.PathLike, *, resume: bool, force: bool,
                         db: str | os.PathLike | None, progress: bool | None,
                         name: str | None, warn: Callable[[str], None],
                         extra_callbacks: Sequence[Any] = ()) -> RunResult:
    """``execute_run`` under torchrun: every process trains (DDP); rank 0 alone writes the
    folder, the checkpoints and the store row. See :mod:`trainlab.engine.distributed`."""
    from dataclasses import replace


    if resume:
        raise ValueError("--resume is not supported under torchrun yet; resume the run "
                         "in one process, or start it afresh with --force.")
    if cfg.pretrain.method is not None:  # DDP syncs the weights before pre-training ran
        raise ValueError(f"--pretrain is not supported under torchrun yet (received "
                         f"pretrain.method={cfg.pretrain.method!r}); run it in one process.")
    device = distributed.setup(cfg.device)
    cfg = replace(cfg, device=str(device))
    try:
        if distributed.is_main():
            return _execute_single(cfg, out, resume=False, force=force, db=db,
                                   progress=progress, name=name, warn=warn,
                                   extra_callbacks=extra_callbacks,
                                   trainer_class=distributed.DistributedTrainer)
        seed_everything(cfg.seed)
        dataset = load_data_from_config(cfg)
        model = build_model_from_config(cfg, dataset)
        trainer = build_trainer(cfg, model, progress=False,
                                trainer_class=distributed.DistributedTrainer)
        epochs = cfg.epochs if (cfg.epochs is not None or cfg.steps is not None) else 10
        status, message = "done", None
        try:
            trainer.fit(dataset, epochs=epochs, steps=cfg.steps, batch_size=cfg.batch_size,
                        eval_every=cfg.eval_every)
        except DivergenceError as e:
            status, message = "diverged", str(e)
        return RunResult(status, Path(out), trainer.history, None, message)
    finally:
        distributed.cleanup()
