"""Study ``weight-norm``: plain vs WN vs WN + mean-only BN vs CWN vs BN on the CWN paper's MLP.

Lecture 002 ("Centered Weight Normalization", slides 42-43: "MLP, SVHN, {128,128,128,128,128},
SGD optimization, SGD+BN, Adam optimization"); Huang et al. 2017; Salimans & Kingma 2016.
The 5 x 128 ReLU MLP is trained with SGD at batch size 1024 over a grid of learning rates,
and with Adam, in five variants; the training loss after a fixed number of steps measures the
speed of training. All variants start from He-normal weights; WN, WN + mean-only BN and CWN
then get the WN paper's data-dependent initialization from one training batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.nn import mlp, weight_norm_init_
from trainlab.report.figures import pyplot
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

METHODS = ("plain", "wn", "wn_mobn", "cwn", "bn")
LABELS = {"plain": "plain", "wn": "WN", "wn_mobn": "WN + mean-only BN", "cwn": "CWN",
          "bn": "BN"}


@dataclass(frozen=True)
class Config:
    widths: tuple[int, ...] = (128, 128, 128, 128, 128)
    lrs: tuple[float, ...] = (0.1, 0.3, 1.0)
    adam_lr: float = 1e-3
    steps: int = 100
    batch_size: int = 1024
    seeds: int = 2
    n_train: int = 60000
    log_every: int = 10
    image_size: int = 14


def _data(ctx: StudyContext, cfg: Config):
    """Flattened inputs standardized per feature: MNIST average-pooled to ``image_size``
    first (a cheaper input), MNIST-1D's 40 values as they are."""
    ds = ctx.dataset("mnist", fallback="mnist1d")
    x, y = ds.x_train[: cfg.n_train].float(), ds.y_train[: cfg.n_train]
    if ctx.uses("mnist"):
        side = x.shape[-1]
        if side // cfg.image_size > 1:  # average-pool: a cheaper input
            x = torch.nn.functional.avg_pool2d(x, side // cfg.image_size)
        ctx.note(f"Setup: the first {len(x)} MNIST training images, average-pooled from "
                 f"{side} x {side} to {x.shape[-1]} x {x.shape[-1]}, flattened and "
                 "standardized per pixel (constant pixels stay 0).")
    else:
        ctx.note(f"Setup: the first {len(x)} MNIST-1D training signals ({x.shape[-1]} "
                 "values each), standardized per position.")
    x = x.reshape(len(x), -1)
    mu, sd = x.mean(0), x.std(0)
    sd = torch.where(sd > 1e-3 * sd.max(), sd, torch.ones_like(sd))  # constant pixels stay 0
    return (x - mu) / sd, y


def _final_loss(hist) -> float:
    """Mean training loss over the last three logged windows; +inf for a diverged run."""
    if getattr(hist, "status", "done") == "diverged":
        return math.inf
    _, losses = hist.series("train_loss")
    tail = [v for v in losses[-3:] if math.isfinite(v)]
    return sum(tail) / len(tail) if len(tail) == len(losses[-3:]) and tail else math.inf


def _build(method: str, in_features: int, cfg: Config, x0: torch.Tensor, seed: int):
    torch.manual_seed(seed)
    norm = "none" if method == "plain" else method
    model = mlp(in_features, list(cfg.widths), 10, norm=norm,
                init={"name": "he_normal", "generator": torch.Generator().manual_seed(seed)})
    if method in ("wn", "wn_mobn", "cwn"):
        weight_norm_init_(model, x0)  # Salimans & Kingma §3: one batch sets g and b
    return model


#: Why the claims' threshold 1 carries over to MNIST-1D.
_SAME_DATA = ("a ratio of the training losses of two parametrizations on the same data, "
              "compared with 1 (no difference): the threshold does not depend on the data")


def _ratios(num: list[float], den: list[float]) -> list[float]:
    """Per seed num/den (inf/inf counts as 1: both diverged, no difference; x/inf as 0)."""
    rs = []
    for a, b in zip(num, den):
        if math.isinf(a) and math.isinf(b):
            rs.append(1.0)
        elif math.isinf(b):
            rs.append(0.0)
        else:
            rs.append(a / b)
    return rs


@study(
    "weight-norm",
    title="Weight normalization, centered WN and BN on the CWN paper's 5 x 128 MLP",
    source="Lecture 002, 'Centered Weight Normalization' experiments (MLP {128 x 5}, SGD, "
           "SGD+BN, Adam); Huang et al. 2017; Salimans & Kingma 2016",
    summary="Trains the 5 x 128 ReLU MLP plain, with weight normalization, WN + mean-only "
            "batch norm, centered weight normalization and batch norm, with SGD at batch "
            "1024 over a grid of learning rates and with Adam, and compares the training "
            "loss reached after a fixed number of steps: the normalized variants train "
            "faster, CWN at least as fast as WN, and CWN still trains at the largest rate.",
    scales={
        "test": Config(widths=(16, 16), lrs=(1.0,), steps=6, batch_size=64, seeds=3,
                       n_train=512, log_every=2, image_size=7),
        "quick": Config(seeds=3),
        "paper": Config(lrs=(0.03, 0.1, 0.3, 1.0, 3.0), steps=5000, seeds=5, image_size=28),
    },
    claims=(
        Claim("wn-faster-than-plain",
              "Weight normalization trains the MLP faster than the plain parametrization",
              quantity="final training loss, WN / plain, each at its best SGD learning rate "
                       "(one ratio per seed)",
              op="<", threshold=1.0,
              why="Salimans & Kingma 2016 (fig. 1) and Huang et al. 2017 (SVHN MLP): WN's "
                  "curves lie below the plain network's; 1 = no difference, decided by the "
                  "one-sided 95% t bound over the per-seed ratios",
              on={"mnist1d": On(SAME, _SAME_DATA)},
              control="WN -> plain (the plain net on seeds + 1000 against the plain net)"),
        Claim("cwn-at-least-wn",
              "Centered weight normalization trains at least as fast as WN",
              quantity="final training loss, CWN / WN, each at its best SGD learning rate "
                       "(one ratio per seed)",
              op="<=", threshold=1.0,
              why="Huang et al. 2017: CWN's training loss is below WN's on the MLPs; 1 = no "
                  "difference, decided by the one-sided 95% t bound over the per-seed ratios",
              on={"mnist1d": On(SAME, _SAME_DATA)},
              control="CWN -> WN (WN on seeds + 1000 against WN)"),
        Claim("cwn-stable-at-high-lr",
              "CWN stays stable at a learning rate where the plain network does worse or "
              "diverges",
              quantity="final training loss, CWN / plain, at the grid's largest SGD learning "
                       "rate, one ratio per seed (a diverged run counts as infinite loss)",
              op="<", threshold=1.0,
              why="normalizing each unit's weights bounds the pre-activations' scale, so "
                  "large steps cannot blow them up (Huang et al. 2017, 'stabilize the "
                  "distributions'); 1 = no difference, decided by the one-sided 95% t bound "
                  "over the per-seed ratios",
              on={"mnist1d": On(SAME, _SAME_DATA)},
              control="CWN -> plain (the plain net on seeds + 1000 against the plain net)"),
    ),
    quick_seconds=120,
    datasets=("mnist", "mnist1d"),
    reference_note="Salimans & Kingma 2016 classify CIFAR-10 and Huang et al. 2017 train "
                   "this MLP on SVHN; neither is on this machine, and neither paper gives a "
                   "number for MNIST to anchor: the quick setup (the CWN MLP on MNIST) runs",
    data_note="MNIST average-pooled to 14 x 14 at the quick scale, flattened and standardized "
              "per pixel, or MNIST-1D's 40 values standardized per position; the paper uses "
              "SVHN (3072 inputs).",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    x, y = _data(ctx, cfg)
    optims = [("sgd", lr) for lr in cfg.lrs] + [("adam", cfg.adam_lr)]
    final: dict[tuple[str, str, float], list[float]] = {}
    curves: dict[tuple[str, str, float], tuple[list[int], list[float]]] = {}
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    # the arms: (name, method, seed offset). The control run trains what the controls
    # compare: the plain net and WN each twice, on the baseline seeds and on seeds + 1000
    # (WN -> plain and CWN -> plain: plain' / plain; CWN -> WN: WN' / WN)
    arms = ctx.controlled([(m, m, 0) for m in METHODS],
                          [("plain", "plain", 0), ("plain'", "plain", 1000), ("wn", "wn", 0),
                           ("wn'", "wn", 1000)])
    method_of = {name: m for name, m, _ in arms}
    jobs = [(arm, o, s) for arm in arms for o in optims for s in seeds]
    # one data object per method: the runs of a method and an optimizer kind share one pack,
    # and two methods never do (WN and CWN are one module class, WeightNormLinear, told apart
    # by its mode, which the pack's structure key does not see)
    data = {m: (x, y) for m in METHODS}
    runs = []
    for (name, method, offset), (opt, lr), seed in jobs:
        ms = seed + offset
        g = torch.Generator().manual_seed(ms)
        x0 = x[torch.randperm(len(x), generator=g)[: cfg.batch_size]]
        model = _build(method, x.shape[1], cfg, x0, ms)
        runs.append(ctx.grid_run(model, data[method], label=f"{name}-{opt}-lr{lr:g}-s{ms}",
                                 config={"method": method, "optimizer": opt, "lr": lr},
                                 steps=cfg.steps, batch_size=cfg.batch_size, optimizer=opt,
                                 lr=lr, seed=ms, log_every=cfg.log_every))
    for ((name, _, _), (opt, lr), seed), hist in zip(jobs, ctx.train_grid(runs)):
        final.setdefault((name, opt, lr), []).append(_final_loss(hist))
        if seed == seeds[0]:
            curves[(name, opt, lr)] = hist.series("train_loss")

    def label(name: str) -> str:
        base = LABELS[method_of[name]]
        return f"{base} (seeds + 1000)" if name.endswith("'") else base

    rows = []
    for name, _, _ in arms:
        for opt, lr in optims:
            v = final[(name, opt, lr)]
            fin = [a for a in v if math.isfinite(a)]
            rows.append({"method": label(name), "optimizer": opt, "lr": lr,
                         "final_loss": sum(fin) / len(fin) if fin else math.inf,
                         "diverged": len(v) - len(fin), "seeds": len(v)})
    ctx.table("final_loss", rows, f"Training loss after {cfg.steps} steps (mean over "
              f"{len(seeds)} seeds of the last three logged windows; batch {cfg.batch_size}).")

    def best(name: str) -> list[float]:
        """Per seed, the final loss at the SGD learning rate best on average."""
        lr = min(cfg.lrs, key=lambda r: sum(final[(name, "sgd", r)]))
        return final[(name, "sgd", lr)]

    if ctx.control:
        ctx.note("Control run: WN -> plain and CWN -> plain compare the plain net on seeds "
                 "+ 1000 with the plain net; CWN -> WN compares WN on seeds + 1000 with WN.")
    wn, cwn, plain = ctx.controlled(("wn", "cwn", "plain"), ("plain'", "wn'", "plain"))
    cwn_hi = ctx.controlled("cwn", "plain'")
    ctx.check("wn-faster-than-plain", values=_ratios(best(wn), best(plain)), seeds=seeds,
              detail=f"{label(wn)} / {label(plain)}")
    ctx.check("cwn-at-least-wn", values=_ratios(best(cwn), best("wn")), seeds=seeds,
              detail=f"{label(cwn)} / {label('wn')}")
    top = max(cfg.lrs)
    ctx.check("cwn-stable-at-high-lr",
              values=_ratios(final[(cwn_hi, "sgd", top)], final[(plain, "sgd", top)]),
              seeds=seeds, detail=f"learning rate {top:g}, {label(cwn_hi)} / {label(plain)}")

    fig, axes = plt.subplots(1, len(optims), figsize=(4.2 * len(optims), 3.6), sharey=True)
    for ax, (opt, lr) in zip(axes, optims):
        for name, method, _ in arms:
            steps, losses = curves[(name, opt, lr)]
            if steps:
                ax.plot(steps, losses, label=label(name), lw=1.6,
                        ls="--" if method == "bn" or name.endswith("'") else "-")
        ax.set_title(f"{'SGD' if opt == 'sgd' else 'Adam'}, lr = {lr:g}")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss (log scale)")
    axes[-1].legend(fontsize=8)
    fig.suptitle(f"{len(cfg.widths)} x {cfg.widths[0]} ReLU MLP, batch {cfg.batch_size} "
                 f"(seed {seeds[0]})")
    fig.tight_layout()
    ctx.figure("training_curves", fig,
               "Training loss per step for each variant; lower is faster training. A curve "
               "that stops early diverged.")
