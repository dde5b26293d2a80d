"""``zero-centering``: all-positive inputs force one-signed weight gradients (lecture 001).

Lecture 001: "Consider what happens when the input to a neuron is always positive ...
``f(sum_i w_i x_i + b)`` ... Sign of gradient for all ``w_i`` is the same as the sign of the
upstream scalar gradient": for one example ``dL/dw_i = delta * x_i`` with ``delta = dL/da``, so
when every ``x_i >= 0`` the whole gradient row of a unit lies in the all-positive or the
all-negative orthant, and reaching a ``w*`` elsewhere takes a zig-zag path (lecture 004's
"Sigmoids are not zero centered" slides). "This is also why you want zero-mean data!"

Two measurements:

1. **Pixels** (MNIST, or MNIST-1D shifted to be non-negative): the fraction
   of per-example gradient rows ``delta_n,i * x_n`` of the first layer of a tanh MLP whose
   non-zero components share one sign, for raw (``x >= 0``) and for centred inputs
   (``x - mean image``).
2. **A 2-D logistic unit** (the lecture's picture): two Gaussian classes centred on
   ``(m -/+ s/2, m)``, so every input is positive and the best weights ``w* ~ (+, 0)`` lie
   outside the two orthants that per-example updates allow; a linear softmax classifier
   trained with mini-batch SGD on the raw and on the centred inputs. A probe records, at every
   step, the fraction of weight-gradient rows with both components of one sign; the path of one
   unit's weights shows the zig-zag; each variant is trained at every learning rate of a grid
   and the steps to reach a target training loss at its best learning rate are compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainlab.data.preprocess import Center
from trainlab.models.builders import mlp
from trainlab.probes.weight_rows import SameSignRows
from trainlab.probes.weight_rows import same_sign_fraction as _same_sign_fraction
from trainlab.report.figures import pyplot
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

__all__ = ["Config", "SameSignProbe", "positive_blobs", "same_sign_fraction", "run"]


@dataclass(frozen=True)
class Config:
    n_pixels: int = 512            # examples for the per-example pixel measurement
    hidden: int = 64
    n_train: int = 1000            # 2-D blobs
    offset: float = 3.0            # the blobs' common positive offset (m, m)
    separation: float = 3.0        # distance between the two class means, along x_1
    blob_std: float = 0.5
    batch_size: int = 10
    steps: int = 200
    lrs: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)   # the first also draws the weights' path
    target_loss: float = 0.05
    seeds: int = 3


def same_sign_fraction(g: torch.Tensor) -> float:
    """Fraction of the rows of ``g`` (with at least one non-zero entry) whose non-zero entries
    all have one sign (NaN when every row is 0):
    :func:`trainlab.probes.weight_rows.same_sign_fraction` as a number."""
    return _same_sign_fraction(g).item()


def positive_blobs(n: int, offset: float, separation: float, std: float,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of two balanced Gaussian classes centred on ``(m -/+ s/2, m)`` with std
    ``std``, clipped below at ``0.01`` so every input is positive (at the default sizes the
    clip is 3 std away from the nearest mean and acts on about 1 point in 1000)."""
    y = torch.arange(n) % 2
    direction = torch.tensor([1.0, 0.0])
    centre = offset + (y.float() - 0.5).unsqueeze(1) * separation * direction
    x = centre + std * torch.randn(n, 2, generator=generator)
    perm = torch.randperm(n, generator=generator)
    return x.clamp_min(0.01)[perm], y[perm]


class SameSignProbe(SameSignRows):
    """:class:`~trainlab.probes.SameSignRows` of one Linear layer at every step, with the
    first two incoming weights of its last unit (``w0``, ``w1``: the path of that unit's
    weights in the plane); the same-sign fraction is named ``"same_sign"``. The probe this
    study used before the probe registry, kept for scripts that import it."""

    def __init__(self, layer: str = "head") -> None:
        super().__init__(layer, every=1, follow=2)
        self.layer = layer

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        return [(s, layer, "same_sign" if q == "grad_same_sign" else q, v)
                for s, layer, q, v in super()._finish(step, meta, row)]


def _per_example_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Same-sign fraction over every per-example gradient row ``delta_n,i x_n`` of the first
    Linear layer (``delta`` read with a hook on its output)."""
    lin = model.block1.linear
    grabbed: dict[str, torch.Tensor] = {}
    handle = lin.register_forward_hook(
        lambda m, inp, out: grabbed.update(x=inp[0].detach(), out=out))
    try:
        out = model(x)
        delta = torch.autograd.grad(nn.functional.cross_entropy(out, y, reduction="sum"),
                                    grabbed["out"])[0]
    finally:
        handle.remove()
    rows = delta.unsqueeze(2) * grabbed["x"].unsqueeze(1)   # (N, units, inputs)
    return same_sign_fraction(rows.reshape(-1, rows.shape[-1]))


def _std(v: list[float]) -> float:
    return float(torch.tensor(v, dtype=torch.float64).std(unbiased=False)) if len(v) > 1 else 0.0


def _steps_to(hist, target: float, cap: int, window: int = 5) -> int:
    """First step at which the mean training loss of the last ``window`` steps is <= target
    (``cap`` when never)."""
    steps, losses = hist.series("train_loss")
    for j in range(window - 1, len(losses)):
        if sum(losses[j - window + 1:j + 1]) / window <= target:
            return steps[j]
    return cap


#: Why the 2-D unit's claims carry over to any dataset.
_BLOBS = "measured on the generated 2-D blobs, the same on any run: the dataset is not involved"


@study(
    "zero-centering",
    title="Zero-centred inputs: one-signed gradients and zig-zag updates",
    source="Lecture 001, 'Consider what happens when the input to a neuron is always "
           "positive' (this is also why you want zero-mean data); lecture 004, 'Sigmoids are "
           "not zero centered' (zigzag path)",
    summary="With all-positive inputs every per-example gradient row of a unit has one sign; "
            "on a 2-D unit trained by SGD the mini-batch gradients stay one-signed and the "
            "weights zig-zag. Centring the inputs removes the restriction and the same "
            "classifier reaches a target loss in fewer steps, each at its best learning rate.",
    scales={
        "test": Config(n_pixels=64, hidden=16, n_train=200, steps=60, lrs=(0.1,), seeds=3),
        "quick": Config(),
        "paper": Config(n_pixels=4096, hidden=256, n_train=10000, steps=2000,
                        lrs=(0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0), seeds=10),
    },
    claims=(
        Claim("positive-inputs-one-sign",
              "With non-negative inputs (raw pixels) every per-example first-layer gradient "
              "row has one sign",
              quantity="fraction of per-example gradient rows delta_n,i * x_n (raw pixels) "
                       "whose non-zero entries share one sign",
              op=">=", threshold=0.999,
              why="dL/dw_i = delta * x_i and every x_i >= 0, so each entry has the sign of "
                  "delta: exactly 1 up to rows where delta underflows to 0 (excluded); an "
                  "identity, checked on every seed's network (the smallest fraction counts)",
              control="raw -> centred pixels",
              on={"mnist1d": On(SAME, "the same identity dL/dw_i = delta * x_i: MNIST-1D is "
                                      "shifted to be non-negative first, so every x_i >= 0 "
                                      "there too")}),
        Claim("centered-inputs-mixed-sign",
              "With centred pixels the per-example gradient rows have mixed signs",
              quantity="the same fraction with inputs x - mean image",
              op="<=", threshold=0.01,
              why="a centred image has positive and negative pixels, so delta * x has both "
                  "signs whenever delta != 0",
              control="centred -> raw pixels",
              on={"mnist1d": On(SAME, "a centred MNIST-1D signal has positive and negative "
                                      "values too, so the same argument holds")}),
        Claim("minibatch-one-sign-raw",
              "On the 2-D unit, mini-batch SGD gradients with positive inputs stay one-signed "
              "far more often than with centred inputs",
              quantity="mean over steps of the same-sign fraction of weight-gradient rows: "
                       "raw minus centred (mean over seeds)",
              op=">", threshold=0.3,
              why="a mini-batch gradient is sum_n delta_n x_n = (sum delta_n) xbar + "
                  "sum delta_n (x_n - xbar); with |xbar| = 4.2 against per-axis spreads of "
                  "1.6 and 0.5 the "
                  "first term, along +-(1, 1), dominates (fraction near 1), while with centred "
                  "inputs the gradient follows the data's own directions and has no preferred "
                  "orthant",
              control="raw -> centred inputs (blobs and batches drawn from seeds disjoint "
                      "from the centred arm's)",
              on={"mnist1d": On(SAME, _BLOBS)}),
        Claim("centered-converges-faster",
              "The same classifier trained on centred inputs reaches the target loss in "
              "fewer steps",
              quantity="steps to train loss <= target, raw / centred, each at its best "
                       "learning rate of the grid (mean over seeds)",
              op=">", threshold=2.0,
              why="the best boundary x_1 = m needs a bias b = -m w_1 that cancels w . xbar; "
                  "with the offset the second moment of (1, x) has eigenvalues 20.3, 1.4 and "
                  "0.023 (condition number about 900) against 2.5, 1 and 0.25 once centred "
                  "(about 10), and gradient descent needs a number of steps that grows with "
                  "the condition number; at each one's best rate a factor 2 is conservative",
              control="raw -> centred inputs (blobs and batches drawn from seeds disjoint "
                      "from the centred arm's)",
              on={"mnist1d": On(SAME, _BLOBS)}),
    ),
    quick_seconds=20,
    datasets=("mnist", "mnist1d"),
    reference_note="the lecture's illustration, no paper setup to reproduce: the pixel "
                   "measurement is an identity at initialization, and the 2-D unit is the "
                   "lecture's picture, both complete at the quick scale",
    data_note="MNIST pixels (real data, non-negative), or MNIST-1D made non-negative by "
              "subtracting its minimum over the examples used (signals have negative values, "
              "pixels do not); the 2-D blobs are generated.",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    seeds = list(range(ctx.seed, ctx.seed + cfg.seeds))

    # -- 1. per-example gradient signs on pixels ------------------------------------------
    ds = ctx.dataset("mnist", fallback="mnist1d", n_train=cfg.n_pixels, n_test=10)
    x = ds.x_train[: cfg.n_pixels].reshape(min(cfg.n_pixels, len(ds.x_train)), -1)
    y = ds.y_train[: len(x)]
    if ctx.uses("mnist1d"):
        lo = float(x.min())
        x = x - lo
        ctx.note(f"Setup: the first {len(x)} MNIST-1D training signals, shifted by their "
                 f"minimum ({lo:.3g}) so every input is non-negative, as pixel intensities "
                 "are; centred inputs subtract the mean signal.")
    else:
        ctx.note(f"Setup: the first {len(x)} MNIST training images, flattened, pixels in "
                 "[0, 1] (non-negative as they are); centred inputs subtract the mean image.")
    xc = Center().fit(x).transform(x)
    raw_f, cen_f = [], []
    for s in seeds:  # one network per seed
        net = mlp(x.shape[1], [cfg.hidden], ds.num_classes, activation="tanh",
                  init={"name": "xavier_uniform", "generator": ctx.generator(s)})
        raw_f.append(_per_example_fraction(net, x, y))
        cen_f.append(_per_example_fraction(net, xc, y))
    frac_raw, frac_cen = sum(raw_f) / len(raw_f), sum(cen_f) / len(cen_f)
    # the control swaps the inputs: centred pixels for the identity, raw for the mixed signs
    one_sign = cen_f if ctx.control else raw_f
    ctx.check("positive-inputs-one-sign", min(one_sign), exact=True,
              detail=f"{len(x)} {ds.name} examples x {cfg.hidden} units, at init; the "
                     f"smallest of {len(seeds)} networks' fractions")
    ctx.check("centered-inputs-mixed-sign", values=raw_f if ctx.control else cen_f,
              seeds=seeds, detail=f"{len(x)} {ds.name} examples x {cfg.hidden} units, at init")

    # -- 2. the 2-D unit: same-sign fraction, zig-zag path, steps to a target loss --------
    variants = ("raw (x > 0)", "centred")
    same: dict[tuple[str, float], list[float]] = {}
    curves: dict[tuple[str, float], list[float]] = {}
    paths: dict[tuple[str, float], tuple[list[float], list[float]]] = {}
    loss_curves: dict[tuple[str, float], list[tuple[list[int], list[float]]]] = {}
    steps_to: dict[tuple[str, float], list[int]] = {}
    runs = [(v, lr, s) for v in variants for lr in cfg.lrs for s in seeds]
    data = {}

    def blobs(s: int):
        g = ctx.generator(100 + s)
        xtr, ytr = positive_blobs(cfg.n_train, cfg.offset, cfg.separation, cfg.blob_std, g)
        xte, yte = positive_blobs(cfg.n_train, cfg.offset, cfg.separation, cfg.blob_std, g)
        cen = Center().fit(xtr)
        return (xtr, ytr, xte, yte), (cen.transform(xtr), ytr, cen.transform(xte), yte)

    for s in seeds:
        raw, centred = blobs(s)
        data[(variants[1], s)] = centred
        # control: the "raw" arm is centred too, on blobs (and batches) of disjoint seeds
        data[(variants[0], s)] = blobs(1000 + s)[1] if ctx.control else raw
    # every run carries the SameSignRows probe (hooks on the model, no pack form): train_grid
    # trains each alone, and the page says why
    grid = []
    for v, lr, s in runs:
        model = mlp(2, [], 2, init={"name": "zeros"})
        probe = SameSignRows("head", every=1, follow=2)  # and the last unit's w0, w1
        grid.append(ctx.grid_run(model, data[(v, s)], label=f"{v}/lr{lr}/seed{s}",
                                 config={"inputs": v, "lr": lr, "offset": cfg.offset},
                                 steps=cfg.steps, batch_size=cfg.batch_size, optimizer="sgd",
                                 lr=lr, seed=s + 1000 if ctx.control and v == variants[0]
                                 else s, probes=[probe], log_every=1,
                                 eval_every=cfg.steps, on_divergence="stop"))
    for (v, lr, s), hist in zip(runs, ctx.train_grid(grid)):
        rec = hist.probe_records
        ss = [val for _, _, q, val in rec if q == "grad_same_sign" and not math.isnan(val)]
        same.setdefault((v, lr), []).append(sum(ss) / max(len(ss), 1))
        if s == seeds[0]:
            curves[(v, lr)] = ss
            paths[(v, lr)] = ([val for _, _, q, val in rec if q == "w0"],
                              [val for _, _, q, val in rec if q == "w1"])
        steps_to.setdefault((v, lr), []).append(_steps_to(hist, cfg.target_loss, cfg.steps))
        loss_curves.setdefault((v, lr), []).append(hist.series("train_loss"))

    def mean(a):
        return sum(a) / len(a)

    best = {v: min(cfg.lrs, key=lambda lr: (mean(steps_to[(v, lr)]), lr)) for v in variants}
    ratio = [r / max(c, 1) for r, c in zip(steps_to[(variants[0], best[variants[0]])],
                                            steps_to[(variants[1], best[variants[1]])])]
    # Compared at one learning rate (the centred inputs' best), so the two runs differ only
    # in their inputs.
    lr_cmp = best[variants[1]]
    same_raw, same_cen = same[(variants[0], lr_cmp)], same[(variants[1], lr_cmp)]
    diff = [a - b for a, b in zip(same_raw, same_cen)]
    ctx.check("minibatch-one-sign-raw", values=diff, seeds=seeds,
              detail=f"raw {mean(same_raw):.3f}, centred {mean(same_cen):.3f} at lr {lr_cmp}, "
                     f"batch {cfg.batch_size}")
    capped = any(st == cfg.steps for st in steps_to[(variants[0], best[variants[0]])])
    ctx.check("centered-converges-faster", values=ratio, seeds=seeds,
              detail=f"best lr raw {best[variants[0]]}, centred {best[variants[1]]}; target "
                     f"loss {cfg.target_loss}" + ("; raw never reached it: its count is the "
                                                  "run length, a lower bound" if capped else ""))
    rows = []
    for v in variants:
        for lr in cfg.lrs:
            st = steps_to[(v, lr)]
            rows.append({"inputs": v, "lr": lr, "steps to target (mean)": round(mean(st), 1),
                         "std": round(_std(st), 1),
                         "reached": f"{sum(t < cfg.steps for t in st)}/{len(st)}",
                         "same-sign fraction": round(mean(same[(v, lr)]), 3),
                 "best lr": "yes" if best[v] == lr else ""})
    rows.append({"inputs": "pixels raw, per-example one-sign fraction", "lr": "",
                 "steps to target (mean)": "", "std": "", "reached": "",
                 "same-sign fraction": round(frac_raw, 4), "best lr": ""})
    rows.append({"inputs": "pixels centred, per-example one-sign fraction", "lr": "",
                 "steps to target (mean)": "", "std": "", "reached": "",
                 "same-sign fraction": round(frac_cen, 4), "best lr": ""})
    ctx.table("steps_to_target", rows,
              f"2-D unit: steps of SGD (batch {cfg.batch_size}) to a training loss <= "
              f"{cfg.target_loss} ({cfg.steps} = not reached) over {cfg.seeds} seed(s), and the "
              f"mean same-sign fraction of its gradient rows; last rows: per-example "
              f"one-signed fraction on {ds.name} pixels.")

    # Figure 1: same-sign fraction over training, and the per-example pixel fractions.
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2.2, 1]})
    colors = {variants[0]: "tab:red", variants[1]: "tab:blue"}
    win = max(1, min(20, cfg.steps // 10))
    for v in variants:
        c = torch.tensor(curves[(v, lr_cmp)], dtype=torch.float64)
        smooth = c.unfold(0, win, 1).mean(1) if len(c) >= win else c
        axes[0].plot(range(win - 1, win - 1 + len(smooth)), smooth, color=colors[v], lw=2,
                     label=f"{v} (mean {mean(same[(v, lr_cmp)]):.2f})")
    axes[0].set_ylim(-0.02, 1.05)
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel(f"same-sign fraction of gradient rows\n(moving mean over {win} steps)")
    axes[0].set_title(f"2-D unit, SGD batch {cfg.batch_size}, lr {lr_cmp}")
    axes[0].legend(loc="lower left")
    axes[0].grid(alpha=0.3)
    axes[1].bar(["raw pixels\n(x >= 0)", "centred pixels"], [frac_raw, frac_cen],
                color=[colors[variants[0]], colors[variants[1]]])
    for j, f in enumerate((frac_raw, frac_cen)):
        axes[1].text(j, f + 0.02, f"{f:.3f}", ha="center")
    axes[1].set_ylim(0, 1.12)
    axes[1].set_ylabel("one-signed fraction")
    axes[1].set_title(f"Per-example rows, {ds.name}, layer 1")
    ctx.figure("same_sign", fig,
               "With positive inputs the gradient rows keep one sign (always per example, "
               "mostly per mini-batch); centring makes the signs mixed.")

    # Figure 2: the zig-zag path of one unit's two weights, and loss curves at the best lr.
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for v in variants:
        w0, w1 = paths[(v, cfg.lrs[0])]
        n = min(len(w0), 80)
        axes[0].plot(w0[:n], w1[:n], "-o", ms=2.5, lw=1, color=colors[v],
                     label=f"{v}: first {n} steps")
        axes[0].plot(w0[0], w1[0], "k*", ms=10)
    axes[0].plot([], [], "k*", ms=10, label="start (w = 0)")
    axes[0].set_xlabel("$w_1$ (weight on $x_1$)")
    axes[0].set_ylabel("$w_2$ (weight on $x_2$)")
    axes[0].set_title(f"Path of one output unit's weights (SGD, lr {cfg.lrs[0]})")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    axes[0].set_aspect("equal", adjustable="datalim")
    for v in variants:
        curves_v = loss_curves[(v, best[v])]
        st = curves_v[0][0]
        n = min(len(c[1]) for c in curves_v)
        vals = torch.tensor([c[1][:n] for c in curves_v], dtype=torch.float64)
        # one mini-batch per point: a moving mean over `win` steps makes the trend readable
        sm = vals.unfold(1, win, 1).mean(2) if n >= win else vals
        m, sd = sm.mean(0), sm.std(0, unbiased=False)
        st = st[n - sm.shape[1]:n]
        axes[1].plot(st, m, color=colors[v], lw=2, label=f"{v}, best lr {best[v]}")
        axes[1].fill_between(st, (m - sd).clamp_min(1e-5), m + sd, color=colors[v], alpha=0.2)
    axes[1].axhline(cfg.target_loss, color="k", ls=":", lw=1, label="target loss")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel(f"training loss, moving mean over {win} steps\n(band: std over seeds)")
    axes[1].set_title("Same classifier, raw vs centred inputs")
    axes[1].legend()
    axes[1].grid(alpha=0.3)
    ctx.figure("zigzag", fig,
               "With positive inputs each update moves both weights the same way, so the "
               "weights zig-zag between the all-positive and all-negative orthants and "
               "training is slow; centred inputs let the weights move straight toward (+, 0).")
