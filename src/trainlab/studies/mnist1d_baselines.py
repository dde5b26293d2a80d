"""mnist1d-baselines: Greydanus 2020's four baselines on MNIST-1D, in order and shuffled.

MNIST-1D (Greydanus 2020, "Scaling down deep learning") is the data every study falls back
to when MNIST is absent, so its published baselines are the sanity anchor for those runs: a
logistic regression, an MLP, a CNN and a GRU reach 32 / 68 / 94 / 91% test accuracy; with
the 40 positions of every sequence permuted by one fixed random permutation ("shuffled": the
spatial structure removed, the information kept) 32 / 68 / 56 / 57%. A model without spatial
priors (logistic regression, MLP) is blind to the order, so its accuracy is the same; the
CNN and the GRU lose what their locality and recurrence gave them.

The setup is the paper's (``mnist1d/models.py`` and ``train.py`` of its repository): the
reference dataset (4000 / 1000 sequences of length 40, ``trainlab.data.mnist1d``), PyTorch's
default initialization, Adam with learning rate 0.01, batch 100, 6000 steps; LinearBase
(``Linear(40, 10)``), MLPBase (40-100-100-10, ReLU), ConvBase (three ``Conv1d`` of 25
channels, kernels 5/3/3, stride 2, padding 1, ReLU, then ``Linear(125, 10)``) and GRUBase (a
bidirectional GRU of 6 units per direction read at all 40 steps, then ``Linear(480, 10)``).
The quick scale trains a third of the steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainlab.data.base import Dataset
from trainlab.report.figures import pyplot
from trainlab.studies._training import mean_std
from trainlab.studies.base import Claim, StudyContext, study

#: Greydanus 2020, the README's results table (test accuracy, %): in order and shuffled
PAPER = {"logistic": (32.0, 32.0), "mlp": (68.0, 68.0), "cnn": (94.0, 56.0),
         "gru": (91.0, 57.0)}
MODELS = ("logistic", "mlp", "cnn", "gru")
PAPER_STEPS = 6000
SOURCE = "Greydanus 2020, README results table"


class GRUClassifier(nn.Module):
    """Greydanus's GRUBase: a bidirectional GRU over the sequence (one input feature per
    step), its outputs at every step flattened into one linear layer."""

    def __init__(self, length: int = 40, hidden: int = 6, classes: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(2 * hidden * length, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x.reshape(x.shape[0], -1, 1))
        return self.linear(h.reshape(h.shape[0], -1))


def build(name: str, seed: int, length: int = 40) -> nn.Module:
    """One of the paper's four models with PyTorch's default initialization under ``seed``."""
    torch.manual_seed(seed)
    if name == "logistic":
        return nn.Sequential(nn.Linear(length, 10))
    if name == "mlp":
        return nn.Sequential(nn.Linear(length, 100), nn.ReLU(), nn.Linear(100, 100),
                             nn.ReLU(), nn.Linear(100, 10))
    if name == "cnn":
        out = length
        for k in (5, 3, 3):
            out = (out + 2 - k) // 2 + 1  # stride 2, padding 1
        return nn.Sequential(
            nn.Unflatten(1, (1, length)),
            nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(25 * out, 10))
    if name == "gru":
        return GRUClassifier(length)
    raise ValueError(f"unknown baseline {name!r}. Allowed: {', '.join(MODELS)}.")


def shuffled(ds: Dataset, seed: int = 0) -> Dataset:
    """``ds`` with the positions of every sequence permuted by one fixed permutation."""
    perm = torch.randperm(ds.x_train.shape[1], generator=torch.Generator().manual_seed(seed))
    return Dataset(ds.x_train[:, perm], ds.y_train, ds.x_test[:, perm], ds.y_test, ds.meta)


@dataclass(frozen=True)
class Config:
    steps: int = 2000
    seeds: int = 3
    n_train: int | None = None  # None: the reference 4000 / 1000 split
    lr: float = 0.01
    batch_size: int = 100


_GAP = ("the paper's gap is {gap:g} points (README table); the threshold, {thr:g} points, "
        "leaves room for the shorter budget at the quick scale and the seed spread")


@study(
    "mnist1d-baselines",
    title="MNIST-1D's four baselines, in order and with the positions shuffled",
    source="Greydanus 2020, 'Scaling down deep learning' (MNIST-1D): logistic regression, "
           "MLP, CNN and GRU, 32/68/94/91% test accuracy; shuffled 32/68/56/57%",
    summary="The four baseline models of the MNIST-1D paper are trained with its optimizer, "
            "batch size and initialization on the reference dataset, once on the sequences "
            "as they are and once with the 40 positions permuted by one fixed permutation. "
            "The CNN and the GRU beat the MLP on ordered sequences and lose that edge when "
            "the order is shuffled; the MLP and the logistic regression do not notice. The "
            "page puts each accuracy beside the paper's.",
    scales={
        "test": Config(steps=30, seeds=3, n_train=400),
        "quick": Config(),
        # the paper's whole setup (its 6000 Adam steps at batch 100 on the 4000/1000 split)
        # fits a CPU: 8 models x 3 seeds, ≈ 3x the quick scale's time
        "reference": Config(steps=PAPER_STEPS),
        "paper": Config(steps=PAPER_STEPS, seeds=5),
    },
    claims=(
        Claim("cnn-beats-mlp", "On ordered sequences the CNN beats the MLP",
              "test accuracy, CNN − MLP (points, mean over seeds)", ">", 10.0,
              why=_GAP.format(gap=94 - 68, thr=10), control="CNN on shuffled sequences"),
        Claim("gru-beats-mlp", "On ordered sequences the GRU beats the MLP",
              "test accuracy, GRU − MLP (points, mean over seeds)", ">", 5.0,
              why=_GAP.format(gap=91 - 68, thr=5), control="GRU on shuffled sequences"),
        Claim("shuffle-hurts-cnn", "Shuffling the positions costs the CNN its edge",
              "test accuracy, CNN ordered − CNN shuffled (points)", ">", 15.0,
              why=_GAP.format(gap=94 - 56, thr=15), control="shuffled -> ordered"),
        Claim("shuffle-hurts-gru", "Shuffling the positions costs the GRU its edge",
              "test accuracy, GRU ordered − GRU shuffled (points)", ">", 10.0,
              why=_GAP.format(gap=91 - 57, thr=10), control="shuffled -> ordered"),
        Claim("mlp-order-blind", "The MLP does not see the order (same accuracy shuffled)",
              "test accuracy, MLP ordered − MLP shuffled (points)", "in", (-3.0, 3.0),
              why="a permutation of the inputs is a permutation of the first layer's "
                  "columns, whose initial distribution is permutation-invariant: the two "
                  "accuracies have one distribution (paper: 68 and 68); ±3 points is about "
                  "twice the seed spread of a 1000-example test set (±1.5 points)",
              control="MLP -> CNN"),
    ),
    quick_seconds=240,
    datasets=("mnist1d",),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    base = ctx.dataset("mnist1d", n_train=cfg.n_train,
                       n_test=None if cfg.n_train is None else cfg.n_train)
    data = {"ordered": base, "shuffled": shuffled(base)}
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    keys, runs = [], []
    for order, ds in data.items():
        for name in MODELS:
            for s in seeds:
                keys.append((order, name))
                runs.append(ctx.grid_run(
                    build(name, s), ds, label=f"{order}/{name}/seed{s}", seed=s,
                    steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr,
                    log_every=max(1, cfg.steps // 20), eval_every=max(1, cfg.steps // 8),
                    config={"model": name, "order": order}))
    histories = ctx.train_grid(runs)
    acc: dict[tuple[str, str], list[float]] = {}
    curves: dict[tuple[str, str], list] = {}
    for key, h in zip(keys, histories):
        acc.setdefault(key, []).append(100.0 * h.last("test_acc"))
        curves.setdefault(key, []).append(h)

    rows = []
    for name in MODELS:
        for order, col in (("ordered", 0), ("shuffled", 1)):
            m, sd = mean_std(acc[(order, name)])
            rows.append({"model": name, "sequences": order, "test_acc_%": round(m, 2),
                         "std": round(sd, 2), "seeds": len(seeds),
                         "paper_%": PAPER[name][col]})
            ctx.anchor(f"{name} test accuracy, {order} (%)", paper=PAPER[name][col],
                       source=SOURCE, values=acc[(order, name)],
                       same_setup=cfg.steps == PAPER_STEPS and cfg.n_train is None,
                       differences="" if cfg.steps == PAPER_STEPS and cfg.n_train is None else
                       f"{cfg.steps} of the paper's {PAPER_STEPS} steps"
                       + (f", {cfg.n_train} training sequences" if cfg.n_train else ""))
    ctx.table("accuracy", rows, f"Test accuracy after {cfg.steps} Adam steps (lr {cfg.lr}, "
              f"batch {cfg.batch_size}), mean and std over seeds {seeds}, beside the paper's "
              f"({SOURCE}, {PAPER_STEPS} steps).")

    def diff(a: tuple[str, str], b: tuple[str, str]) -> list[float]:
        return [x - y for x, y in zip(acc[a], acc[b])]  # paired by seed

    o, sh = "ordered", "shuffled"
    cnn = (sh, "cnn") if ctx.control else (o, "cnn")
    gru = (sh, "gru") if ctx.control else (o, "gru")
    ctx.check("cnn-beats-mlp", values=diff(cnn, (o, "mlp")), seeds=seeds)
    ctx.check("gru-beats-mlp", values=diff(gru, (o, "mlp")), seeds=seeds)
    other = o if ctx.control else sh  # the control compares ordered with itself
    ctx.check("shuffle-hurts-cnn", values=diff((o, "cnn"), (other, "cnn")), seeds=seeds)
    ctx.check("shuffle-hurts-gru", values=diff((o, "gru"), (other, "gru")), seeds=seeds)
    blind = ctx.controlled("mlp", "cnn")
    ctx.check("mlp-order-blind", values=diff((o, blind), (sh, blind)), seeds=seeds)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colors = {"logistic": "tab:gray", "mlp": "tab:blue", "cnn": "tab:red",
              "gru": "tab:green"}
    for ax, order in zip(axes, (o, sh)):
        for name in MODELS:
            hs = curves[(order, name)]
            steps = [r["step"] for r in hs[0].metrics if "test_acc" in r]
            per = [[100 * r["test_acc"] for r in h.metrics if "test_acc" in r] for h in hs]
            mean = [sum(v) / len(v) for v in zip(*per)]
            ax.plot(steps, mean, color=colors[name], label=f"{name} (paper "
                    f"{PAPER[name][0 if order == o else 1]:g}%)")
            ax.axhline(PAPER[name][0 if order == o else 1], color=colors[name], ls=":",
                       lw=1)
        ax.set_title(f"{order} sequences")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("test accuracy (%), mean over seeds")
    ctx.figure("accuracy_curves", fig,
               "Test accuracy during training, mean over seeds; dotted: the paper's final "
               "accuracy. Left, the sequences in order: the CNN and the GRU pull ahead of the "
               "MLP. Right, with the positions shuffled: they fall back to the MLP's level, "
               "which does not move.")
