"""glorot-table1: Glorot & Bengio 2010, Table 1 at CPU scale — activation × initialization.

Table 1 of the paper gives the test error of 5-hidden-layer networks (1000 units) with
sigmoid, tanh and softsign units, each with the "standard" initialization
``U[−1/√n, 1/√n]`` and the "normalized" one ``U[±√6/√(n_in + n_out)]`` (Xavier), on
Shapeset-3×2 (trained online), MNIST, CIFAR-10 and Small-ImageNet. Its orderings: sigmoid is
worst; the normalized init helps tanh most (tanh-N beats tanh); softsign is less sensitive to
the init than tanh. Here the same six networks, narrower, train with SGD + momentum on
Shapeset-3×2 (as the paper), MNIST-1D, and MNIST when its files are present; several seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.data.base import Dataset
from trainlab.report.figures import pyplot
from trainlab.studies._training import classification_data, flatten, mean_std, mlp_run
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

ACTS = ("sigmoid", "tanh", "softsign")
INITS = {"standard": "glorot_standard", "normalized": "xavier_uniform"}


#: Glorot & Bengio 2010, Table 1, Shapeset-3×2 column: test error (%) after training with the
#: learning rate chosen per network on a validation set
PAPER_SHAPESET = {("sigmoid", "standard"): 82.61, ("tanh", "standard"): 27.15,
                  ("tanh", "normalized"): 15.60, ("softsign", "standard"): 16.27,
                  ("softsign", "normalized"): 16.06}
PAPER_UPDATES = 5_000_000  # §2.3: the lr is chosen on validation error after 5 million updates
SOURCE = "Glorot & Bengio 2010, Table 1 (Shapeset-3×2)"


@dataclass(frozen=True)
class Config:
    width: int = 256
    depth: int = 5
    steps: int = 1000
    batch: int = 10
    #: plain SGD (the paper's), the lr chosen per network from this grid by the validation
    #: error of the first seed; the other seeds train at the chosen lr
    lrs: tuple[float, ...] = (0.01, 0.03, 0.1)
    shapeset_train: int = 10000
    mnist1d_train: int = 4000
    mnist_train: int = 10000
    val_fraction: float = 0.2  # of each training set, held out to choose the lr
    seeds: int = 3
    sets: tuple[str, ...] = ("Shapeset-3x2", "MNIST-1D", "MNIST")


def _split(ds, fraction: float):
    """``(train, validation)``: the last ``fraction`` of the training examples held out."""
    n = len(ds.x_train)
    k = n - max(1, int(round(n * fraction)))
    return (Dataset(ds.x_train[:k], ds.y_train[:k], ds.x_test, ds.y_test, ds.meta),
            (ds.x_train[k:], ds.y_train[k:]))


def _error(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        out = model(x)
    model.train()
    if not torch.isfinite(out).all():
        return math.nan
    return float((out.argmax(1) != y).float().mean())


def _datasets(ctx: StudyContext, cfg: Config) -> dict:
    """Shapeset-3x2 and MNIST-1D, and MNIST when the run's data include it (``ctx.data``);
    only those named in ``cfg.sets``."""
    sets = {}
    if "Shapeset-3x2" in cfg.sets:
        ds = ctx.dataset("shapeset", n_train=cfg.shapeset_train, n_test=2000, seed=ctx.seed)
        sets["Shapeset-3x2"] = flatten(ds)
    if "MNIST-1D" in cfg.sets:
        sets["MNIST-1D"] = classification_data(ctx, "mnist1d", n_train=cfg.mnist1d_train)
    if "MNIST" in cfg.sets and ctx.uses("mnist"):
        sets["MNIST"] = classification_data(ctx, "mnist", n_train=cfg.mnist_train,
                                            n_test=2000)
    return sets


@study(
    "glorot-table1",
    title="Test error of sigmoid, tanh and softsign nets under standard and normalized init",
    source="Glorot & Bengio 2010, 'Understanding the difficulty of training deep feedforward "
           "neural networks', Table 1",
    summary="Six 5-hidden-layer networks — sigmoid, tanh and softsign, each with the standard "
            "U[−1/√n, 1/√n] and the normalized (Xavier) initialization — train with the same "
            "optimizer and budget on Shapeset-3×2, MNIST-1D and (when present) MNIST, several "
            "seeds. The table of test errors is checked against the paper's orderings.",
    scales={
        "test": Config(width=16, depth=2, steps=60, lrs=(0.03, 0.1), shapeset_train=300,
                       mnist1d_train=300, mnist_train=300, seeds=3),
        "quick": Config(),
        # Table 1's Shapeset column: 5 × 1000 units, batch 10, plain SGD, the lr chosen per
        # network on validation; 2000 updates (0.04% of the paper's 5 million), ≈ 12 min CPU
        "reference": Config(width=1000, steps=2000, lrs=(0.01, 0.03, 0.1),
                            shapeset_train=25000, seeds=3, sets=("Shapeset-3x2",)),
        "paper": Config(width=1000, steps=PAPER_UPDATES, lrs=(0.003, 0.01, 0.03, 0.1, 0.3),
                        shapeset_train=1000000, seeds=5),
    },
    claims=(
        Claim("sigmoid-worst", "Sigmoid networks are the worst",
              "test error of sigmoid (standard init) − the highest of tanh, tanh-N, softsign, "
              "softsign-N, each at its validation-chosen lr, mean over datasets, per seed",
              ">", 0.0,
              why="Table 1: sigmoid has the highest error on every dataset (Shapeset 82.61 "
                  "against at most 27.15)",
              control="sigmoid -> tanh (standard init, seeds disjoint from the tanh arm's)",
              on={"shapeset+mnist1d": On(SAME, "a pure comparison between setups on the same "
                  "data, averaged over the datasets the run has: Table 1 shows this ordering on "
                  "each of its datasets, so it is expected on the mean over Shapeset-3x2 and "
                  "MNIST-1D alone as well")}),
        Claim("normalized-helps-tanh", "The normalized init helps tanh",
              "test error tanh standard − tanh normalized, mean over datasets, per seed", ">",
              0.0, why="Table 1: Tanh-N beats Tanh on every dataset (Shapeset 27.15 -> 15.60)",
              control="normalized -> standard init (seeds disjoint from the standard arm's)",
              on={"shapeset+mnist1d": On(SAME, "a pure comparison between setups on the same "
                  "data, averaged over the datasets the run has: Table 1 shows this ordering on "
                  "each of its datasets, so it is expected on the mean over Shapeset-3x2 and "
                  "MNIST-1D alone as well")}),
        Claim("softsign-less-sensitive", "Softsign is less sensitive to the init than tanh",
              "(tanh − tanh-N) − |softsign − softsign-N| of the test error, mean over "
              "datasets, per seed", ">", 0.0,
              why="Table 1: softsign's two rows are closer together than tanh's (Shapeset: "
                  "16.27 vs 16.06 against 27.15 vs 15.60); was |Δ softsign| / |Δ tanh| < 1, "
                  "one number without a spread",
              control="softsign -> tanh (seeds disjoint from the tanh arm's)",
              on={"shapeset+mnist1d": On(SAME, "a pure comparison between setups on the same "
                  "data, averaged over the datasets the run has: Table 1 shows this ordering on "
                  "each of its datasets, so it is expected on the mean over Shapeset-3x2 and "
                  "MNIST-1D alone as well")}),
    ),
    quick_seconds=240,
    datasets=("shapeset+mnist1d+mnist", "shapeset+mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()
    import numpy as np

    full = _datasets(ctx, cfg)
    split = {d: _split(ds, cfg.val_fraction) for d, ds in full.items()}
    sets = {d: tr for d, (tr, _) in split.items()}
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    # the networks: the six of the table, and in the control run tanh / tanh-N again on
    # disjoint seeds (each claim's control compares tanh with itself)
    nets = [(act, init, "") for act in ACTS for init in INITS]
    if ctx.control:
        nets += [("tanh", init, "-alt") for init in INITS]
    net_seeds = {net: ([s + 1000 for s in seeds] if net[2] else seeds) for net in nets}

    def run_of(dname, net, s, lr, phase):
        act, init, tag = net
        data = sets[dname]
        sizes = (data.x_train.shape[1], *[cfg.width] * cfg.depth, len(data.meta.classes))
        return mlp_run(ctx, data, f"{dname}-{act}{tag}-{init}-lr{lr:g}-seed{s}", sizes, act,
                       INITS[init], seed=s, steps=cfg.steps, batch_size=cfg.batch,
                       optimizer="sgd", lr=lr, log_every=max(1, cfg.steps // 10),
                       config={"dataset": dname, "init_label": init, "phase": phase})

    # 1. the lr of each network: the first seed at every lr of the grid (one pack: the lr
    #    sweep of a seed shares its batches), the validation error decides
    keys, runs = [], []
    for dname in sets:
        for net in nets:
            for lr in cfg.lrs:
                keys.append((dname, net, lr))
                runs.append(run_of(dname, net, net_seeds[net][0], lr, "lr"))
    val, first = {}, {}
    for (dname, net, lr), r, h in zip(keys, runs, ctx.train_grid(runs)):
        xv, yv = split[dname][1]
        val[(dname, net, lr)] = _error(r.model, xv, yv)
        first[(dname, net, lr)] = 1 - h.metrics[-1].get("test_acc", math.nan) if h.metrics \
            else math.nan
    best = {}
    for dname in sets:
        for net in nets:
            scores = {lr: val[(dname, net, lr)] for lr in cfg.lrs}
            best[(dname, net)] = min(cfg.lrs, key=lambda lr: (
                scores[lr] if math.isfinite(scores[lr]) else math.inf, lr))
    # 2. the other seeds at the chosen lr
    keys, runs = [], []
    for dname in sets:
        for net in nets:
            for s in net_seeds[net][1:]:
                keys.append((dname, net))
                runs.append(run_of(dname, net, s, best[(dname, net)], "seeds"))
    err: dict = {(d, n): [first[(d, n, best[(d, n)])]] for d in sets for n in nets}
    for key, h in zip(keys, ctx.train_grid(runs)):
        acc = h.metrics[-1].get("test_acc", math.nan) if h.metrics else math.nan
        err[key].append(1 - acc)

    def e(d, act, init, k, tag=""):
        return err[(d, (act, init, tag))][k]

    rows = []
    for dname in sets:
        row = {"dataset": dname}
        for act in ACTS:
            for init in INITS:
                m, _ = mean_std(err[(dname, (act, init, ""))])
                name = f"{act}{'-N' if init == 'normalized' else ''}"
                row[name] = round(m, 4)
                row[f"{name} lr"] = best[(dname, (act, init, ""))]
        rows.append(row)
    ctx.table("table1", rows, f"Test error (mean over seeds {seeds}) after {cfg.steps} steps of "
              f"plain SGD (batch {cfg.batch}) at the lr of {list(cfg.lrs)} with the lowest "
              f"validation error ({cfg.val_fraction:.0%} of the training set held out, first "
              f"seed), {cfg.depth} hidden layers × {cfg.width}; '-N': normalized init (the "
              "paper's notation).")
    ctx.table("validation", [{"dataset": d, "network": f"{a}{t}-{i}", "lr": lr,
                              "validation_error": round(val[(d, (a, i, t), lr)], 4),
                              "chosen": lr == best[(d, (a, i, t))]}
                             for d in sets for (a, i, t) in nets for lr in cfg.lrs],
              "The validation error of each network's first seed at each lr of the grid.",
              show=False)

    def per_seed(fn) -> list[float]:
        """fn(dataset, seed index) averaged over datasets, one value per seed."""
        return [sum(fn(d, k) for d in sets) / len(sets) for k in range(len(seeds))]

    others = [(a, i) for a in ("tanh", "softsign") for i in INITS]
    # sigmoid-worst: the sigmoid (control: tanh on disjoint seeds) against the worst other
    if ctx.control:
        top = per_seed(lambda d, k: e(d, "tanh", "standard", k, "-alt"))
    else:
        top = per_seed(lambda d, k: e(d, "sigmoid", "standard", k))
    worst = per_seed(lambda d, k: max(e(d, a, i, k) for a, i in others))
    ctx.check("sigmoid-worst", values=[a - b for a, b in zip(top, worst)], seeds=seeds)
    norm_tag = "-alt" if ctx.control else ""
    norm_init = "standard" if ctx.control else "normalized"
    th = per_seed(lambda d, k: e(d, "tanh", "standard", k) - e(d, "tanh", norm_init, k,
                                                                norm_tag))
    ctx.check("normalized-helps-tanh", values=th, seeds=seeds)
    d_tanh = per_seed(lambda d, k: e(d, "tanh", "standard", k) - e(d, "tanh", "normalized", k))
    if ctx.control:
        d_soft = per_seed(lambda d, k: abs(e(d, "tanh", "standard", k, "-alt")
                                           - e(d, "tanh", "normalized", k, "-alt")))
    else:
        d_soft = per_seed(lambda d, k: abs(e(d, "softsign", "standard", k)
                                           - e(d, "softsign", "normalized", k)))
    ctx.check("softsign-less-sensitive", values=[a - b for a, b in zip(d_tanh, d_soft)],
              seeds=seeds, detail=f"tanh − tanh-N {sum(d_tanh) / len(d_tanh):.4f}, "
                                  f"|{'tanh (disjoint seeds)' if ctx.control else 'softsign'}"
                                  f" Δ| {sum(d_soft) / len(d_soft):.4f}")

    same = cfg.width == 1000 and cfg.depth == 5 and cfg.batch == 10 and \
        cfg.steps == PAPER_UPDATES
    if "Shapeset-3x2" in sets:
        for (act, init), paper in PAPER_SHAPESET.items():
            ctx.anchor(f"Shapeset-3x2 test error, {act}{'-N' if init == 'normalized' else ''} "
                       "(%)", paper=paper, source=SOURCE,
                       values=[100 * v for v in err[("Shapeset-3x2", (act, init, ""))]],
                       same_setup=same, differences="" if same else
                       f"{cfg.depth} × {cfg.width} units, {cfg.steps} updates of batch "
                       f"{cfg.batch} ({cfg.steps / PAPER_UPDATES:.2%} of the paper's "
                       f"{PAPER_UPDATES:,}), lr from {list(cfg.lrs)}, "
                       f"{len(sets['Shapeset-3x2'].x_train)} training images (the paper "
                       "generates them online)")
    ctx.note(f"Setup: plain SGD at batch {cfg.batch} with the lr chosen per network on "
             f"validation, as the paper; {cfg.steps} updates are "
             f"{cfg.steps / PAPER_UPDATES:.2%} of the paper's {PAPER_UPDATES:,}, so the errors "
             "are far above Table 1's at this scale: the orderings, not the levels, are "
             "compared, and a network that has not started to learn (sigmoid) is worst here "
             "partly because it is slowest.")

    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    for ax, dname in zip(axes[0], sets):
        x = np.arange(len(ACTS))
        for j, init in enumerate(INITS):
            ms = [mean_std(err[(dname, (a, init, ""))])[0] for a in ACTS]
            ss = [mean_std(err[(dname, (a, init, ""))])[1] for a in ACTS]
            ax.bar(x + (j - 0.5) * 0.38, ms, 0.38, yerr=ss, capsize=3, label=init)
        ax.set_xticks(x, ACTS)
        ax.set_ylabel("test error")
        ax.set_title(dname)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    ctx.figure("table1", fig, "Test error per activation and initialization, each network at "
               "its validation-chosen lr (bars: mean over seeds, ± one std): sigmoid is worst, "
               "and the normalized init lowers tanh's error more than softsign's.")
