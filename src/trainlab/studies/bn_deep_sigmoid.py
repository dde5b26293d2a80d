"""bn-deep-sigmoid: a deep sigmoid net with small weights barely learns; with BN it learns.

Lecture 004 ("Batch normalization") shows a 7-layer sigmoid network initialized with
``0.1·N(0, 1)`` weights: without normalization its loss hardly moves — each sigmoid layer
passes at most a quarter of the gradient (``σ' ≤ 1/4``) times the small weights, so the
lower layers get almost nothing, and the outputs pile up near 0.5 — while the same network
with batch normalization before each sigmoid trains. Several seeds each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainlab.studies._training import (
    LN10,
    classification_data,
    mean_std,
    mlp_run,
    plot_curves,
)
from trainlab.studies.base import SAME, Claim, On, StudyContext, study


@dataclass(frozen=True)
class Config:
    depth: int = 7
    width: int = 128
    steps: int = 600
    lr: float = 0.1
    n_train: int = 10000
    seeds: int = 3


@study(
    "bn-deep-sigmoid",
    title="A 7-layer sigmoid net with 0.1·N(0,1) weights: barely learns without BN, learns "
          "with it",
    source="Lecture 004, 'Batch normalization' (7 sigmoid layers, weights 0.1·N(0,1), with and "
           "without BN); Ioffe & Szegedy 2015",
    summary="The same deep sigmoid MLP, initialized with 0.1·N(0,1) weights, is trained with "
            "SGD with and without batch normalization before each sigmoid, several seeds each. "
            "Without BN the gradient reaching the lower layers is too small and the loss stays "
            "near ln 10; with BN every layer's input is standardized and the net learns.",
    scales={
        "test": Config(depth=4, width=32, steps=40, n_train=1000),
        "quick": Config(),
        "paper": Config(width=500, steps=10000, n_train=60000, seeds=5),
    },
    claims=(
        Claim("plain-barely-learns", "Without BN it barely learns",
              "final train loss / ln 10 without BN (mean over seeds)", ">", 0.9,
              why="a factor ≤ 0.25·0.1·√width ≈ 0.28 per layer on the backward signal: the "
                  "lower layers of 7 get ≈ 1e-4 of the top's gradient. A seed counts only "
                  "where the BN net of the same seed and budget does learn (its loss/ln 10 "
                  "below 0.9): otherwise the budget, not the depth, could explain it (NaN)",
              control="7 layers -> 1 (one sigmoid layer, same 0.1·N(0,1) weights and "
                      "budget, no BN)",
              on={"mnist1d": On(SAME, "the backward factor ≤ 0.25·0.1·√width per layer depends on "
                  "the width and weight scale only; ln 10 is the uniform guess on MNIST-1D's 10 "
                  "balanced classes too")}),
        Claim("bn-learns", "With BN it learns", "final train loss / ln 10 with BN (mean)", "<",
              0.5, why="BN makes each sigmoid's input zero-mean unit-variance whatever the "
                       "weight scale, so gradients keep their size",
              control="BN -> none (the plain net on seeds + 1000)",
              on={"mnist1d": On(None, "0.5·ln 10 is below what published MNIST-1D numbers show "
                  "reachable (Greydanus 2020's 68% MLP, as a calibrated classifier, has a log "
                  "loss ≈ 0.58·ln 10): no source for a loss that low there")}),
        Claim("bn-accuracy-gain", "BN's test accuracy is far higher",
              "test accuracy with BN − without (mean over seeds, beyond the spread)", ">", 0.2,
              why="ten classes: a net that barely learns stays near 10-30%",
              control="BN -> none (the plain net on seeds + 1000)",
              on={"mnist1d": On(0.0, "the size of this gap was read off MNIST results and no "
                  "published number sizes it on MNIST-1D: only its direction (> 0, beyond the "
                  "spread over seeds) is tested there")}),
    ),
    quick_seconds=40,
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    data = classification_data(ctx, n_train=cfg.n_train, n_test=2000)
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    deep = (data.x_train.shape[1], *[cfg.width] * cfg.depth, 10)
    shallow = (data.x_train.shape[1], cfg.width, 10)
    # (label, sizes, norm, seed offset); the control run (--controls) swaps each technique
    # under test: the plain arm of plain-barely-learns becomes one sigmoid layer (depth
    # removed), the BN arm the plain deep net on disjoint seeds (BN removed), and the BN net
    # of the gate is trained on its own
    arms = [("no BN", shallow if ctx.control else deep, "none", 0),
            ("BN before each sigmoid", deep, ctx.controlled("bn", "none"),
             1000 if ctx.control else 0)]
    if ctx.control:
        arms.append(("gate: BN, same budget", deep, "bn", 0))
    # every run of the grid first, then one train_grid: the seeds of an arm share a pack
    runs = [mlp_run(ctx, data, f"{norm}-d{len(sz) - 2}-seed{s + off}", sz, "sigmoid",
                    ("normal", {"std": 0.1}), seed=s + off, steps=cfg.steps,
                    batch_size=128, optimizer="sgd", lr=cfg.lr, norm=norm,
                    log_every=max(1, cfg.steps // 40))
            for _, sz, norm, off in arms for s in seeds]
    trained = iter(ctx.train_grid(runs))
    hists: dict[str, list] = {label: [next(trained) for _ in seeds] for label, *_ in arms}
    rows, final, acc = [], {}, {}
    for label, hs in hists.items():
        final[label] = [h.metrics[-1]["train_loss"] / LN10 if h.metrics else math.nan
                        for h in hs]
        acc[label] = [h.metrics[-1].get("test_acc", math.nan) if h.metrics else math.nan
                      for h in hs]
        m, s = mean_std(final[label])
        a, sa = mean_std(acc[label])
        rows.append({"variant": label, "final loss/ln10": m, "std": s, "test acc": a,
                     "test acc std": sa})
    ctx.table("final", rows, f"After {cfg.steps} SGD steps (lr {cfg.lr}, batch 128), "
              f"{cfg.depth} sigmoid layers × {cfg.width}, seeds {seeds}.")
    gate = final.get("gate: BN, same budget", final["BN before each sigmoid"])
    plain = [p if g < 0.9 else math.nan for p, g in zip(final["no BN"], gate)]
    ctx.check("plain-barely-learns", values=plain, seeds=seeds,
              detail="BN net of the same budget, loss/ln 10 per seed: "
                     + ", ".join(f"{g:.3f}" for g in gate)
                     + " (a seed counts where it is below 0.9)")
    ctx.check("bn-learns", values=final["BN before each sigmoid"], seeds=seeds)
    ctx.check("bn-accuracy-gain", values=[a - b for a, b in
                                          zip(acc["BN before each sigmoid"], acc["no BN"])],
              seeds=seeds)
    fig = plot_curves(hists, "train_loss", hline=LN10, hline_label="ln 10",
                      colors={"no BN": "tab:gray", "BN before each sigmoid": "tab:green"},
                      title=f"{cfg.depth} sigmoid layers, 0.1·N(0,1) weights, "
                            f"{data.meta.name}")
    ctx.figure("loss_curves", fig, "Without BN (grey) the loss stays near ln 10; with BN "
               "before each sigmoid (green) the same net trains. Bands: ± one std over seeds.")
