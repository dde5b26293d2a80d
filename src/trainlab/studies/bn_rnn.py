"""bn-rnn: lecture 002's "Batch Normalization for RNN" — where the norm goes and which statistics.

Lecture 002 lists the two answers of 2016-2017 to "BN is used in RNN with caution":
Laurent et al. 2016 normalize only the input-to-hidden term ``W_x x_t`` with statistics over
the batch *and* the time steps (sequence-wise), Cooijmans et al. 2017 normalize ``W_x x_t``,
``W_h h_{t-1}`` and the cell separately with statistics per time step up to ``T_max``
(frame-wise) and start the gains at 0.1; layer normalization (Ba et al. 2016) needs no
batch at all. This study trains the same LSTM sequence classifier four ways — plain,
frame-wise BN, sequence-wise BN, LN (:mod:`trainlab.nn.recurrent`) — from the same initial
weights and batch order per seed, on MNIST read row by row (28 steps of 28 pixels; on the
declared alternative MNIST-1D, 40 steps of 1 value), and compares how fast each learns.

"Converges faster" is measured on the quantity the optimizer drives down, the training
loss: its area under the curve, i.e. the mean over the logging points of a fixed step
budget of the window-mean training loss (lower = further ahead over the whole run). A
normalized variant passes when its area is below the plain LSTM's, paired by seed, by more
than the spread of that difference over the seeds. Test accuracy (eval mode: BN on its
running statistics) is drawn and tabled too; for frame-wise BN it also reflects how well the
per-step running statistics have caught up with the weights. Every variant uses the same
optimizer and learning rate (Adam, 3e-3: the better of 1e-3 and 3e-3 for the plain LSTM in a
trial at this scale); the papers tuned theirs per model, which this study does not.

MNIST rows have a property that matters for frame-wise BN: the top and bottom rows are
blank in almost every image, so at those steps ``W_x x_t`` has nearly zero variance over the
batch and per-step BN blows the few inked rows up to unit variance. Sequence-wise BN pools
those steps with the others and is not affected.
"""

from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass

import torch

from trainlab.models.builders import seq_classifier
from trainlab.report.figures import pyplot
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

#: (registry name, label on the figures and tables)
VARIANTS = (
    ("none", "plain LSTM"),
    ("bn_frame", "frame-wise BN (Cooijmans)"),
    ("bn_seq", "sequence-wise BN (Laurent)"),
    ("ln", "layer norm (Ba)"),
)
COLORS = {"none": "black", "bn_frame": "tab:blue", "bn_seq": "tab:orange", "ln": "tab:green"}


@dataclass(frozen=True)
class Config:
    n_train: int = 10000
    n_test: int = 500
    hidden: int = 64
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    eval_every: int = 25  # steps between test evaluations and training-loss windows
    seeds: int = 3


def _mean_std(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    return m, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _claim(norm: str, label: str, paper: str) -> Claim:
    return Claim(
        f"{norm.replace('_', '-')}-faster",
        f"The LSTM with {label} converges faster than the plain LSTM",
        quantity=f"area under the training-loss curve (mean window loss over the logging "
                 f"points), plain minus {norm}, mean over seeds",
        op=">", threshold=0.0,
        why=f"{paper}; a positive difference larger than its spread over seeds means the "
            "normalized model was ahead over the run, not only at one point",
        control=f"{norm} -> none (the plain LSTM on seeds + 500)",
        on={"mnist1d": On(SAME, "a paired comparison of two LSTMs on the same sequences, "
                                "initial weights and batches: 'faster' is a positive "
                                "difference of loss areas whatever the data")})


@torch.no_grad()
def _accuracy_with_batch_stats(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                               batch: int = 250) -> float:
    """Test accuracy with every BN on the statistics of the test batch (train mode, on a
    copy, so the model's running statistics are untouched)."""
    m = copy.deepcopy(model).train()
    device = next(m.parameters()).device
    k = max(1, math.ceil(len(x) / batch))  # near-equal chunks: none of a single example
    correct = 0
    for xs, ys in zip(x.tensor_split(k), y.tensor_split(k)):
        correct += int((m(xs.to(device)).argmax(1).cpu() == ys).sum())
    return correct / max(len(x), 1)


@study(
    "bn-rnn",
    title="Batch normalization in recurrent networks: frame-wise vs sequence-wise vs LN",
    source="Lecture 002, 'Batch Normalization for RNN' slides; Laurent et al. 2016 (Batch "
           "Normalized Recurrent Neural Networks); Cooijmans et al. 2017 (Recurrent Batch "
           "Normalization); Ba, Kiros & Hinton 2016 (Layer Normalization)",
    summary="An LSTM classifies MNIST digits read row by row (28 time steps) four ways: plain, "
            "with frame-wise BN (per-time-step statistics on the input, recurrent and cell "
            "terms, gains starting at 0.1), with sequence-wise BN (input-to-hidden term only, "
            "statistics over batch and time) and with layer normalization. Same initial "
            "weights, batches, optimizer and learning rate per seed; the training-loss curves "
            "and their areas say which converges faster, the test-accuracy curves what it "
            "gives on held-out digits.",
    scales={
        "test": Config(n_train=256, n_test=128, hidden=8, steps=8,
                       batch_size=32, eval_every=4, seeds=3),
        "quick": Config(),
        "paper": Config(n_train=60000, n_test=10000, hidden=100, steps=5000, eval_every=250,
                        lr=1e-3, seeds=5),
    },
    claims=(
        _claim("bn_frame", "frame-wise BN", "Cooijmans et al. 2017 (Fig. 2) report faster "
               "convergence of the BN-LSTM on sequential MNIST"),
        _claim("bn_seq", "sequence-wise BN", "Laurent et al. 2016 report faster training "
               "when BN is applied to the input-to-hidden transition only"),
        _claim("ln", "layer normalization", "Ba et al. 2016 report faster convergence of "
               "layer-normalized LSTMs"),
        Claim("plain-learns",
              "The plain LSTM baseline learns the task (the comparison is against a working "
              "model)",
              quantity="final test accuracy of the plain LSTM, mean over seeds", op=">",
              threshold=0.3,
              why="three times chance (10 classes); a baseline stuck at chance would make any "
                  "speed-up meaningless",
              control="trained -> untrained (the same LSTMs' test accuracy at step 0)",
              on={"mnist1d": On(SAME, "MNIST-1D has 10 balanced classes too, so chance is 0.1 "
                                      "and three times chance is 0.3; the threshold depends "
                                      "only on the number of classes (Greydanus 2020: a GRU "
                                      "reaches 91 %, so a working recurrent model clears "
                                      "it)")}),
    ),
    quick_seconds=170,
    data_note="MNIST: its rows as time steps (28 steps of 28 pixels); MNIST-1D: 40 steps of 1 "
              "value.",
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    data = ctx.dataset("mnist", fallback="mnist1d", n_train=cfg.n_train, n_test=cfg.n_test)
    example = data.x_train[0]
    if ctx.uses("mnist"):  # MNIST rows: 28 steps of 28 pixels
        input_size, T, what = 28, 28, "MNIST rows (28 steps of 28 pixels)"
    else:  # MNIST-1D: one value per step
        input_size, T, what = 1, example.numel(), f"MNIST-1D ({example.numel()} steps of 1)"
    ctx.note(f"Sequences: {what}; {len(data.x_train)} training and {len(data.x_test)} test "
             f"examples; LSTM of {cfg.hidden} units, Adam lr={cfg.lr:g}, batch "
             f"{cfg.batch_size}, {cfg.steps} steps, {cfg.seeds} seeds.")

    curves: dict[str, list[tuple[list[int], list[float]]]] = {n: [] for n, _ in VARIANTS}
    losses: dict[str, list[tuple[list[int], list[float]]]] = {n: [] for n, _ in VARIANTS}
    area: dict[str, list[float]] = {n: [] for n, _ in VARIANTS}  # training loss
    acc_area: dict[str, list[float]] = {n: [] for n, _ in VARIANTS}  # test accuracy
    final: dict[str, list[float]] = {n: [] for n, _ in VARIANTS}
    batch_acc: dict[str, list[float]] = {n: [] for n, _ in VARIANTS}  # BN on batch statistics
    seeds = [ctx.seed * 1000 + s for s in range(cfg.seeds)]
    frame_stats = None
    jobs = [(s, n) for s in seeds for n, _ in VARIANTS]
    init_acc: list[float] = []  # the plain LSTMs before training (plain-learns' control)
    # the whole grid first, then one train_grid: the seeds of a variant share a pack
    runs = []
    for seed, norm in jobs:
        # the same initial weights for every variant of a seed (the norms add parameters
        # after the LSTM weights, so the shared ones are drawn alike), and the same batches
        # the control run (--controls): each normalized variant is the plain LSTM on a
        # disjoint seed (norm removed), so the areas are compared against seed noise
        built, init_seed = (("none", seed + 500) if ctx.control and norm != "none"
                             else (norm, seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = seq_classifier(input_size, cfg.hidden, 10, norm=built, steps=T)
        if norm == "none" and ctx.control:
            init_acc.append(_accuracy_with_batch_stats(model, data.x_test, data.y_test))
        runs.append(ctx.grid_run(model, data, label=f"{norm}-seed{init_seed}", seed=init_seed,
                                 steps=cfg.steps, batch_size=cfg.batch_size,
                                 eval_every=cfg.eval_every, optimizer="adam", lr=cfg.lr,
                                 log_every=cfg.eval_every,
                                 config={"norm": built, "hidden": cfg.hidden,
                                         "input_size": input_size, "time_steps": T}))
    for (_seed, norm), run_, hist in zip(jobs, runs, ctx.train_grid(runs)):
        model = run_.model
        steps_, accs = hist.series("test_acc")
        loss_steps, tl = hist.series("train_loss")
        curves[norm].append((steps_, accs))
        losses[norm].append((loss_steps, tl))
        ok = hist.status == "done" and accs and all(math.isfinite(v) for v in accs + tl)
        area[norm].append(statistics.fmean(tl) if ok else math.nan)
        acc_area[norm].append(statistics.fmean(accs) if ok else math.nan)
        final[norm].append(accs[-1] if ok else math.nan)
        batch_acc[norm].append(_accuracy_with_batch_stats(model, data.x_test, data.y_test)
                               if ok else math.nan)
        if norm == "bn_frame" and frame_stats is None and not ctx.control:
            cell = model.rnn1.cell
            frame_stats = (cell.norm_hh.running_var.detach().mean(1).tolist(),
                           cell.norm_c.running_var.detach().mean(1).tolist(),
                           cell.norm_ih.running_var.detach().mean(1).tolist())

    # -- claims ---------------------------------------------------------------------------------
    for norm, _label in VARIANTS[1:]:
        diffs = [b - a for a, b in zip(area[norm], area["none"])]
        ctx.check(f"{norm.replace('_', '-')}-faster", values=diffs, seeds=seeds,
                  detail=f"training-loss area {statistics.fmean(area[norm]):.4f} vs plain "
                         f"{statistics.fmean(area['none']):.4f}; test-accuracy area "
                         f"{statistics.fmean(acc_area[norm]):.3f} vs plain "
                         f"{statistics.fmean(acc_area['none']):.3f}")
    ctx.check("plain-learns", values=init_acc if ctx.control else final["none"], seeds=seeds)
    for norm, label in VARIANTS[1:3]:  # the two BNs: eval mode against test-batch statistics
        ev, bs = statistics.fmean(final[norm]), statistics.fmean(batch_acc[norm])
        if bs - ev > 0.05:
            ctx.note(f"{label}: final test accuracy {ev:.3f} in eval mode (running statistics) "
                     f"but {bs:.3f} with the statistics of test batches: the running estimates "
                     "do not describe a typical batch at some steps (see the per-step "
                     "statistics figure" + (": near-zero variances at the blank rows)."
                                            if ctx.uses("mnist") else ")."))

    # -- table ------------------------------------------------------------------------------------
    rows = []
    for norm, label in VARIANTS:
        am, asd = _mean_std(area[norm])
        tm, tsd = _mean_std(acc_area[norm])
        fm, fsd = _mean_std(final[norm])
        bm, _ = _mean_std(batch_acc[norm])
        reach = []
        for st, acc in curves[norm]:
            hit = next((s for s, a in zip(st, acc) if a >= 0.5), None)
            reach.append(hit)
        rows.append({"variant": label, "norm": norm, "loss_area_mean": round(am, 4),
                     "loss_area_std": round(asd, 4), "acc_area_mean": round(tm, 4),
                     "acc_area_std": round(tsd, 4), "final_acc_mean": round(fm, 4),
                     "final_acc_std": round(fsd, 4), "final_acc_batch_stats": round(bm, 4),
                     "steps_to_50pct": ", ".join("-" if r is None else str(r) for r in reach)})
    ctx.table("convergence", rows, "Per variant, over seeds: the area under the training-loss "
              "curve (mean window loss over the logging points; lower = faster), the area "
              "under the test-accuracy curve, the final test accuracy (eval mode), the same "
              "accuracy with BN on the statistics of test batches of 250 instead of its running "
              "statistics (equal to eval mode for plain and LN), and the first evaluated step "
              "reaching 50% test accuracy in each seed ('-': never).")

    # -- figures ----------------------------------------------------------------------------------
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for norm, label in VARIANTS:
        for key, ax in (("acc", axes[0]), ("loss", axes[1])):
            runs = curves[norm] if key == "acc" else losses[norm]
            if not runs or not runs[0][0]:
                continue
            n = min(len(r[1]) for r in runs)
            xs = runs[0][0][:n]
            ys = torch.tensor([r[1][:n] for r in runs], dtype=torch.float64)
            mean = ys.mean(0)
            ax.plot(xs, mean.tolist(), color=COLORS[norm], label=label)
            if len(runs) > 1:
                ax.fill_between(xs, ys.min(0).values.tolist(), ys.max(0).values.tolist(),
                                color=COLORS[norm], alpha=0.15, linewidth=0)
    axes[0].set(xlabel="training step", ylabel="test accuracy", title="Test accuracy")
    axes[1].set(xlabel="training step", ylabel="training loss (window mean)",
                title="Training loss", yscale="log")
    axes[0].legend(loc="lower right")
    fig.suptitle(f"LSTM on {what}: mean over {cfg.seeds} seeds, band = min..max")
    fig.tight_layout()
    ctx.figure("learning_curves", fig, "Test accuracy and training loss against steps for the "
               "four LSTMs; a curve above (accuracy) or below (loss) the black plain-LSTM curve "
               "converges faster. Bands span the seeds.")

    if frame_stats is not None:
        hh, c, ih = frame_stats
        fig, ax = plt.subplots(figsize=(6, 3.8))
        steps_axis = list(range(1, len(hh) + 1))
        ax.plot(steps_axis, ih, label="W_x x (input term)", color="tab:purple")
        ax.plot(steps_axis, hh, label="W_h h (recurrent term)", color="tab:blue")
        ax.plot(steps_axis, c, label="cell c_t", color="tab:red")
        ax.set(xlabel="time step t", ylabel="running variance (mean over units)",
               yscale="log", title="Frame-wise BN: statistics per time step")
        ax.legend()
        ctx.figure("frame_statistics", fig, "The running variances that frame-wise BN keeps "
                   "for each time step (first seed, end of training): the recurrent and cell "
                   "statistics change over the first steps (h_0 = 0, c_0 = 0) and then settle, "
                   "which is why one set of statistics for all steps fits them badly and why "
                   "steps beyond T_max may reuse the last step's; on MNIST rows the input "
                   "term's variance is near zero at the blank top and bottom rows.")
