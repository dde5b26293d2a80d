"""``pretraining``: greedy layer-wise pre-training then fine-tuning vs random initialization.

Lecture 004, Module 7.2 ("Unsupervised pre-training"; Erhan et al. 2010, "Why does
unsupervised pre-training help deep learning?"): a deep sigmoid MLP is trained on a small
training set from a random initialization, or first pre-trained layer by layer as stacked
denoising autoencoders (each layer reconstructs its corrupted input codes, :mod:`trainlab.
pretrain`) and then fine-tuned on the labels with the same optimizer and number of steps.
Two initializations:

* ``naive``: Glorot's "standard" ``U[-1/√fan_in, 1/√fan_in]`` (torch's ``nn.Linear`` default
  and the random init of Erhan et al.), no normalization — the setting where the lecture says
  pre-training made deep nets trainable;
* ``xavier+bn``: Glorot's normalized init with batch normalization before each sigmoid, the
  lecture's "Deep Learning has evolved" answer (Modules 7.4, 7.5).

Measured over several seeds: test error after fine-tuning, its spread over seeds, and the
gain from pre-training under each initialization.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from trainlab.engine.pretraining import pretrain
from trainlab.models.builders import mlp
from trainlab.report.figures import pyplot
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

__all__ = ["Config", "run"]

INITS = {"naive": ("glorot_standard", "none"), "xavier+bn": ("xavier_uniform", "bn")}


@dataclass(frozen=True)
class Config:
    n_train: int = 1000       # a small training set: where pre-training helped most
    n_test: int = 2000
    width: int = 128
    depth: int = 3
    activation: str = "sigmoid"
    method: str = "denoising"
    noise: float = 0.25       # masking noise of the denoising autoencoders
    pretrain_steps: int = 200  # per layer
    pretrain_lr: float = 1e-3  # Adam
    steps: int = 600          # fine-tuning / training steps, the same with and without
    batch_size: int = 64
    lr: float = 0.2           # SGD with momentum 0.9
    seeds: int = 3


def _std(v: list[float]) -> float:
    return statistics.stdev(v) if len(v) > 1 else 0.0


@torch.no_grad()
def _error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    err = (model(x).argmax(1) != y).double().mean().item()
    model.train()
    return err


@study(
    "pretraining",
    title="Greedy layer-wise pre-training vs random initialization of a deep sigmoid MLP",
    source="Lecture 004, Module 7.2 'Unsupervised pre-training'; Erhan, Bengio, Courville, "
           "Manzagol, Vincent & Bengio 2010; Bengio et al. 2007; Vincent et al. 2008",
    summary="A deep sigmoid MLP on a small MNIST training set is trained from a random "
            "initialization, or first pre-trained layer by layer as stacked denoising "
            "autoencoders and then fine-tuned with the same budget, over several seeds. With "
            "the naive init pre-training lowers the test error and its spread over seeds; "
            "with Xavier init and batch normalization the gain shrinks.",
    scales={
        "test": Config(n_train=200, n_test=200, width=16, depth=2,
                       pretrain_steps=5, steps=10, batch_size=32, seeds=2),
        "quick": Config(),
        "paper": Config(n_train=10000, n_test=10000, width=1000, depth=4, pretrain_steps=5000,
                        steps=20000, seeds=10),
    },
    claims=(
        Claim("pretraining-improves-naive",
              "With the naive init, pre-training improves the test error",
              quantity="mean over seeds of test error(random) - test error(pre-trained), "
                       "naive init",
              op=">", threshold=0.0,
              why="Erhan et al. 2010: pre-trained deep nets reach lower test error; with a "
                  "small training set and a fixed budget the pre-trained layers start from "
                  "features of the data instead of saturating random projections (the spread "
                  "is the std over seeds of the paired difference)",
              on={"mnist1d": On(SAME, "random vs pre-trained start of the same net on the "
                                      "same MNIST-1D examples, seeds and budget: the sign of "
                                      "the paired difference is the claim, on any data")}),
        Claim("pretraining-lowers-variance",
              "With the naive init, pre-training lowers the spread of test error over seeds",
              quantity="std over seeds of test error: pre-trained / random, naive init",
              op="<", threshold=1.0,
              why="Erhan et al. 2010 (fig. 4-5) and the lecture: pre-training is 'more robust "
                  "to random initializations', the unsupervised objective pulls every seed "
                  "into the same region of parameter space",
              on={"mnist1d": On(SAME, "a ratio of two spreads measured on the same MNIST-1D "
                                      "test set over the same seeds: below 1 means "
                                      "pre-training narrowed it, on any data")}),
        Claim("gap-shrinks-modern",
              "The gain from pre-training is smaller with Xavier init and batch normalization",
              quantity="gain(xavier+bn) - gain(naive), gain = test error(random) - test "
                       "error(pre-trained)",
              op="<", threshold=0.0,
              why="Xavier init keeps activations and gradients in range and BN standardizes "
                  "each layer's inputs, so random-init training no longer stalls: there is "
                  "less for pre-training to fix (the spread is the std over seeds of the "
                  "paired difference)",
              on={"mnist1d": On(SAME, "a difference of two gains, both measured on the same "
                                      "MNIST-1D examples, seeds and budget: its sign is the "
                                      "claim, on any data")}),
    ),
    quick_seconds=60,
    data_note="MNIST: the first n_train / n_test images; MNIST-1D: the first n_train / n_test "
              "sequences of the embedded generator's split.",
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    ds = ctx.dataset("mnist", fallback="mnist1d", n_train=cfg.n_train, n_test=cfg.n_test)
    in_features = int(torch.tensor(ds.meta.input_shape).prod())
    classes = ds.meta.num_classes
    x_tr, y_tr = ds.x_train.to(ctx.device), ds.y_train.to(ctx.device)
    x_te, y_te = ds.x_test.to(ctx.device), ds.y_test.to(ctx.device)
    variants = [(i, p) for i in INITS for p in (False, True)]
    err: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
    train_err: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
    curves: dict[tuple[str, bool], tuple[list[int], list[float]]] = {}
    pre_curves = None
    jobs = [(i, p, k) for k in range(cfg.seeds) for (i, p) in variants]
    ctx.note("The greedy layer-wise pre-training is a loop of its own (one autoencoder per "
             "layer, each trained on the codes of the layers below) and runs model by model; "
             "the fine-tuning and random-init runs are trained together as one grid.")
    runs = []
    for init, pre, k in ctx.progress(jobs, "pre-training"):
        seed = ctx.seed + k
        scheme, norm = INITS[init]
        torch.manual_seed(seed)
        model = mlp(in_features, [cfg.width] * cfg.depth, classes, activation=cfg.activation,
                    norm=norm, init={"name": scheme, "generator": ctx.generator(1000 + k)})
        label = f"{init}/{'pretrained' if pre else 'random'}/seed{seed}"
        if pre:
            hist = pretrain(model.to(ctx.device), ds, cfg.method, steps=cfg.pretrain_steps,
                            batch_size=cfg.batch_size, lr=cfg.pretrain_lr, noise=cfg.noise,
                            log_every=max(cfg.pretrain_steps // 10, 1), seed=seed)
            if init == "naive" and k == 0:
                pre_curves = hist.pretrain_curves()
        runs.append(ctx.grid_run(
            model, ds, label=label, steps=cfg.steps, batch_size=cfg.batch_size,
            optimizer=("momentum", {"momentum": 0.9}), lr=cfg.lr,
            eval_every=max(cfg.steps // 10, 1), log_every=max(cfg.steps // 10, 1), seed=seed,
            config={"init": scheme, "norm": norm, "pretrain": cfg.method if pre else None,
                    "width": cfg.width, "depth": cfg.depth}))
    for (init, pre, k), run, h in zip(jobs, runs, ctx.train_grid(runs)):
        model = run.model
        err[(init, pre)].append(_error(model, x_te, y_te))
        train_err[(init, pre)].append(_error(model, x_tr, y_tr))
        if k == 0:
            curves[(init, pre)] = h.series("test_acc")

    def gain(init: str) -> list[float]:
        return [a - b for a, b in zip(err[(init, False)], err[(init, True)])]

    rows = []
    for init, pre in variants:
        e = err[(init, pre)]
        rows.append({"init": init, "pre-training": cfg.method if pre else "none",
                     "test error (mean)": statistics.mean(e), "test error (std)": _std(e),
                     "train error (mean)": statistics.mean(train_err[(init, pre)]),
                     "per seed": " ".join(f"{v:.3f}" for v in e)})
    ctx.table("test_error", rows, f"Test error after {cfg.steps} training steps, "
              f"{cfg.seeds} seeds, {cfg.n_train} training examples; pre-training: "
              f"{cfg.pretrain_steps} steps per layer.")

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{i}\n{'pre-trained' if p else 'random'}" for i, p in variants]
    for j, v in enumerate(variants):
        e = err[v]
        ax[0].scatter([j] * len(e), e, color="C1" if v[1] else "C0", alpha=0.7, zorder=3)
        ax[0].errorbar(j + 0.15, statistics.mean(e), yerr=_std(e), fmt="s", color="k",
                       capsize=4, zorder=4)
    ax[0].set_xticks(range(len(variants)), labels)
    ax[0].set_ylabel("test error")
    ax[0].set_title("Test error per seed (dots) and mean ± std (squares)")
    ax[0].grid(True, alpha=0.3)
    for v, (steps, acc) in curves.items():
        ax[1].plot(steps, [1 - a for a in acc], marker=".",
                   linestyle="-" if v[1] else "--", color="C1" if v[0] == "naive" else "C2",
                   label=f"{v[0]}, {'pre-trained' if v[1] else 'random'}")
    ax[1].set_xlabel("fine-tuning step")
    ax[1].set_ylabel("test error")
    ax[1].set_title(f"Test error during training (seed {ctx.seed})")
    ax[1].legend()
    ax[1].grid(True, alpha=0.3)
    ctx.figure("test_error", fig, "Pre-training lowers the naive-init test error and tightens "
               "the seeds; with Xavier + BN both starts end closer together.")

    if pre_curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for layer, (steps, values) in pre_curves.items():
            ax.plot(steps, values, marker=".", label=layer)
        ax.set_xlabel("pre-training step of the layer")
        ax.set_ylabel("clean reconstruction loss (MSE)")
        ax.set_yscale("log")
        ax.set_title(f"Greedy layer-wise pre-training ({cfg.method}, naive init)")
        ax.legend(title="layer")
        ax.grid(True, alpha=0.3)
        ctx.figure("pretraining_curves", fig, "Each layer in turn learns to reconstruct its "
                   "(corrupted) input codes: the reconstruction loss falls layer after layer.")

    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    g_naive, g_modern = gain("naive"), gain("xavier+bn")
    ctx.check("pretraining-improves-naive", statistics.mean(g_naive), spread=_std(g_naive),
              seeds=seeds, detail=f"per seed: {', '.join(f'{v:+.3f}' for v in g_naive)}")
    s_rand, s_pre = _std(err[("naive", False)]), _std(err[("naive", True)])
    ctx.check("pretraining-lowers-variance", s_pre / s_rand if s_rand > 0 else float("inf"),
              seeds=seeds, detail=f"std random {s_rand:.4f}, pre-trained {s_pre:.4f}")
    diff = [a - b for a, b in zip(g_modern, g_naive)]
    ctx.check("gap-shrinks-modern", statistics.mean(diff), spread=_std(diff), seeds=seeds,
              detail=f"gain naive {statistics.mean(g_naive):+.3f}, xavier+bn "
                     f"{statistics.mean(g_modern):+.3f}")
