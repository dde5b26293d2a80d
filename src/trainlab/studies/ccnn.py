"""Study ``ccnn``: the convexified CNN against the CNN of the same depth (lecture 000).

Lecture 000, "Convexified CNN: MNIST" and "Monotonically decreasing training objective"
(Zhang, Liang & Wainwright 2017, Table 1 and Figure 4): CCNN-1 and CCNN-2 reach lower test
error than CNN-1 and CNN-2 trained by backpropagation (2.38 % vs 3.37 %, 1.38 % vs 2.11 % on
MNIST-basic), their training objective decreases monotonically (each layer is a convex
problem solved by projected SGD), and the nuclear-norm constraint makes the parameter
matrix nearly low-rank, which is what lets a few filters be recovered from it.

Setup: :class:`trainlab.engine.ccnn.CCNN` with one or two layers (5x5 patches, RBF random Fourier
features, 2x2 average pooling, 16 filters passed on), against ``Conv(5x5, 16) - ReLU -
AvgPool(2)`` blocks (one or two) and a linear classifier, trained with Adam through the
Trainer. CCNN-1 is the first stage of CCNN-2 (layer-wise training makes them the same
computation), so one fit gives both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from trainlab.engine.ccnn import CCNN, CCNNLayer
from trainlab.report.figures import pyplot
from trainlab.studies.base import SAME, Claim, On, StudyContext, study


@dataclass(frozen=True)
class Config:
    n_train: int = 1000
    n_test: int = 1000
    features: int = 200        # random features per patch, layer 1
    features2: int = 200       # layer 2
    radius: float = 25.0       # nuclear-norm bound R, layer 1
    radius2: float = 60.0      # layer 2 (2.5 R as the authors' 200 / 500)
    filters: int = 16          # r: filters recovered, and the CNN's channels
    epochs: int = 30           # projected-SGD epochs per CCNN layer
    cnn_epochs: int = 30       # backprop epochs of each CNN
    cnn_lr: float = 1e-3       # Adam
    seeds: int = 3


#: Why 'matches' is 1.6 pp on Shapeset-3x2: the MNIST rule (within ~1.4 binomial standard
#: errors on 1000 test images) at the error Glorot & Bengio 2010 (Table 1) report for deep
#: nets on Shapeset-3x2, ~16 %: 1.4 * sqrt(0.16 * 0.84 / 1000) = 1.6 pp.
_SHAPESET_MATCH = ("'matches' by the MNIST rule, within ~1.4 binomial standard errors on 1000 "
                   "test images, at the ~16 % test error Glorot & Bengio 2010 (Table 1) report "
                   "on Shapeset-3x2: 1.4 * sqrt(0.16 * 0.84 / 1000) = 1.6 pp; no paper "
                   "compares CCNN and CNN on Shapeset")


def _cnn(depth: int, filters: int, in_shape: tuple[int, int, int], classes: int) -> nn.Module:
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(c if i == 0 else filters, filters, 5), nn.ReLU(), nn.AvgPool2d(2)]
        h, w = (h - 4) // 2, (w - 4) // 2
    layers += [nn.Flatten(), nn.Linear(filters * h * w, classes)]
    return nn.Sequential(*layers)


def _ccnn(cfg: Config, seed: int, device: torch.device) -> CCNN:
    common = dict(patch=5, pool=2, rank=cfg.filters, epochs=cfg.epochs, batch_size=50,
                  project_every=10, average="epoch")
    return CCNN([
        CCNNLayer(features=cfg.features, gamma=0.2, radius=cfg.radius, lr=0.2, **common),
        CCNNLayer(features=cfg.features2, gamma=2.0, radius=cfg.radius2, lr=1.0, **common),
    ], device=device, seed=seed)


def _mean_std(v: list[float]) -> tuple[float, float | None]:
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, None
    return m, math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1))


def _plain_ticks(ax, *axes: str, subs: tuple[float, ...] = (1.0, 2.0, 5.0)) -> None:
    """Plain-number tick labels on log axes (the default mathtext labels are slow to draw)."""
    from matplotlib import ticker

    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(ticker.NullFormatter())


def _top_share(s: list[float], r: int) -> float:
    return float(sum(s[:r]) / max(sum(s), 1e-30))


@study(
    "ccnn",
    title="Convexified CNN vs the CNN of the same depth",
    source="Lecture 000, 'Convexified CNN: MNIST' and 'Monotonically decreasing training "
           "objective'; Zhang, Liang & Wainwright 2017, Table 1 and Figure 4",
    summary="Trains a 1- and 2-layer convexified CNN (random-feature RBF kernel on patches, "
            "nuclear-norm-constrained multinomial logistic regression solved by projected SGD, "
            "filters recovered by SVD, layer-wise) and CNNs of the same depth by "
            "backpropagation on an MNIST subset; compares test errors, the monotone decrease "
            "of CCNN's objective and the singular spectrum of its parameter matrices.",
    scales={
        "test": Config(n_train=60, n_test=30, features=16, features2=16, filters=4, epochs=2,
                       cnn_epochs=1),
        "quick": Config(),
        "paper": Config(n_train=10000, n_test=10000, features=500, features2=1000,
                        radius=200.0, radius2=500.0, epochs=50, cnn_epochs=50, seeds=3),
    },
    claims=(
        Claim("objective-monotone",
              "CCNN's training objective decreases monotonically (paper, Figure 4)",
              quantity="largest rise of the training objective (averaged iterate) from one "
                       "epoch to the next, relative to the earlier value, over both layers and "
                       "all seeds",
              op="<=", threshold=0.0,
              why="each layer is a convex problem solved by projected SGD with averaged "
                  "iterates; a monotone curve has no rise at all",
              on={"shapeset": On(SAME, "convexity of each layer's problem does not depend on "
                                       "the images: a monotone curve has no rise on any "
                                       "data")}),
        Claim("ccnn1-matches-cnn1",
              "CCNN-1 matches or beats CNN-1 trained by backpropagation (paper: 2.38 % vs "
              "3.37 %)",
              quantity="test error of CCNN-1 minus test error of CNN-1 (percentage points, "
                       "mean over seeds)",
              op="<=", threshold=1.0,
              why="'matches' = within about 1.4 binomial standard errors (0.7 pp for a ~5 % "
                  "error on 1000 test images); the paper has CCNN-1 1 pp better",
              on={"shapeset": On(1.6, _SHAPESET_MATCH)}),
        Claim("ccnn2-matches-cnn2",
              "CCNN-2 matches or beats CNN-2 trained by backpropagation (paper: 1.38 % vs "
              "2.11 %)",
              quantity="test error of CCNN-2 minus test error of CNN-2 (percentage points, "
                       "mean over seeds)",
              op="<=", threshold=1.0,
              why="as for one layer; the paper has CCNN-2 0.7 pp better",
              on={"shapeset": On(1.6, _SHAPESET_MATCH)}),
        Claim("low-rank-spectrum",
              "The nuclear-norm constraint gives CCNN's parameter matrix a fast-decaying "
              "singular spectrum (a few filters carry it)",
              quantity="share of the nuclear norm of layer 1's parameter matrix held by its "
                       "top r = filters singular values (mean over seeds)",
              op=">=", threshold=0.8,
              why="a matrix of the same shape without structure (Gaussian) puts about 15 % "
                  "there (computed in the run, table 'spectrum'); rank <= r would give 100 %",
              on={"shapeset": On(SAME, "both ends of the scale are properties of the matrix, "
                                       "not of the images: rank <= r gives 100 %, a "
                                       "structureless matrix of the same shape a small share "
                                       "(computed in the run for Shapeset's shape, table "
                                       "'spectrum'); 0.8 separates them on any data")}),
    ),
    quick_seconds=240,
    data_note="MNIST subset (first n_train training and n_test test images); Shapeset-3x2: "
              "the embedded generated images (32x32, 9 classes).",
    datasets=("mnist", "shapeset"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    ds = ctx.dataset("mnist", fallback="shapeset", n_train=cfg.n_train, n_test=cfg.n_test)
    dev = ctx.device
    x, y = ds.x_train.to(dev), ds.y_train.to(dev).long()
    xt, yt = ds.x_test.to(dev), ds.y_test.to(dev).long()
    classes = ds.num_classes
    seeds = [ctx.seed + k for k in range(cfg.seeds)]

    err: dict[str, list[float]] = {"ccnn1": [], "ccnn2": [], "cnn1": [], "cnn2": []}
    train_err: dict[str, list[float]] = {k: [] for k in err}
    rises: list[float] = []
    shares: list[list[float]] = [[], []]
    curves: dict[str, list[tuple[list[int], list[float]]]] = {
        "obj0": [], "obj1": [], "ccnn1": [], "ccnn2": [], "cnn1": [], "cnn2": []}
    spectra: list[list[float]] = []
    shapes: list[tuple[int, int]] = []
    seconds: dict[str, list[float]] = {k: [] for k in err}
    ctx.note("CCNN trains with its own layer-wise projected-SGD loop (engine.ccnn), not the "
             "Trainer, so its fits run one seed after another outside train_grid"
             + ("; the CNNs are packed." if len(seeds) > 1 else "."))
    for s in ctx.progress(seeds, "seeds"):
        net = _ccnn(cfg, s, dev)
        hist = net.fit(x, y, xt, yt, num_classes=classes)
        for li, key in ((0, "ccnn1"), (1, "ccnn2")):
            obj = hist.series("objective", li)
            rises.append(max((b - a) / a for a, b in zip(obj, obj[1:])) if len(obj) > 1
                         else -math.inf)
            epochs = [int(e) for e in hist.series("epoch", li)]
            curves[f"obj{li}"].append((epochs, obj))
            curves[key].append((epochs, hist.series("test_error", li)))
            err[key].append(hist.series("test_error", li)[-1])
            train_err[key].append(hist.series("train_error", li)[-1])
            seconds[key].append(hist.series("seconds", li)[-1])
            sv = hist.singular_values[li]
            shares[li].append(_top_share(sv, cfg.filters))
            if s == seeds[0]:
                spectra.append(sv)
                w = net.layers[li].weight
                shapes.append((w.shape[0] * w.shape[1], w.shape[2]))
    # the CNNs of every seed and depth first, then one train_grid (one data object: the
    # seeds of a depth share a pack)
    cnn_data = (x, y, xt, yt)
    runs, keys = [], []
    for s in seeds:
        for depth in (1, 2):
            key = f"cnn{depth}"
            torch.manual_seed(s)
            model = _cnn(depth, cfg.filters, tuple(x.shape[1:]), classes)
            runs.append(ctx.grid_run(model, cnn_data, label=f"{key}-seed{s}", seed=s,
                                     epochs=cfg.cnn_epochs, batch_size=50, optimizer="adam",
                                     lr=cfg.cnn_lr,
                                     config={"depth": depth, "filters": cfg.filters}))
            keys.append(key)
    for key, run_, h in zip(keys, runs, ctx.train_grid(runs)):
        model = run_.model
        rows = [r for r in h.metrics if r.get("test_acc") is not None]
        curves[key].append(([int(r["epoch"]) for r in rows],
                            [1.0 - float(r["test_acc"]) for r in rows]))
        err[key].append(1.0 - float(rows[-1]["test_acc"]))
        with torch.no_grad():
            model.eval()
            train_err[key].append(float((model(x).argmax(1) != y).float().mean()))
        seconds[key].append(float(h.last("time")))

    # A structureless matrix of the same shape, for the spectrum's context.
    g = ctx.generator(99)
    rand_share = []
    rand_spectra = []
    for (m, d) in shapes:
        sv = torch.linalg.svdvals(torch.randn(m, d, generator=g)).tolist()
        rand_share.append(_top_share(sv, cfg.filters))
        rand_spectra.append(sv)

    # -- tables --------------------------------------------------------------------------
    names = {"ccnn1": "CCNN-1", "cnn1": "CNN-1 (ReLU, backprop)",
             "ccnn2": "CCNN-2", "cnn2": "CNN-2 (ReLU, backprop)"}
    rows = []
    for key in ("ccnn1", "cnn1", "ccnn2", "cnn2"):
        m, sd = _mean_std(err[key])
        rows.append({"model": names[key], "depth": int(key[-1]),
                     "test_error_%": round(100 * m, 2),
                     "test_error_std_%": None if sd is None else round(100 * sd, 2),
                     "train_error_%": round(100 * _mean_std(train_err[key])[0], 2),
                     "train_seconds": round(_mean_std(seconds[key])[0], 1),
                     "seeds": len(err[key])})
    ctx.table("errors", rows, f"Test error on {ds.name} ({cfg.n_train} training, {cfg.n_test} "
              "test images); paper (MNIST-basic, 10k training): CCNN-1 2.38 %, CNN-1 3.37 %, "
              "CCNN-2 1.38 %, CNN-2 2.11 %."
              + (" train_seconds of a CNN: the wall time of the pack that trained the seeds of "
                 "its depth together." if len(seeds) > 1 else ""))
    spec_rows = []
    for li in range(len(spectra)):
        spec_rows.append({"layer": li + 1, "matrix": f"{shapes[li][0]} x {shapes[li][1]}",
                          "nuclear_norm": round(sum(spectra[li]), 4),
                          "top_r_share": round(_mean_std(shares[li])[0], 4),
                          "gaussian_top_r_share": round(rand_share[li], 4),
                          "s1/s_r": round(spectra[li][0] / max(spectra[li][cfg.filters - 1],
                                                               1e-30), 2)})
    ctx.table("spectrum", spec_rows, f"Singular spectrum of the parameter matrices (first "
              f"seed): share of the nuclear norm in the top r = {cfg.filters}, against a "
              "Gaussian matrix of the same shape.")

    # -- figures -------------------------------------------------------------------------
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for li, color in ((0, "tab:blue"), (1, "tab:orange")):
        for k, (ep, obj) in enumerate(curves[f"obj{li}"]):
            axes[0].plot(ep, obj, marker="o", ms=3, color=color,
                         label=f"CCNN layer {li + 1}" if k == 0 else None)
    axes[0].set_xlabel("epoch of projected SGD")
    axes[0].set_ylabel("training objective (mean cross-entropy)")
    axes[0].set_yscale("log")
    _plain_ticks(axes[0], "y")
    axes[0].set_title("CCNN objective per layer")
    axes[0].legend()
    styles = {"ccnn1": ("tab:blue", "-"), "cnn1": ("tab:blue", "--"),
              "ccnn2": ("tab:orange", "-"), "cnn2": ("tab:orange", "--")}
    for key, (color, ls) in styles.items():
        for k, (ep, e) in enumerate(curves[key]):
            axes[1].plot(ep, [100 * v for v in e], color=color, ls=ls, marker="o", ms=3,
                         label=names[key] if k == 0 else None)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("test error (%)")
    axes[1].set_yscale("log")
    _plain_ticks(axes[1], "y")
    axes[1].set_title("Test error: CCNN (solid) vs CNN (dashed)")
    axes[1].legend()
    ctx.figure("training", fig, "Left: CCNN's objective falls at every epoch in both layers; "
               "right: test error of CCNN (solid) and the CNN of equal depth (dashed).")

    fig, ax = plt.subplots(figsize=(6, 4))
    for li, color in ((0, "tab:blue"), (1, "tab:orange")):
        sv = torch.tensor(spectra[li])
        # Values the projection set to zero (float32 rounding leaves ~1e-8) sit at 1e-6.
        ax.plot(range(1, len(sv) + 1), (sv / sv[0]).clamp_min(1e-6).tolist(), color=color,
                label=f"CCNN layer {li + 1}")
        rv = torch.tensor(rand_spectra[li])
        ax.plot(range(1, len(rv) + 1), (rv / rv[0]).tolist(), color=color, ls=":",
                label=f"Gaussian matrix, same shape as layer {li + 1}")
    ax.axvline(cfg.filters, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_ticks(ax, "x")
    lowest = min(min(v / max(sp[0], 1e-30) for v in sp) for sp in spectra + rand_spectra)
    _plain_ticks(ax, "y", subs=(1.0,) if lowest < 1e-2 else (1.0, 2.0, 5.0))
    ax.set_xlabel("index of the singular value")
    ax.set_ylabel("singular value / largest")
    ax.set_title("Singular spectrum of CCNN's parameter matrices")
    ax.legend(fontsize=8)
    ctx.figure("spectrum", fig, "CCNN's singular values (solid) fall off after the first few "
               f"(grey line: r = {cfg.filters} filters) and the projection sets the tail to "
               "zero (drawn at 1e-6), unlike a structureless matrix (dotted).")

    # -- claims --------------------------------------------------------------------------
    ctx.check("objective-monotone", max(rises), seeds=seeds,
              detail=f"{len(rises)} objective curves, {cfg.epochs} epochs each")
    for depth in (1, 2):
        diff = [100 * (a - b) for a, b in zip(err[f"ccnn{depth}"], err[f"cnn{depth}"])]
        m, sd = _mean_std(diff)
        ctx.check(f"ccnn{depth}-matches-cnn{depth}", m, spread=sd, seeds=seeds,
                  detail=f"CCNN-{depth} {100 * _mean_std(err[f'ccnn{depth}'])[0]:.2f} %, "
                         f"CNN-{depth} {100 * _mean_std(err[f'cnn{depth}'])[0]:.2f} %")
    m, sd = _mean_std(shares[0])
    ctx.check("low-rank-spectrum", m, spread=sd, seeds=seeds,
              detail=f"Gaussian matrix of the same shape: {rand_share[0]:.3f}")
