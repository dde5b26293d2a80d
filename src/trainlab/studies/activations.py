"""activations: every activation of the registry in one deep MLP, at its recommended init.

Lectures 001, 003 and 004 compare activation functions by what they do to a deep net: the
sigmoid's outputs are not zero-centred (all positive, mean ≈ 0.5), tanh's are; ReLU units
can die — a large update pushes a unit's pre-activation below 0 for every input, and its
gradient is 0 from then on — while leaky variants keep a small slope and recover; SELU
(Klambauer et al. 2017) keeps activations near zero mean and unit variance with depth
without any normalization. Each activation trains the same MLP at its recommended init
(``std(W) = gain/√fan_in``, the gain of its registry entry); then its mean activation and
its fractions of dead and saturated units (the registry's rules) are measured on a fixed
batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.data.base import Dataset
from trainlab.init import init_model
from trainlab.models.builders import mlp
from trainlab.nn import activation_info
from trainlab.report.figures import pyplot
from trainlab.studies._training import classification_data, mean_std
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

ACTIVATIONS = ("sigmoid", "tanh", "softsign", "relu", "relu6", "leaky_relu", "prelu", "rrelu",
               "noisy_relu", "elu", "selu", "gelu", "silu", "swish", "softplus", "maxout")
#: activations a pack cannot run (torch.func.vmap has no rule for them): trained alone
NO_PACK = frozenset({"rrelu"})


@dataclass(frozen=True)
class Config:
    depth: int = 6
    width: int = 128
    steps: int = 400
    lr: float = 0.05
    high_lr: float = 0.5
    selu_depth: int = 32
    n_train: int = 4000
    seeds: int = 3


def _model(act: str, sizes, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = mlp(list(sizes), activation=act)
    info = activation_info(act)
    gain = info.gain if info is not None else 1.0
    init_model(model, ("normal", {"std": 1.0}), generator=seed)  # shapes; rescaled below
    with torch.no_grad():
        for m in model.modules():  # nn.Linear only: maxout's `weight` is a view of its own
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(gain / math.sqrt(m.in_features))  # std = gain / √fan_in
    return model


def unit_stats(model: torch.nn.Module, act: str, x: torch.Tensor) -> dict[str, float]:
    """Mean activation, fraction of dead units and of saturated outputs over the hidden
    blocks, on ``x`` in eval mode (the registry's rules for ``act``)."""

    info = activation_info(act)
    outs = []
    hooks = [m.register_forward_hook(lambda mod, i, o: outs.append(o.detach()))
             for n, m in model.named_modules() if n.endswith(".act")]
    model.eval()
    with torch.no_grad():
        model(x)
    model.train()
    for h in hooks:
        h.remove()
    h = torch.cat([o.reshape(o.shape[0], -1) for o in outs], dim=1)
    dead = float(info.dead(h).all(0).float().mean()) if info and info.dead else 0.0
    sat = float(info.saturated(h).float().mean()) if info and info.saturated else 0.0
    neg = float((h <= 0).all(0).float().mean())
    return {"mean": float(h.mean()), "std": float(h.std()), "dead": dead, "saturated": sat,
            "never_positive": neg}


@study(
    "activations",
    title="Every activation in one deep MLP: accuracy, mean, dead and saturated units",
    source="Lectures 001/003/004, 'Activation functions' (sigmoid, tanh, ReLU, leaky ReLU, "
           "PReLU, RReLU, noisy ReLU, ELU, SELU, GELU, SiLU/Swish, softplus, ReLU6, maxout)",
    summary="The same deep MLP is trained with each activation of the registry at its "
            "recommended initialization; the table gives the final loss and accuracy, the mean "
            "activation and the fractions of dead and saturated units. Then ReLU and leaky "
            "ReLU are trained at a high learning rate (ReLU units die, leaky ones do not), and "
            "a deep SELU net is checked for self-normalization at init.",
    scales={
        "test": Config(depth=2, width=16, steps=20, selu_depth=8, n_train=500),
        "quick": Config(),
        "paper": Config(depth=10, width=512, steps=5000, n_train=60000, seeds=5),
    },
    claims=(
        Claim("sigmoid-not-centred", "The sigmoid's mean activation is far from 0 (tanh's is "
              "not)", "mean sigmoid output − |mean tanh output|, after training", ">", 0.3,
              why="σ(x) ∈ (0, 1) is ≈ 0.5 at small inputs; tanh is odd and zero-centred",
              on={"mnist1d": On(SAME, "a property of σ and tanh, not of the data: inputs are "
                  "standardized per feature on either dataset, and σ ∈ (0, 1) sits near 0.5 while "
                  "tanh is odd")}),
        Claim("relu-dies-high-lr", "ReLU loses units to death at a high learning rate",
              "fraction of dead ReLU units after training at the high lr (mean over seeds)",
              ">", 0.1, why="a large step can push a unit's bias and weights so that it is "
                            "negative on every input; its gradient is 0 from then on",
              on={"mnist1d": On(None, "the fraction of units a high learning rate kills depends "
                  "on the data's gradients; no derivation or published fraction exists for "
                  "MNIST-1D")}),
        Claim("leaky-survives", "Leaky ReLU does not (its units keep a gradient)",
              "fraction of dead ReLU units − of leaky units never positive, high lr", ">", 0.05,
              why="a leaky unit with negative input still passes slope 0.01 of the gradient "
                  "and can come back",
              on={"mnist1d": On(0.0, "no published fraction of dead units on MNIST-1D sizes the "
                  "margin: only the direction of this comparison between two setups on the same "
                  "data (> 0, beyond the spread over seeds) is tested there")}),
        Claim("selu-self-normalizes", "SELU keeps activations near zero mean and unit variance "
              "with depth, without any norm", "max over the last 4 of the deep SELU net's "
              "layers of |mean| + |std − 1| at init", "<", 0.25,
              why="Klambauer et al.: (0, 1) is an attracting fixed point of the SELU map with "
                  "LeCun-normal weights",
              on={"mnist1d": On(SAME, "Klambauer et al. 2017, Theorem 1: (0, 1) attracts the SELU "
                  "map with LeCun-normal weights whatever the standardized inputs were")}),
    ),
    quick_seconds=90,
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()
    import numpy as np

    data = classification_data(ctx, n_train=cfg.n_train, n_test=1000)
    x = data.x_train
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-3)

    data = Dataset((x - mu) / sd, data.y_train, (data.x_test - mu) / sd, data.y_test,
                   data.meta)
    sizes = (x.shape[1], *[cfg.width] * cfg.depth, 10)
    probe_x = data.x_test[:512]
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    log_every = max(1, cfg.steps // 10)
    # the whole grid first (every activation × seed at the recommended lr, then ReLU and
    # leaky ReLU at the high lr), trained by one train_grid: the seeds of an activation
    # share a pack (and ReLU's high-lr runs join ReLU's, one SGD kind)
    models, specs, keys = [], [], []
    for act in ACTIVATIONS:
        for s in seeds:
            models.append(_model(act, sizes, s))
            specs.append(dict(label=f"{act}-seed{s}", steps=cfg.steps, batch_size=128,
                              optimizer="momentum", lr=cfg.lr, seed=s, log_every=log_every,
                              eval_every=cfg.steps,
                              config={"activation": act, "sizes": list(sizes)}))
            keys.append(("main", act))
    for act in ("relu", "leaky_relu"):
        for s in seeds:
            models.append(_model(act, sizes, s))
            specs.append(dict(label=f"{act}-high-lr-seed{s}", steps=cfg.steps, batch_size=128,
                              optimizer="sgd", lr=cfg.high_lr, seed=s, log_every=log_every,
                              eval_every=cfg.steps,
                              config={"activation": act, "sizes": list(sizes),
                                      "high_lr": True}))
            keys.append(("high", act))
    # torch.func.vmap has no rule for aten::rrelu, so a pack cannot run RReLU: its runs
    # train alone with the Trainer
    alone = [k for k, (_, act) in enumerate(keys) if act in NO_PACK]
    packed = [k for k in range(len(keys)) if k not in alone]
    histories: list = [None] * len(keys)
    grid = ctx.train_grid([ctx.grid_run(models[k], data, **specs[k]) for k in packed])
    for k, h in zip(packed, grid):
        histories[k] = h
    for k in alone:
        histories[k] = ctx.train(models[k], data, **specs[k])
    if alone and len(seeds) > 1:
        ctx.note(f"{', '.join(sorted(NO_PACK))}: trained alone, not in a pack (torch.func.vmap, "
                 "which packs run these models through, has no rule for aten::rrelu).")
    stats: dict[str, list] = {act: [] for act in ACTIVATIONS}
    high: dict[str, list] = {"relu": [], "leaky_relu": []}
    for (phase, act), model, h in zip(keys, models, histories):
        st = unit_stats(model, act, probe_x)
        if phase == "high":
            high[act].append(st)
            continue
        last = h.metrics[-1] if h.metrics else {}
        st.update(loss=last.get("train_loss", math.nan), acc=last.get("test_acc", math.nan),
                  status=h.status)
        stats[act].append(st)
    rows = []
    for act in ACTIVATIONS:
        per = stats[act]
        rows.append({"activation": act,
                     **{k: mean_std([p[k] for p in per])[0]
                        for k in ("loss", "acc", "mean", "std", "dead", "saturated")},
                     "status": ",".join(p["status"] for p in per)})
    ctx.table("activations", rows, f"Each activation in a {cfg.depth} × {cfg.width} MLP after "
              f"{cfg.steps} momentum steps (lr {cfg.lr}); mean over seeds {seeds}. 'dead': "
              "units whose derivative is 0 on all 512 probe inputs; 'saturated': outputs in "
              "the registry's saturation zone.")
    sig = mean_std([p["mean"] for p in stats["sigmoid"]])[0]
    tanh = abs(mean_std([p["mean"] for p in stats["tanh"]])[0])
    ctx.check("sigmoid-not-centred", sig - tanh,
              detail=f"sigmoid mean {sig:.3f}, |tanh mean| {tanh:.3f}")

    relu_dead = [p["dead"] for p in high["relu"]]
    leaky_neg = [p["never_positive"] for p in high["leaky_relu"]]
    m, s = mean_std(relu_dead)
    ctx.check("relu-dies-high-lr", m, spread=s, seeds=seeds)
    m, s = mean_std([a - b for a, b in zip(relu_dead, leaky_neg)])
    ctx.check("leaky-survives", m, spread=s, seeds=seeds,
              detail=f"leaky units never positive: {mean_std(leaky_neg)[0]:.3f}")

    # SELU at init through a deep net, standardized inputs
    selu = _model("selu", (x.shape[1], *[cfg.width] * cfg.selu_depth, 10), ctx.seed)
    layer_m, layer_s = [], []
    def record(mod, inp, out) -> None:  # a forward hook must return None
        layer_m.append(float(out.mean()))
        layer_s.append(float(out.std()))

    hooks = [m.register_forward_hook(record)
             for n, m in selu.named_modules() if n.endswith(".act")]
    with torch.no_grad():
        selu(probe_x)
    for hk in hooks:
        hk.remove()
    dev = max(abs(a) + abs(b - 1) for a, b in zip(layer_m[-4:], layer_s[-4:]))
    ctx.check("selu-self-normalizes", dev)

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    names = [r["activation"] for r in rows]
    ys = np.arange(len(names))
    axes[0].barh(ys, [r["acc"] for r in rows], color="tab:blue")
    axes[0].set_yticks(ys, names)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("test accuracy")
    axes[0].set_title("final test accuracy")
    axes[1].barh(ys, [r["mean"] for r in rows], color="tab:orange")
    axes[1].set_yticks(ys, names)
    axes[1].invert_yaxis()
    axes[1].axvline(0, color="k", lw=0.8)
    axes[1].set_xlabel("mean activation (hidden layers)")
    axes[1].set_title("mean activation: only sigmoid sits near 0.5")
    w = 0.4
    axes[2].barh(ys - w / 2, [r["dead"] for r in rows], w, label="dead units")
    axes[2].barh(ys + w / 2, [r["saturated"] for r in rows], w, label="saturated outputs")
    axes[2].set_yticks(ys, names)
    axes[2].invert_yaxis()
    axes[2].set_xlabel("fraction")
    axes[2].set_title("dead units and saturated outputs")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, axis="x")
    ctx.figure("activations", fig, "Each activation after training the same MLP: accuracy, "
               "mean hidden activation (sigmoid's is far from 0) and the fractions of dead "
               "units and saturated outputs.")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(range(1, len(layer_m) + 1), layer_m, "o-", ms=3, label="mean")
    ax.plot(range(1, len(layer_s) + 1), layer_s, "s-", ms=3, label="std")
    ax.axhline(0, color="k", lw=0.6)
    ax.axhline(1, color="k", lw=0.6, ls=":")
    ax.set_xlabel("layer")
    ax.set_ylabel("activation statistic at init")
    ax.set_title(f"SELU, {cfg.selu_depth} layers, LeCun-normal weights, no norm")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.figure("selu_depth", fig, "SELU's activations keep mean ≈ 0 and std ≈ 1 through "
               "every layer at init, without any normalization layer.")
