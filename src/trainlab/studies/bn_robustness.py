"""bn-robustness: with BN a net trains over a much wider range of learning rates and init scales.

Lectures 001/002 ("Batch normalization: improves gradient flow, allows higher learning rates,
reduces the strong dependence on initialization"; Ioffe & Szegedy 2015 §3.3): BN makes a
layer's output invariant to the scale of its weights, ``BN((aW)u) = BN(Wu)``, so neither a
badly scaled init nor a large step that grows the weights changes what the next layer sees.
This study trains the same deep ReLU MLP over a grid of learning rates × initialization
scales (multiples of He's std), with and without BN, and draws the grid's final losses as
heat maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.report.figures import pyplot
from trainlab.studies._training import LN10, build_mlp, classification_data
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

TRAINS = 0.5  # final train loss below half of ln 10 counts as "trains"


@dataclass(frozen=True)
class Config:
    depth: int = 6
    width: int = 128
    steps: int = 300
    lrs: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    scales: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    n_train: int = 4000


@study(
    "bn-robustness",
    title="Batch norm widens the range of learning rates and init scales that train",
    source="Lectures 001/002, 'Batch normalization' (allows higher learning rates, less "
           "dependence on initialization); Ioffe & Szegedy 2015, §3.3",
    summary="A deep ReLU MLP is trained over a grid of learning rates and initialization "
            "scales (multiples of He's std √(2/fan_in)), with and without BN before each ReLU. "
            "Without BN only a narrow band of the grid trains; with BN most of it does, "
            "including learning rates at which the plain net diverges.",
    scales={
        "test": Config(depth=2, width=16, steps=20, lrs=(0.01, 1.0), scales=(0.3, 3.0),
                       n_train=500),
        "quick": Config(),
        "paper": Config(depth=10, width=512, steps=5000,
                        lrs=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
                        scales=(0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0), n_train=60000),
    },
    claims=(
        Claim("wider-range", "BN trains over a much wider range of both",
              "fraction of grid cells that train with BN − without", ">", 0.25,
              why=f"'trains': final loss < {TRAINS}·ln 10; scale invariance should open most "
                  "of the grid's rows and columns",
              on={"mnist1d": On(0.0, "the 0.25 assumes most of the grid trains, which was judged "
                  "on MNIST with 'trains' = loss < 0.5·ln 10; published MNIST-1D numbers do not "
                  "show that loss reachable (a calibrated 68% MLP: ≈ 0.58·ln 10), so only the "
                  "direction (BN trains more cells, > 0) is tested there")}),
        Claim("higher-lr", "BN allows higher learning rates",
              "largest lr that trains at He's scale: with BN / without", ">=", 3.0,
              why="one grid step is ≈ 3×; BN's invariance bounds the effective step",
              on={"mnist1d": On(SAME, "one step of the learning-rate grid: a comparison between "
                  "the two setups on the same data and grid, not a number from the data")}),
        Claim("init-insensitive", "BN removes the dependence on the init scale",
              "at the best lr of each: fraction of init scales that train, with BN − without",
              ">", 0.2, why="BN(aWu) = BN(Wu): the forward pass does not see the scale a",
              on={"mnist1d": On(0.0, "as for wider-range: the 0.2 was judged on MNIST; on "
                  "MNIST-1D only the direction (BN trains at more init scales, > 0) is tested")}),
    ),
    quick_seconds=120,
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()
    import numpy as np

    data = classification_data(ctx, n_train=cfg.n_train, n_test=1000)
    sizes = (data.x_train.shape[1], *[cfg.width] * cfg.depth, 10)
    grids, rows = {}, []
    for norm in ("none", "bn"):
        g = np.full((len(cfg.scales), len(cfg.lrs)), np.nan)
        cells = [(i, j) for i in range(len(cfg.scales)) for j in range(len(cfg.lrs))]
        for i, j in ctx.progress(cells, f"grid, norm={norm}"):
            a, lr = cfg.scales[i], cfg.lrs[j]
            model = build_mlp(sizes, "relu", ("he_normal", {}), norm=norm, seed=ctx.seed)
            for m in model.modules():  # scale every weight matrix by a (He std × a)
                if isinstance(m, torch.nn.Linear):
                    m.weight.data.mul_(a)
            h = ctx.train(model, data, label=f"{norm}-scale{a:g}-lr{lr:g}", steps=cfg.steps,
                          batch_size=128, optimizer="sgd", lr=lr,
                          log_every=max(1, cfg.steps // 10), eval_every=cfg.steps,
                          config={"norm": norm, "init_scale": a, "lr": lr})
            loss = h.metrics[-1]["train_loss"] if h.metrics and h.status != "diverged" \
                else math.inf
            g[i, j] = loss / LN10 if math.isfinite(loss) else np.inf
            rows.append({"norm": norm, "init scale": a, "lr": lr, "final loss/ln10": g[i, j],
                         "status": h.status})
        grids[norm] = g
    ctx.table("grid", rows, f"Final training loss over ln 10 after {cfg.steps} SGD steps; "
              "inf = diverged.")
    trains = {k: v < TRAINS for k, v in grids.items()}
    ctx.check("wider-range", float(trains["bn"].mean() - trains["none"].mean()),
              detail=f"cells that train: BN {int(trains['bn'].sum())}, plain "
                     f"{int(trains['none'].sum())} of {trains['bn'].size}")
    he = cfg.scales.index(1.0) if 1.0 in cfg.scales else len(cfg.scales) // 2

    def max_lr(k: str) -> float:
        ok = [cfg.lrs[j] for j in range(len(cfg.lrs)) if trains[k][he, j]]
        return max(ok) if ok else 0.0
    # when no lr of the grid trains the plain net, count it as one grid step below the grid
    plain = max_lr("none") or cfg.lrs[0] / 3
    ctx.check("higher-lr", max_lr("bn") / plain,
              detail=f"largest lr that trains at He's scale: BN {max_lr('bn'):g}, plain "
                     + (f"{max_lr('none'):g}" if max_lr("none") else "none of the grid"))

    def scale_frac(k: str) -> float:
        best = int(np.nanargmin(np.where(np.isfinite(grids[k]), grids[k], np.inf)
                                .min(axis=0)))
        return float(trains[k][:, best].mean())
    ctx.check("init-insensitive", scale_frac("bn") - scale_frac("none"))

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    for ax, (norm, title) in zip(axes, (("none", "without BN"), ("bn", "with BN"))):
        shown = np.where(np.isfinite(grids[norm]), grids[norm], 1.5)
        im = ax.imshow(shown, origin="lower", cmap="viridis_r", vmin=0, vmax=1.5,
                       aspect="auto")
        ax.set_xticks(range(len(cfg.lrs)), [f"{v:g}" for v in cfg.lrs])
        ax.set_yticks(range(len(cfg.scales)), [f"{v:g}" for v in cfg.scales])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("init scale (× He's std)")
        ax.set_title(f"{title}: final loss / ln 10")
        for i in range(shown.shape[0]):
            for j in range(shown.shape[1]):
                v = grids[norm][i, j]
                ax.text(j, i, "div" if not np.isfinite(v) else f"{v:.2f}", ha="center",
                        va="center", fontsize=7, color="w" if shown[i, j] > 0.8 else "k")
        fig.colorbar(im, ax=ax, fraction=0.046)
    ctx.figure("grid", fig, f"Final loss over ln 10 for each learning rate × init scale "
               f"('div': diverged). Cells below {TRAINS} train; with BN (right) far more of the "
               "grid trains than without (left).")
