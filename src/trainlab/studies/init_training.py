"""init-training: lecture 004's MNIST runs — how the initial weight scale decides the start.

Lecture 004 ("Weight initialization") trains a net of 3 hidden tanh layers with
cross-entropy and mini-batch gradient descent (batch 256) from four initializations and
shows the loss curves: ``0.01·N(0, 1)`` sits on a plateau for the first iterations (the
signal and the gradients are ~0.01·√n per layer too small), ``N(0, 1)`` saturates the tanh
units (``|h| ≈ 1``, derivative ≈ 0) and descends slowly and noisily, Xavier (tanh) and He
(the same net with ReLU) descend fast. Several seeds each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.data.base import Dataset
from trainlab.report.figures import pyplot
from trainlab.studies._training import (
    LN10,
    act_outputs,
    build_mlp,
    classification_data,
    mean_std,
    mlp_run,
    plot_curves,
    value_at,
)
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

#: label -> (activation, init spec)
CASES = {
    "0.01·N(0,1)": ("tanh", ("normal", {"std": 0.01})),
    "N(0,1)": ("tanh", ("normal", {"std": 1.0})),
    "Xavier (tanh)": ("tanh", ("xavier_normal", {})),
    "He (ReLU)": ("relu", ("he_normal", {})),
}
COLORS = {"0.01·N(0,1)": "tab:gray", "N(0,1)": "tab:orange", "Xavier (tanh)": "tab:blue",
          "He (ReLU)": "tab:red"}
SATURATED = 0.95  # |tanh| above this: derivative below 0.1


@dataclass(frozen=True)
class Config:
    width: int = 256
    steps: int = 500
    early: int = 50
    lr: float = 0.1
    n_train: int = 10000
    seeds: int = 3


@study(
    "init-training",
    title="Training from four initial weight scales: plateau, saturation, fast descent",
    source="Lecture 004, 'Weight initialization' (MNIST, 3 hidden tanh layers, cross-entropy, "
           "mini-batch GD with batch 256; inits 0.01·N(0,1), N(0,1), Xavier, He)",
    summary="The same 3-hidden-layer net is trained with plain mini-batch gradient descent "
            "from four initializations, several seeds each. Tiny weights leave the loss on the "
            "ln 10 plateau for the first tens of steps, unit-variance weights saturate every "
            "tanh unit and learn slowly, Xavier (tanh) and He (ReLU) descend at once.",
    scales={
        "test": Config(width=32, steps=40, early=10, n_train=1000, seeds=1),
        "quick": Config(),
        "paper": Config(width=1024, steps=5000, early=100, n_train=60000, seeds=5),
    },
    claims=(
        Claim("small-plateau", "0.01·N(0,1): the loss is flat for the first tens of "
              "iterations", "train loss / ln 10 at the early step (mean over seeds)", ">",
              0.97, why="each layer scales the signal by 0.01·√width ≈ 0.16: the logits are "
                        "≈ 0 and their gradient w.r.t. the lower layers ≈ 0",
              on={"mnist1d": On(SAME, "a derivation from the widths and weight scale (0.01·√width "
                  "per layer), not the data; ln 10 is the uniform guess on MNIST-1D too")}),
        Claim("unit-saturates", "N(0,1): the tanh units saturate",
              "fraction of hidden tanh outputs with |h| > 0.95 at init, N(0,1)", ">", 0.5,
              why="pre-activations of std ≈ √width ≈ 16 put tanh at ±1",
              on={"mnist1d": On(SAME, "at init, on standardized inputs (either dataset): "
                  "pre-activations of std ≈ √fan_in saturate tanh whatever the data")}),
        Claim("unit-slow", "N(0,1) learns slowly, behind Xavier",
              "final train loss, N(0,1) − Xavier (mean over seeds, beyond the spread)", ">",
              0.0, why="saturated units pass ≈ no gradient (1 − h² ≈ 0)",
              on={"mnist1d": On(SAME, "a pure comparison between two inits on the same data (> 0, "
                  "beyond the spread over seeds)")}),
        Claim("xavier-fast", "Xavier descends fast", "train loss / ln 10 at the early step, "
              "Xavier (mean over seeds)", "<", 0.8,
              why="unit-variance signal forward and backward: useful gradients from step 1",
              on={"mnist1d": On(None, "how far the loss falls in the first steps depends on how "
                  "hard the data are; no published early-training loss on MNIST-1D (harder than "
                  "MNIST: an MLP reaches 68%, Greydanus 2020) sets a threshold")}),
        Claim("he-fast", "He (ReLU) descends fast", "train loss / ln 10 at the early step, He",
              "<", 0.8, why="the same for ReLU with Var(W) = 2/n",
              on={"mnist1d": On(None, "as for xavier-fast: no published early-training loss on "
                  "MNIST-1D")}),
    ),
    quick_seconds=60,
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    data = classification_data(ctx, n_train=cfg.n_train, n_test=2000)
    x = data.x_train
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-3)

    data = Dataset((x - mu) / sd, data.y_train, (data.x_test - mu) / sd, data.y_test,
                   data.meta)  # standardized inputs, as any of these setups assumes
    sizes = (x.shape[1], cfg.width, cfg.width, cfg.width, 10)
    seeds = [ctx.seed + k for k in range(cfg.seeds)]

    # saturation at init (N(0,1)), one forward pass on 512 examples
    model = build_mlp(sizes, "tanh", CASES["N(0,1)"][1], seed=ctx.seed)
    acts = act_outputs(model, data.x_train[:512])
    sat = float(torch.cat([(a.abs() > SATURATED).float().mean(0) for a in acts]).mean())
    ctx.check("unit-saturates", sat)

    jobs = [(label, act, init, s) for label, (act, init) in CASES.items() for s in seeds]
    runs = [mlp_run(ctx, data, f"{init[0]}-{init[1].get('std', '')}-{act}-seed{s}".replace(
                "--", "-"), sizes, act, init, seed=s, steps=cfg.steps, batch_size=256,
                optimizer="sgd", lr=cfg.lr, log_every=max(1, cfg.early // 5),
                config={"init_label": label}) for label, act, init, s in jobs]
    hists: dict[str, list] = {k: [] for k in CASES}
    for (label, *_), h in zip(jobs, ctx.train_grid(runs)):
        hists[label].append(h)

    def at(label: str, step: int) -> tuple[float, float]:
        return mean_std([value_at(h, step) / LN10 for h in hists[label]])

    rows = []
    for label in CASES:
        e, es = at(label, cfg.early)
        f, fs = mean_std([h.metrics[-1]["train_loss"] for h in hists[label]])
        acc = mean_std([h.metrics[-1].get("test_acc", math.nan) for h in hists[label]])[0]
        rows.append({"init": label, f"loss/ln10 at step {cfg.early}": e, "std": es,
                     "final train loss": f, "final std": fs, "test acc": acc})
    ctx.table("losses", rows, f"Loss over ln 10 at step {cfg.early} and at the end "
              f"({cfg.steps} steps of mini-batch GD, lr {cfg.lr}, batch 256), seeds {seeds}.")
    m, s = at("0.01·N(0,1)", cfg.early)
    ctx.check("small-plateau", m, spread=s, seeds=seeds)
    diffs = [a.metrics[-1]["train_loss"] - b.metrics[-1]["train_loss"]
             for a, b in zip(hists["N(0,1)"], hists["Xavier (tanh)"])]
    m, s = mean_std(diffs)
    ctx.check("unit-slow", m, spread=s, seeds=seeds)
    m, s = at("Xavier (tanh)", cfg.early)
    ctx.check("xavier-fast", m, spread=s, seeds=seeds)
    m, s = at("He (ReLU)", cfg.early)
    ctx.check("he-fast", m, spread=s, seeds=seeds)

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.3))
    plot_curves(hists, "train_loss", ax=axes[0], colors=COLORS, hline=LN10,
                hline_label="ln 10", title=f"{data.meta.name}: training loss per init")
    axes[0].axvline(cfg.early, color="k", ls=":", lw=1)
    plot_curves(hists, "train_loss", ax=axes[1], colors=COLORS, logy=True,
                title="the same, log scale")
    ctx.figure("loss_curves", fig, "0.01·N(0,1) (grey) stays on the ln 10 plateau at first, "
               "N(0,1) (orange) starts saturated and lags, Xavier (blue) and He (red) descend "
               "from the first steps; the dotted line marks the early step of the claims.")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    vals = torch.cat([a.flatten() for a in acts]).clamp(-1, 1).numpy()
    ax.hist(vals, bins=60, color="tab:orange")
    ax.set_xlabel("tanh output h at init, N(0,1) weights (all hidden layers)")
    ax.set_ylabel("count")
    ax.set_title(f"{sat:.0%} of units have |h| > {SATURATED}")
    ctx.figure("saturation", fig, "With N(0, 1) weights almost every tanh output is at ±1 "
               "before training: the units are saturated and pass almost no gradient.")
