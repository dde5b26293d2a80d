"""glorot-saturation: Glorot & Bengio 2010, figure 2 — the top sigmoid layer saturates at 0.

Figure 2 of the paper follows the mean and standard deviation of each hidden layer's sigmoid
outputs on 300 fixed test examples while a 4-hidden-layer sigmoid net with the standard init
``U[−1/√n, 1/√n]`` trains on Shapeset-3×2: the top hidden layer is quickly driven to 0 — the
sigmoid's saturated lower end, where its derivative vanishes — while the lower layers stay
around 0.5, and it only slowly desaturates later. The paper's explanation: early on the
output layer learns from the biases alone, and pushing the top layer's outputs to 0 (where
``σ(x) ≈ 0`` contributes nothing) is the quickest way to that. Tanh and softsign nets, whose
outputs are symmetric around 0, do not collapse this way (figures 3-4).
"""

from __future__ import annotations

from dataclasses import dataclass

from trainlab.probes import batch_stats
from trainlab.probes.base import Schedule
from trainlab.report.figures import pyplot
from trainlab.studies._training import build_mlp, flatten, mean_std
from trainlab.studies.base import Claim, StudyContext, study


@dataclass(frozen=True)
class Config:
    width: int = 500
    depth: int = 4
    steps: int = 3000
    batch: int = 10
    lr: float = 0.1
    n_train: int = 20000
    log_every: int = 50
    seeds: int = 3


class _Moments:
    """The records of a :class:`~trainlab.probes.LayerMoments` probe by logged step:
    ``steps``, and per step one value per layer (bottom to top) of ``mean``, ``std`` and
    ``sat`` (the fraction with ``|h| > 0.95``)."""

    def __init__(self, probe: batch_stats.LayerMoments) -> None:
        cell = {(s, layer, q): v for s, layer, q, v in probe.records()}
        self.steps = sorted({s for s, _, _ in cell})
        names = probe.layer_names
        self.mean, self.std, self.sat = ([[cell[(s, n, q)] for n in names] for s in self.steps]
                                         for q in ("out_mean", "out_std", "out_abs_gt"))


class LayerMoments(batch_stats.AtLogPoints):
    """Callback: mean and std of every ``block{i}.act`` output on fixed examples, at each
    logging point, and the fraction of outputs with ``|h| > 0.95``
    (:class:`~trainlab.probes.LayerMoments` through :class:`~trainlab.probes.AtLogPoints`).
    The study now uses the probe itself; this callback form is kept for scripts that import
    it."""

    def __init__(self, x) -> None:
        super().__init__(batch_stats.LayerMoments("*.act", threshold=0.95), x)

    @property
    def steps(self) -> list[int]:
        return _Moments(self.probe).steps

    @property
    def mean(self) -> list[list[float]]:
        return _Moments(self.probe).mean

    @property
    def std(self) -> list[list[float]]:
        return _Moments(self.probe).std

    @property
    def sat(self) -> list[list[float]]:
        return _Moments(self.probe).sat


@study(
    "glorot-saturation",
    title="The top hidden layer of a sigmoid net saturates at 0 early in training",
    source="Glorot & Bengio 2010, figure 2 (and figures 3-4 for tanh and softsign), §3.1",
    summary="Sigmoid, tanh and softsign nets with 4 hidden layers and the standard init train "
            "with SGD at batch 10 on Shapeset-3×2, several seeds; the mean and std of each "
            "layer's outputs on 300 fixed test examples are followed over training. The "
            "sigmoid net's top hidden layer drops to 0 early while its lower layers stay near "
            "0.5; the tanh and softsign nets' top layers do not collapse to a saturated value.",
    scales={
        "test": Config(width=32, depth=3, steps=40, n_train=500, log_every=10, seeds=1),
        "quick": Config(),
        "paper": Config(width=1000, steps=300000, n_train=1000000, log_every=2000, seeds=3),
    },
    claims=(
        Claim("top-saturates", "The top hidden sigmoid layer quickly saturates near 0",
              "lowest mean output of the top hidden layer in the first third of training, "
              "sigmoid (mean over seeds)", "<", 0.1,
              why="figure 2: the top layer's mean falls to ≈ 0 within the first epochs"),
        Claim("lower-stay", "while the lower layers stay above 0.5",
              "mean output of the first hidden layer at that moment, sigmoid", ">", 0.5,
              why="figure 2: layers 1-3 stay at or above 0.5"),
        Claim("tanh-no-collapse", "Tanh nets do not show this collapse",
              "largest fraction of the top tanh layer's outputs with |h| > 0.95 in the first "
              "third of training", "<", 0.5,
              why="a tanh layer sitting at 0 is in its linear zone, not saturated; figure 3 "
                  "shows no top-layer collapse"),
        Claim("softsign-no-collapse", "nor softsign nets",
              "the same fraction for the top softsign layer", "<", 0.5,
              why="softsign's polynomial tails: |h| > 0.95 needs |x| > 19"),
    ),
    quick_seconds=150,
    datasets=("shapeset",),  # Shapeset-3×2, generated (as in the paper)
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()
    import numpy as np


    data = flatten(ctx.dataset("shapeset", n_train=cfg.n_train, n_test=2000, seed=ctx.seed))
    fixed = data.x_test[:300]
    sizes = (data.x_train.shape[1], *[cfg.width] * cfg.depth, len(data.meta.classes))
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    jobs = [(act, s) for act in ("sigmoid", "tanh", "softsign") for s in seeds]
    probes, runs = [], []
    for act, s in jobs:
        model = build_mlp(sizes, act, "glorot_standard", seed=s)
        # every hidden output on the 300 fixed examples, at step 0, every log_every steps and
        # at the end: a hook-based probe, so each run trains alone (train_grid says so)
        probe = batch_stats.LayerMoments("*.act", threshold=0.95, probe_data=fixed,
                                         mode="as_is",
                                         every=Schedule(cfg.log_every, at=[cfg.steps]))
        probes.append(probe)
        runs.append(ctx.grid_run(model, data, label=f"{act}-seed{s}", steps=cfg.steps,
                                 batch_size=cfg.batch, optimizer="sgd", lr=cfg.lr, seed=s,
                                 log_every=cfg.log_every, eval_every=cfg.steps,
                                 probes=[probe],
                                 config={"sizes": list(sizes), "activation": act,
                                         "init": "glorot_standard"}))
    ctx.train_grid(runs)
    mom: dict[str, list[_Moments]] = {}
    for (act, _), probe in zip(jobs, probes):
        mom.setdefault(act, []).append(_Moments(probe))
    third = cfg.steps // 3
    top_min, lower_at = [], []
    for cb in mom["sigmoid"]:
        idx = [i for i, s in enumerate(cb.steps) if s <= third]
        i_min = min(idx, key=lambda i: cb.mean[i][-1])
        top_min.append(cb.mean[i_min][-1])
        lower_at.append(cb.mean[i_min][0])
    m, s = mean_std(top_min)
    ctx.check("top-saturates", m, spread=s, seeds=seeds)
    m, s = mean_std(lower_at)
    ctx.check("lower-stay", m, spread=s, seeds=seeds)
    for act, cid in (("tanh", "tanh-no-collapse"), ("softsign", "softsign-no-collapse")):
        vals = [max(cb.sat[i][-1] for i, st in enumerate(cb.steps) if st <= third)
                for cb in mom[act]]
        m, s = mean_std(vals)
        ctx.check(cid, m, spread=s, seeds=seeds)
    rows = []
    for act, cbs in mom.items():
        cb = cbs[0]
        for i, st in enumerate(cb.steps):
            for layer, (mu, sd) in enumerate(zip(cb.mean[i], cb.std[i]), 1):
                rows.append({"activation": act, "step": st, "layer": layer, "mean": mu,
                             "std": sd, "frac_abs_gt_0.95": cb.sat[i][layer - 1]})
    ctx.table("layer_moments", rows, f"Mean and std of each hidden layer's outputs on 300 "
              f"fixed test examples over training (seed {seeds[0]}).", show=False)

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.3))
    for ax, act in zip(axes, mom):
        cb = mom[act][0]
        steps = np.array(cb.steps)
        means, stds = np.array(cb.mean), np.array(cb.std)
        for layer in range(means.shape[1]):
            ax.errorbar(steps, means[:, layer], yerr=stds[:, layer], errorevery=4,
                        capsize=2, lw=1.3, label=f"layer {layer + 1}")
        ax.set_xlabel("training step (batch of 10)")
        ax.set_ylabel("activation value: mean (bars: std)")
        ax.set_title(f"{act}, standard init")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ctx.figure("layer_moments", fig, "Glorot figure 2 and its tanh/softsign counterparts: the "
               "sigmoid net's top hidden layer (the highest-numbered) drops to 0 early while "
               "the lower layers stay near 0.5; no tanh or softsign layer collapses that way.")
