"""Typed training configs: dataclasses, YAML/TOML files, CLI flags and ``--set`` overrides.

A :class:`TrainConfig` has four sections (``data``, ``model``, ``optim``, ``pretrain``) and
top-level run settings. Values are merged in this order, later winning::

    dataclass defaults  <  config file (YAML or TOML)  <  CLI flags  <  --set key=value

and then checked all at once: every unknown key (with close matches), every value of the
wrong type, every name the registries do not know and every out-of-range number is reported
together in one ``ValueError``, before anything runs. Example file (YAML)::

    data: {name: spirals}
    model: {builder: mlp, depth: 6, width: 64, activation: tanh, norm: bn, init: xavier_normal}
    optim: {name: momentum, lr: 0.01, schedule: cosine}
    steps: 2000
    seed: 1
    probes: [activations, gradients]   # or "all"; see PROBE_NAMES
    probe_every: 100

and the same from the command line: ``--set model.depth=6 --set optim.lr=0.01``.

Options of a named technique. Every key that names a registry entry has a companion
``*_options`` mapping for that entry's own arguments, so every argument of every technique
is reachable from a file or from ``--set``:

- ``data.name``: ``data.options`` (``--set data.options.noise=0.1``);
- ``data.preprocess``: ``data.preprocess_options`` (``... .eps=0.01``);
- ``model.builder``: ``model.options`` (``--set model.options.kernel_size=5``);
- ``model.activation``: ``model.activation_options`` (``... .negative_slope=0.1``);
- ``model.norm``: ``model.norm_options`` (``--set model.norm_options.groups=8``);
- ``model.init``: ``model.init_options`` (``--set model.init_options.value=0.01``);
- ``optim.name``: ``optim.options`` (``--set optim.options.momentum=0.95``);
- ``optim.schedule``: ``optim.schedule_options`` (``... .step_size=100``);
- ``loss``: ``loss_options`` (``--set loss_options.margin=0.5``);
- ``penalty``: ``penalty_options`` (``--set penalty_options.weight=5e-4``);
- ``optim.grad_noise``: ``optim.grad_noise_options`` (``... .eta=0.01``);
- ``model.whitening``: ``model.whitening_options`` (``... .every=100``);
- ``bagging`` (K members): ``bagging_options`` (``--set bagging_options.average=geometric``).

Regularization and training options, each a registry name (``trainlab list FAMILY``):

- ``penalty`` (family ``penalty``: ``l1``, ``l2``): ``R(W)`` added to the loss in training
  (:class:`trainlab.losses.PenalizedLoss`): ``train_loss`` is then the objective ``L +
  R(W)``, ``test_loss`` the data loss. ``l2`` is ``λ·½·Σw²`` (gradient ``λw``).
- ``optim.grad_noise`` (family ``grad_noise``: ``annealed_gaussian``): noise of variance
  ``eta/(1+t)^gamma`` added to every gradient after backward; drawn from a CPU generator
  seeded with ``seed`` (the same noise on every device and on every torchrun process).
- ``model.whitening`` (family ``whitening``: ``pca``, ``zca``): a natural neural network
  (Desjardins et al. 2015): every ``nn.Linear`` becomes a whitened layer, re-estimated
  from ``num_samples`` training examples every ``every`` steps without changing the function.
- ``bagging`` (family ``ensemble``, entry ``bagging``): ``K`` members, each trained on its own
  bootstrap sample, all in one loop (:class:`trainlab.engine.ensemble.BaggingTrainer`); the
  run's model, checkpoint and test metrics are the ensemble's.

``model.builder: seq_classifier`` (recurrent nets) takes its own keys: ``model.width`` is the
hidden size, ``model.depth`` the stacked recurrent layers, ``model.norm`` a recurrent norm
(``none``, ``bn_frame``, ``bn_seq``, ``ln``), ``model.options`` its ``cell``, ``input_size``,
``steps``, ``T_max``, ``forget_bias``, ``bias``; the feed-forward keys (``model.activation``,
``model.dropout``, ``model.init``, ``model.placement``, ``pretrain.method``) must keep their
defaults (see :func:`seq_classifier_spec`).

Each technique is also built once, on a tiny stand-in, while the config is checked, so a
missing or unknown argument is reported with the key that sets it (``optim.schedule 'step'
needs step_size: set it with --set optim.schedule_options.step_size=...``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainlab.engine.ensemble import ENSEMBLES
from trainlab.init import INITS, model_level_entry, resolve_init
from trainlab.losses import LOSSES, PENALTIES
from trainlab.models.build import MODELS
from trainlab.models.builders import seq_classifier
from trainlab.nn import ACTIVATIONS, activation_info
from trainlab.nn.natural import NATURAL_NETS
from trainlab.nn.norms import NORMS, norm_kind, norm_layer
from trainlab.nn.recurrent import RECURRENT_NORMS
from trainlab.optim import OPTIMIZERS, build_optimizer, build_schedule
from trainlab.optim.gradients import GRAD_NOISES

# Probe names (``TrainConfig.probes``, ``trainlab train --probe``) live in the probe registry.
from trainlab.probes.registry import PROBE_NAMES, resolve_probe_names
from trainlab.registry import check_keywords
from trainlab.utils import resolve_device

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "TrainConfig",
    "PROBE_NAMES",
    "config_diff",
    "load_config",
    "parse_overrides",
    "read_config_file",
    "resolve_probe_names",
    "seq_classifier_spec",
    "with_defaults",
]


@dataclass(frozen=True)
class DataConfig:
    """Dataset (a :data:`trainlab.data.DATASETS` name), preprocessing, loader options."""

    name: str = "spirals"
    preprocess: str | None = None  # a trainlab.data PREPROCESSORS name ("standardize", "zca")
    preprocess_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # load_dataset keyword arguments


@dataclass(frozen=True)
class ModelConfig:
    """Model builder spec (:data:`trainlab.nn.MODELS`): depth hidden blocks of ``width``."""

    builder: str = "mlp"
    depth: int = 3
    width: int = 128
    activation: str = "relu"
    activation_options: dict[str, Any] = field(default_factory=dict)  # e.g. negative_slope
    norm: str = "none"
    norm_options: dict[str, Any] = field(default_factory=dict)  # e.g. groups (gn), eps
    placement: str = "before"
    dropout: float = 0.0
    init: str | None = None  # None keeps torch's default initialization
    init_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # further builder arguments
    whitening: str | None = None  # a natural network (trainlab.nn.NATURAL_NETS: pca, zca)
    whitening_options: dict[str, Any] = field(default_factory=dict)  # eps, every, num_samples


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule (:data:`trainlab.optim.OPTIMIZERS`, ``SCHEDULES``)."""

    name: str = "sgd"
    lr: float | None = None  # None: the optimizer's registry default ("default_lr")
    options: dict[str, Any] = field(default_factory=dict)  # momentum, weight_decay ...
    schedule: str | None = None
    schedule_options: dict[str, Any] = field(default_factory=dict)
    clip_norm: float | None = None
    grad_noise: str | None = None  # trainlab.optim.gradients.GRAD_NOISES (annealed_gaussian)
    grad_noise_options: dict[str, Any] = field(default_factory=dict)  # eta, gamma


@dataclass(frozen=True)
class PretrainConfig:
    """Greedy layer-wise pre-training before training (:mod:`trainlab.engine.pretraining`).

    ``method`` ``None`` (no pre-training), ``"autoencoder"``, ``"denoising"`` or ``"rbm"``;
    ``steps`` per hidden layer; ``batch_size`` ``None`` = the run's; ``lr`` ``None`` = the
    optimizer's default; ``noise``/``corruption``/``tied``/``loss`` for the autoencoders
    (``noise`` ``None``: 0, or 0.25 for ``denoising``); ``k``/``visible`` for the RBM.
    """

    method: str | None = None
    steps: int = 500
    batch_size: int | None = None
    optimizer: str = "adam"
    lr: float | None = None
    tied: bool = True
    loss: str = "mse"
    corruption: str = "mask"
    noise: float | None = None
    k: int = 1
    visible: str = "bernoulli"


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``trainlab train`` needs; ``epochs`` and ``steps`` are exclusive."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    loss: str = "cross_entropy"
    loss_options: dict[str, Any] = field(default_factory=dict)  # e.g. margin (hinge)
    penalty: str | None = None  # trainlab.losses.PENALTIES (l1, l2), added to the loss
    penalty_options: dict[str, Any] = field(default_factory=dict)  # weight, include_bias ...
    bagging: int | None = None  # K bagged members (trainlab.engine.ensemble); None: one model
    bagging_options: dict[str, Any] = field(default_factory=dict)  # average
    batch_size: int = 128
    epochs: int | None = None  # when both are None: 10 epochs
    steps: int | None = None
    seed: int = 0
    device: str = "auto"
    eval_every: int | None = None  # steps; None: once per epoch
    log_every: int = 50
    checkpoint_every: int | None = None
    early_stopping: str | None = None  # metric to watch, e.g. "test_loss"
    patience: int = 5
    probes: list[str] = field(default_factory=list)  # PROBE_NAMES, or ["all"]
    probe_every: int | None = None  # steps between probe records; None: each probe's default

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The whole config as YAML, every key present, ready to edit and pass to
        ``--config`` (what ``trainlab train --print-config`` prints)."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
             "pretrain": PretrainConfig}

# -- reading ---------------------------------------------------------------------------------
def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON (``.json``, such as a run
    folder's ``config.json``) file as a dict; one-line errors."""
    p = Path(path)
    if p.is_dir():
        hint = (" It is a run folder: give its config.json, or resume it with "
                f"`trainlab train --out {p} --resume`.") if (p / "config.json").is_file() else ""
        raise ValueError(f"config file {str(p)!r} is a directory, not a file.{hint}")
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist.")
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml", ".json"):
        raise ValueError(
            f"config file must end in .yaml, .yml, .toml or .json. Received: {str(p)!r}."
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read config file {str(p)!r}: {e}") from e
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        elif suffix == ".json":  # a run folder's own config.json is one
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError
        first = " ".join(str(e).split())
        raise ValueError(f"cannot parse config file {str(p)!r}: {first}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"config file {str(p)!r} must hold a mapping of keys. "
            f"Received a {type(data).__name__}."
        )
    return data


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["model.width=256", "optim.lr=1e-3"]`` → nested dict; values are parsed as YAML."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE (e.g. model.width=256). Received: {item!r}.")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_path(out, key.split("."), value)
    return out


def _set_path(d: dict[str, Any], parts: list[str], value: Any) -> None:
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[parts[-1]] = value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k in _SECTIONS:
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


# -- checking --------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if args and (typing.get_origin(tp) in (typing.Union, types.UnionType)):
        return " or ".join(_type_name(a) for a in args)
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    return getattr(origin or tp, "__name__", str(tp))


# A number in exponent form without a dot or an exponent sign ("1e-4", "5e3"): YAML 1.2 reads
# it as a float, PyYAML (YAML 1.1) as a string.
_EXP_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _yaml12_numbers(value: Any) -> Any:
    """``value`` with every string of :data:`_EXP_NUMBER`'s form, in nested mappings and
    lists too, as the float it denotes (``--set penalty_options.weight=5e-4``)."""
    if isinstance(value, str) and _EXP_NUMBER.match(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _yaml12_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml12_numbers(v) for v in value]
    return value


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, converted value) for ``value`` against the annotation ``tp``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None:
            return type(None) in args, None
        for a in args:
            if a is type(None):
                continue
            ok, v = _coerce(value, a)
            if ok:
                return True, v
        return False, value
    origin = typing.get_origin(tp) or tp
    if origin is bool:
        return isinstance(value, bool), value
    if origin is int:
        if isinstance(value, str):  # numbers from --set or YAML strings such as "1e3"
            try:
                f = float(value)
            except ValueError:
                return False, value
            return (f.is_integer(), int(f)) if f == f else (False, value)
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, int) and not isinstance(value, bool), value
    if origin is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if origin is str:
        return isinstance(value, str), value
    if origin is dict:  # a *_options mapping: "1e-4" read as the number YAML 1.2 says it is
        return isinstance(value, dict), _yaml12_numbers(value) if isinstance(value, dict) \
            else value
    if origin is list:
        if isinstance(value, str):  # "a,b" from --set or a flag
            value = [value]
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return ok, list(value) if ok else value
    return True, value  # pragma: no cover - no other annotation is used


def _check_section(cls: type, values: Any, prefix: str, errors: list[str]) -> Any:
    if not isinstance(values, dict):
        errors.append(f"{prefix.rstrip('.')} must be a mapping. Received: {values!r}.")
        return cls()
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=3, cutoff=0.5)
            if cls is ModelConfig and key == "name":  # build_model's spec key is "name"
                close = ["builder"]
            hint = f" Did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            names = ", ".join(prefix + a for a in allowed)
            errors.append(f"unknown key {prefix}{key}.{hint} Allowed: {names}.")
            continue
        if key in _SECTIONS and cls is TrainConfig:
            kwargs[key] = _check_section(_SECTIONS[key], value, f"{key}.", errors)
            continue
        ok, conv = _coerce(value, hints[key])
        if not ok:
            expected = _type_name(hints[key])
            errors.append(f"{prefix}{key} must be {expected}. Received: {prefix}{key}={value!r}.")
            continue
        kwargs[key] = conv
    return cls(**kwargs)


def _check_values(cfg: TrainConfig, errors: list[str]) -> None:
    def positive(name: str, v: Any) -> None:
        if v is not None and v < 1:
            errors.append(f"{name} must be >= 1. Received: {name}={v!r}.")

    for name in ("batch_size", "epochs", "steps", "eval_every", "log_every", "checkpoint_every",
                 "patience", "probe_every"):
        positive(name, getattr(cfg, name))
    positive("model.depth", cfg.model.depth)
    positive("bagging", cfg.bagging)
    positive("model.width", cfg.model.width)
    if cfg.epochs is not None and cfg.steps is not None:
        errors.append(
            f"give epochs or steps, not both. Received: epochs={cfg.epochs}, steps={cfg.steps}."
        )
    if cfg.seed < 0:
        errors.append(f"seed must be >= 0. Received: seed={cfg.seed!r}.")
    if not 0.0 <= cfg.model.dropout < 1.0:
        errors.append(
            f"model.dropout must be in [0, 1). Received: model.dropout={cfg.model.dropout!r}."
        )
    if cfg.model.placement not in ("before", "after"):
        errors.append(
            "model.placement must be one of ('before', 'after'). "
            f"Received: model.placement={cfg.model.placement!r}."
        )
    if cfg.optim.lr is not None and not (cfg.optim.lr > 0 and math.isfinite(cfg.optim.lr)):
        errors.append(f"optim.lr must be a finite number > 0. Received: optim.lr={cfg.optim.lr!r}.")
    if cfg.optim.clip_norm is not None and not cfg.optim.clip_norm > 0:
        errors.append(
            f"optim.clip_norm must be > 0. Received: optim.clip_norm={cfg.optim.clip_norm!r}."
        )
    if cfg.early_stopping is not None and cfg.early_stopping not in (
        "test_loss", "test_acc", "train_loss"
    ):
        errors.append(
            "early_stopping must be one of ('test_loss', 'test_acc', 'train_loss'). "
            f"Received: early_stopping={cfg.early_stopping!r}."
        )
    _check_pretrain(cfg.pretrain, errors)
    if cfg.device.lower() != "auto":
        try:
            resolve_device(cfg.device)
        except ValueError as e:
            errors.append(str(e))


def _check_pretrain(p: PretrainConfig, errors: list[str]) -> None:
    for name in ("steps", "batch_size", "k"):
        v = getattr(p, name)
        if v is not None and v < 1:
            errors.append(f"pretrain.{name} must be >= 1. Received: pretrain.{name}={v!r}.")
    if p.lr is not None and not (p.lr > 0 and math.isfinite(p.lr)):
        errors.append(f"pretrain.lr must be a finite number > 0. Received: pretrain.lr={p.lr!r}.")
    for name, allowed in (("loss", ("mse", "bce")), ("corruption", ("mask", "gaussian")),
                          ("visible", ("bernoulli", "gaussian"))):
        if getattr(p, name) not in allowed:
            errors.append(f"pretrain.{name} must be one of {allowed}. "
                          f"Received: pretrain.{name}={getattr(p, name)!r}.")
    if p.noise is not None:
        lo, hi = (0.0, 1.0) if p.corruption == "mask" else (0.0, math.inf)
        if not (lo <= p.noise < hi):
            what = "a fraction in [0, 1)" if p.corruption == "mask" else "a std >= 0"
            errors.append(f"pretrain.noise of the {p.corruption!r} corruption must be {what}. "
                          f"Received: pretrain.noise={p.noise!r}.")


def _registry_checks(cfg: TrainConfig) -> list[tuple[str, str, str]]:
    """(config key, module, registry attribute) of every name checked against a registry."""
    out = [
        ("data.name", "trainlab.data", "DATASETS"),
        ("data.preprocess", "trainlab.data", "PREPROCESSORS"),
        ("model.builder", "trainlab.nn", "MODELS"),
        ("model.activation", "trainlab.nn", "ACTIVATIONS"),
        ("model.norm", "trainlab.nn.recurrent", "RECURRENT_NORMS") if _is_seq(cfg.model)
        else ("model.norm", "trainlab.nn", "NORMS"),
        ("model.init", "trainlab.init", "INITS"),
        ("optim.name", "trainlab.optim", "OPTIMIZERS"),
        ("optim.schedule", "trainlab.optim", "SCHEDULES"),
        ("loss", "trainlab.losses", "LOSSES"),
        ("penalty", "trainlab.losses", "PENALTIES"),
        ("optim.grad_noise", "trainlab.optim.gradients", "GRAD_NOISES"),
        ("model.whitening", "trainlab.nn.natural", "NATURAL_NETS"),
        ("pretrain.method", "trainlab.engine.pretraining", "PRETRAINERS"),
        ("pretrain.optimizer", "trainlab.optim", "OPTIMIZERS"),
    ]
    return out


def _get(cfg: TrainConfig, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _check_names(cfg: TrainConfig, errors: list[str]) -> None:
    import importlib

    for key, module, attr in _registry_checks(cfg):
        name = _get(cfg, key)
        if name is None:
            continue
        try:
            registry = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):  # that part of trainlab is not installed
            continue
        try:
            registry.get(name)
        except (ValueError, TypeError) as e:
            what = key
            if attr == "RECURRENT_NORMS":
                what = f"{key} (a recurrent_norm for model.builder {SEQ_BUILDER!r})"
            errors.append(f"{what}: {e}")


# (name key, options key, builds the technique on a tiny stand-in from (name, options))
def _try_schedule(name: str, opts: dict[str, Any]) -> None:
    import torch


    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    build_schedule((name, opts), opt, total_steps=100)


def _try_init(name: str, opts: dict[str, Any]) -> None:
    import torch


    level = model_level_entry((name, opts))
    if level is not None:  # lsuv, data_dependent, fixup: applied to the built model

        check_keywords(f"init {level[0].name!r}", opts, level[0].factory,
                       skip=("model", "data", "generator"))
        return
    resolve_init((name, opts))(torch.empty(4, 4))


def _try_norm(name: str, opts: dict[str, Any]) -> None:
    if norm_kind(name) == "activation":
        norm_layer((name, opts), 8)
    else:  # a weight reparametrization: it wraps a layer
        import torch

        NORMS.get(name).build(torch.nn.Linear(4, 4), **opts)


def _try_activation(name: str, opts: dict[str, Any]) -> None:
    if activation_info(name).replaces_linear:
        ACTIVATIONS.get(name).build(4, 4, **opts)
    else:
        ACTIVATIONS.get(name).build(**opts)


def _try_optimizer(name: str, opts: dict[str, Any]) -> None:
    import torch


    build_optimizer((name, opts), [torch.zeros(1, requires_grad=True)])


def _try_loss(name: str, opts: dict[str, Any]) -> None:
    LOSSES.get(name).build(**opts)


def _try_penalty(name: str, opts: dict[str, Any]) -> None:
    PENALTIES.get(name).build(**opts)


def _try_grad_noise(name: str, opts: dict[str, Any]) -> None:
    if "generator" in opts:
        raise ValueError("the generator is the run's own, seeded with seed; it cannot be set. "
                         f"Received: generator={opts['generator']!r}.")
    GRAD_NOISES.get(name).build(**opts)


def _try_whitening(name: str, opts: dict[str, Any]) -> None:
    NATURAL_NETS.get(name).build(**opts)


def _try_bagging(k: int, opts: dict[str, Any]) -> None:
    entry = ENSEMBLES.get("bagging")
    check_keywords("bagging", opts, entry.factory, skip=("members", "input_shape"))
    entry.build([torch.nn.Linear(2, 2)], (2,), **opts)


_OPTION_CHECKS = (
    ("model.activation", "model.activation_options", _try_activation),
    ("model.norm", "model.norm_options", _try_norm),
    ("model.init", "model.init_options", _try_init),
    ("model.whitening", "model.whitening_options", _try_whitening),
    ("optim.name", "optim.options", _try_optimizer),
    ("optim.schedule", "optim.schedule_options", _try_schedule),
    ("optim.grad_noise", "optim.grad_noise_options", _try_grad_noise),
    ("loss", "loss_options", _try_loss),
    ("penalty", "penalty_options", _try_penalty),
    ("bagging", "bagging_options", _try_bagging),
)


def _closure_optimizer(name: str) -> bool:
    """Whether the optimizer evaluates the loss itself (L-BFGS, Newton, natural gradient)."""
    return OPTIMIZERS.get(name).meta.get("closure") is not None


def _check_combinations(cfg: TrainConfig, errors: list[str]) -> None:
    """Settings that are valid alone but not together (names already known)."""
    o, m = cfg.optim, cfg.model
    if cfg.bagging is not None:
        why = (f"bagging={cfg.bagging} trains its members together in one loop, each on its "
               "own bootstrap sample")
        if cfg.pretrain.method is not None:
            errors.append(f"pretrain.method does not apply with bagging: {why}, and greedy "
                          f"pre-training trains one mlp. Allowed: pretrain.method=None. "
                          f"Received: pretrain.method={cfg.pretrain.method!r}.")
        if o.clip_norm is not None:
            errors.append(f"optim.clip_norm does not apply with bagging: {why}, and one norm "
                          f"clipped over all members would couple them. Allowed: "
                          f"optim.clip_norm=None. Received: optim.clip_norm={o.clip_norm!r}.")
        if _closure_optimizer(o.name):
            errors.append(f"optim.name {o.name!r} does not apply with bagging: {why}, and an "
                          "optimizer that evaluates the loss itself (one line search or "
                          "curvature over all members) would couple them. Allowed: a "
                          f"first-order optimizer (sgd, momentum, adam ...). Received: "
                          f"optim.name={o.name!r}.")
    if m.whitening is not None and cfg.pretrain.method is not None:
        errors.append(f"model.whitening does not apply with pretrain.method: greedy pre-training "
                      f"trains the mlp's nn.Linear layers, which model.whitening replaces by "
                      f"whitened layers before training. Allowed: pretrain.method=None. "
                      f"Received: model.whitening={m.whitening!r}, "
                      f"pretrain.method={cfg.pretrain.method!r}.")
    if m.whitening is not None and not _is_seq(m) and norm_kind(m.norm) == "weight":
        errors.append(f"model.whitening does not apply with model.norm {m.norm!r}: a natural "
                      f"network whitens the inputs of plain nn.Linear layers, and the weight "
                      f"norm {m.norm!r} reparametrizes every hidden one (only the head would "
                      f"be whitened). Allowed: an activation norm (none, bn, ln ...). "
                      f"Received: model.norm={m.norm!r}, model.whitening={m.whitening!r}.")
    if o.grad_noise is not None and _closure_optimizer(o.name):
        errors.append(f"optim.grad_noise acts between backward and the step, which optimizer "
                      f"{o.name!r} takes inside its own step. Allowed: a first-order optimizer "
                      f"(sgd, momentum, adam ...). Received: optim.name={o.name!r}, "
                      f"optim.grad_noise={o.grad_noise!r}.")
    if m.init is not None and not _is_seq(m):
        _check_init_needs(cfg, errors)


def _check_init_needs(cfg: TrainConfig, errors: list[str]) -> None:
    """An init that needs weight-normalized layers (``wn_data``), tried on one layer built
    with the config's ``model.norm``: no such layer names both keys and the norms it takes."""
    entry = INITS.get(cfg.model.init)
    if entry.meta.get("needs") != "weight_norm":
        return

    def attempt(norm: str, norm_opts: dict[str, Any], init_opts: dict[str, Any]) -> None:
        layer: torch.nn.Module = torch.nn.Linear(4, 4)
        if norm_kind(norm) == "weight":
            layer = NORMS.get(norm).build(layer, **norm_opts)
        entry.factory(torch.nn.Sequential(layer), torch.randn(8, 4),
                      **{**entry.defaults, **init_opts})

    m = cfg.model
    try:
        attempt(m.norm, dict(m.norm_options), {})
    except (TypeError, ValueError) as e:
        msg = " ".join(str(e).split())
        takes = []
        for n in NORMS:
            if n.meta.get("kind") != "weight":
                continue
            try:
                attempt(n.name, {}, {})
            except (TypeError, ValueError):
                continue
            takes.append(n.name)
        errors.append(f"model.init {m.init!r} needs weight-normalized layers: {msg} Allowed: "
                      f"model.norm one of {', '.join(takes)} (trainlab list norm). Received: "
                      f"model.norm={m.norm!r}.")
        return
    try:
        attempt(m.norm, dict(m.norm_options), dict(m.init_options))
    except (TypeError, ValueError) as e:
        msg = " ".join(str(e).split())
        errors.append(f"model.init {m.init!r} with model.init_options="
                      f"{dict(m.init_options)!r}: {msg}")


def _missing_argument(message: str) -> str | None:
    """The argument a factory said it needs, from its error text, or None."""
    import re

    for pat in (r"missing \d+ required (?:positional|keyword-only) arguments?: '(\w+)'",
                r"needs (\w+)\b", r"Received: (\w+)=None"):
        m = re.search(pat, message)
        if m:
            return m.group(1)
    return None


def _try_recurrent_norm(name: str, opts: dict[str, Any]) -> None:
    entry = RECURRENT_NORMS.get(name)
    if entry.name != "none":
        entry.build(8, slot="ih", T_max=4, **opts)
    elif opts:
        check_keywords("recurrent_norm 'none'", opts, entry.factory,
                       skip=("num_features", "slot", "T_max"))


def _check_options(cfg: TrainConfig, errors: list[str]) -> None:
    """Build each named technique once with its options; an error names the key to set."""
    seq = _is_seq(cfg.model)
    for name_key, opt_key, build in _OPTION_CHECKS:
        if seq and name_key in _SEQ_UNUSED:  # reported by _check_builder_keys
            continue
        if seq and name_key == "model.norm":
            build = _try_recurrent_norm
        name, opts = _get(cfg, name_key), dict(_get(cfg, opt_key))
        if name is None:
            if opts:
                errors.append(f"{opt_key} is set but {name_key} is not. Received: "
                              f"{opt_key}={opts!r}.")
            continue
        try:
            build(name, opts)
        except (TypeError, ValueError) as e:
            msg = " ".join(str(e).split())
            arg = _missing_argument(msg) if "Received: " not in msg or "=None" in msg else None
            if arg is not None and arg not in opts:
                errors.append(f"{name_key} {name!r} needs {arg}: set it with --set "
                              f"{opt_key}.{arg}=VALUE (or {opt_key}: {{{arg}: ...}} in a "
                              f"config file). ({msg})")
            else:
                errors.append(f"{name_key} {name!r} with {opt_key}={opts!r}: {msg}")


# -- builders with their own arguments -------------------------------------------------------
# seq_classifier (trainlab.models.builders) takes none of the feed-forward keys of ModelConfig:
# model.width is its hidden_size, model.depth its number of stacked recurrent layers,
# model.norm (with model.norm_options) a recurrent_norm, the dataset gives num_classes and,
# by default, input_size and steps; its other arguments go in model.options.
SEQ_BUILDER = "seq_classifier"

# model key -> why it does not apply to seq_classifier (and what to use instead)
_SEQ_UNUSED: dict[str, str] = {
    "model.activation": "its LSTM and Elman cells fix their nonlinearities (sigmoid gates and "
                        "tanh); choose the cell with model.options.cell (lstm or rnn)",
    "model.activation_options": "it takes no activation",
    "model.placement": "each recurrent norm has fixed places inside the cell (trainlab list "
                       "recurrent_norm)",
    "model.dropout": "it has no dropout layer",
    "model.init": "its cells keep torch's initialization (model.options.forget_bias sets the "
                  "LSTM forget-gate bias)",
    "model.init_options": "it takes no init",
    "pretrain.method": "greedy layer-wise pre-training trains the hidden layers of an mlp",
}
# seq_classifier arguments that other keys set (not model.options)
_SEQ_MAPPED = {
    "hidden_size": "model.width",
    "layers": "model.depth",
    "norm": "model.norm (and model.norm_options)",
    "num_classes": "the dataset (its number of classes)",
}


def _builder_name(name: str) -> str:
    """The registry's canonical name of a model builder (aliases, spellings), else ``name``."""
    try:
        return MODELS.get(name).name
    except (ValueError, TypeError):
        return str(name).lower()


def _is_seq(model: ModelConfig) -> bool:
    return _builder_name(model.builder) == SEQ_BUILDER


def _seq_options() -> list[str]:
    """The seq_classifier arguments ``model.options`` may set (read from its signature)."""
    import inspect


    params = inspect.signature(seq_classifier).parameters
    return [p for p in params if p not in _SEQ_MAPPED]


def _seq_key_errors(cfg: TrainConfig) -> list[str]:
    """What in ``cfg`` does not apply to ``seq_classifier``, one message per key."""
    errors = []
    defaults = TrainConfig()
    for key, why in _SEQ_UNUSED.items():
        value, default = _get(cfg, key), _get(defaults, key)
        if value != default:
            errors.append(
                f"{key} does not apply to model.builder {SEQ_BUILDER!r}: {why}. Allowed: "
                f"{key}={default!r} (the default, unused). Received: {key}={value!r}."
            )
    allowed = _seq_options()
    for k, v in cfg.model.options.items():
        if k in _SEQ_MAPPED:
            errors.append(
                f"model.options.{k} of model.builder {SEQ_BUILDER!r} is set by "
                f"{_SEQ_MAPPED[k]}, not model.options. Received: model.options.{k}={v!r}."
            )
        elif k not in allowed:
            close = difflib.get_close_matches(str(k), allowed, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join('model.options.' + c for c in close)}?" \
                if close else ""
            errors.append(
                f"unknown key model.options.{k} for model.builder {SEQ_BUILDER!r}.{hint} "
                f"Allowed: {', '.join('model.options.' + a for a in allowed)}. "
                f"Received: model.options.{k}={v!r}."
            )
    return errors


def _check_builder_keys(cfg: TrainConfig, errors: list[str], build: bool = True) -> None:
    """Keys that do not apply to the chosen builder; with ``build``, the builder's own
    options, built once on a tiny stand-in."""
    if not _is_seq(cfg.model):
        return
    found = _seq_key_errors(cfg)
    errors.extend(found)
    if found or not build:
        return

    opts = dict(cfg.model.options)
    try:  # cell, T_max, forget_bias, ... checked by the builder itself, on 2 units
        seq_classifier(opts.pop("input_size", 1), 2, 2, norm=_model_norm(cfg.model),
                       layers=1, **opts)
    except (TypeError, ValueError) as e:
        msg = " ".join(str(e).split())
        errors.append(f"model.builder {SEQ_BUILDER!r} with model.options="
                      f"{dict(cfg.model.options)!r}: {msg}")


def _model_norm(model: ModelConfig) -> Any:
    return (model.norm, dict(model.norm_options)) if model.norm_options else model.norm


def _default_input_size(shape: tuple[int, ...]) -> int:
    """Features per time step of an example of ``shape``: 1 for a flat example (MNIST-1D:
    40 steps of 1) or a single-channel signal ``(1, L)``, else the last dimension (a ``(T,
    F)`` sequence; an image's rows: ``(1, 28, 28)`` is 28 steps of 28)."""
    if len(shape) <= 1 or (len(shape) == 2 and shape[0] == 1):
        return 1
    return int(shape[-1])


def seq_classifier_spec(
    cfg: TrainConfig, input_shape: tuple[int, ...] | list[int], num_classes: int
) -> dict[str, Any]:
    """The :func:`trainlab.models.builders.seq_classifier` spec of ``cfg`` for examples of
    ``input_shape``: only the arguments that builder takes.

    ``hidden_size`` is ``model.width``, ``layers`` ``model.depth``, ``norm`` ``model.norm``
    (a recurrent_norm: none, bn_frame, bn_seq, ln) with ``model.norm_options``,
    ``num_classes`` the dataset's; each example is read as ``steps`` time steps of
    ``input_size`` features (by default 1 for a flat example such as MNIST-1D's 40 values,
    the last dimension otherwise; ``model.options.input_size`` / ``.steps`` choose others).
    The other ``model.options`` (cell, T_max, forget_bias, bias) pass through. A key that
    does not apply (model.activation, model.dropout, model.init ...) set to anything but its
    default raises ``ValueError`` naming the key, the value and what is allowed.
    """
    errors = _seq_key_errors(cfg)
    if errors:
        head = "invalid config" if len(errors) == 1 else f"{len(errors)} problems in the config"
        raise ValueError(f"{head}: " + " | ".join(errors))
    shape = tuple(int(d) for d in input_shape)
    opts = dict(cfg.model.options)
    size = math.prod(shape)
    default = _default_input_size(shape)
    input_size = opts.pop("input_size", default)
    if (not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1
            or size % input_size):
        raise ValueError(
            f"model.options.input_size must divide the {size} values of an example of shape "
            f"{shape} into whole time steps (default {default}: {size // default} steps of "
            f"{default}). Received: model.options.input_size={input_size!r}."
        )
    steps = opts.pop("steps", size // input_size)
    return dict(name=SEQ_BUILDER, input_size=input_size, hidden_size=cfg.model.width,
                num_classes=num_classes, norm=_model_norm(cfg.model), layers=cfg.model.depth,
                steps=steps, **opts)


def _check_probes(cfg: TrainConfig, errors: list[str]) -> TrainConfig:
    try:
        return dataclasses.replace(cfg, probes=resolve_probe_names(cfg.probes))
    except ValueError as e:
        errors.append(str(e))
        return cfg


def _resolve_defaults(cfg: TrainConfig) -> TrainConfig:
    """Fill values whose default comes from a registry (the optimizer's learning rate)."""
    if cfg.optim.lr is not None:
        return cfg
    lr = 0.1
    try:
        entry = OPTIMIZERS.get(cfg.optim.name)
        lr = float(entry.meta.get("default_lr", entry.defaults.get("lr", lr)))
    except (ValueError, TypeError):
        pass
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=lr))


def from_dict(values: dict[str, Any], *, check_names: bool = True) -> TrainConfig:
    """Check ``values`` against :class:`TrainConfig`; one ``ValueError`` lists every problem."""
    errors: list[str] = []
    # Every check runs, whatever failed before it, so one message lists every problem: a key
    # of the wrong type keeps its default for the later checks.
    cfg = _check_section(TrainConfig, values, "", errors)
    cfg = _check_probes(cfg, errors)
    _check_values(cfg, errors)
    if check_names:
        n = len(errors)
        _check_names(cfg, errors)
        names_known = len(errors) == n
        if names_known:  # options of known names only
            n = len(errors)
            _check_options(cfg, errors)
            if len(errors) == n:
                _check_combinations(cfg, errors)
        _check_builder_keys(cfg, errors, build=names_known)
    if errors:
        head = "invalid config" if len(errors) == 1 else f"{len(errors)} problems in the config"
        raise ValueError(f"{head}: " + " | ".join(errors))
    return _resolve_defaults(cfg)


def load_config(
    path: str | os.PathLike | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    check_names: bool = True,
) -> TrainConfig:
    """Defaults < file at ``path`` < ``flags`` (dotted keys or nested) < ``overrides``.

    ``flags`` maps dotted keys to values (``{"model.width": 64}``); ``None`` values are
    ignored (flags the user did not give).
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = read_config_file(path)
    nested: dict[str, Any] = {}
    for key, v in (flags or {}).items():
        if v is not None:
            _set_path(nested, key.split("."), v)
    values = _merge(_merge(values, nested), parse_overrides(list(overrides)))
    return from_dict(values, check_names=check_names)


def with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """``stored`` (a config dict read from a run folder) with every key it lacks set to
    :class:`TrainConfig`'s default, so a config written before a key existed (``probes``)
    compares equal to the same settings today."""
    out = TrainConfig().to_dict()
    for k, v in stored.items():
        if k in _SECTIONS and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def config_diff(
    stored: dict[str, Any], given: dict[str, Any], ignore: tuple[str, ...] = ("device",)
) -> list[str]:
    """Lines ``key: stored X, given Y`` for every key whose value differs (``probes`` and
    ``probe_every`` included: a resumed run must record the same probes)."""
    a, b = _flat(stored), _flat(given)
    lines = []
    for k in sorted(set(a) | set(b)):
        if k in ignore:
            continue
        if a.get(k, "<missing>") != b.get(k, "<missing>"):
            lines.append(f"{k}: stored {a.get(k, '<missing>')!r}, given {b.get(k, '<missing>')!r}")
    return lines


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in _SECTIONS and not prefix:
            out.update(_flat(v, f"{k}."))
        else:
            nested = isinstance(v, (dict, list))
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True) if nested else v
    return out
