"""bn-placement: batch norm before or after the nonlinearity, for ReLU and sigmoid nets.

Lecture 002 ("Batch Normalization — how to use: before or after nonlinear?"): before the
nonlinearity, BN makes a ReLU layer "half activated" (its input is zero-mean, so about half
the units are positive) and keeps a sigmoid out of its saturated region (its input has unit
variance); after it, BN whitens what the next layer sees. The lecture's advice: after for
shallow models, before for deep ones. Here both placements train the same ReLU and sigmoid
MLPs (trainlab's builders: ``placement="before"`` is ``linear → norm → act``, ``"after"`` is
``linear → act → norm``), and the fraction of active ReLU units and of saturated sigmoid
outputs is measured during training on a fixed batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.probes.base import Schedule
from trainlab.probes.batch_stats import ActiveSaturated, AtLogPoints
from trainlab.report.figures import pyplot
from trainlab.studies._training import (
    LN10,
    act_outputs,
    build_mlp,
    classification_data,
    mean_std,
    plot_curves,
)
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

SAT = 0.05  # a sigmoid output within 0.05 of 0 or 1 (derivative < 0.048) counts as saturated


@dataclass(frozen=True)
class Config:
    depth: int = 12  # the lecture's slide: "shallow (layer < 11)", deep from 11 on
    width: int = 128
    steps: int = 600
    lr: float = 0.1
    n_train: int = 4000
    seeds: int = 3


class _Fractions:
    """The pooled fractions (layer ``"model"``) of an :class:`ActiveSaturated` probe, by
    logged step: ``steps``, ``active`` (outputs > 0), ``saturated`` (within ``SAT`` of 0
    or 1)."""

    def __init__(self, probe: ActiveSaturated) -> None:
        rows = [(s, q, v) for s, layer, q, v in probe.records() if layer == "model"]
        self.steps = [s for s, q, _ in rows if q == "out_active"]
        self.active = [v for _, q, v in rows if q == "out_active"]
        self.saturated = [v for _, q, v in rows if q == "out_saturated"]


class ActStats(AtLogPoints):
    """Callback: at each logging point, the fraction of hidden outputs (``*.act``) > 0 (ReLU:
    active) and within ``SAT`` of 0 or 1 (sigmoid: saturated), on the fixed batch ``x``
    (:class:`~trainlab.probes.ActiveSaturated` through :class:`~trainlab.probes.AtLogPoints`),
    without changing training. The study now uses the probe itself; this callback form is
    kept for scripts that import it."""

    def __init__(self, x) -> None:
        super().__init__(ActiveSaturated("*.act", margin=SAT), x)

    @property
    def steps(self) -> list[int]:
        return _Fractions(self.probe).steps

    @property
    def active(self) -> list[float]:
        return _Fractions(self.probe).active

    @property
    def saturated(self) -> list[float]:
        return _Fractions(self.probe).saturated


def _units_in_band(model: torch.nn.Module, x: torch.Tensor, low: float = 0.25,
                   high: float = 0.75) -> float:
    """The share of hidden ReLU units (every ``*.act`` module) whose output is positive on
    between ``low`` and ``high`` of the examples of ``x``, in training mode (BN: the batch's
    own statistics, as the probe sees them during training; :func:`act_outputs` leaves the
    running statistics as they are); the model's mode is restored."""
    was = model.training
    model.train()
    outs = act_outputs(model, x)
    model.train(was)
    p = torch.cat([(o > 0).float().mean(0).flatten() for o in outs])
    return float(((p >= low) & (p <= high)).float().mean())


@study(
    "bn-placement",
    title="Batch norm before or after the nonlinearity (ReLU and sigmoid)",
    source="Lecture 002, 'Batch Normalization — how to use: before or after nonlinear?' "
           "(before: ReLU half activated, sigmoid out of its saturated region)",
    summary="The same deep MLP is trained with BN before and after each ReLU and each "
            "sigmoid, several seeds. Before the nonlinearity BN keeps about half of the ReLU "
            "units active and the sigmoids out of saturation during training; after it, the "
            "nonlinearity sees unnormalized inputs.",
    scales={
        "test": Config(depth=3, width=16, steps=30, n_train=500),
        "quick": Config(),
        "paper": Config(depth=20, width=512, steps=10000, n_train=60000, seeds=5),
    },
    claims=(
        Claim("relu-half-active", "BN before ReLU: about half of the units are active",
              "share of hidden ReLU units active on 25-75% of the fixed batch, BN before, end "
              "of training (training-mode statistics; one value per seed)", ">", 0.9,
              why="BN before the ReLU makes each unit's input zero-mean over the batch (β "
                  "starts at 0 and moves slowly): a unit leaves [25%, 75%] only once |β/γ| > "
                  "0.67 (Gaussian input). Without BN a unit's input has a mean of its own "
                  "(the previous ReLU's outputs are ≥ 0): mean/std ≈ N(0, 0.69²) at He init, "
                  "so only ≈ 67% of the units lie in that band; 0.9 = nearly all. (The "
                  "pooled fraction is ≈ 0.5 for any symmetric init, with or without BN, so "
                  "it could not fail.)",
              control="BN before -> no BN (the plain ReLU net, seeds + 1000)",
              on={"mnist1d": On(SAME, "a derivation, not a property of the data: BN before the "
                  "ReLU makes its input zero-mean whatever the inputs, so about half is "
                  "positive")}),
        Claim("sigmoid-less-saturated", "BN before sigmoid avoids the saturated region",
              "saturated fraction with BN after − with BN before, sigmoid, end of training "
              "(mean over seeds, beyond the spread)", ">", 0.0,
              why="before: the sigmoid's input has unit variance (γ starts at 1); after: "
                  "its input is the raw pre-activation, free to grow",
              control="BN before -> BN after the sigmoid (seeds + 1000)",
              on={"mnist1d": On(SAME, "a pure comparison between two placements on the same data "
                  "(> 0, beyond the spread over seeds)")}),
        Claim("deep-before-better", "For a deep model, before the nonlinearity trains better",
              "final train loss / ln 10, sigmoid, after − before (mean, beyond the spread)",
              ">", 0.0, why="the lecture's advice for deep models (slide 20: 'for shallow "
                            "module, after nonlinear (layer < 11); for deep model, before'): "
                            "the quick depth is 12 hidden layers, deep by the slide's count",
              control="BN before -> BN after the sigmoid (seeds + 1000)",
              on={"mnist1d": On(SAME, "a pure comparison between two placements on the same data "
                  "(> 0, beyond the spread over seeds)")}),
    ),
    quick_seconds=50,
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    data = classification_data(ctx, n_train=cfg.n_train, n_test=1000)
    sizes = (data.x_train.shape[1], *[cfg.width] * cfg.depth, 10)
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    probe_x = data.x_test[:256]
    log_every = max(1, cfg.steps // 20)
    # the whole grid first, then one train_grid; each run carries a hook-based probe, so
    # train_grid trains it alone (the page says so)
    runs, keys, probes = [], [], []
    for act, init in (("relu", "he_normal"), ("sigmoid", "xavier_normal")):
        # the control run (--controls) swaps "before" for "after" on disjoint seeds
        for placement, where, off in (("before", ctx.controlled("before", "after"),
                                       1000 if ctx.control else 0), ("after", "after", 0)):
            for s0 in seeds:
                s = s0 + off
                # the ReLU arm's control removes BN (after the ReLU, BN centres the next
                # layer's input too, so its units stay half active as well)
                norm = "none" if ctx.control and act == "relu" and placement == "before" \
                    else "bn"
                model = build_mlp(sizes, act, init, norm=norm, placement=where, seed=s)
                # every hidden output on the fixed batch, at step 0, at each logged step
                # and at the end, in train mode (BN: the fixed batch's statistics)
                probe = ActiveSaturated("*.act", margin=SAT, probe_data=probe_x,
                                        mode="as_is", every=Schedule(log_every,
                                                                     at=[cfg.steps]))
                runs.append(ctx.grid_run(model, data, label=f"{act}-{where}-seed{s}",
                                         steps=cfg.steps, batch_size=128,
                                         optimizer="momentum", lr=cfg.lr, seed=s,
                                         log_every=log_every, eval_every=cfg.steps,
                                         probes=[probe],
                                         config={"activation": act, "norm": norm,
                                                 "placement": where}))
                keys.append(f"{act}, BN {placement}")
                probes.append(probe)
    hists: dict[str, list] = {k: [] for k in keys}
    stats: dict[str, list] = {k: [] for k in keys}
    banded: dict[str, list] = {k: [] for k in keys}
    for key, h, probe, run_ in zip(keys, ctx.train_grid(runs), probes, runs):
        hists[key].append(h)
        stats[key].append(_Fractions(probe))
        banded[key].append(_units_in_band(run_.model, probe_x) if key.startswith("relu")
                           and h.status == "done" else math.nan)
    ctx.check("relu-half-active", values=banded["relu, BN before"], seeds=seeds,
              detail="BN after the ReLU: " + ", ".join(f"{v:.3f}"
                                                        for v in banded["relu, BN after"]))
    diff = [a.saturated[-1] - b.saturated[-1]
            for a, b in zip(stats["sigmoid, BN after"], stats["sigmoid, BN before"])]
    ctx.check("sigmoid-less-saturated", values=diff, seeds=seeds)

    def final(key: str) -> list[float]:
        return [h.metrics[-1]["train_loss"] / LN10 if h.metrics else math.inf
                for h in hists[key]]
    ctx.check("deep-before-better", values=[a - b for a, b in zip(final("sigmoid, BN after"),
                                                                  final("sigmoid, BN before"))],
              seeds=seeds)
    rows = []
    for key in hists:
        f = mean_std(final(key))
        rows.append({"variant": key, "final loss/ln10": f[0], "std": f[1],
                     "test acc": mean_std([h.metrics[-1].get("test_acc", math.nan)
                                           for h in hists[key]])[0],
                     "active fraction (mean)": mean_std([sum(s.active) / len(s.active)
                                                         for s in stats[key]])[0],
                     "units active on 25-75% (end)": mean_std(banded[key])[0]
                     if key.startswith("relu") else math.nan,
                     "saturated fraction (end)": mean_std([s.saturated[-1]
                                                           for s in stats[key]])[0]})
    ctx.table("placement", rows, f"{cfg.depth} × {cfg.width} MLPs, {cfg.steps} momentum "
              f"steps (lr {cfg.lr}), seeds {seeds}. 'saturated': sigmoid outputs within "
              f"{SAT} of 0 or 1 (only meaningful for sigmoid).")
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.3))
    plot_curves(hists, "train_loss", ax=axes[0], hline=LN10, hline_label="ln 10",
                title="training loss")
    for key, sts in stats.items():
        if key.startswith("relu"):
            axes[1].plot(sts[0].steps, sts[0].active, label=key)
        else:
            axes[2].plot(sts[0].steps, sts[0].saturated, label=key)
    axes[1].axhline(0.5, color="k", ls=":", lw=1)
    axes[1].set(xlabel="training step", ylabel="fraction of ReLU outputs > 0",
                title="ReLU: active units")
    axes[2].set(xlabel="training step", ylabel=f"fraction within {SAT} of 0 or 1",
                title="sigmoid: saturated outputs")
    for ax in axes[1:]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ctx.figure("placement", fig, "Left: training loss for each placement. Middle: with BN "
               "before the ReLU about half of the units stay active (dotted line). Right: with "
               "BN before the sigmoid fewer outputs sit in the saturated region.")
