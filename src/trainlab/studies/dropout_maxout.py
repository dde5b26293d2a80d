"""``dropout-maxout``: dropout, maxout, both, neither, and bagging, on a small training set.

Lecture 004, "Model Averaging" and "Dropout and MaxOut": bagging trains ``k`` networks on
bootstrap samples and averages their predictions; dropout trains an exponential number of
weight-sharing sub-networks, one per mask, and at test time approximates their average by
one pass of the full network with the weights scaled by the retain probability (Srivastava
et al. 2014); maxout units (Goodfellow et al. 2013) keep the strongest of ``k`` affine
responses, "the one that strongly responds", which suits dropout's averaging.

Trained on the same small training set with the same optimizer and steps (over seeds):

* ``neither``: a ReLU MLP; ``dropout``: the same with dropout on the inputs (``p_drop`` 0.2)
  and after each hidden layer (0.5), Srivastava et al.'s rates (trainlab's ``dropout`` is
  torch's drop probability; the paper's retain probabilities are 0.8 and 0.5);
* ``maxout``: maxout units with ``k`` pieces in place of Linear + ReLU; ``maxout+dropout``;
* ``bagging``: ``k`` ReLU MLPs, each on its own bootstrap sample, probabilities averaged.

Measured: train and test error and their gap; for the dropout networks, test predictions by
the weight scaling rule (eval mode) against Monte-Carlo averages over sampled masks.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from trainlab.engine.ensemble import bagging, mc_dropout_predict, weight_scaling_predict
from trainlab.engine.history import History
from trainlab.models.builders import mlp
from trainlab.report.figures import pyplot
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

__all__ = ["Config", "run"]

VARIANTS = ("neither", "dropout", "maxout", "maxout+dropout")


@dataclass(frozen=True)
class Config:
    n_train: int = 1000
    n_test: int = 2000
    width: int = 256
    depth: int = 2
    k: int = 2                 # maxout pieces per unit
    dropout: float = 0.5       # drop probability after each hidden layer
    input_dropout: float = 0.2
    steps: int = 800
    batch_size: int = 100
    lr: float = 0.05           # SGD, momentum 0.9
    members: int = 5           # bagging
    mc_samples: int = 50
    seeds: int = 3


def _std(v: list[float]) -> float:
    return statistics.stdev(v) if len(v) > 1 else 0.0


@torch.no_grad()
def _error_of(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) != y).double().mean().item()


@torch.no_grad()
def _error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was = model.training
    model.eval()
    e = _error_of(model(x), y)
    model.train(was)
    return e


def _build(variant: str, cfg: Config, in_features: int, classes: int) -> torch.nn.Module:
    act = ("maxout", {"k": cfg.k}) if variant.startswith("maxout") else "relu"
    drop = variant.endswith("dropout")
    init = None if variant.startswith("maxout") else "he_uniform"  # maxout inits itself
    return mlp(in_features, [cfg.width] * cfg.depth, classes, activation=act, init=init,
               dropout=cfg.dropout if drop else 0.0,
               input_dropout=cfg.input_dropout if drop else 0.0)


@study(
    "dropout-maxout",
    title="Dropout, maxout and bagging: regularization narrows the train/test gap",
    source="Lecture 004, 'Model Averaging' and 'Dropout and MaxOut' slides; Srivastava et al. "
           "2014; Goodfellow et al. 2013; Breiman 1996",
    summary="ReLU and maxout MLPs, with and without dropout, and a bagged ensemble of ReLU "
            "MLPs are trained on a small MNIST training set with the same budget. Dropout "
            "(with or without maxout) narrows the gap between training and test error, "
            "bagging beats its average member, and the weight scaling rule predicts as the "
            "Monte-Carlo average over dropout masks does.",
    scales={
        "test": Config(n_train=200, n_test=200, width=16, steps=10,
                       batch_size=50, members=2, mc_samples=4, seeds=3),
        "quick": Config(),
        # Srivastava et al. 2014, Table 2's MNIST row "Dropout NN + ReLU, 3 layers, 1024 units":
        # all 60k training images, SGD with momentum, batch 100, dropout 0.2 / 0.5; the paper
        # trains for ~3000 epochs (1.8M steps at batch 100) with max-norm and a decaying lr:
        # 1500 steps here are 0.08 % of them (about 2.5 epochs), no max-norm
        "reference": Config(n_train=60000, n_test=10000, width=1024, depth=3, k=2,
                            steps=1500, members=3, mc_samples=50, seeds=3),
        "paper": Config(n_train=60000, n_test=10000, width=1200, depth=2, k=5, steps=100000,
                        members=10, mc_samples=1000, seeds=5),
    },
    claims=(
        Claim("dropout-narrows-gap",
              "Dropout narrows the train/test gap of a ReLU MLP (without raising its test error)",
              quantity="per seed: min(gap(neither) - gap(dropout), test error(neither) - test "
                       "error(dropout)), gap = test error - train error",
              op=">", threshold=0.0,
              why="without dropout the net fits the small training set (train error → 0) "
                  "while its test error stays high; dropout's noisy sub-networks cannot "
                  "memorize it as easily. The min guards against an under-trained or broken "
                  "dropout net, whose gap is small because it fits nothing: a seed counts only "
                  "where dropout's test error is also no higher (Srivastava et al. Table 2: "
                  "dropout lowers the test error). 0 = no difference; one-sided 95% t bound "
                  "over seeds",
              control="dropout -> none (the plain ReLU net on seeds + 1000)",
              on={"mnist1d": On(SAME, "a paired comparison of two nets trained on the same "
                                      "MNIST-1D examples, seeds and budget: the sign of the "
                                      "difference is the claim, on any data")}),
        Claim("maxout-dropout-narrows-gap",
              "Maxout with dropout has a narrower train/test gap than the plain ReLU MLP "
              "(without a higher test error)",
              quantity="per seed: min(gap(neither) - gap(maxout+dropout), test error(neither) "
                       "- test error(maxout+dropout))",
              op=">", threshold=0.0,
              why="Goodfellow et al. 2013 designed maxout as dropout's companion; the pair is "
                  "regularized by dropout's averaging (Table 1: maxout + dropout has the lowest "
                  "MNIST test error). The min: as for dropout-narrows-gap, an under-trained net "
                  "cannot pass; 0 = no difference, one-sided 95% t bound over seeds",
              control="maxout+dropout -> neither (the plain ReLU net on seeds + 2000)",
              on={"mnist1d": On(SAME, "a paired comparison of two nets on the same MNIST-1D "
                                      "examples, seeds and budget: the sign of the "
                                      "difference is the claim, on any data")}),
        Claim("weight-scaling-matches-mc",
              "The weight scaling rule predicts as the Monte-Carlo average over masks does",
              quantity="per seed: max over the two dropout nets of |test error(weight scaling) "
                       "- test error(MC average of masks)|",
              op="<", threshold=0.01,
              why="for a linear model the two agree exactly in expectation; through ReLU or "
                  "maxout layers weight scaling approximates the geometric mean of the "
                  "sub-networks, which Srivastava et al. (fig. 11) found as accurate as "
                  "averaging ~50 sampled masks (within ~0.1 point of test error at 50 masks: "
                  "1 point is ten times that); one-sided 95% t bound over seeds",
              control="weight scaling -> one sampled mask (a single sub-network's prediction "
                      "against the MC average)",
              on={"mnist1d": On(None, "the 1-point agreement rests on Srivastava et al.'s MNIST "
                                      "measurement (fig. 11), where few test digits lie near "
                                      "a decision boundary (~1-2 % error); on MNIST-1D, with "
                                      "an MLP's ~32 % test error (Greydanus 2020), many more "
                                      "examples can flip between the two predictions and no "
                                      "published number says by how much")}),
        Claim("bagging-beats-members",
              "Bagging's averaged prediction beats its average member",
              quantity="per seed: mean test error of the members - test error of the ensemble",
              op=">", threshold=0.0,
              why="members trained on different bootstrap samples make partly independent "
                  "errors, which averaging cancels (Breiman 1996); 0 = no gain, one-sided 95% "
                  "t bound over seeds",
              control="averaging -> none (the 'ensemble' is its first member alone)",
              on={"mnist1d": On(SAME, "the ensemble and its members are evaluated on the same "
                                      "MNIST-1D test examples: the sign of the difference is "
                                      "the claim, on any data")}),
    ),
    quick_seconds=150,
    data_note="MNIST: the first n_train / n_test images; MNIST-1D: the first n_train / n_test "
              "sequences of the embedded generator's split.",
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    ds = ctx.dataset("mnist", fallback="mnist1d", n_train=cfg.n_train, n_test=cfg.n_test)
    in_features = int(torch.tensor(ds.meta.input_shape).prod())
    classes = ds.meta.num_classes
    x_tr, y_tr = ds.x_train.to(ctx.device), ds.y_train.to(ctx.device)
    x_te, y_te = ds.x_test.to(ctx.device), ds.y_test.to(ctx.device)
    opt = ("momentum", {"momentum": 0.9})
    train_kw = dict(steps=cfg.steps, batch_size=cfg.batch_size, optimizer=opt, lr=cfg.lr,
                    eval_every=max(cfg.steps // 10, 1), log_every=max(cfg.steps // 10, 1))
    names = [*VARIANTS, "bagging"]
    # the control run adds the plain ReLU net on disjoint seeds in place of each dropout arm
    # (the dropout nets still train: the weight-scaling control needs them)
    ctl_arms = {"dropout": ("ctl:dropout", 1000), "maxout+dropout": ("ctl:maxout+dropout", 2000)}
    if ctx.control:
        names += [a for a, _ in ctl_arms.values()]
    offsets = {a: off for a, off in ctl_arms.values()}
    tr_err: dict[str, list[float]] = {v: [] for v in names}
    te_err: dict[str, list[float]] = {v: [] for v in names}
    member_err: list[float] = []
    mc_rows: list[dict] = []
    mc_gaps: dict[int, list[float]] = {}
    first_member_err: list[float] = []
    jobs = [(v, k) for k in range(cfg.seeds) for v in names]
    runs: list = []
    models: dict[tuple[str, int], torch.nn.Module] = {}
    first: dict[str, int] = {}  # variant -> index in runs of its seed-0 run (the curves)
    for variant, k in jobs:
        seed = ctx.seed + k
        if variant == "bagging":
            # each member on its own bootstrap sample (its own data object): a grid run that
            # trains alone; bagging() builds the members and draws the samples, train_grid
            # trains them in place below
            def fit_member(model, data, i, seed=seed):
                runs.append(ctx.grid_run(model, data, label=f"bagging/member{i}/seed{seed}",
                                         seed=seed * 100 + i,
                                         config={"variant": "bagging", "member": i},
                                         **train_kw))
                return History()  # filled by train_grid; bagging() keeps the model

            res = bagging(lambda: _build("neither", cfg, in_features, classes).to(ctx.device),
                          (x_tr, y_tr, x_te, y_te), k=cfg.members, seed=seed,
                          fit_member=fit_member)
            models[variant, k] = res.ensemble
        else:
            arch = "neither" if variant.startswith("ctl:") else variant
            torch.manual_seed(seed + offsets.get(variant, 0))
            model = _build(arch, cfg, in_features, classes)
            if k == 0:
                first[variant] = len(runs)
            runs.append(ctx.grid_run(model, ds, label=f"{variant}/seed{seed}",
                                     seed=seed + offsets.get(variant, 0),
                                     config={"variant": variant, "width": cfg.width,
                                             "depth": cfg.depth}, **train_kw))
            models[variant, k] = model
    hists = ctx.train_grid(runs)
    curves = {v: hists[i].series("test_acc") for v, i in first.items()}
    for variant, k in ctx.progress(jobs, "variants x seeds"):
        seed = ctx.seed + k
        model = models[variant, k]
        if variant == "bagging":
            member_err.append(statistics.mean(_error(m, x_te, y_te) for m in model.members))
            first_member_err.append(_error(model.members[0], x_te, y_te))
        tr_err[variant].append(_error(model, x_tr, y_tr))
        te_err[variant].append(_error(model, x_te, y_te))
        if variant in ("dropout", "maxout+dropout"):
            # the control: one sampled mask (one sub-network) in place of the weight scaling
            ws = (mc_dropout_predict(model, x_te, samples=1, seed=seed + 7919) if ctx.control
                  else weight_scaling_predict(model, x_te))
            mc = mc_dropout_predict(model, x_te, samples=cfg.mc_samples, seed=seed)
            e_ws, e_mc = _error_of(ws, y_te), _error_of(mc, y_te)
            mc_gaps.setdefault(k, []).append(abs(e_ws - e_mc))
            mc_rows.append({"model": variant, "seed": seed, "test error (weight scaling)": e_ws,
                            f"test error (MC, {cfg.mc_samples} masks)": e_mc,
                            "mean |p_ws - p_mc|": (ws - mc).abs().mean().item()})

    gap = {v: [t - s for s, t in zip(tr_err[v], te_err[v])] for v in names}
    rows = [{"model": v, "train error": statistics.mean(tr_err[v]),
             "test error": statistics.mean(te_err[v]), "test error (std)": _std(te_err[v]),
             "gap (test - train)": statistics.mean(gap[v]), "gap (std)": _std(gap[v])}
            for v in names]
    if ctx.control:
        ctx.note("Control run: the 'ctl:' rows are the plain ReLU net on seeds + 1000 / + 2000, "
                 "compared with the plain net in place of the dropout nets; the weight scaling "
                 "column holds one sampled mask's prediction; the bagging 'ensemble' is its "
                 "first member.")
    ctx.table("errors", rows, f"Errors after {cfg.steps} steps on {cfg.n_train} training "
              f"examples, mean over {cfg.seeds} seeds; bagging: {cfg.members} ReLU MLPs.")
    ctx.table("errors_per_seed", [{"model": v, "seed": ctx.seed + k, "train error": tr_err[v][k],
                                   "test error": te_err[v][k]}
                                  for v in names for k in range(cfg.seeds)],
              "Train and test error per network and seed (the claims' per-seed values).",
              show=False)
    ctx.table("weight_scaling_vs_mc", mc_rows, "Test error of the dropout networks predicted "
              "by the weight scaling rule (eval mode) and by averaging sampled masks.")

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    xs = range(len(names))
    ax[0].bar([i - 0.2 for i in xs], [statistics.mean(tr_err[v]) for v in names], 0.4,
              label="train error")
    ax[0].bar([i + 0.2 for i in xs], [statistics.mean(te_err[v]) for v in names], 0.4,
              yerr=[_std(te_err[v]) for v in names], capsize=3, label="test error")
    ax[0].set_xticks(list(xs), [n.replace("+", "\n+") for n in names])
    ax[0].set_ylabel("error")
    ax[0].set_title("Train and test error (mean over seeds)")
    top = max(statistics.mean(te_err[v]) + _std(te_err[v]) for v in names)
    ax[0].set_ylim(0, 1.3 * top)  # room for the legend above the bars
    ax[0].legend(loc="upper left", ncol=2)
    ax[0].grid(True, axis="y", alpha=0.3)
    for v, (steps, acc) in curves.items():
        ax[1].plot(steps, [1 - a for a in acc], marker=".", label=v)
    ax[1].set_xlabel("training step")
    ax[1].set_ylabel("test error")
    ax[1].set_title(f"Test error during training (seed {ctx.seed})")
    ax[1].legend()
    ax[1].grid(True, alpha=0.3)
    ctx.figure("errors", fig, "Every network fits the small training set (train error near "
               "0); dropout, alone or with maxout, lowers the test error and so the gap. Each "
               "bagged member sees about 63 % distinct examples: their average beats the "
               "members, not necessarily one network trained on all the data.")

    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    for claim, other in (("dropout-narrows-gap", "dropout"),
                         ("maxout-dropout-narrows-gap", "maxout+dropout")):
        arm = ctx.controlled(other, ctl_arms[other][0])
        d = _narrowing(gap["neither"], gap[arm], te_err["neither"], te_err[arm])
        ctx.check(claim, values=d, seeds=seeds,
                  detail=f"gap neither {statistics.mean(gap['neither']):.3f}, {arm} "
                         f"{statistics.mean(gap[arm]):.3f}; test error neither "
                         f"{statistics.mean(te_err['neither']):.3f}, {arm} "
                         f"{statistics.mean(te_err[arm]):.3f}")
    ctx.check("weight-scaling-matches-mc", values=[max(mc_gaps[k]) for k in range(cfg.seeds)],
              seeds=seeds, detail=f"{cfg.mc_samples} masks per prediction" +
              (" (control: one sampled mask against them)" if ctx.control else ""))
    ens = ctx.controlled(te_err["bagging"], first_member_err)
    d = [m - e for m, e in zip(member_err, ens)]
    ctx.check("bagging-beats-members", values=d, seeds=seeds,
              detail=f"members {statistics.mean(member_err):.3f}, ensemble "
                     f"{statistics.mean(ens):.3f}")
    if ctx.scale == "reference" and ctx.uses("mnist"):
        diff = (f"{cfg.steps} SGD steps (about {cfg.steps * cfg.batch_size // 60000} epochs of "
                "the paper's ~3000), no max-norm constraint, no lr decay")
        ctx.anchor("test error, ReLU MLP 3x1024 without dropout (%)", paper=1.60,
                   source="Srivastava et al. 2014, Table 2 (Standard Neural Net, ReLU)",
                   values=[100 * e for e in te_err["neither"]], same_setup=False,
                   differences=diff)
        ctx.anchor("test error, ReLU MLP 3x1024 with dropout (%)", paper=1.25,
                   source="Srivastava et al. 2014, Table 2 (Dropout NN, ReLU, 3 layers, 1024 "
                          "units)", values=[100 * e for e in te_err["dropout"]],
                   same_setup=False, differences=diff)


def _narrowing(gap_plain: list[float], gap_reg: list[float], te_plain: list[float],
               te_reg: list[float]) -> list[float]:
    """Per seed, the narrowing of the gap, capped by the fall of the test error: a
    regularized net that narrows the gap only by fitting less (under-trained, broken) has a
    higher test error and counts as no narrowing."""
    return [min(gp - gr, tp - tr) for gp, gr, tp, tr in zip(gap_plain, gap_reg, te_plain,
                                                             te_reg)]
