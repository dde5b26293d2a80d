"""Study ``norm-prop``: normalization propagation needs no data pass and no batch.

Lecture 002, slide 27 ("Norm-propagation: target BN's drawback — can not be used for online
learning, unstable for small mini-batch size; data independent parametric estimate of mean
and variance"); Arpit, Zhou, Kota & Govindaraju 2016. A deep ReLU MLP with NormProp is probed
at initialization on whitened inputs (no data pass has touched it) and trained online,
one example per step, where batch normalization cannot compute its statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.data.preprocess import PCA
from trainlab.nn import mlp
from trainlab.report.figures import pyplot
from trainlab.studies.base import SAME, Claim, On, StudyContext, study


@dataclass(frozen=True)
class Config:
    components: int = 100
    n_fit: int = 20000
    width: int = 256
    depth: int = 8
    n_probe: int = 2048
    online_steps: int = 3000
    lr: float = 0.01
    n_test: int = 5000
    log_every: int = 100


def _whitened(ctx: StudyContext, k: int, n_fit: int):
    """Train and test inputs PCA-whitened with the training statistics (``k`` components):
    zero mean and identity covariance, the input NormProp's derivation assumes."""

    ds = ctx.dataset("mnist", fallback="mnist1d")
    xtr = ds.x_train.reshape(len(ds.x_train), -1).float()
    xte = ds.x_test.reshape(len(ds.x_test), -1).float()
    n = min(k, xtr.shape[1])
    pca = PCA(n_components=n, whiten=True).fit(xtr[:n_fit])
    what = (f"MNIST images flattened to {xtr.shape[1]} pixels" if ctx.uses("mnist") else
            f"MNIST-1D signals ({xtr.shape[1]} values each)")
    ctx.note(f"Setup: {what}, PCA-whitened to {n} components"
             f"{' (all of them)' if n == xtr.shape[1] else ''} with the statistics of the "
             f"first {min(n_fit, len(xtr))} training examples; test inputs get the same map.")
    return pca.transform(xtr), ds.y_train, pca.transform(xte), ds.y_test


def _layer_stats(model: torch.nn.Module, x: torch.Tensor, depth: int) -> list[tuple[float, float]]:
    """(mean, std) over units and examples of each block's output."""
    out, h = [], x
    with torch.no_grad():
        h = model.flatten(h)
        for i in range(1, depth + 1):
            h = model.get_submodule(f"block{i}")(h)
            out.append((float(h.mean()), float(h.std())))
    return out


@study(
    "norm-prop",
    title="Normalization propagation: unit activations at init with no data, training at "
          "batch size 1",
    source="Lecture 002, slide 27 'Norm-propagation (2016, ICML)'; Arpit et al. 2016",
    summary="A deep ReLU MLP with normalization propagation (weight rows normalized, ReLU "
            "outputs standardized with the closed-form mean 1/sqrt(2 pi) and variance "
            "1/2 - 1/(2 pi)) keeps every layer's activations near zero mean and unit variance "
            "at initialization without seeing any data, and trains online at batch size 1, "
            "where batch normalization cannot compute batch statistics.",
    scales={
        "test": Config(components=20, n_fit=1000, width=32, depth=3, n_probe=256, online_steps=40,
                       n_test=200, log_every=10),
        "quick": Config(),
        "paper": Config(n_fit=60000, width=1024, depth=10, online_steps=60000, n_test=10000),
    },
    claims=(
        Claim("init-mean-near-0",
              "At initialization, with no data pass, every layer's activations have mean "
              "near 0",
              quantity="max over layers of |mean of the layer's output| (whitened training "
                       "inputs, no data pass before)",
              op="<", threshold=0.1,
              why="subtracting E[ReLU(z)] = 1/sqrt(2 pi) centres a unit Gaussian's ReLU "
                  "exactly; the residue comes from correlated inputs and non-orthogonal rows",
              on={"mnist1d": On(SAME, "a closed-form derivation that assumes only whitened "
                                      "inputs, which MNIST-1D's are after the same PCA "
                                      "whitening")}),
        Claim("init-std-near-1",
              "At initialization every layer's activations have standard deviation near 1",
              quantity="max over layers of |std of the layer's output - 1|",
              op="<", threshold=0.2,
              why="W_i x / ||W_i|| has unit variance for whitened input (Arpit et al.'s "
                  "assumption); dividing by sqrt(1/2 - 1/(2 pi)) restores it after the ReLU; "
                  "non-orthogonal random rows leave correlations that add up with depth",
              on={"mnist1d": On(SAME, "the same derivation from whitened inputs; it does "
                                      "not involve the data beyond their whitening")}),
        Claim("trains-at-batch-1",
              "NormProp trains online, one example per step",
              quantity="test accuracy after online SGD (batch size 1)",
              op=">", threshold=0.8,
              why="well above chance (0.1): a few thousand single-example steps suffice for "
                  "an MLP on MNIST when the signal propagates",
              on={"mnist1d": On(0.32, "well above chance (0.1): what a linear model "
                                      "reaches on MNIST-1D (Greydanus 2020: logistic "
                                      "regression 32%, an MLP 68%); a net whose signal "
                                      "propagates learns at least that much")}),
        Claim("bn-refuses-batch-1",
              "Batch normalization cannot train at batch size 1",
              quantity="1 if a BN network's training step at batch size 1 raises, else 0",
              op=">=", threshold=1.0,
              why="one value per channel has no batch variance (Ioffe & Szegedy 2015)",
              on={"mnist1d": On(SAME, "a property of batch normalization at batch size 1, "
                                      "whatever the data")}),
    ),
    quick_seconds=40,
    datasets=("mnist", "mnist1d"),
    data_note="MNIST flattened and PCA-whitened to 100 components, or MNIST-1D's 40 values "
              "PCA-whitened (all 40 components): zero mean and identity covariance, as "
              "NormProp's derivation assumes.",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()


    xtr, ytr, xte, yte = _whitened(ctx, cfg.components, cfg.n_fit)
    d = xtr.shape[1]
    probe = xtr[: cfg.n_probe]  # NormProp never sees these: its statistics are closed-form
    widths = [cfg.width] * cfg.depth
    variants = {
        "NormProp": lambda: mlp(d, widths, 10, norm="normprop"),
        "plain, torch default init": lambda: mlp(d, widths, 10),
        "plain, He init": lambda: mlp(d, widths, 10, init="he_normal"),
    }
    stats = {}
    for name, build in variants.items():
        torch.manual_seed(ctx.seed)
        stats[name] = _layer_stats(build(), probe, cfg.depth)
    rows = [{"variant": n, "layer": i + 1, "mean": m, "std": s}
            for n, st in stats.items() for i, (m, s) in enumerate(st)]
    ctx.table("init_stats", rows, f"Per-layer mean and std of the block outputs at "
              f"initialization ({len(probe)} whitened training inputs, no data pass).")
    npst = stats["NormProp"]
    ctx.check("init-mean-near-0", max(abs(m) for m, _ in npst))
    ctx.check("init-std-near-1", max(abs(s - 1) for _, s in npst))

    # online training: NormProp at batch size 1
    torch.manual_seed(ctx.seed)
    model = mlp(d, widths[:3], 10, norm="normprop")
    ctx.note("The online run (NormProp at batch size 1) is the study's only training run: no "
             "other run shares a pack with it, so it trains alone with the Trainer.")
    hist = ctx.train_grid([ctx.grid_run(model, (xtr, ytr), label="normprop-batch1",
                                        steps=cfg.online_steps, batch_size=1, lr=cfg.lr,
                                        log_every=cfg.log_every)])[0]
    model.eval()
    with torch.no_grad():
        acc = float((model(xte[: cfg.n_test]).argmax(1) == yte[: cfg.n_test]).float().mean())
    ctx.check("trains-at-batch-1", acc, detail=f"{cfg.online_steps} steps of one example, "
              f"SGD lr {cfg.lr:g}, 3 x {cfg.width} blocks")

    # batch normalization at batch size 1
    torch.manual_seed(ctx.seed)
    bn = mlp(d, widths[:3], 10, norm="bn")
    try:
        torch.nn.functional.cross_entropy(bn(xtr[:1]), ytr[:1]).backward()
        refused, message = 0.0, "no error"
    except ValueError as e:
        refused, message = 1.0, str(e).split(". ")[0]
    ctx.check("bn-refuses-batch-1", refused, detail=message)
    ctx.table("batch1", [{"model": "NormProp", "batch size": 1, "test accuracy": acc},
                         {"model": "BN", "batch size": 1,
                          "test accuracy": "cannot train: " + message}],
              "Online training (one example per step).")

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    layers = list(range(1, cfg.depth + 1))
    for name, st in stats.items():
        axes[0].plot(layers, [m for m, _ in st], "o-", label=name)
        axes[1].plot(layers, [s for _, s in st], "o-", label=name)
    axes[0].axhline(0, color="k", lw=0.6)
    axes[1].axhline(1, color="k", lw=0.6)
    axes[0].set(xlabel="layer", ylabel="mean of block output", title="mean at init")
    axes[1].set(xlabel="layer", ylabel="std of block output (log)", title="std at init",
                yscale="log")
    axes[1].legend(fontsize=8)
    steps, losses = hist.series("train_loss")
    axes[2].plot(steps, losses, color="C0")
    axes[2].axhline(math.log(10), color="gray", ls=":", label="chance (ln 10)")
    axes[2].set(xlabel="step (one example each)", ylabel="training loss (window mean)",
                title=f"NormProp at batch size 1: test acc {acc:.3f}")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    ctx.figure("normprop", fig,
               "Left and middle: NormProp's layers stay at mean 0 and std 1 at init while the "
               "plain nets' scale drifts; right: NormProp learns one example at a time.")
