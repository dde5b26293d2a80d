"""Study ``fixup``: a deep residual network without normalization (Zhang, Dauphin & Ma 2019).

Lectures 001/002 cite "Fixup Initialization: Residual Learning Without Normalization". The
paper's claim (§3-4, fig. 2 and Table 1): a deep residual network without normalization
trained at the learning rate its BatchNorm version uses explodes or fails to train from the
standard (He) initialization, while Fixup — the last layer of each residual branch and the
classifier at 0, the other branch layers scaled by ``L^(-1/(2m-2))``, scalar biases and
multipliers — trains it (and, after full training, reaches about the BatchNorm network's
accuracy; the quick scale is too short to show that and says so in a note).

Setup: trainlab's pre-activation ResNet (``preact_resnet``, depth ``6n + 2``) on MNIST-1D
signals laid out as 1x40 images (so the conv net runs on a CPU), SGD with momentum at one
learning rate for three nets: with BN (He init), without BN (He init: the "default" init of
ResNets), without BN under Fixup. Also the signal at init: the std of the residual stream
after the last block over the first, without BN, He vs Fixup, against the mean-field
prediction (the variance doubles per block under He init: an exponent of 1 below).

The layout. With zero padding a 3x3 convolution on a 1-row image reads the signal with its
middle kernel row only (the other two see the padding): its output variance is 3/9 of what
He init assumes, so every conv shrinks the signal by 3 and the He net's stream barely grows
(2.25× over 27 blocks, against the mean-field 2^13). Every convolution here therefore uses
circular padding: on the 1-row image all three kernel rows read the signal row, the conv is a
width-3 1-D convolution whose taps are sums of three weights, and its output variance is the
9c·Var(W)·E[x²] He init is derived for (the signal's two ends wrap, as on a ring).

Control (``--controls``): He ↔ Fixup without BN (at init and in training, the training arms
on seeds + 1000), and BN → none (the He net without BN, seeds + 1000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainlab.init import fixup_scale, init_model
from trainlab.models import preact_resnet
from trainlab.report.figures import pyplot
from trainlab.studies.base import Claim, StudyContext, study

NETS = ("bn", "no-bn-he", "no-bn-fixup")
#: the net each arm trains in the control run
SWAP = {"bn": "no-bn-he", "no-bn-he": "no-bn-fixup", "no-bn-fixup": "no-bn-he"}
CONTROL_INIT = "He <-> Fixup without BN (the training arms on seeds + 1000)"
CONTROL_BN = "BN -> none (the He net without BN, on seeds + 1000)"


@dataclass(frozen=True)
class Config:
    depth: int = 56            # 27 residual blocks: He init without BN stalls at lr 0.1
    widths: tuple[int, ...] = (8, 16, 32)
    n_train: int = 4000
    n_test: int = 1000
    steps: int = 300
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    seeds: int = 3


def _data(ctx: StudyContext, cfg: Config) -> tuple[Any, ...]:
    """MNIST-1D signals as ``(N, 1, 1, 40)`` images: the 3x3 convolutions of
    ``preact_resnet`` then act as 1-D convolutions of width 3 (their other rows see the zero
    padding), so a conv ResNet runs on a CPU in seconds per hundred steps."""
    ds = ctx.dataset("mnist1d", n_train=cfg.n_train, n_test=cfg.n_test)
    xtr = ds.x_train.float().reshape(len(ds.x_train), 1, 1, -1)
    xte = ds.x_test.float().reshape(len(ds.x_test), 1, 1, -1)
    return xtr, ds.y_train, xte, ds.y_test, ds.meta.num_classes


def _net(cfg: Config, kind: str, classes: int, channels: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = preact_resnet(cfg.depth, out_features=classes, in_channels=channels,
                      widths=cfg.widths, norm="bn" if kind == "bn" else "none")
    for mod in m.modules():  # the 1-row layout: see the module docstring
        if isinstance(mod, nn.Conv2d) and mod.padding != (0, 0):
            mod.padding_mode = "circular"
    if kind == "no-bn-fixup":
        init_model(m, "fixup", generator=seed)
    else:
        init_model(m, "he_normal", generator=seed)
    return m


def _stream(m: nn.Module, x: torch.Tensor) -> list[tuple[bool, float, float]]:
    """Per block at init: (identity shortcut?, std of its input, std of its output)."""
    got: list[tuple[bool, float, float]] = []

    def hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        got.append((not mod.projects, float(args[0].detach().double().std()),
                    float(out.detach().double().std())))  # returns None: output unchanged

    hs = [getattr(m, f"block{i}").register_forward_hook(hook)
          for i in range(1, m.num_blocks + 1)]
    with torch.no_grad():
        m(x)
    for h in hs:
        h.remove()
    return got


@study(
    "fixup",
    title="Fixup: a deep residual net trains without normalization",
    source="Lectures 001/002, 'Fixup Initialization'; Zhang, Dauphin & Ma 2019, §3 and "
           "Table 1",
    summary="Trains a pre-activation ResNet on MNIST-1D at one learning rate with BN, "
            "without BN from He init, and without BN under Fixup (branch ends and classifier "
            "at 0, branch layers scaled by L^(-1/(2m-2)), scalar biases and multipliers).",
    scales={
        "test": Config(depth=20, widths=(4, 8), n_train=256, n_test=128, steps=60,
                       batch_size=32, seeds=3),
        "quick": Config(),
        "paper": Config(depth=110, widths=(16, 32, 64), n_train=4000, n_test=1000,
                        steps=20000, batch_size=128, seeds=3),
    },
    claims=(
        Claim("he-blows-up-at-init",
              "Without normalization, He init makes the residual stream grow with depth",
              quantity="per seed, log2(std(stream after the last block) / std(after the "
                       "first)) / ((B − 1)/2), He, no BN (B blocks): the growth exponent "
                       "over the mean-field one",
              op=">", threshold=0.5,
              why="each block adds a branch of the stream's variance: Var doubles per block "
                  "(Zhang et al. §2), so the mean-field exponent is 1 (2^13 in std over 27 "
                  "blocks); > 0.5: at least the square root of that growth (was 'ratio > 2' "
                  "against a measured 2.25); one-sided 95% t bound over seeds",
              control=CONTROL_INIT),
        Claim("fixup-identity-at-init",
              "Under Fixup every residual block with an identity shortcut starts as the "
              "identity",
              quantity="max over identity-shortcut blocks of |std(output) / std(input) − 1|, "
                       "Fixup", op="<", threshold=1e-3,
              why="the last layer of each branch is 0, so such a block returns its input (a "
                  "projection block returns its 1x1 projection): exact, up to float rounding",
              control=CONTROL_INIT),
        Claim("no-bn-fails",
              "Without BN, at the BN net's learning rate, He init diverges or stalls",
              quantity="per seed, test accuracy of no-BN He (chance if it diverged) − chance",
              op="<", threshold=0.1,
              why="the paper: without normalization the standard init explodes at lr 0.1; "
                  "0.1 = chance again above chance",
              control=CONTROL_INIT),
        Claim("fixup-trains",
              "Under Fixup the same net trains at that learning rate",
              quantity="per seed, test accuracy of no-BN Fixup − no-BN He", op=">",
              threshold=0.1,
              why="Fixup keeps each update's effect on the output O(lr) whatever the depth; "
                  "0.1 as no-bn-fails",
              control=CONTROL_INIT),
        Claim("bn-trains",
              "The BN version trains at that learning rate (it is the BN net's rate)",
              quantity="per seed, test accuracy of BN − chance", op=">", threshold=0.3,
              why="He et al.'s ResNets with BN train at lr 0.1; far above chance here (0.3 "
                  "above chance: half of Greydanus 2020's 94% CNN on MNIST-1D, minus chance)",
              control=CONTROL_BN),
    ),
    quick_seconds=200,
    data_note="MNIST-1D (embedded) as 1x40 images; the paper used CIFAR-10 and ImageNet.",
    datasets=("mnist1d",),
    reference_note="the paper's nets (ResNet-110 on CIFAR-10, ResNet-50 on ImageNet) need data "
                   "that are not on this machine; the ResNet on MNIST-1D is a stand-in with no "
                   "paper number to anchor",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    xtr, ytr, xte, yte, classes = _data(ctx, cfg)
    chance = 1.0 / classes
    probe = xtr[:64]

    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    if ctx.control:
        ctx.note(f"Control run: {CONTROL_INIT}; {CONTROL_BN}.")

    def used(kind: str) -> str:
        return SWAP[kind] if ctx.control else kind

    # at init: the residual stream, He vs Fixup, without BN, one draw per seed
    exponents, identity_dev, stream_rows = [], 0.0, []
    for s in seeds:
        he = _net(cfg, used("no-bn-he"), classes, xtr.shape[1], s)
        fx = _net(cfg, used("no-bn-fixup"), classes, xtr.shape[1], s)
        s_he, s_fx = _stream(he, probe), _stream(fx, probe)
        blocks = he.num_blocks
        exponents.append(math.log2(s_he[-1][2] / s_he[0][2]) / ((blocks - 1) / 2))
        identity_dev = max(identity_dev, max(abs(o / i - 1.0) for ident, i, o in s_fx
                                             if ident))
        stream_rows += [{"seed": s, "block": k + 1, "identity_shortcut": a[0],
                         "std_in_he": a[1], "std_out_he": a[2], "std_in_fixup": b[1],
                         "std_out_fixup": b[2]} for k, (a, b) in enumerate(zip(s_he, s_fx))]
    ctx.check("he-blows-up-at-init", values=exponents, seeds=seeds,
              detail=f"{blocks} residual blocks: mean-field std ratio 2^{(blocks - 1) / 2:g}")
    ctx.check("fixup-identity-at-init", identity_dev, exact=True,
              detail=f"L = {blocks} branches of m = 2 layers: factor "
                     f"{fixup_scale(blocks, 2):.4g}; max over {len(seeds)} seeds")
    ctx.table("stream_at_init", stream_rows,
              "Std of each block's input and output at init, without BN: He vs Fixup.")

    data = (xtr, ytr, xte, yte)  # one object: the runs of a net share a pack
    jobs = [(kind, s) for kind in NETS for s in seeds]
    off = 1000 if ctx.control else 0  # the control's arms on seeds disjoint from the baseline
    runs = [ctx.grid_run(_net(cfg, used(kind), classes, xtr.shape[1], s + off), data,
                         label=f"{kind}-seed{s}", steps=cfg.steps, batch_size=cfg.batch_size,
                         optimizer="sgd", lr=cfg.lr,
                         optimizer_kwargs={"momentum": cfg.momentum},
                         eval_every=max(1, cfg.steps // 5), log_every=max(1, cfg.steps // 15),
                         seed=s + off, config={"net": kind, "net_used": used(kind),
                                               "depth": cfg.depth})
            for kind, s in jobs]
    acc: dict[str, list[float]] = {k: [] for k in NETS}
    curves: dict[str, tuple[list[int], list[float]]] = {}
    status: dict[str, list[str]] = {k: [] for k in NETS}
    for (kind, s), h in zip(jobs, ctx.train_grid(runs)):
        a = chance if h.status == "diverged" else h.final().get("test_acc", chance)
        acc[kind].append(float(a))
        status[kind].append(h.status)
        if s == seeds[0]:
            curves[kind] = h.series("train_loss")
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    rows = [{"net": k, "net_used": used(k), "test_acc": mean[k],
             "per_seed": " ".join(f"{a:.3f}" for a in acc[k]),
             "status": ",".join(status[k]), "seeds": len(acc[k]), "lr": cfg.lr,
             "depth": cfg.depth} for k in NETS]
    ctx.table("accuracy", rows, f"Test accuracy after {cfg.steps} SGD steps at lr {cfg.lr} "
              "(a diverged run counts as chance).")
    ctx.check("no-bn-fails", values=[a - chance for a in acc["no-bn-he"]], seeds=seeds,
              detail=f"status {','.join(status['no-bn-he'])}")
    ctx.check("fixup-trains", values=[a - b for a, b in zip(acc["no-bn-fixup"],
                                                             acc["no-bn-he"])], seeds=seeds)
    ctx.check("bn-trains", values=[a - chance for a in acc["bn"]], seeds=seeds)
    ctx.note(f"Fixup vs BN after {cfg.steps} steps: {mean['no-bn-fixup']:.3f} vs "
             f"{mean['bn']:.3f} test accuracy. The paper's parity with BN is after full "
             "training (200 epochs); this quick run shows only that Fixup trains where He "
             "init does not. The paper also trains Fixup's scalar biases and multipliers at "
             "a tenth of the learning rate (its training code); here every parameter has lr "
             f"{cfg.lr}.")

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for kind, (st, vals) in curves.items():
        finite = [(a, b) for a, b in zip(st, vals) if math.isfinite(b)]
        if finite:
            ax.plot(*zip(*finite), label=f"{kind} ({status[kind][0]})")
    ax.axhline(math.log(classes), color="grey", ls=":", label="chance loss")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(f"pre-activation ResNet-{cfg.depth}, lr {cfg.lr}")
    ax.legend(fontsize=8)
    ctx.figure("training", fig, "Without BN, He init diverges or stalls at the BN net's "
               "learning rate; under Fixup the same net trains, more slowly than with BN at "
               "first.")
