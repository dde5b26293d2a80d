"""bn-train-eval: batch statistics in training, running averages at test time, and folding.

Lecture 001 ("Batch normalization: at test time") makes three points about BN that users
trip over: (1) in training mode an example's output depends on the other examples of its
batch, in eval mode it does not (the running averages replace the batch statistics); (2) the
classic bug — evaluating a trained net in training mode — makes test predictions depend on
the test batch, and with small batches the accuracy drops (batch size 1 cannot even be
normalized); (3) at test time BN is a fixed affine map that folds into the preceding
Linear layer: identical outputs, one operation less. This study trains one BN MLP and
measures each point, with :func:`trainlab.nn.fold.fold_bn` for (3).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from trainlab.nn.fold import fold_bn
from trainlab.nn.norms import BatchNorm
from trainlab.report.figures import pyplot
from trainlab.studies._training import build_mlp, classification_data
from trainlab.studies.base import SAME, Claim, On, StudyContext, study


@dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = (0, 256, 256, 256, 10)  # 0: the data's input size
    steps: int = 600
    n_train: int = 4000
    small_batches: tuple[int, ...] = (2, 4, 8, 32, 256)
    timing_repeats: int = 30
    seeds: int = 3


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int,
              train_mode: bool) -> float:
    model.train(train_mode)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x) - batch + 1, batch):  # full batches only (BN needs >1)
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    model.eval()
    n = (len(x) // batch) * batch
    return correct / max(n, 1)


def _first_bn_input(model: torch.nn.Module, x: torch.Tensor
                    ) -> tuple[str, BatchNorm, torch.Tensor]:
    """The first BN of ``model`` (its name, the module) and its input on ``x`` (eval mode)."""
    name, bn = next((n, m) for n, m in model.named_modules() if isinstance(m, BatchNorm))
    captured: list[torch.Tensor] = []
    hook = bn.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach()))
    with torch.no_grad():
        model.eval()
        model(x)
    hook.remove()
    return name, bn, captured[0]


def _time_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of one eval forward pass of ``x``."""
    model.eval()
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


@study(
    "bn-train-eval",
    title="Batch norm in training vs at test time, the train-mode evaluation bug, and folding",
    source="Lecture 001, 'Batch normalization: at test time' (running averages; 'can be fused "
           "with the previous fully-connected or conv layer'); Ioffe & Szegedy 2015, §3.1",
    summary="One MLP with BN before each ReLU is trained; then the same test example is put in "
            "two different batches (its output changes in training mode, not in eval mode), "
            "the test set is evaluated in training mode with small batches (the classic bug: "
            "the accuracy falls as the batch shrinks), the running averages are compared with "
            "the population statistics, and BN is folded into the preceding Linear layers "
            "(same outputs, faster inference).",
    scales={
        "test": Config(sizes=(0, 32, 32, 10), steps=40, n_train=500, small_batches=(2, 32),
                       timing_repeats=5),
        "quick": Config(),
        "paper": Config(sizes=(0, 1024, 1024, 1024, 10), steps=5000, n_train=60000,
                        seeds=5),
    },
    claims=(
        Claim("eval-batch-independent", "In eval mode an example's output does not depend on "
              "its batch", "max |Δ logits| of one example put in two different batches, eval "
              "mode, largest over the seeds' nets (exact)", "<", 1e-5,
              why="eval mode uses the fixed running statistics: only float rounding of a "
                  "batched matmul can differ",
              control="eval mode -> training mode (the same nets and batches)",
              on={"mnist1d": On(SAME, "float rounding of a batched matmul, whatever the data")}),
        Claim("train-batch-dependent", "In training mode it does", "max |Δ logits|, same "
              "example, two batches of 32, training mode", ">", 1e-2,
              why="batch statistics of 32 examples differ between batches by ~1/√32 ≈ 18% "
                  "of a std",
              control="training mode -> eval mode (the same nets and batches)",
              on={"mnist1d": On(SAME, "a sampling derivation: batch statistics of 32 examples "
                  "differ by ~1/√32 of a std on any data")}),
        Claim("train-mode-bug", "Evaluating in training mode with small batches loses accuracy",
              "test accuracy in eval mode − in training mode with batches of 4 (mean over "
              "seeds, beyond the spread)", ">", 0.02,
              why="4 examples give a noisy mean and a variance biased low by 3/4: the "
                  "normalized pre-activations are wrong for every example",
              control="test batches of 4 -> of 256 in training mode (statistics of 256 "
                      "examples, ≈ 6% of a std off)",
              on={"mnist1d": On(0.0, "the size of this gap was read off MNIST results and no "
                  "published number sizes it on MNIST-1D: only its direction (> 0, beyond the "
                  "spread over seeds) is tested there")}),
        Claim("running-stats", "The running averages estimate the population statistics",
              "median over units of |running mean − population mean| / population std, "
              "first BN (one value per seed's net)", "<", 0.1,
              why="momentum 0.1 averages the last ~10 batch means of 128 examples: error "
                  "≈ 1/√1280 ≈ 0.03 std, plus drift as the weights move",
              control="running averages -> the statistics of one training batch of 4 (what "
                      "the train-mode bug normalizes with; ≈ 1/√4 = 0.5 std off)",
              on={"mnist1d": On(SAME, "a sampling derivation (momentum 0.1 over batches of 128: ≈ "
                  "0.03 std), not a property of the data")}),
        Claim("fold-exact", "Folding BN into the preceding Linear gives the same outputs",
              "max |Δ logits| folded vs eval-mode model on the test set, largest over the seeds' "
              "nets (exact)", "<", 1e-4,
              why="W' = sW, b' = s(b − μ) + β is exact algebra; float32 rounding only",
              control="eval-mode model -> training-mode model (batch statistics, which "
                      "folding does not reproduce)",
              on={"mnist1d": On(SAME, "exact algebra; float32 rounding only, on any data")}),
        Claim("fold-faster", "and is faster at inference",
              "median time of a folded forward pass / the unfolded one (test set), one ratio per "
              "seed's net", "<", 1.0,
              why="one elementwise affine pass per layer less; a ratio, measured in one run, "
                  "so the machine's speed cancels",
              control="folded -> unfolded (the unfolded net timed against itself)",
              on={"mnist1d": On(SAME, "a ratio of two timings of the same network in one run: the "
                  "data do not enter")}),
    ),
    quick_seconds=30,
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()


    data = classification_data(ctx, n_train=cfg.n_train, n_test=1000)
    sizes = (data.x_train.shape[1], *cfg.sizes[1:])
    x_test, y_test = data.x_test.to(ctx.device), data.y_test.to(ctx.device)
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    # the seeds' runs first, then one train_grid (they share a pack)
    runs = [ctx.grid_run(build_mlp(sizes, "relu", "he_normal", norm="bn", seed=s), data,
                         label=f"bn-mlp-seed{s}", steps=cfg.steps, batch_size=128,
                         optimizer="momentum", lr=0.05, seed=s,
                         log_every=max(1, cfg.steps // 20), eval_every=cfg.steps,
                         config={"sizes": list(sizes), "norm": "bn", "init": "he_normal"})
            for s in seeds]
    ctx.train_grid(runs)
    # the control run (--controls) swaps each technique under test (Claim.control)
    bug_batch = 4 if 4 in cfg.small_batches else min(cfg.small_batches)
    ref_batch = ctx.controlled(bug_batch, 256)
    gaps, acc_rows, models = [], [], []
    for s, run_ in zip(seeds, runs):
        model = run_.model
        model.eval()
        models.append(model)
        acc_eval = _accuracy(model, x_test, y_test, 256, train_mode=False)
        row = {"seed": s, "eval mode": acc_eval}
        for b in sorted({*cfg.small_batches, ref_batch}):
            row[f"train mode, batch {b}"] = _accuracy(model, x_test, y_test, b, train_mode=True)
        acc_rows.append(row)
        gaps.append(acc_eval - row[f"train mode, batch {ref_batch}"])
    ctx.table("accuracy_by_mode", acc_rows, "Test accuracy of the trained BN MLPs in eval mode "
              "and in training mode with test batches of each size (the bug).")
    # each seed's net: one example in two batches, the running statistics, folding, timing
    d_eval, d_train, rels, var_ratio, d_fold, ratios, fold_rows = [], [], [], [], [], [], []
    g = ctx.generator(7)
    probe = x_test[:1]
    first = None
    for s, model in zip(seeds, models):
        idx_a = torch.randperm(len(x_test), generator=g)[:31].to(x_test.device)
        idx_b = torch.randperm(len(x_test), generator=g)[:31].to(x_test.device)
        batch_a = torch.cat([probe, x_test[idx_a]])
        batch_b = torch.cat([probe, x_test[idx_b]])
        with torch.no_grad():
            model.eval()
            e = float((model(batch_a)[0] - model(batch_b)[0]).abs().max())
            model.train()
            t = float((model(batch_a)[0] - model(batch_b)[0]).abs().max())
            model.eval()
        d_eval.append(t if ctx.control else e)
        d_train.append(e if ctx.control else t)

        # running statistics vs population statistics of the first BN's input
        bn_name, bn, pre = _first_bn_input(model, data.x_train.to(ctx.device))
        if first is None:  # the figure's right panel shows the first seed's net
            first = (bn_name, bn, pre)
        pop_mean, pop_std = pre.mean(0), pre.std(0)
        est_mean, est_var = bn.running_mean, bn.running_var
        if ctx.control:  # one training batch of 4: what the train-mode bug normalizes with
            pick = torch.randperm(len(pre), generator=g)[:4].to(pre.device)
            est_mean, est_var = pre[pick].mean(0), pre[pick].var(0, unbiased=False)
        rels.append(float(((est_mean - pop_mean).abs() / pop_std.clamp_min(1e-8)).median()))
        var_ratio.append(float((est_var / pop_std ** 2).median()))

        folded = fold_bn(model)
        with torch.no_grad():
            model.train(ctx.control)  # the control compares with training mode
            d_fold.append(float((folded(x_test) - model(x_test)).abs().max()))
            model.eval()
        # interleave the two timings so that a slow phase of the machine hits both
        fast = model if ctx.control else folded
        t_unfolded, t_folded = [], []
        for _ in range(3):
            t_unfolded.append(_time_forward(model, x_test, cfg.timing_repeats))
            t_folded.append(_time_forward(fast, x_test, cfg.timing_repeats))
        ratios.append(min(t_folded) / min(t_unfolded))
        fold_rows.append({"seed": s, "max |Δ logits| folded vs unfolded": d_fold[-1],
                          "forward time folded (ms)": min(t_folded) * 1e3,
                          "forward time unfolded (ms)": min(t_unfolded) * 1e3,
                          "time ratio": ratios[-1]})
    ctx.check("eval-batch-independent", max(d_eval), exact=True,
              detail=f"per seed: {', '.join(f'{v:.2e}' for v in d_eval)}")
    ctx.check("train-batch-dependent", values=d_train, seeds=seeds)
    ctx.check("train-mode-bug", values=gaps, seeds=seeds,
              detail=f"test batches of {ref_batch} in training mode")
    ctx.check("running-stats", values=rels, seeds=seeds,
              detail=f"{bn_name}: estimated var / population var, median per seed "
                     + ", ".join(f"{v:.3f}" for v in var_ratio))
    ctx.check("fold-exact", max(d_fold), exact=True,
              detail=f"per seed: {', '.join(f'{v:.2e}' for v in d_fold)}")
    ctx.check("fold-faster", values=ratios, seeds=seeds,
              detail="; ".join(f"{r['forward time folded (ms)']:.3f} ms vs "
                               f"{r['forward time unfolded (ms)']:.3f} ms" for r in fold_rows))
    ctx.table("fold", fold_rows, "BN folded into the preceding Linear layers "
              "(trainlab.nn.fold.fold_bn), each seed's net.")
    model = models[0]
    bn_name, bn, pre = first
    pop_mean, pop_std = pre.mean(0), pre.std(0)

    # figure: accuracy vs test batch size in training mode, and running vs population
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    for row in acc_rows:
        xs = list(cfg.small_batches)
        ax.plot(xs, [row[f"train mode, batch {b}"] for b in xs], "o-",
                label=f"training mode (bug), seed {row['seed']}")
        ax.axhline(row["eval mode"], ls="--", lw=1, color=ax.lines[-1].get_color(),
                   label=f"eval mode, seed {row['seed']}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("test batch size")
    ax.set_ylabel("test accuracy")
    ax.set_title("Evaluating in training mode: accuracy vs batch size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.scatter(pop_mean.cpu(), bn.running_mean.cpu(), s=8, label="mean")
    ax.scatter(pop_std.cpu() ** 2, bn.running_var.cpu(), s=8, label="variance")
    lim = [0, max(float(pop_std.max() ** 2), float(bn.running_var.max())) * 1.05]
    lo = min(0.0, float(pop_mean.min()), float(bn.running_mean.min()))
    ax.plot([lo, lim[1]], [lo, lim[1]], "k:", lw=1, label="y = x")
    ax.set_xlabel("population statistic (whole training set)")
    ax.set_ylabel("running average kept by BN")
    ax.set_title(f"{bn_name}: running averages vs population, per unit")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ctx.figure("train_vs_eval", fig, "Left: the trained net's test accuracy evaluated in "
               "training mode falls as the test batch shrinks, while eval mode (dashed) does "
               "not depend on the batch. Right: BN's running averages lie on the diagonal of "
               "the population statistics they estimate.")
    if not all(math.isfinite(v) for v in d_train):
        ctx.note("the training-mode output was not finite")
