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
from trainlab.studies._training import build_mlp, classification_data, mean_std
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
              "mode", "<", 1e-5, why="eval mode uses the fixed running statistics: only float "
                                     "rounding of a batched matmul can differ",
              on={"mnist1d": On(SAME, "float rounding of a batched matmul, whatever the data")}),
        Claim("train-batch-dependent", "In training mode it does", "max |Δ logits|, same "
              "example, two batches of 32, training mode", ">", 1e-2,
              why="batch statistics of 32 examples differ between batches by ~1/√32 ≈ 18% "
                  "of a std",
              on={"mnist1d": On(SAME, "a sampling derivation: batch statistics of 32 examples "
                  "differ by ~1/√32 of a std on any data")}),
        Claim("train-mode-bug", "Evaluating in training mode with small batches loses accuracy",
              "test accuracy in eval mode − in training mode with batches of 4 (mean over "
              "seeds, beyond the spread)", ">", 0.02,
              why="4 examples give a noisy mean and a variance biased low by 3/4: the "
                  "normalized pre-activations are wrong for every example",
              on={"mnist1d": On(0.0, "the size of this gap was read off MNIST results and no "
                  "published number sizes it on MNIST-1D: only its direction (> 0, beyond the "
                  "spread over seeds) is tested there")}),
        Claim("running-stats", "The running averages estimate the population statistics",
              "median over units of |running mean − population mean| / population std, "
              "first BN", "<", 0.1,
              why="momentum 0.1 averages the last ~10 batch means of 128 examples: error "
                  "≈ 1/√1280 ≈ 0.03 std, plus drift as the weights move",
              on={"mnist1d": On(SAME, "a sampling derivation (momentum 0.1 over batches of 128: ≈ "
                  "0.03 std), not a property of the data")}),
        Claim("fold-exact", "Folding BN into the preceding Linear gives the same outputs",
              "max |Δ logits| folded vs eval-mode model on the test set", "<", 1e-4,
              why="W' = sW, b' = s(b − μ) + β is exact algebra; float32 rounding only",
              on={"mnist1d": On(SAME, "exact algebra; float32 rounding only, on any data")}),
        Claim("fold-faster", "and is faster at inference",
              "median time of a folded forward pass / the unfolded one (test set)", "<", 1.0,
              why="one elementwise affine pass per layer less; a ratio, measured in one run, "
                  "so the machine's speed cancels",
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
    gaps, acc_rows, models = [], [], []
    for s, run_ in zip(seeds, runs):
        model = run_.model
        model.eval()
        models.append(model)
        acc_eval = _accuracy(model, x_test, y_test, 256, train_mode=False)
        row = {"seed": s, "eval mode": acc_eval}
        for b in cfg.small_batches:
            row[f"train mode, batch {b}"] = _accuracy(model, x_test, y_test, b, train_mode=True)
        acc_rows.append(row)
        key4 = "train mode, batch 4" if 4 in cfg.small_batches else \
            f"train mode, batch {min(cfg.small_batches)}"
        gaps.append(acc_eval - row[key4])
    ctx.table("accuracy_by_mode", acc_rows, "Test accuracy of the trained BN MLPs in eval mode "
              "and in training mode with test batches of each size (the bug).")
    # the model of the first seed for the remaining measurements
    model = models[0]
    g = ctx.generator(7)
    idx_a = torch.randperm(len(x_test), generator=g)[:31]
    idx_b = torch.randperm(len(x_test), generator=g)[:31]
    probe = x_test[:1]
    batch_a = torch.cat([probe, x_test[idx_a.to(x_test.device)]])
    batch_b = torch.cat([probe, x_test[idx_b.to(x_test.device)]])
    with torch.no_grad():
        model.eval()
        d_eval = float((model(batch_a)[0] - model(batch_b)[0]).abs().max())
        model.train()
        d_train = float((model(batch_a)[0] - model(batch_b)[0]).abs().max())
        model.eval()
    ctx.check("eval-batch-independent", d_eval)
    ctx.check("train-batch-dependent", d_train)
    m, sd = mean_std(gaps)
    ctx.check("train-mode-bug", m, spread=sd if len(gaps) > 1 else None, seeds=seeds)

    # running statistics vs population statistics of the first BN's input
    bn_name, bn = next((n, mod) for n, mod in model.named_modules() if isinstance(mod, BatchNorm))
    captured = []
    hook = bn.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach()))
    with torch.no_grad():
        model(data.x_train.to(ctx.device))
    hook.remove()
    pre = captured[0]
    pop_mean, pop_std = pre.mean(0), pre.std(0)
    rel = ((bn.running_mean - pop_mean).abs() / pop_std.clamp_min(1e-8))
    ctx.check("running-stats", float(rel.median()),
              detail=f"{bn_name}: running var / population var, median "
                     f"{float((bn.running_var / pop_std ** 2).median()):.3f}")

    folded = fold_bn(model)
    with torch.no_grad():
        d_fold = float((folded(x_test) - model(x_test)).abs().max())
    ctx.check("fold-exact", d_fold)
    # interleave the two timings so that a slow phase of the machine hits both
    t_unfolded, t_folded = [], []
    for _ in range(3):
        t_unfolded.append(_time_forward(model, x_test, cfg.timing_repeats))
        t_folded.append(_time_forward(folded, x_test, cfg.timing_repeats))
    ratio = min(t_folded) / min(t_unfolded)
    ctx.check("fold-faster", ratio, detail=f"{min(t_folded) * 1e3:.3f} ms vs "
                                           f"{min(t_unfolded) * 1e3:.3f} ms per pass")
    ctx.table("fold", [{"quantity": "max |Δ logits| folded vs unfolded", "value": d_fold},
                       {"quantity": "forward time folded (ms)", "value": min(t_folded) * 1e3},
                       {"quantity": "forward time unfolded (ms)",
                        "value": min(t_unfolded) * 1e3},
                       {"quantity": "time ratio", "value": ratio}],
              "BN folded into the preceding Linear layers (trainlab.nn.fold.fold_bn).")

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
    if not math.isfinite(d_train):
        ctx.note("the training-mode output was not finite")
