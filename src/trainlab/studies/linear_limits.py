"""``linear-limits``: lecture 001's hard cases for a linear classifier.

Lecture 001, "Hard cases for a linear classifier": XOR quadrants (class 1 = first and third
quadrants), the ring ``1 <= ||x|| <= 2`` and three modes, each against "everything else";
then "Deep layer with nonlinearity". Three models are trained on each set with the same
optimizer and steps:

* ``linear``: ``mlp(2, [], 2)``, one affine map ``x -> W x + b`` (logistic regression);
* ``mlp``: ``mlp(2, [w, w], 2, activation="tanh")``, two hidden tanh layers;
* ``deep linear``: the same depth as ``mlp`` plus one more layer, with the identity as
  activation. A composition of affine maps ``W_L (... (W_1 x + b_1) ...) + b_L`` is the one
  affine map ``W x + b`` with ``W = W_L ... W_1``, so depth without a nonlinearity adds no
  expressive power: its decision boundary is still a line.

Measured: test accuracy of each model on each set over several seeds (mean and std), and, for
the deep linear nets, how far their logits are from those of their collapsed affine map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from trainlab.data.synthetic import quadrants, ring, three_modes
from trainlab.models.builders import mlp
from trainlab.report.figures import pyplot
from trainlab.studies.base import Claim, StudyContext, study

__all__ = ["Config", "best_line_accuracy", "collapse_affine", "run"]

#: The three sets of the lecture, by the label used in figures and tables.
SETS = {"XOR quadrants": quadrants, "ring 1<=|x|<=2": ring, "three modes": three_modes}
MODELS = ("linear", "mlp", "deep linear")


@dataclass(frozen=True)
class Config:
    n_train: int = 1000
    n_test: int = 1000
    width: int = 32
    depth: int = 2           # hidden layers of the MLP; the deep linear net has depth + 1
    steps: int = 500
    batch_size: int = 200
    lr: float = 2e-2         # Adam, the same for all models
    seeds: int = 3
    grid: int = 150          # decision-region raster per axis


def collapse_affine(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The single affine map ``(W, b)`` equal to a stack of Linear layers with identity
    activations: ``W = W_L ... W_1``, ``b = W_L(... (W_2 b_1 + b_2) ...) + b_L``.

    Only ``nn.Linear`` layers are read (in module order); everything else in ``model`` must be
    the identity (``mlp(..., activation="identity", norm="none")``) for the result to equal it.
    """
    w = b = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            mw = m.weight.detach().double()
            mb = m.bias.detach().double() if m.bias is not None else torch.zeros(len(mw)).double()
            w, b = (mw, mb) if w is None else (mw @ w, mw @ b + mb)
    if w is None:
        raise ValueError(f"model has no nn.Linear layer to collapse. Received: {model!r}.")
    return w, b


def best_line_accuracy(x: torch.Tensor, y: torch.Tensor, angles: int = 720) -> float:
    """The best accuracy of any half-plane classifier of 2-D points whose normal is one of
    ``angles`` directions in ``[0, pi)``, over every threshold and both orientations: an
    upper bound (up to the direction grid) for any linear classifier on ``(x, y)``."""
    x, y = x.double(), (y == 1).double()
    t = torch.arange(angles, dtype=torch.float64) * math.pi / angles
    proj = x @ torch.stack([t.cos(), t.sin()])          # (N, angles)
    ys = y[proj.argsort(0)]                              # labels in projection order
    zero = torch.zeros(1, angles, dtype=torch.float64)
    # class 1 above the cut: correct = (class 0 at or below) + (class 1 above)
    below0 = torch.cat([zero, (1 - ys).cumsum(0)])
    above1 = ys.sum(0) - torch.cat([zero, ys.cumsum(0)])
    acc = (below0 + above1) / len(y)
    return max(acc.max().item(), (1 - acc).max().item())


def _build(kind: str, cfg: Config, gen: torch.Generator, deep_activation: str = "identity"
           ) -> nn.Module:
    """``deep_activation``: the deep net's activation (``"tanh"`` in the control run: the
    nonlinearity put back, everything else the same)."""
    init = {"name": "xavier_uniform", "generator": gen}
    if kind == "linear":
        return mlp(2, [], 2, init=init)
    if kind == "mlp":
        return mlp(2, [cfg.width] * cfg.depth, 2, activation="tanh", init=init)
    return mlp(2, [cfg.width] * (cfg.depth + 1), 2, activation=deep_activation, init=init)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(1) == y).double().mean().item()


def _std(v: list[float]) -> float:
    return float(torch.tensor(v, dtype=torch.float64).std(unbiased=False)) if len(v) > 1 else 0.0


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


@study(
    "linear-limits",
    title="Hard cases for a linear classifier: XOR, ring, three modes",
    source="Lecture 001, 'Hard cases for a linear classifier' and 'Deep layer with "
           "nonlinearity' slides",
    summary="A linear classifier, a two-hidden-layer tanh MLP and a deeper net with identity "
            "activations are trained on the lecture's three 2-D sets. The linear model stays "
            "near chance, the MLP separates every set, and the deep linear net is no better "
            "than the linear one: without a nonlinearity, depth collapses to one affine map.",
    scales={
        "test": Config(n_train=200, n_test=200, width=16, steps=100, seeds=3, grid=50),
        "quick": Config(seeds=6),
        "paper": Config(n_train=5000, n_test=5000, width=64, steps=5000, seeds=10, grid=300),
    },
    claims=(
        Claim("linear-fails",
              "A linear classifier fails on each of the three sets",
              quantity="max over sets of the linear model's test accuracy (mean over seeds)",
              op="<", threshold=0.75,
              why="both classes are balanced, so chance is 0.5; a half-plane can at best cut "
                  "off one corner (XOR: 0.625 for the line x1 + x2 = 1 in the limit), one side "
                  "of the ring or one mode: the best half-plane on the quick test sets, by "
                  "exhaustive search, is 0.61-0.69, below 0.75",
              control="linear -> tanh MLP"),
        Claim("mlp-solves",
              "An MLP with a nonlinearity solves each set",
              quantity="min over sets of the MLP's test accuracy (mean over seeds)",
              op=">", threshold=0.95,
              why="the sets are noise-free, so a smooth boundary of a few tanh units "
                  "separates them; 0.95 leaves room for test points within a raster cell of "
                  "the curved boundary",
              control="tanh MLP -> linear classifier"),
        Claim("deep-linear-no-better",
              "A deep linear net is no better than a linear one",
              quantity="max over sets of acc(deep linear) - acc(linear) (mean over seeds, "
                       "paired by seed; one-sided 95% t bound)",
              op="<", threshold=0.03,
              why="the deep linear net computes one affine map, so the best it can do is the "
                  "best line, as the linear model; 0.03 is twice the binomial resolution of "
                  "a 1000-point test accuracy near chance, sqrt(0.25 / 1000) = 0.016: a gain "
                  "the test set cannot tell from two different lines. Six seeds at quick "
                  "(three ran once inside and once outside the bound: the per-seed spread "
                  "of two near-chance lines is about 0.017)",
              control="identity -> tanh in the deep net"),
        Claim("deep-linear-within-best-line",
              "A deep linear net is no better than the best linear classifier",
              quantity="per seed, max over sets of acc(deep linear) - acc(best half-plane) "
                       "(mean over seeds), the best half-plane found by exhaustive search on "
                       "the test set",
              op="<", threshold=0.01,
              why="a composition of affine maps is affine, so its decision region is a "
                  "half-plane and cannot beat the best one; 0.01 (10 test points) covers "
                  "the search's 0.25-degree direction grid",
              control="identity -> tanh in the deep net"),
        Claim("deep-linear-is-affine",
              "The trained deep linear net equals its collapsed single affine map",
              quantity="max |logits(net) - (W x + b)| / max |logits(net)|, W = W_L...W_1",
              op="<", threshold=1e-5,
              why="the identity is exact algebra; only float32 rounding (~1e-7 per layer) "
                  "separates the two (exact: compared as is)",
              control="identity -> tanh in the deep net"),
    ),
    quick_seconds=35,
    data_note="Synthetic 2-D sets generated in trainlab.data.synthetic; no download.",
    reference_note="synthetic 2-D sets of the lecture's slides, no paper setup or number to "
                   "follow: the quick scale is the experiment",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    acc = {(s, m): [] for s in SETS for m in MODELS}
    affine_err: list[float] = []
    shown: dict[tuple[str, str], nn.Module] = {}
    # one data object per set: the runs on a set share it (and so a pack per model kind)
    data = {s: SETS[s](n_train=cfg.n_train, n_test=cfg.n_test, seed=ctx.seed) for s in SETS}
    jobs = [(s, m, k) for s in SETS for m in MODELS for k in range(cfg.seeds)]
    runs = []
    for i, (sname, kind, k) in enumerate(jobs):
        seed = ctx.seed + k
        runs.append(ctx.grid_run(
            _build(kind, cfg, ctx.generator(i), ctx.controlled("identity", "tanh")),
            data[sname],
            label=f"{sname}/{kind}/seed{seed}",
            config={"set": sname, "model": kind, "width": cfg.width, "depth": cfg.depth},
            steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr,
            seed=seed, eval_every=cfg.steps))
    ctx.train_grid(runs)
    for (sname, kind, k), run in zip(jobs, runs):
        ds, model = data[sname], run.model
        model.cpu()  # trained on ctx.device; measured here on the CPU tensors
        acc[(sname, kind)].append(_accuracy(model, ds.x_test, ds.y_test))
        if kind == "deep linear":
            w, b = collapse_affine(model)
            with torch.no_grad():
                net = model(ds.x_test).double()
            affine_err.append(((net - (ds.x_test.double() @ w.T + b)).abs().max()
                               / net.abs().max()).item())
        if k == 0:
            shown[(sname, kind)] = model

    seeds = list(range(ctx.seed, ctx.seed + cfg.seeds))
    if ctx.control:
        ctx.note("Control run: the deep net has tanh activations (the nonlinearity put "
                 "back); linear-fails reads the tanh MLP, mlp-solves the linear classifier.")
    lin_kind = ctx.controlled("linear", "mlp")
    lin = {s: _mean(acc[(s, lin_kind)]) for s in SETS}
    worst = max(lin, key=lin.get)
    ctx.check("linear-fails", values=acc[(worst, lin_kind)], seeds=seeds,
              detail="; ".join(f"{s}: {v:.3f}" for s, v in lin.items()))
    mlp_kind = ctx.controlled("mlp", "linear")
    mm = {s: _mean(acc[(s, mlp_kind)]) for s in SETS}
    hard = min(mm, key=mm.get)
    ctx.check("mlp-solves", values=acc[(hard, mlp_kind)], seeds=seeds,
              detail="; ".join(f"{s}: {v:.3f}" for s, v in mm.items()))
    gaps = {s: [d - li for d, li in zip(acc[(s, "deep linear")], acc[(s, "linear")])]
            for s in SETS}
    big = max(gaps, key=lambda s: _mean(gaps[s]))
    ctx.check("deep-linear-no-better", values=gaps[big], seeds=seeds,
              detail="; ".join(f"{s}: {_mean(v):+.3f}" for s, v in gaps.items()))
    line = {s: best_line_accuracy(data[s].x_test, data[s].y_test) for s in SETS}
    # per seed, the largest excess over the best half-plane among the three sets
    over = [max(acc[(s, "deep linear")][k] - line[s] for s in SETS) for k in range(cfg.seeds)]
    ctx.check("deep-linear-within-best-line", values=over, seeds=seeds,
              detail="; ".join(f"{s}: best line {line[s]:.3f}, deep linear at most "
                               f"{max(acc[(s, 'deep linear')]):.3f}" for s in SETS))
    ctx.check("deep-linear-is-affine", max(affine_err), seeds=seeds, exact=True,
              detail=f"largest over {len(affine_err)} trained deep nets")

    rows = []
    for sname in SETS:
        row = {"set": sname}
        for kind in MODELS:
            v = acc[(sname, kind)]
            row[f"{kind} acc"] = round(_mean(v), 4)
            row[f"{kind} std"] = round(_std(v), 4)
        row["best half-plane acc"] = round(line[sname], 4)
        rows.append(row)
    ctx.table("accuracy", rows, f"Test accuracy on {cfg.n_test} points, mean and std over "
              f"{cfg.seeds} seed(s); chance is 0.5. Last column: the best half-plane on "
              f"the test set (exhaustive search), a bound for any linear classifier.")

    # Decision regions, one row per set, one column per model (seed 0's model).
    fig, axes = plt.subplots(len(SETS), len(MODELS), figsize=(11, 10.5), squeeze=False,
                             layout="constrained")
    for r, sname in enumerate(SETS):
        ds = data[sname]
        lo = ds.x_test.min(0).values - 0.2
        hi = ds.x_test.max(0).values + 0.2
        gx = torch.linspace(lo[0].item(), hi[0].item(), cfg.grid)
        gy = torch.linspace(lo[1].item(), hi[1].item(), cfg.grid)
        xx, yy = torch.meshgrid(gx, gy, indexing="xy")
        pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
        sub = slice(0, min(400, cfg.n_test))
        xs, ys = ds.x_test[sub], ds.y_test[sub]
        for c, kind in enumerate(MODELS):
            ax = axes[r][c]
            model = shown[(sname, kind)]
            with torch.no_grad():
                p = model(pts).softmax(1)[:, 1].reshape(xx.shape)
            im = ax.contourf(xx, yy, p, levels=torch.linspace(0, 1, 11).tolist(),
                             cmap="RdBu_r", alpha=0.75)
            ax.contour(xx, yy, p, levels=[0.5], colors="k", linewidths=1.2)
            for label, marker, color in ((0, "o", "tab:blue"), (1, "^", "tab:red")):
                m = ys == label
                ax.scatter(xs[m, 0], xs[m, 1], s=9, marker=marker, c=color,
                           edgecolors="k", linewidths=0.3,
                           label=f"class {'1 (lecture Class 1)' if label else '0'}")
            ax.set_title(f"{sname} — {kind}\ntest acc {_mean(acc[(sname, kind)]):.3f}",
                         fontsize=10)
            ax.set_xlabel("$x_1$")
            if c == 0:
                ax.set_ylabel("$x_2$")
            ax.set_aspect("equal")
            if r == 0 and c == 0:
                ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    fig.colorbar(im, ax=axes, shrink=0.6, label="P(class 1)")
    fig.suptitle("Decision regions: linear vs tanh MLP vs deep linear (black line: P = 0.5)")
    ctx.figure("decision_regions", fig,
               "The linear and the deep linear models draw one straight boundary and stay near "
               "chance on all three sets; the tanh MLP bends its boundary around the quadrants, "
               "the ring and the modes.")
