"""``symmetry``: equal initial weights never break symmetry (lecture 004).

Lecture 004, "What happens if we initialize all weights to 0?": with ``a_11 = w_11 x_1 +
w_12 x_2`` and ``a_12 = w_21 x_1 + w_22 x_2``, equal weights give ``h_11 = h_12``, then equal
gradients ``grad w_11 = grad w_21``, so "both the weights will get the same update and remain
equal. In fact this symmetry will never break during training" — for any network whose
weights all start at the same value.

Setup: a tanh MLP with two hidden layers on the ring set (class 1 where ``1 <= ||x|| <= 2``,
which needs several distinct hidden units), trained with Adam from three initializations:
every weight 0, every weight equal to one constant, and Xavier-uniform (random). Biases start
at 0 in all three.

Measured, per hidden layer, the *row spread* of a matrix ``M`` whose row ``i`` belongs to unit
``i`` (its incoming weights, or their gradient)::

    spread(M) = mean_i ||M_i - mean_j M_j|| / mean_i ||M_i||      (0 when M = 0)

which is 0 exactly when every unit of the layer has the same incoming weights, and about 1 for
independent random rows. A probe records it every few steps during training, for the weights
and for their gradients. A symmetric layer acts as one unit copied ``width`` times: the whole
net then computes a monotone function of one projection ``w . x``, so its decision boundary
is a line and it cannot learn the ring.

Verdicts: the three symmetry claims are identities (equal rows get equal updates; only float
rounding, ~1e-7, separates them) and are checked ``exact`` on the largest spread seen over
layers, seeds and probe steps; random-breaks-symmetry and symmetric-net-underfits are decided
by the one-sided 95% Student t bound over per-seed values (3 seeds at every scale).
Controls (``--controls``): the symmetric inits -> Xavier (random) for the three symmetry
claims, Xavier -> constant 0.1 for random-breaks-symmetry, and the symmetric nets -> Xavier on
seeds + 1000 for symmetric-net-underfits; each must FAIL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainlab.data.synthetic import ring
from trainlab.models.builders import mlp
from trainlab.probes.base import Schedule
from trainlab.probes.weight_rows import RowSpread
from trainlab.probes.weight_rows import row_spread as _row_spread
from trainlab.report.figures import pyplot
from trainlab.studies.base import Claim, StudyContext, study

__all__ = ["Config", "RowSpreadProbe", "row_spread", "run"]

#: The initializations compared: label -> init spec for every weight of the net.
INITS: dict[str, Any] = {
    "zeros": "zeros",
    "constant 0.1": {"name": "constant", "value": 0.1},
    "xavier (random)": "xavier_uniform",
}
SYMMETRIC = ("zeros", "constant 0.1")
RANDOM = "xavier (random)"
#: control only: Xavier again on seeds disjoint from the RANDOM arm's (seed + 1000)
RANDOM_ALT = "xavier (random, seeds + 1000)"


@dataclass(frozen=True)
class Config:
    n_train: int = 1000
    n_test: int = 1000
    width: int = 32
    depth: int = 2
    steps: int = 600
    batch_size: int = 100
    lr: float = 2e-2        # Adam
    seeds: int = 3
    every: int = 20         # probe cadence (steps)


#: the hidden layers of a trainlab mlp: the ``linear`` of each ``block{i}``
HIDDEN = "block*.linear"


def row_spread(m: torch.Tensor) -> float:
    """``mean_i ||M_i - mean_j M_j|| / mean_i ||M_i||`` in float64 (0 when ``M`` is 0):
    :func:`trainlab.probes.weight_rows.row_spread` as a number."""
    return _row_spread(m).item()


class RowSpreadProbe(RowSpread):
    """:class:`~trainlab.probes.RowSpread` of the hidden layers (:data:`HIDDEN`) every
    ``every`` steps and at ``last_step``, its records named by block (``"block1"``): the
    probe this study used before the probe registry, kept for scripts that import it."""

    def __init__(self, every: int = 20, last_step: int | None = None) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1. Received: every={every!r}.")
        super().__init__(HIDDEN, every=Schedule(every, at=() if last_step is None
                                                       else (last_step,)))

    def _finish(self, step: int, meta: dict, row: Any) -> list[tuple[int, str, str, float]]:
        return [(s, layer.split(".")[0], q, v) for s, layer, q, v in
                super()._finish(step, meta, row)]


def _std(v: list[float]) -> float:
    return float(torch.tensor(v, dtype=torch.float64).std(unbiased=False)) if len(v) > 1 else 0.0


@study(
    "symmetry",
    title="Symmetry breaking: equal initial weights stay equal through training",
    source="Lecture 004, 'What happens if we initialize all weights to 0?' (the symmetry "
           "breaking problem)",
    summary="A two-hidden-layer tanh MLP is trained on the ring set from all-zero weights, "
            "from all weights equal to 0.1, and from Xavier (random) weights. With equal "
            "weights every unit of a layer keeps the same incoming weights and the same "
            "gradient through all of training, so the net behaves like one unit per layer "
            "and cannot learn the ring; random init breaks the symmetry and learns it.",
    scales={
        "test": Config(n_train=200, n_test=200, width=8, steps=60, seeds=3, every=20),
        "quick": Config(),
        "paper": Config(n_train=5000, n_test=5000, width=128, depth=3, steps=5000, seeds=10,
                        every=100),
    },
    claims=(
        Claim("constant-rows-stay-equal",
              "With every weight equal to a constant, each hidden layer's units keep identical "
              "incoming weights through training",
              quantity="max over hidden layers, seeds and probe steps of weight row spread "
                       "(constant init)",
              op="<", threshold=1e-5,
              why="identical rows see identical inputs and identical upstream gradients, so "
                  "every update is identical; only float32 rounding (~1e-7) could separate "
                  "them; random rows have spread ≈ 1",
              control="constant 0.1 -> Xavier (random)"),
        Claim("constant-grads-equal",
              "With a constant init, each hidden layer's units receive identical gradients",
              quantity="max over hidden layers, seeds and probe steps of gradient row spread "
                       "(constant init)",
              op="<", threshold=1e-5,
              why="the gradient of row i is delta_i x^T with the same delta_i for every unit of "
                  "a symmetric layer (lecture 004: grad w_11 = grad w_21); 1e-5 as above",
              control="constant 0.1 -> Xavier (random)"),
        Claim("zeros-rows-stay-equal",
              "With all-zero weights the hidden units stay identical (here: all zero)",
              quantity="max over hidden layers, seeds and probe steps of weight row spread "
                       "(zeros init)",
              op="<", threshold=1e-5,
              why="with W = 0 every hidden activation is tanh(0) = 0 and every back-propagated "
                  "signal is multiplied by a zero weight, so hidden gradients are exactly 0; "
                  "1e-5 as above",
              control="zeros -> Xavier (random)"),
        Claim("random-breaks-symmetry",
              "Random (Xavier) init gives distinct units that stay distinct after training",
              quantity="per seed, min over hidden layers of the final weight row spread "
                       "(Xavier init); t bound over seeds",
              op=">", threshold=0.5,
              why="independent zero-mean rows have spread close to 1 (their mean row is "
                  "near 0); training from distinct rows has no force pulling them together; "
                  "0.5 = half way between a symmetric layer (0) and independent rows (≈ 1)",
              control="Xavier -> constant 0.1"),
        Claim("symmetric-net-underfits",
              "The symmetric nets learn the ring far worse than the randomly initialized one",
              quantity="per seed, test acc(Xavier) - test acc(the better symmetric init, "
                       "zeros or constant, by its mean); t bound over seeds",
              op=">", threshold=0.25,
              why="a symmetric net is one unit per layer, a monotone function of one "
                  "projection w.x, so its boundary is a line (ring accuracy near 0.5-0.65); "
                  "the random-init MLP separates the ring (> 0.9): a gap near 0.3 and more; "
                  "0.25 leaves room for a symmetric net that guesses better than chance",
              control="symmetric inits -> Xavier on seeds + 1000 (Xavier against Xavier)"),
    ),
    quick_seconds=20,
    data_note="Synthetic ring set (trainlab.data.synthetic.ring); no download.",
    reference_note="the lecture's argument has no paper setup or number to reproduce (a "
                   "two-unit sketch on the slide); the ring set is trainlab's own, so the quick "
                   "scale stands",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    ds = ring(n_train=cfg.n_train, n_test=cfg.n_test, seed=ctx.seed)
    seeds = list(range(ctx.seed, ctx.seed + cfg.seeds))
    curves: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    final: dict[tuple[str, str], list[float]] = {}   # (init, layer) -> final weight spread
    inits = dict(INITS)
    if ctx.control:  # symmetric-net-underfits' control: Xavier against Xavier (seeds + 1000)
        inits[RANDOM_ALT] = INITS[RANDOM]
    acc: dict[str, list[float]] = {k: [] for k in inits}
    units: dict[str, torch.Tensor] = {}
    rank: dict[str, list[int]] = {k: [] for k in inits}
    jobs = [(label, s) for label in inits for s in seeds]
    # every run carries the RowSpread probe (hooks on the model, no pack form): train_grid
    # trains each alone, and the page says why
    runs = []
    for i, (label, seed) in enumerate(jobs):
        init = inits[label]
        spec = dict(init) if isinstance(init, dict) else {"name": init}
        alt = label == RANDOM_ALT
        spec["generator"] = ctx.generator(1000 + i if alt else i)
        seed = seed + 1000 if alt else seed
        model = mlp(2, [cfg.width] * cfg.depth, 2, activation="tanh", init=spec)
        probe = RowSpread(HIDDEN, every=Schedule(cfg.every, at=[cfg.steps - 1]))
        runs.append(ctx.grid_run(model, ds, label=f"{label}/seed{seed}",
                                 config={"init": label, "width": cfg.width, "depth": cfg.depth},
                                 steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adam",
                                 lr=cfg.lr, seed=seed, probes=[probe], eval_every=cfg.steps))
    for (label, seed), run, hist in zip(jobs, runs, ctx.train_grid(runs)):
        model = run.model
        model.cpu()  # trained on ctx.device; measured here on the CPU tensors
        for step, layer, q, v in hist.probe_records:
            layer = layer.split(".")[0]  # "block1.linear" -> "block1"
            if seed == seeds[0]:
                curves.setdefault((label, layer, q), []).append((step, v))
            if q == "weight_row_spread":
                curves.setdefault((label, layer, "all"), []).append((step, v))
            else:
                curves.setdefault((label, layer, "all_grad"), []).append((step, v))
        model.eval()
        with torch.no_grad():
            acc[label].append((model(ds.x_test).argmax(1) == ds.y_test).double().mean().item())
            h = ds.x_test
            for name, child in model.named_children():  # through the last hidden block
                if name.startswith("block"):
                    h = child(h)
        sv = torch.linalg.svdvals(h.double())
        rank[label].append(int((sv > 1e-6 * sv[0]).sum()) if sv[0] > 0 else 0)
        if seed == seeds[0]:
            units[label] = h[:40]
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear) and name.startswith("block"):
                final.setdefault((label, name.split(".")[0]), []).append(row_spread(m.weight))

    layers = sorted({layer for _, layer in final})
    rows = []
    for label in inits:
        row: dict[str, Any] = {"init": label}
        for layer in layers:
            v = final[(label, layer)]
            row[f"{layer} weight spread"] = float(f"{sum(v) / len(v):.3g}")
        row["distinct units (rank of last hidden layer)"] = max(rank[label])
        row["test acc"] = round(sum(acc[label]) / len(acc[label]), 4)
        row["test acc std"] = round(_std(acc[label]), 4)
        rows.append(row)
    ctx.table("row_spread", rows,
              f"Final weight row spread per hidden layer (0 = all units identical), numerical "
              f"rank of the last hidden layer's activations on the test set, and test accuracy "
              f"on the ring; mean over {cfg.seeds} seed(s).")

    def worst(label: str, q: str) -> float:
        return max(v for (lab, _, qq), pts in curves.items() if lab == label and qq == q
                   for _, v in pts)

    c = ctx.controlled
    if ctx.control:
        ctx.note("Control run: the symmetry claims read the Xavier (random) net, "
                 "random-breaks-symmetry the constant-0.1 net, and symmetric-net-underfits "
                 "compares Xavier with Xavier on seeds + 1000.")
    ctx.check("constant-rows-stay-equal", worst(c("constant 0.1", RANDOM), "all"), seeds=seeds,
              exact=True, detail=f"over {len(layers)} hidden layers, every {cfg.every} steps")
    ctx.check("constant-grads-equal", worst(c("constant 0.1", RANDOM), "all_grad"),
              seeds=seeds, exact=True)
    ctx.check("zeros-rows-stay-equal", worst(c("zeros", RANDOM), "all"), seeds=seeds,
              exact=True)
    rnd_label = c(RANDOM, "constant 0.1")
    rnd = {layer: final[(rnd_label, layer)] for layer in layers}
    ctx.check("random-breaks-symmetry", values=[min(v) for v in zip(*rnd.values())],
              seeds=seeds, detail=f"{rnd_label}: " + "; ".join(
                  f"{layer}: min {min(v):.3f}" for layer, v in rnd.items()))
    best_sym = (RANDOM_ALT if ctx.control else
                max(SYMMETRIC, key=lambda k: sum(acc[k])))
    gaps = [r - s for r, s in zip(acc[RANDOM], acc[best_sym])]
    ctx.check("symmetric-net-underfits", values=gaps, seeds=seeds,
              detail=f"against {best_sym}; " + "; ".join(
                  f"{k}: {sum(v) / len(v):.3f}" for k, v in acc.items()))

    # Figure 1: row spread of weights and gradients over training, per init and layer.
    floor = 1e-12
    colors = {"zeros": "tab:gray", "constant 0.1": "tab:orange", RANDOM: "tab:blue"}
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "v"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, q, title in ((axes[0], "weight_row_spread", "incoming weights"),
                         (axes[1], "grad_row_spread", "weight gradients")):
        for label in INITS:
            for j, layer in enumerate(layers):
                pts = curves.get((label, layer, q), [])
                # zeros and constant both sit at the floor: draw zeros as markers only,
                # so the constant init's lines do not hide them.
                style = dict(ls="none", marker=markers[j % len(markers)], ms=6,
                             markevery=2, mfc="none") if label == "zeros" else \
                    dict(ls=styles[j % len(styles)], lw=1.8)
                ax.plot([p[0] for p in pts], [max(p[1], floor) for p in pts],
                        color=colors[label], label=f"{label}, {layer}", **style)
        ax.axhline(1e-5, color="k", lw=0.8, ls=(0, (1, 3)))
        ax.set_yscale("log")
        ax.set_ylim(floor / 3, 10)
        ax.set_xlabel("training step")
        ax.set_title(f"Row spread of each hidden layer's {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"row spread (0 plotted at {floor:g})")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ctx.figure("row_spread", fig,
               "Random init keeps each layer's units distinct (spread near 1) for the whole "
               "run, while with zeros or a constant the units' weights and gradients stay "
               "identical (spread 0, or float rounding far below the dotted 1e-5 line).")

    # Figure 2: the last hidden layer's activations on 40 test points after training.
    fig, axes = plt.subplots(1, len(INITS), figsize=(15, 4), layout="constrained")
    for ax, label in zip(axes, INITS):
        # each panel on its own symmetric scale: the constant init's activations are small
        lim = max(units[label].abs().max().item(), 1e-6)
        im = ax.imshow(units[label].numpy(), aspect="auto", cmap="RdBu_r", vmin=-lim,
                       vmax=lim, interpolation="nearest")
        ax.set_title(f"{label}: test acc {sum(acc[label]) / len(acc[label]):.2f}")
        ax.set_xlabel(f"unit of block{cfg.depth} (last hidden layer)")
        fig.colorbar(im, ax=ax, label="tanh activation")
    axes[0].set_ylabel("test example")
    ctx.figure("hidden_units", fig,
               "After training, every column (unit) is the same with zeros or a constant "
               "init - the layer is one unit copied - while random init gives distinct units "
               "(each panel has its own colour scale).")
