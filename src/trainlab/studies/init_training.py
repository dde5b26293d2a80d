"""init-training: lecture 004's MNIST runs — how the initial weight scale decides the start.

Lecture 004 ("Weight initialization") trains a net of 3 hidden tanh layers with
cross-entropy and mini-batch gradient descent (batch 256) from four initializations and
shows the loss curves: ``0.01·N(0, 1)`` sits on a plateau for the first iterations (the
signal and the gradients are ~0.01·√n per layer too small), ``N(0, 1)`` saturates the tanh
units (``|h| ≈ 1``, derivative ≈ 0) and descends slowly and noisily, Xavier (tanh) and He
(the same net with ReLU) descend fast. Several seeds each.

Verdicts: every claim is decided by the one-sided 95% Student t bound over per-seed values
(3 seeds at every scale; the saturation at init is measured on each seed's own N(0,1) net).
Controls (``--controls``): 0.01·N(0,1) -> Xavier for small-plateau, N(0,1) -> Xavier for
unit-saturates, N(0,1) -> Xavier on seeds + 1000 (Xavier against Xavier) for unit-slow,
Xavier -> 0.01·N(0,1) for xavier-fast and He -> 0.01·N(0,1) (the same ReLU net) for he-fast;
each must FAIL. The lecture's "first 35 iterations" of the 0.01·N(0,1) plateau is the
anchor: the first logged step where the loss leaves 0.97·ln 10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.data.base import Dataset
from trainlab.nn.activations import TANH_SATURATION
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
#: the registry's saturation rule, |tanh| >= 0.97 (derivative <= 0.059), the one every probe
#: applies (was |h| > 0.95 with no source)
SATURATED = TANH_SATURATION
#: control only: the runs a control reads besides CASES
CONTROL_CASES = {
    "Xavier (tanh), seeds + 1000": ("tanh", ("xavier_normal", {})),
    "0.01·N(0,1) (ReLU)": ("relu", ("normal", {"std": 0.01})),
}
PLATEAU = 0.97  # small-plateau's threshold: the loss within 3% of ln 10


@dataclass(frozen=True)
class Config:
    width: int = 256
    steps: int = 500
    early: int = 50
    lr: float = 0.1
    n_train: int = 10000
    seeds: int = 3
    log_every: int = 0  # 0: early // 5


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
        "test": Config(width=32, steps=40, early=10, n_train=1000, seeds=3),
        "quick": Config(),
        # the lecture's net on all of MNIST (its slide code draws 500 × 500 weights: width
        # 500), batch 256, 500 steps = 2.1 epochs (the lecture gives no run length, only
        # that the plateau ends at iteration 35: the claims look at step 50); logged every 5
        # steps for the plateau's length
        "reference": Config(width=500, steps=500, early=50, n_train=60000, seeds=3,
                            log_every=5),
        "paper": Config(width=1024, steps=5000, early=100, n_train=60000, seeds=5),
    },
    claims=(
        Claim("small-plateau", "0.01·N(0,1): the loss is flat for the first tens of "
              "iterations", "train loss / ln 10 at the early step (mean over seeds)", ">",
              0.97, why="each layer scales the signal by 0.01·√width ≈ 0.16: the logits are "
                        "≈ 0 and their gradient w.r.t. the lower layers ≈ 0; the lecture: "
                        "'for the first 35 iterations the loss (almost) remains constant', "
                        "0.97 = within 3% of ln 10",
              control="0.01·N(0,1) -> Xavier (tanh)",
              on={"mnist1d": On(SAME, "a derivation from the widths and weight scale (0.01·√width "
                  "per layer), not the data; ln 10 is the uniform guess on MNIST-1D too")}),
        Claim("unit-saturates", "N(0,1): the tanh units saturate",
              f"fraction of hidden tanh outputs with |h| >= {TANH_SATURATION:g} (the "
              "registry's rule) at init, N(0,1), per seed on 512 training examples", ">", 0.5,
              why="pre-activations of std ≈ √width ≈ 16 put tanh at ±1 (|s| > 2.09 for about "
                  "90% of them); 'saturate' = most units; Xavier keeps the pre-activations "
                  "at std ≈ 1 (a few % saturated)",
              control="N(0,1) -> Xavier (tanh)",
              on={"mnist1d": On(SAME, "at init, on standardized inputs (either dataset): "
                  "pre-activations of std ≈ √fan_in saturate tanh whatever the data")}),
        Claim("unit-slow", "N(0,1) learns slowly, behind Xavier",
              "final train loss, N(0,1) − Xavier, per seed (t bound over seeds)", ">",
              0.0, why="saturated units pass ≈ no gradient (1 − h² ≈ 0); > 0: the sign of "
                       "a difference, decided by the t bound",
              control="N(0,1) -> Xavier on seeds + 1000 (Xavier against Xavier)",
              on={"mnist1d": On(SAME, "a pure comparison between two inits on the same data (> 0, "
                  "beyond the spread over seeds)")}),
        Claim("xavier-fast", "Xavier descends fast", "train loss / ln 10 at the early step, "
              "Xavier (mean over seeds)", "<", 0.8,
              why="unit-variance signal forward and backward: useful gradients from step 1; "
                  "0.8 = a fifth of the plateau's loss gone by the early step",
              control="Xavier -> 0.01·N(0,1) (tanh)",
              on={"mnist1d": On(None, "how far the loss falls in the first steps depends on how "
                  "hard the data are; no published early-training loss on MNIST-1D (harder than "
                  "MNIST: an MLP reaches 68%, Greydanus 2020) sets a threshold")}),
        Claim("he-fast", "He (ReLU) descends fast", "train loss / ln 10 at the early step, He",
              "<", 0.8, why="the same for ReLU with Var(W) = 2/n; 0.8 as for xavier-fast",
              control="He -> 0.01·N(0,1) (the same ReLU net)",
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

    c = ctx.controlled
    # saturation at init, one forward pass on 512 examples, each seed's own net
    sat_case = c("N(0,1)", "Xavier (tanh)")
    sats, acts = [], None
    for s in seeds:
        model = build_mlp(sizes, "tanh", CASES[sat_case][1], seed=s)
        a_s = act_outputs(model, data.x_train[:512])
        sats.append(float(torch.cat([(a.abs() >= SATURATED).float().mean(0)
                                     for a in a_s]).mean()))
        if acts is None:
            acts = a_s
    ctx.check("unit-saturates", values=sats, seeds=seeds,
              detail=f"{sat_case} init" if ctx.control else "")
    sat = sum(sats) / len(sats)

    cases = dict(CASES, **(CONTROL_CASES if ctx.control else {}))
    jobs = [(label, act, init, s + 1000 if "seeds + 1000" in label else s)
            for label, (act, init) in cases.items() for s in seeds]
    log_every = cfg.log_every or max(1, cfg.early // 5)
    runs = [mlp_run(ctx, data, f"{init[0]}-{init[1].get('std', '')}-{act}-seed{s}".replace(
                "--", "-"), sizes, act, init, seed=s, steps=cfg.steps, batch_size=256,
                optimizer="sgd", lr=cfg.lr, log_every=log_every,
                config={"init_label": label}) for label, act, init, s in jobs]
    hists: dict[str, list] = {k: [] for k in cases}
    for (label, *_), h in zip(jobs, ctx.train_grid(runs)):
        hists[label].append(h)

    def early(label: str) -> list[float]:
        return [value_at(h, cfg.early) / LN10 for h in hists[label]]

    def at(label: str, step: int) -> tuple[float, float]:
        return mean_std([value_at(h, step) / LN10 for h in hists[label]])

    def plateau_end(h) -> float:
        """The first logged step where the loss is below PLATEAU·ln 10 (nan: never)."""
        for row in h.metrics:
            if "train_loss" in row and row["train_loss"] < PLATEAU * LN10:
                return float(row["step"])
        return math.nan

    rows = []
    for label in CASES:
        e, es = at(label, cfg.early)
        f, fs = mean_std([h.metrics[-1]["train_loss"] for h in hists[label]])
        acc = mean_std([h.metrics[-1].get("test_acc", math.nan) for h in hists[label]])[0]
        rows.append({"init": label, f"loss/ln10 at step {cfg.early}": e, "std": es,
                     "final train loss": f, "final std": fs, "test acc": acc,
                     f"first step below {PLATEAU}·ln10": mean_std(
                         [plateau_end(h) for h in hists[label]])[0]})
    ctx.table("losses", rows, f"Loss over ln 10 at step {cfg.early} and at the end "
              f"({cfg.steps} steps of mini-batch GD, lr {cfg.lr}, batch 256), and the first "
              f"logged step (every {log_every}) where the loss leaves the plateau, seeds "
              f"{seeds}.")
    if ctx.control:
        ctx.note("Control run: small-plateau reads Xavier, unit-saturates Xavier, unit-slow "
                 "Xavier against Xavier on seeds + 1000, xavier-fast 0.01·N(0,1) (tanh), "
                 "he-fast 0.01·N(0,1) (ReLU).")
    ctx.check("small-plateau", values=early(c("0.01·N(0,1)", "Xavier (tanh)")), seeds=seeds)
    slow = c("N(0,1)", "Xavier (tanh), seeds + 1000")
    diffs = [a.metrics[-1]["train_loss"] - b.metrics[-1]["train_loss"]
             for a, b in zip(hists[slow], hists["Xavier (tanh)"])]
    ctx.check("unit-slow", values=diffs, seeds=seeds,
              detail=f"{slow} − Xavier (tanh)" if ctx.control else "")
    ctx.check("xavier-fast", values=early(c("Xavier (tanh)", "0.01·N(0,1)")), seeds=seeds)
    ctx.check("he-fast", values=early(c("He (ReLU)", "0.01·N(0,1) (ReLU)")), seeds=seeds)
    if not ctx.control:
        ends = [plateau_end(h) for h in hists["0.01·N(0,1)"]]
        if all(math.isfinite(e) for e in ends):
            ctx.anchor("iterations on the ln 10 plateau, 0.01·N(0,1) (first logged step "
                       f"below {PLATEAU}·ln 10)", paper=35,
                       source="Lecture 004, Module 7.4 ('for the first 35 iterations, the "
                              "loss (almost) remains constant')", values=ends,
                       same_setup=False,
                       differences=(f"width {cfg.width} (the lecture's slide code: 500), "
                                    if cfg.width != 500 else "") +
                                   f"plain SGD at lr {cfg.lr} (the lecture's lr is not given), "
                                   f"{data.meta.name} with {len(data.x_train)} training "
                                   f"examples, logged every {log_every} steps")
        else:
            ctx.note("The 0.01·N(0,1) loss did not leave the plateau within the run on every "
                     "seed: no plateau length to put beside the lecture's 35 iterations.")

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.3))
    shown = {k: hists[k] for k in CASES}
    plot_curves(shown, "train_loss", ax=axes[0], colors=COLORS, hline=LN10,
                hline_label="ln 10", title=f"{data.meta.name}: training loss per init")
    axes[0].axvline(cfg.early, color="k", ls=":", lw=1)
    plot_curves(shown, "train_loss", ax=axes[1], colors=COLORS, logy=True,
                title="the same, log scale")
    ctx.figure("loss_curves", fig, "0.01·N(0,1) (grey) stays on the ln 10 plateau at first, "
               "N(0,1) (orange) starts saturated and lags, Xavier (blue) and He (red) descend "
               "from the first steps; the dotted line marks the early step of the claims.")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    vals = torch.cat([a.flatten() for a in acts]).clamp(-1, 1).numpy()
    ax.hist(vals, bins=60, color="tab:orange")
    ax.set_xlabel(f"tanh output h at init, {sat_case} weights (all hidden layers, seed "
                  f"{seeds[0]})")
    ax.set_ylabel("count")
    ax.set_title(f"{sat:.0%} of units have |h| >= {SATURATED:g} (mean over seeds)")
    ctx.figure("saturation", fig, "With N(0, 1) weights almost every tanh output is at ±1 "
               "before training: the units are saturated and pass almost no gradient.")
