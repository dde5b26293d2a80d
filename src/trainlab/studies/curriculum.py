"""curriculum: easy examples first (Bengio et al. 2009) on Shapeset-3×2.

Lecture 003 ("Additional steps: shuffling and curriculum learning"): examples are usually
shuffled so that each batch is a fair sample; curriculum learning (Bengio, Louradour,
Collobert & Weston 2009) instead starts with easy examples — in their shape experiment,
Shapeset images with less variability — and switches to the full distribution later, and
reaches a given test error sooner. Here "easy" is an image with one shape (classes 0-2 of
Shapeset-3×2) and "hard" one with two overlapping shapes (classes 3-8): the curriculum
trains on easy images for the first part of the budget, then on all; the anti-curriculum on
hard ones first; the baseline on shuffled images throughout. Each ordering is two phases with
the same optimizer settings, evaluated on the full test set; several seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainlab.data.base import Dataset
from trainlab.engine.history import History
from trainlab.studies._training import build_mlp, flatten, mean_std, plot_curves
from trainlab.studies.base import Claim, StudyContext, study


@dataclass(frozen=True)
class Config:
    width: int = 256
    depth: int = 3
    steps: int = 3000
    switch: float = 0.3  # share of the budget on the first phase
    batch: int = 32
    lr: float = 0.05
    n_train: int = 20000
    eval_every: int = 100
    seeds: int = 3


def steps_to(history_rows: list[dict], target: float) -> float:
    """First evaluated step whose test accuracy reaches ``target`` (inf if none)."""
    for r in history_rows:
        if r.get("test_acc", -1) >= target:
            return float(r["step"])
    return math.inf


@study(
    "curriculum",
    title="Curriculum learning: easy Shapeset images first",
    source="Lecture 003, 'Additional steps: shuffling and curriculum learning'; Bengio, "
           "Louradour, Collobert & Weston 2009, 'Curriculum learning', §4 (shapes)",
    summary="An MLP trains on Shapeset-3×2 in three orders: shuffled throughout, a curriculum "
            "(one-shape images first, then all) and an anti-curriculum (two-shape images "
            "first, then all), several seeds, with the same budget and optimizer. The "
            "curriculum is expected to reach a given test accuracy sooner.",
    scales={
        "test": Config(width=16, depth=2, steps=60, n_train=600, eval_every=10, seeds=1),
        "quick": Config(),
        "paper": Config(width=1000, steps=100000, n_train=200000, eval_every=1000, seeds=5),
    },
    claims=(
        Claim("curriculum-sooner", "The curriculum reaches a given test accuracy sooner",
              "steps to reach 90% of the shuffled run's final test accuracy, curriculum / "
              "shuffled (mean over seeds, beyond the spread)", "<", 1.0,
              why="Bengio et al. 2009, figure 3: the curriculum's test error falls below the "
                  "baseline's after the switch"),
        Claim("curriculum-beats-anti", "Easy-first ends no worse than hard-first",
              "final test accuracy, curriculum − anti-curriculum (mean, beyond the spread)",
              ">", 0.0, why="if the order matters, easy-first should not be the losing one"),
    ),
    quick_seconds=120,
    datasets=("shapeset",),  # Shapeset-3×2, generated (as in the paper)
)
def run(ctx: StudyContext, cfg: Config) -> None:
    data = flatten(ctx.dataset("shapeset", n_train=cfg.n_train, n_test=2000, seed=ctx.seed))
    easy = data.y_train < 3
    # one data object per subset, shared by the runs that train on it (so they share a pack)
    subsets = {"easy": Dataset(data.x_train[easy], data.y_train[easy], data.x_test,
                               data.y_test, data.meta),
               "hard": Dataset(data.x_train[~easy], data.y_train[~easy], data.x_test,
                               data.y_test, data.meta),
               "all": Dataset(data.x_train, data.y_train, data.x_test, data.y_test,
                              data.meta)}
    orders = {"shuffled": ("all", "all"), "curriculum": ("easy", "all"),
              "anti-curriculum": ("hard", "all")}
    sizes = (data.x_train.shape[1], *[cfg.width] * cfg.depth, len(data.meta.classes))
    k1 = max(1, int(cfg.steps * cfg.switch))
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    jobs = [(name, s) for name in orders for s in seeds]
    models = [build_mlp(sizes, "relu", "he_normal", seed=s) for _, s in jobs]
    rows_of: list[list[dict]] = [[] for _ in jobs]
    # phase 2 starts from phase 1's trained models: one grid per phase
    for phase, steps in enumerate((k1, cfg.steps - k1)):
        runs = []
        for (name, s), model in zip(jobs, models):
            part = orders[name][phase]
            runs.append(ctx.grid_run(model, subsets[part],
                                     label=f"{name}-phase{phase + 1}-seed{s}", steps=steps,
                                     batch_size=cfg.batch, optimizer="momentum", lr=cfg.lr,
                                     seed=s * 10 + phase, log_every=cfg.eval_every,
                                     eval_every=cfg.eval_every,
                                     config={"order": name, "phase": phase + 1,
                                             "subset": part}))
        offset = 0 if phase == 0 else k1
        for rows, h in zip(rows_of, ctx.train_grid(runs)):
            rows += [{**r, "step": r["step"] + offset} for r in h.metrics]
    rows_by: dict[str, list[list[dict]]] = {o: [] for o in orders}
    hists: dict[str, list] = {o: [] for o in orders}
    for (name, _), rows in zip(jobs, rows_of):
        rows_by[name].append(rows)
        hists[name].append(History(metrics=rows))
    ratios, finals = [], {o: [] for o in orders}
    for k in range(len(seeds)):
        target = 0.9 * rows_by["shuffled"][k][-1]["test_acc"]
        ratios.append(steps_to(rows_by["curriculum"][k], target) /
                      steps_to(rows_by["shuffled"][k], target))
        for o in orders:
            finals[o].append(rows_by[o][k][-1]["test_acc"])
    m, s = mean_std(ratios)
    ctx.check("curriculum-sooner", m, spread=s, seeds=seeds)
    m, s = mean_std([a - b for a, b in zip(finals["curriculum"], finals["anti-curriculum"])])
    ctx.check("curriculum-beats-anti", m, spread=s, seeds=seeds)
    ctx.table("orders", [{"order": o, "final test acc": mean_std(finals[o])[0],
                          "std": mean_std(finals[o])[1]} for o in orders],
              f"Final test accuracy after {cfg.steps} steps ({k1} on the first phase), seeds "
              f"{seeds}.")
    fig = plot_curves(hists, "test_acc", ylabel="test accuracy (full test set)",
                      colors={"shuffled": "tab:gray", "curriculum": "tab:green",
                              "anti-curriculum": "tab:red"},
                      title="Shapeset-3×2: order of the training examples")
    fig.axes[0].axvline(k1, color="k", ls=":", lw=1)
    ctx.figure("test_accuracy", fig, "Test accuracy over training for each ordering (dotted "
               "line: the switch from the first phase to all images); bands ± one std over "
               "seeds.")
