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
from trainlab.nn.functional import LECTURE_LEAKY_SLOPE
from trainlab.report.figures import pyplot
from trainlab.studies._training import classification_data, mean_std
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

ACTIVATIONS = ("sigmoid", "tanh", "softsign", "relu", "relu6", "leaky_relu", "prelu", "rrelu",
               "noisy_relu", "elu", "selu", "gelu", "silu", "swish", "softplus", "maxout")
#: activations a pack cannot run (torch.func.vmap has no rule for them): trained alone
NO_PACK = frozenset({"rrelu"})
#: the lecture's leaky ReLU, max(0.1 x, x) (lecture 004), for the dying comparison
LEAKY = ("leaky_relu", {"negative_slope": LECTURE_LEAKY_SLOPE})


def never_active(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Bool mask over every hidden unit (the ``.act`` outputs, concatenated): output ``<= 0``
    on every example of ``x`` (eval mode, no grad)."""
    outs = []
    hooks = [m.register_forward_hook(lambda mod, i, o: outs.append(o.detach()))
             for n, m in model.named_modules() if n.endswith(".act")]
    model.eval()
    with torch.no_grad():
        model(x)
    model.train()
    for h in hooks:
        h.remove()
    return torch.cat([(o.reshape(o.shape[0], -1) <= 0).all(0) for o in outs])


@dataclass(frozen=True)
class Config:
    depth: int = 6
    width: int = 128
    steps: int = 400
    lr: float = 0.05
    #: the dying regime: Adam at 10x its default rate, two halves of ``high_steps``; a
    #: unit never active on the held-out batch at both ends is dead for good
    high_lr: float = 0.01
    high_steps: int = 800
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
        "test": Config(depth=2, width=16, steps=20, high_steps=20, selu_depth=8, n_train=500),
        "quick": Config(),
        "paper": Config(depth=10, width=512, steps=5000, high_steps=5000, n_train=60000,
                        seeds=5),
    },
    claims=(
        Claim("sigmoid-not-centred", "The sigmoid's mean activation is far from 0 (tanh's is "
              "not)", "mean sigmoid output − |mean tanh output|, after training, per seed",
              ">", 0.3,
              why="σ(x) ∈ (0, 1) is ≈ 0.5 at small inputs; tanh is odd and zero-centred",
              control="sigmoid -> tanh (seeds disjoint from the tanh arm's)",
              on={"mnist1d": On(SAME, "a property of σ and tanh, not of the data: inputs are "
                  "standardized per feature on either dataset, and σ ∈ (0, 1) sits near 0.5 while "
                  "tanh is odd")}),
        Claim("relu-dies-high-lr", "ReLU loses units to death at a high learning rate",
              "fraction of ReLU units never active on 512 held-out examples both halfway "
              "through and at the end of the high-lr training (dead for good; mean over seeds)",
              ">", 0.1, why="lecture 004: 'a large gradient causes the bias to be updated to "
                            "a large negative value ... the neuron will now stay dead forever. "
                            "In practice a large fraction of ReLU units can die if the learning "
                            "rate is set too high'; 'large' is not quantified: more than one "
                            "unit in ten (chosen before the run). A diverged run counts as NaN "
                            "(FAIL), never as dead units",
              control="ReLU -> leaky ReLU max(0.1x, x)",
              on={"mnist1d": On(None, "the fraction of units a high learning rate kills depends "
                  "on the data's gradients; no derivation or published fraction exists for "
                  "MNIST-1D")}),
        Claim("leaky-survives", "Leaky ReLU does not (its units keep a gradient)",
              "fraction of ReLU units dead for good − fraction of leaky units (max(0.1x, x)) "
              "never positive at both points, same regime, per seed", ">", 0.05,
              why="lecture 004: leaky ReLU 'will not die (0.1x ensures that at least a small "
                  "gradient will flow through)', so a unit pushed negative can come back; 0.05 "
                  "is half the fraction relu-dies-high-lr asks of ReLU",
              control="leaky ReLU -> ReLU (seeds disjoint from the ReLU arm's)",
              on={"mnist1d": On(0.0, "no published fraction of dead units on MNIST-1D sizes the "
                  "margin: only the direction of this comparison between two setups on the same "
                  "data (> 0, beyond the spread over seeds) is tested there")}),
        Claim("selu-self-normalizes", "SELU keeps activations near zero mean and unit variance "
              "with depth, without any norm", "max over the last 4 of the deep SELU net's "
              "layers of |mean| + |std − 1| at init, per weight draw", "<", 0.25,
              why="Klambauer et al.: (0, 1) is an attracting fixed point of the SELU map with "
                  "LeCun-normal weights",
              control="SELU -> ELU (α = 1, λ = 1: the map SELU rescales), same LeCun-normal "
                      "weights",
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
    # the whole grid first (every activation × seed at the recommended lr, and the first half
    # of the high-lr runs), trained by one train_grid: the seeds of an activation share a pack
    alt = [s + 1000 for s in seeds]  # seeds disjoint from every arm's, for the controls
    arms = [(act, act, s) for act in ACTIVATIONS for s in seeds]
    if ctx.control:  # sigmoid-not-centred's control: a tanh arm on disjoint seeds
        arms += [("tanh-alt", "tanh", s) for s in alt]
    models, specs, keys = [], [], []
    for name, act, s in arms:
        models.append(_model(act, sizes, s))
        specs.append(dict(label=f"{name}-seed{s}", steps=cfg.steps, batch_size=128,
                          optimizer="momentum", lr=cfg.lr, seed=s, log_every=log_every,
                          eval_every=cfg.steps,
                          config={"activation": act, "sizes": list(sizes)}))
        keys.append(("main", name))
    # the dying regime: Adam at a high rate; in the control, the leaky arm is ReLU on
    # disjoint seeds (leaky-survives) and relu-dies-high-lr reads the leaky arm
    half = max(1, cfg.high_steps // 2)
    high_arms = {"relu": ("relu", seeds),
                 "leaky": ("relu", alt) if ctx.control else (LEAKY, seeds)}
    if ctx.control:
        high_arms["leaky-for-relu"] = (LEAKY, seeds)
    high_models: dict[str, list] = {}
    high_specs: dict[str, list] = {}
    for arm, (act, arm_seeds) in high_arms.items():
        for s in arm_seeds:
            m = _model(act, sizes, s)
            high_models.setdefault(arm, []).append(m)
            spec = dict(label=f"{arm}-high-lr-seed{s}", steps=half, batch_size=128,
                        optimizer="adam", lr=cfg.high_lr, seed=s,
                        log_every=max(1, half // 5), eval_every=half,
                        config={"activation": str(act), "sizes": list(sizes),
                                "high_lr": True, "half": 1})
            high_specs.setdefault(arm, []).append(spec)
            models.append(m)
            specs.append(spec)
            keys.append(("high", arm))
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
    # the high-lr runs: never-active units on the held-out batch at half time, then the
    # second half (a fresh Adam on the same weights), then again
    first = {arm: [never_active(m, probe_x) for m in ms] for arm, ms in high_models.items()}
    ok = {arm: [] for arm in high_models}
    for (phase, arm), h in zip(keys, histories):
        if phase == "high":
            ok[arm].append(h.status == "done")
    runs2, order = [], []
    for arm, ms in high_models.items():
        for m, spec in zip(ms, high_specs[arm]):
            spec2 = dict(spec, label=spec["label"] + "-second-half",
                         steps=cfg.high_steps - half,
                         config=dict(spec["config"], half=2))
            runs2.append(ctx.grid_run(m, data, **spec2))
            order.append(arm)
    hist2 = ctx.train_grid(runs2)
    high: dict[str, list[dict]] = {arm: [] for arm in high_models}
    for arm, h in zip(order, hist2):
        j = len(high[arm])
        m = high_models[arm][j]
        end = never_active(m, probe_x)
        a = first[arm][j]
        good = ok[arm][j] and h.status == "done"
        last = h.metrics[-1] if h.metrics else {}
        high[arm].append({
            "half": float(a.float().mean()), "end": float(end.float().mean()),
            "for_good": float((a & end).float().mean()) if good else math.nan,
            "revived": float((a & ~end).float().sum() / a.float().sum().clamp_min(1)),
            "acc": last.get("test_acc", math.nan), "status": "done" if good else "diverged"})

    stats: dict[str, list] = {act: [] for act in ACTIVATIONS}
    stats["tanh-alt"] = []
    for (phase, name), model, h in zip(keys, models, histories):
        if phase == "high":
            continue
        st = unit_stats(model, "tanh" if name == "tanh-alt" else name, probe_x)
        last = h.metrics[-1] if h.metrics else {}
        st.update(loss=last.get("train_loss", math.nan), acc=last.get("test_acc", math.nan),
                  status=h.status)
        stats[name].append(st)
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
    dying_rows = []
    for arm, per in high.items():
        act = high_arms[arm][0]
        dying_rows.append({"arm": arm, "activation": str(act),
                           "seeds": ",".join(str(s) for s in high_arms[arm][1]),
                           **{k: round(mean_std([p[k] for p in per])[0], 4)
                              for k in ("half", "end", "for_good", "revived", "acc")},
                           "status": ",".join(p["status"] for p in per)})
    ctx.table("dying", dying_rows,
              f"The dying regime: Adam at lr {cfg.high_lr} (10x its default), {half} + "
              f"{cfg.high_steps - half} steps of batch 128 (a fresh Adam for the second half). "
              "'half', 'end': fractions of hidden units never active (output <= 0) on 512 "
              "held-out examples at those points; 'for_good': at both; 'revived': of those "
              "never active at half time, the fraction active again at the end; 'acc': test "
              "accuracy at the end.")
    # sigmoid-not-centred, per seed: sigmoid (control: tanh on disjoint seeds) against tanh
    top = stats["tanh-alt"] if ctx.control else stats["sigmoid"]
    vals = [a["mean"] - abs(b["mean"]) for a, b in zip(top, stats["tanh"])]
    ctx.check("sigmoid-not-centred", values=vals, seeds=seeds,
              detail=f"{'tanh (disjoint seeds)' if ctx.control else 'sigmoid'} mean "
                     f"{mean_std([p['mean'] for p in top])[0]:.3f}, |tanh mean| "
                     f"{abs(mean_std([p['mean'] for p in stats['tanh']])[0]):.3f}")

    dead_arm = high["leaky-for-relu"] if ctx.control else high["relu"]
    relu_dead = [p["for_good"] for p in dead_arm]
    acc = mean_std([p["acc"] for p in dead_arm])[0]
    ctx.check("relu-dies-high-lr", values=relu_dead, seeds=seeds,
              detail=f"Adam lr {cfg.high_lr}, {cfg.high_steps} steps; test accuracy at the end "
                     f"{acc:.3f} (the nets train: the dead units are not a diverged run's)")
    leaky_neg = [p["for_good"] for p in high["leaky"]]
    relu_for_good = [p["for_good"] for p in high["relu"]]
    ctx.check("leaky-survives", values=[a - b for a, b in zip(relu_for_good, leaky_neg)],
              seeds=seeds,
              detail=f"{'ReLU on disjoint seeds' if ctx.control else 'leaky'} units never "
                     f"positive at both points: {mean_std(leaky_neg)[0]:.3f}")
    if not ctx.control:
        ctx.note("With torch's leaky slope 0.01 instead of the lecture's 0.1, the leaky units "
                 "do not come back in this regime as often (measured while choosing it: "
                 "0.14 never positive at both points against ReLU's 0.17): the slope is what "
                 "lets them recover. The regime: plain SGD on this net diverges (NaN) from lr "
                 "0.5 on before it kills more than a few percent of the units; Adam at 10x its "
                 "default kills many without diverging.")

    # SELU at init through a deep net, standardized inputs, one weight draw per seed;
    # the control: ELU, the map SELU rescales, with the same LeCun-normal weights
    deep = (x.shape[1], *[cfg.width] * cfg.selu_depth, 10)
    devs, layer_m, layer_s = [], [], []
    for s in seeds:
        selu = _model("elu" if ctx.control else "selu", deep, s)
        if ctx.control:  # LeCun normal (gain 1), as SELU's, not ELU's registry gain √2
            with torch.no_grad():
                for mod in selu.modules():
                    if isinstance(mod, torch.nn.Linear):
                        mod.weight.mul_(1 / activation_info("elu").gain)
        ms, ss = [], []

        def record(mod, inp, out, ms=ms, ss=ss) -> None:  # a forward hook must return None
            ms.append(float(out.mean()))
            ss.append(float(out.std()))

        hooks = [m.register_forward_hook(record)
                 for n, m in selu.named_modules() if n.endswith(".act")]
        with torch.no_grad():
            selu(probe_x)
        for hk in hooks:
            hk.remove()
        devs.append(max(abs(a) + abs(b - 1) for a, b in zip(ms[-4:], ss[-4:])))
        if s == seeds[0]:
            layer_m, layer_s = ms, ss
    ctx.check("selu-self-normalizes", values=devs, seeds=seeds)

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
