"""Study ``lsuv``: layer-sequential unit-variance initialization (Mishkin & Matas 2016).

Lectures 001/002 list "All you need is a good init" among the data-dependent inits. The paper
claims (§3, Tables 2–4): after LSUV every layer's output variance is 1 within the tolerance,
reached in 1–5 iterations, for ReLU, tanh, maxout and other nets; a very deep thin net that
does not train from Xavier-type inits trains from LSUV; and LSUV's accuracy matches
orthonormal init and batch normalization.

Setup. (1) MLPs of ``depth`` hidden layers (ReLU, tanh, maxout, sigmoid; weights first drawn
from N(0, 0.01²)) get :func:`trainlab.init.lsuv_` on a batch of MNIST-1D inputs; the output
variance of every layer is measured again by an independent forward pass (our own hooks) on
that batch and on a held-out batch. (2) A ``deep_depth``-layer ReLU MLP is trained with SGD
from N(0, 0.01²), Xavier (Glorot normal), orthogonal with the ReLU gain √2, LSUV, and He
init with batch normalization; test accuracy over ``seeds`` seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from trainlab.init import init_model, lsuv_
from trainlab.models import mlp
from trainlab.nn.activations import Maxout
from trainlab.report.figures import pyplot
from trainlab.studies.base import Claim, StudyContext, study

ACTIVATIONS = ("relu", "tanh", "maxout", "sigmoid")
INITS = ("normal-0.01", "xavier", "orthogonal", "lsuv", "bn")


@dataclass(frozen=True)
class Config:
    width: int = 128          # variance part
    depth: int = 10
    lsuv_batch: int = 256
    deep_depth: int = 30      # training part: "a 20+-layer net" (at 24, Xavier escaped once)
    deep_width: int = 64
    steps: int = 600
    batch_size: int = 128
    lr: float = 0.03
    momentum: float = 0.9
    n_train: int = 4000
    seeds: int = 2


def _mean_std(v: list[float]) -> tuple[float, float | None]:
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, None
    return m, math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1))


def _watched(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Each Linear, a maxout layer at its output (what LSUV normalizes)."""
    out = []
    for n, m in model.named_modules():
        if isinstance(m, Maxout):
            out.append((n, m))
        elif isinstance(m, nn.Linear) and not isinstance(
                model.get_submodule(n.rsplit(".", 1)[0]) if "." in n else model, Maxout):
            out.append((n, m))
    return out


def _variances(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    got: dict[str, float] = {}

    def hook(name: str):
        def fn(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if name not in got:  # first call; returns None: the output is left as it is
                got[name] = float(out.detach().double().var(correction=0))
        return fn

    hs = [m.register_forward_hook(hook(n)) for n, m in _watched(model)]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return got


def _deep_model(cfg: Config, classes: int, init: str, seed: int, x: torch.Tensor
                ) -> nn.Module:
    torch.manual_seed(seed)
    norm = "bn" if init == "bn" else "none"
    m = mlp([x.shape[1], *([cfg.deep_width] * cfg.deep_depth), classes],
                     activation="relu", norm=norm)
    if init == "normal-0.01":
        init_model(m, "normal", std=0.01, generator=seed)
    elif init == "xavier":
        init_model(m, "xavier_normal", generator=seed)
    elif init == "orthogonal":
        init_model(m, "orthogonal", activation="relu", generator=seed)
    elif init == "lsuv":
        init_model(m, "lsuv", data=x, generator=seed)
    else:
        init_model(m, "he_normal", generator=seed)
    return m


@study(
    "lsuv",
    title="LSUV: unit variance in every layer, and a deep net that trains from it",
    source="Lectures 001/002, 'All you need is a good init'; Mishkin & Matas 2016, "
           "Algorithm 1, Tables 2-4",
    summary="Applies LSUV (orthonormal pre-init, then each layer rescaled until its output "
            "variance on a batch is 1 ± 0.1) to ReLU, tanh, maxout and sigmoid MLPs and checks "
            "every layer's variance by an independent pass; then trains a 20+-layer ReLU MLP "
            "on MNIST-1D from N(0, 0.01²), Xavier, orthogonal, LSUV and He + BN.",
    scales={
        "test": Config(width=16, depth=3, lsuv_batch=64, deep_depth=6, deep_width=16, steps=20,
                       batch_size=32, n_train=256, seeds=1),
        "quick": Config(seeds=3),
        "paper": Config(width=512, depth=16, deep_depth=40, deep_width=128, steps=5000,
                        seeds=5),
    },
    claims=(
        Claim("variance-within-tol",
              "After LSUV every layer's output variance is within tolerance of 1 (ReLU, tanh, "
              "maxout and sigmoid nets)",
              quantity="max over nets and layers of |Var(output) − 1| on the LSUV batch, "
                       "independent pass", op="<", threshold=0.1,
              why="tol = 0.1 is the paper's Tol_var; LSUV stops only inside it"),
        Claim("few-iterations",
              "The tolerance is reached after at most a few iterations",
              quantity="max over nets and layers of the number of rescalings", op="<=",
              threshold=5, why="the paper reports convergence in 1-5 iterations"),
        Claim("baselines-stall",
              "The deep ReLU net stalls under N(0, 0.01²) and Xavier init",
              quantity="max(test accuracy) of N(0, 0.01²) and Xavier, mean over seeds (each "
                       "run: mean of its last 3 evaluations)",
              op="<", threshold=0.2,
              why="chance is 0.1 on MNIST-1D; Xavier halves the ReLU variance per layer "
                  "(2^-30 at depth 30), 0.01 shrinks it far more"),
        Claim("lsuv-trains",
              "The same net trains under LSUV",
              quantity="test accuracy of LSUV − the better stalled baseline, mean over seeds",
              op=">", threshold=0.15,
              why="a trained net is well above chance; the stalled ones are at chance"),
        Claim("matches-orthogonal",
              "LSUV's accuracy is about that of orthogonal init",
              quantity="test accuracy of orthogonal (gain √2) − LSUV, mean over seeds",
              op="<", threshold=0.05, why="the paper: LSUV matches or beats OrthoInit"),
        Claim("matches-bn",
              "LSUV's accuracy is about that of batch normalization",
              quantity="test accuracy of He + BN − LSUV, mean over seeds", op="<",
              threshold=0.05, why="the paper: LSUV without BN matches BN nets (Table 4)"),
    ),
    quick_seconds=120,
    data_note="MNIST-1D (embedded, procedural); the paper used CIFAR-10/100 and ImageNet.",
    datasets=("mnist1d",),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    ds = ctx.dataset("mnist1d", n_train=cfg.n_train, n_test=1000)
    x = ds.x_train[: cfg.lsuv_batch]
    held = ds.x_train[cfg.lsuv_batch: 2 * cfg.lsuv_batch]
    classes = ds.meta.num_classes

    # (1) variances after LSUV, four activations
    rows, dev, iters = [], 0.0, 0
    per_layer: dict[str, list[float]] = {}
    for act in ctx.progress(ACTIVATIONS, "variances"):
        torch.manual_seed(ctx.seed)
        m = mlp([x.shape[1], *([cfg.width] * cfg.depth), classes], activation=act)
        init_model(m, "normal", std=0.01, generator=ctx.seed)
        before = _variances(m, x)
        report = lsuv_(m, x, generator=ctx.seed)
        after, after_held = _variances(m, x), _variances(m, held)
        per_layer[act] = [after[r["layer"]] for r in report]
        for r in report:
            n = r["layer"]
            dev = max(dev, abs(after[n] - 1.0))
            iters = max(iters, r["iterations"])
            rows.append({"activation": act, "layer": n, "var_before": before[n],
                         "iterations": r["iterations"], "var_after": after[n],
                         "var_after_heldout": after_held[n]})
    ctx.table("variances", rows, "Output variance of every layer before and after LSUV, "
              "measured by an independent pass on the LSUV batch and on a held-out batch.")
    ctx.check("variance-within-tol", dev, detail=f"{len(rows)} layers in 4 nets")
    ctx.check("few-iterations", iters)

    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.8))
    markers = dict(zip(ACTIVATIONS, "osD^"))
    for act in ACTIVATIONS:
        b = [r["var_before"] for r in rows if r["activation"] == act]
        d = [max(abs(v - 1.0), 1e-16) for v in per_layer[act]]
        a0.plot(range(1, len(b) + 1), b, marker=markers[act], label=act)
        a1.plot(range(1, len(d) + 1), d, marker=markers[act], ls="--", label=act)
    a1.axhline(0.1, color="grey", ls=":", label="tol = 0.1")
    for ax, t, yl in ((a0, "before LSUV (N(0, 0.01²) weights)", "Var(layer output)"),
                      (a1, "after LSUV", "|Var(layer output) − 1|")):
        ax.set_yscale("log")
        ax.set_xlabel("layer (from the input)")
        ax.set_ylabel(yl)
        ax.set_title(t, fontsize=10)
        ax.legend(fontsize=8)
    ctx.figure("variances", fig, "Before LSUV the variances collapse with depth; after it "
               "every layer's variance is within 0.1 of 1 (right: the distance to 1, far "
               "below the tolerance line), for each activation.")

    # (2) the deep ReLU net
    data = (ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    acc: dict[str, list[float]] = {k: [] for k in INITS}
    curves: dict[str, list] = {}
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    runs = [ctx.grid_run(_deep_model(cfg, classes, init, s, x), data, label=f"{init}-seed{s}",
                         steps=cfg.steps, batch_size=cfg.batch_size, optimizer="sgd",
                         lr=cfg.lr, optimizer_kwargs={"momentum": cfg.momentum},
                         eval_every=max(1, cfg.steps // 6),
                         log_every=max(1, cfg.steps // 12), seed=s,
                         config={"init": init, "depth": cfg.deep_depth})
            for init in INITS for s in seeds]
    histories = iter(ctx.train_grid(runs))
    for init in INITS:
        for s in seeds:
            h = next(histories)
            # the mean of the last three evaluations: one evaluation of a 30-layer net at
            # the quick scale swings by ±0.1 from step to step
            _, evals = h.series("test_acc")
            a = sum(evals[-3:]) / len(evals[-3:]) if evals else math.nan
            acc[init].append(float(a) if h.status != "diverged" else 1.0 / classes)
            if s == seeds[0]:
                curves[init] = h.series("train_loss") if hasattr(h, "series") else None
    table = []
    for init in INITS:
        m_, s_ = _mean_std(acc[init])
        table.append({"init": init, "test_acc_mean": m_, "test_acc_std": s_,
                      "seeds": len(acc[init])})
    ctx.table("deep_net", table, f"Test accuracy of the {cfg.deep_depth}-layer ReLU MLP "
              f"over the last 3 evaluations of {cfg.steps} SGD steps, by init (mean and std "
              "over seeds).")
    mean = {r["init"]: r["test_acc_mean"] for r in table}
    std = {r["init"]: r["test_acc_std"] for r in table}

    def diff_spread(a: str, b: str) -> float | None:
        if std[a] is None or std[b] is None:
            return None
        return math.sqrt(std[a] ** 2 + std[b] ** 2)

    worst = max(("normal-0.01", "xavier"), key=lambda k: mean[k])
    ctx.check("baselines-stall", mean[worst], spread=std[worst], seeds=seeds,
              detail=f"the better of the two is {worst}")
    ctx.check("lsuv-trains", mean["lsuv"] - mean[worst], spread=diff_spread("lsuv", worst),
              seeds=seeds)
    ctx.check("matches-orthogonal", mean["orthogonal"] - mean["lsuv"],
              spread=diff_spread("orthogonal", "lsuv"), seeds=seeds)
    ctx.check("matches-bn", mean["bn"] - mean["lsuv"], spread=diff_spread("bn", "lsuv"),
              seeds=seeds)
    _plot_curves(ctx, cfg, curves)


def _plot_curves(ctx: StudyContext, cfg: Config, curves: dict) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    styles = {"normal-0.01": ("-", 3.0), "xavier": ("--", 1.5)}
    for init, c in curves.items():
        if not c:
            continue
        steps, vals = c
        ls, lw = styles.get(init, ("-", 1.5))
        ax.plot(steps, vals, ls=ls, lw=lw, label=init)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(f"{cfg.deep_depth}-layer ReLU MLP on MNIST-1D")
    ax.legend(fontsize=8)
    ctx.figure("training", fig, "First seed: the N(0, 0.01²) (thick) and Xavier (dashed) "
               "nets stay at the chance loss ln 10; LSUV, orthogonal and BN descend.")
