"""Study ``loss-landscape``: BatchNorm smooths the loss landscape (Santurkar et al. 2018).

Lecture 004: BN "smoothens the loss surface to help the optimization algorithm". Santurkar,
Tsipras, Ilyas & Madry, "How Does Batch Normalization Help Optimization?" (NeurIPS 2018),
fig. 4: at points of training, moving along the gradient, a network with BN has a smaller
range of the loss, a smaller ℓ2 change of the gradient and a smaller effective
β-smoothness than the same network without it.

Setup: the same ReLU MLP with and without BN on MNIST-1D, SGD at one learning rate;
:class:`LossLandscape` at scheduled steps moves along the gradient by
η = 0.05 … 0.4 and records the three quantities. Each claim compares, per seed, the median
over the logged steps of BN's value over the plain net's.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch

from trainlab.init import init_model
from trainlab.models import mlp
from trainlab.probes import LossLandscape
from trainlab.report.landscape_plots import plot_landscape
from trainlab.studies.base import Claim, StudyContext, study

QUANTITIES = (("loss_range", "loss-range-smaller"),
              ("grad_change_max", "grad-change-smaller"),
              ("beta_smoothness", "beta-smaller"))


@dataclass(frozen=True)
class Config:
    depth: int = 8
    width: int = 128
    steps: int = 300
    every: int = 30
    batch_size: int = 128
    lr: float = 0.1
    n_train: int = 4000
    seeds: int = 2


def _median_by_quantity(records: list, quantity: str, skip_first: bool = True) -> float:
    vals = sorted((s, v) for s, layer, q, v in records if layer == "model" and q == quantity)
    if skip_first and len(vals) > 1:
        vals = vals[1:]  # step 0: both nets at init, before training shapes the landscape
    finite = [v for _, v in vals if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def _claim(qty: str) -> Claim:
    names = {"loss_range": "the range of the loss", "grad_change_max":
             "the largest ℓ2 change of the gradient", "beta_smoothness":
             "the effective β-smoothness"}
    cid = dict(QUANTITIES)[qty]
    return Claim(cid, f"Along the gradient, BN makes {names[qty]} smaller",
                 quantity=f"median over logged steps of {qty} (BN) / {qty} (no BN), mean "
                          "over seeds", op="<", threshold=1.0,
                 why="Santurkar et al. fig. 4: the BN curves lie below the standard ones; "
                     "ratio < 1 by the one-sided 95% t bound over the per-seed ratios",
                 control="BN -> none (the plain net on seeds disjoint from the baseline's)")


@study(
    "loss-landscape",
    title="BatchNorm smooths the loss landscape along the gradient",
    source="Lecture 004, 'BN smoothens the loss surface'; Santurkar et al. 2018, fig. 4",
    summary="Trains the same ReLU MLP with and without BatchNorm at one learning rate and, at "
            "scheduled steps, moves along the gradient by η = 0.05…0.4, recording the range "
            "of the loss, the ℓ2 change of the gradient and the effective β-smoothness.",
    scales={
        "test": Config(depth=3, width=16, steps=8, every=4, batch_size=32, n_train=256,
                       seeds=3),
        "quick": Config(seeds=3),
        "paper": Config(depth=12, width=512, steps=5000, every=100, seeds=5),
    },
    claims=tuple(_claim(q) for q, _ in QUANTITIES),
    quick_seconds=120,
    data_note="MNIST-1D (embedded); the paper used VGG on CIFAR-10.",
    datasets=("mnist1d",),
    reference_note="the paper's setup (VGG on CIFAR-10) needs data that are not on this "
                   "machine; the MLP on MNIST-1D is a stand-in with no paper number to anchor",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    ds = ctx.dataset("mnist1d", n_train=cfg.n_train, n_test=1000)
    data = (ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    ratios: dict[str, list[float]] = {q: [] for q, _ in QUANTITIES}
    rows, first_records = [], {}
    # every run carries the LossLandscape probe (hooks on the model, no pack form): train_grid
    # trains each alone, and the page says why
    runs = []
    for s in seeds:
        for norm in ("none", "bn"):
            # the control's "bn" arm: the plain net again, on a seed disjoint from the baseline
            arm = ctx.controlled(norm, "none")
            ms = s + 1000 if (ctx.control and norm == "bn") else s
            torch.manual_seed(ms)
            m = mlp([ds.x_train.shape[1], *([cfg.width] * cfg.depth),
                              ds.meta.num_classes], activation="relu", norm=arm)
            init_model(m, "he_normal", generator=ms)
            probe = LossLandscape(every=cfg.every)
            runs.append(ctx.grid_run(m, data, label=f"{norm}-seed{s}", steps=cfg.steps,
                                     batch_size=cfg.batch_size, optimizer="sgd", lr=cfg.lr,
                                     probes=[probe], eval_every=cfg.steps,
                                     log_every=min(cfg.every, cfg.steps), seed=ms,
                                     config={"norm": norm}))
    histories = iter(ctx.train_grid(runs))
    for s in seeds:
        med: dict[str, dict[str, float]] = {}
        for norm in ("none", "bn"):
            h = next(histories)
            label = "batch norm" if norm == "bn" else "standard"
            if s == seeds[0]:
                first_records[label] = list(h.probe_records)
            med[norm] = {q: _median_by_quantity(h.probe_records, q) for q, _ in QUANTITIES}
            rows.append({"seed": s, "net": label, **med[norm],
                         "test_acc": h.final().get("test_acc", math.nan),
                         "status": h.status})
        for q, _ in QUANTITIES:
            ratios[q].append(med["bn"][q] / med["none"][q] if med["none"][q] > 0 else math.nan)
    ctx.table("landscape", rows, "Median over the logged steps (step 0 excluded) of each "
              "landscape quantity, per seed and net.")
    if ctx.control:
        ctx.note("Control run: the 'batch norm' arm is the plain net on seeds + 1000.")
    for q, cid in QUANTITIES:
        ctx.check(cid, values=ratios[q], seeds=seeds)
    fig = plot_landscape(first_records, title=f"ReLU MLP {cfg.depth}x{cfg.width} on MNIST-1D, "
                         f"lr {cfg.lr} (seed {seeds[0]})")
    ctx.figure("landscape", fig, "Along the gradient, the BN net's loss varies less, its "
               "gradient changes less and its effective β-smoothness is lower.")
