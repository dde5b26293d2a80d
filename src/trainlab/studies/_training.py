"""Helpers shared by the studies that train networks (Studies II).

- :func:`classification_data`: the dataset the run uses (``ctx.data``: MNIST, or the declared
  alternative MNIST-1D), flattened; which one is chosen, and said, before the run.
- :func:`mlp_run`: build an MLP with the builders, initialize it, and return it as one run
  of a grid for :meth:`StudyContext.train_grid` (which packs the runs that can share a pack);
  :func:`train_mlp` trains one such run and returns its History.
- :func:`mean_std`, :func:`curve`: numbers and series over seeds.
- :func:`plot_curves`: loss or accuracy curves per label, mean over seeds with a band.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from trainlab.data.base import Dataset
from trainlab.init import init_model
from trainlab.models.builders import mlp
from trainlab.report.figures import pyplot
from trainlab.studies.base import StudyContext

LN10 = math.log(10.0)


def classification_data(ctx: StudyContext, name: str | None = None, n_train: int = 5000,
                        n_test: int = 1000) -> Any:
    """The run's classification set, inputs flattened to vectors: ``name`` when given (it must
    be part of the run's data, :attr:`StudyContext.data`), else the run's data itself —
    ``"mnist"`` or ``"mnist1d"``, chosen and said before the run by
    :func:`~trainlab.studies.base.run_study`. Nothing is substituted here: a study that can
    run on MNIST-1D declares it in its ``datasets``. MNIST-1D holds 4000 training and 1000
    test examples, so ``n_train`` / ``n_test`` are capped there."""
    if name is None:
        parts = [p for p in ("mnist", "mnist1d") if ctx.uses(p)]
        if len(parts) != 1:
            raise RuntimeError(f"study {ctx.study.name!r}: classification_data needs the run's "
                               f"data to be mnist or mnist1d (or a name); it runs on "
                               f"{ctx.data!r}.")
        name = parts[0]
    if name == "mnist1d":
        ds = ctx.dataset("mnist1d", n_train=min(n_train, 4000), n_test=min(n_test, 1000))
    else:
        ds = ctx.dataset(name, n_train=n_train, n_test=n_test)
    return flatten(ds)


def flatten(ds: Any) -> Any:
    """The dataset with every example flattened to a vector (and its metadata saying so)."""
    import dataclasses


    xtr = ds.x_train.reshape(len(ds.x_train), -1)
    meta = dataclasses.replace(ds.meta, input_shape=(xtr.shape[1],))
    return Dataset(xtr, ds.y_train, ds.x_test.reshape(len(ds.x_test), -1), ds.y_test, meta)


def build_mlp(sizes: Sequence[int], activation: str, init: Any, *, norm: str = "none",
              placement: str = "before", seed: int = 0, bias_init: Any = 0.0) -> torch.nn.Module:
    """``mlp(sizes, ...)`` initialized with ``init`` (a name or ``(name, kwargs)``) from
    ``seed``; biases ``bias_init``."""

    torch.manual_seed(seed)
    model = mlp(list(sizes), activation=activation, norm=norm, placement=placement)
    init_model(model, init, bias=bias_init, generator=torch.Generator().manual_seed(seed))
    return model


def mlp_run(ctx: StudyContext, data: Any, label: str, sizes: Sequence[int], activation: str,
            init: Any, *, seed: int, steps: int, batch_size: int, optimizer: Any = "sgd",
            lr: float | None = None, norm: str = "none", placement: str = "before",
            log_every: int = 10, eval_every: int | None = None,
            config: Mapping[str, Any] | None = None, **kw: Any) -> Any:
    """One MLP run of a grid (:meth:`StudyContext.train_grid`): built and initialized
    with ``init`` from ``seed``, labelled ``label``."""
    model = build_mlp(sizes, activation, init, norm=norm, placement=placement, seed=seed)
    cfg = {"sizes": list(sizes), "activation": activation, "init": str(init), "norm": norm,
           "placement": placement, "optimizer": str(optimizer), "lr": lr, **dict(config or {})}
    return ctx.grid_run(model, data, label=label, config=cfg, steps=steps,
                        batch_size=batch_size, optimizer=optimizer, lr=lr, seed=seed,
                        log_every=log_every, eval_every=eval_every or steps, **kw)


def train_mlp(ctx: StudyContext, data: Any, label: str, sizes: Sequence[int], activation: str,
              init: Any, **kw: Any) -> Any:
    """Build, initialize and train one MLP (:func:`mlp_run`'s arguments); a store run
    labelled ``label``. For several, collect :func:`mlp_run` and call ``ctx.train_grid``."""
    return ctx.train_grid([mlp_run(ctx, data, label, sizes, activation, init, **kw)])[0]


def act_outputs(model: torch.nn.Module, x: torch.Tensor, *, suffix: str = ".act",
                inputs: bool = False) -> list[torch.Tensor]:
    """The outputs (or, with ``inputs``, the inputs) of every module whose name ends with
    ``suffix``, for one no-grad forward pass of ``x`` in the model's current mode — without
    changing training: BN running statistics and batch counts are left as they are (momentum
    0 during the pass, the count put back) and the global RNG is restored (dropout draws)."""
    got: list[torch.Tensor] = []

    def hook(mod, inp, out) -> None:
        got.append((inp[0] if inputs else out).detach())

    hooks = [m.register_forward_hook(hook) for n, m in model.named_modules()
             if n.endswith(suffix)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None
              else m.num_batches_tracked.clone()) for m in bns]
    try:
        for m in bns:
            m.momentum = 0.0
        device = next((p.device for p in model.parameters()), x.device)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x.to(device))
    finally:
        for m, (mom, count) in zip(bns, saved):
            m.momentum = mom
            if count is not None:
                m.num_batches_tracked.copy_(count)
        for h in hooks:
            h.remove()
    return got


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value); NaN-free inputs expected."""
    v = [float(x) for x in values]
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def curve(history: Any, key: str = "train_loss") -> tuple[list[int], list[float]]:
    """``(steps, values)`` of one History column (rows that have it)."""
    rows = [r for r in history.metrics if key in r]
    return [int(r["step"]) for r in rows], [float(r[key]) for r in rows]


def value_at(history: Any, step: int, key: str = "train_loss") -> float:
    """The logged value at the first logging point ``>= step`` (the last one if none)."""
    steps, vals = curve(history, key)
    for s, v in zip(steps, vals):
        if s >= step:
            return v
    return vals[-1] if vals else math.nan


def plot_curves(groups: Mapping[str, Sequence[Any]], key: str = "train_loss", *,
                title: str = "", ylabel: str | None = None, logy: bool = False,
                colors: Mapping[str, str] | None = None, ax: Any = None,
                hline: float | None = None, hline_label: str = "") -> Any:
    """One curve per label: the mean over its histories, a band of ± one std."""
    plt = pyplot()
    import numpy as np

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, hists in groups.items():
        series = [curve(h, key) for h in hists]
        series = [s for s in series if s[0]]
        if not series:
            continue
        n = min(len(s[0]) for s in series)
        steps = np.array(series[0][0][:n])
        vals = np.array([s[1][:n] for s in series], dtype=float)
        m = np.nanmean(vals, axis=0)
        color = (colors or {}).get(label)
        (line,) = ax.plot(steps, m, label=label, color=color, lw=1.6)
        if len(series) > 1:
            sd = np.nanstd(vals, axis=0)
            ax.fill_between(steps, m - sd, m + sd, color=line.get_color(), alpha=0.18, lw=0)
    if hline is not None:
        ax.axhline(hline, color="grey", ls=":", lw=1, label=hline_label or None)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel or key.replace("_", " "))
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig if fig is not None else ax.figure
