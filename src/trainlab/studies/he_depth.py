"""he-depth: deep plain ReLU nets train under He init and stall under Xavier or N(0, 0.01²).

He et al. 2015 (§2.2, fig. 3) train a 30-layer plain ReLU net: with their init
``Var(W) = 2/n`` it converges, with Xavier's ``Var(W) = 1/n`` it does not move, and at 22
layers both converge (Xavier more slowly). The reason is the forward recursion of lecture
001: a ReLU layer halves the variance of its input (``E[relu(z)²] = Var(z)/2``), so with
``Var(W) = 1/n`` each layer multiplies the activation std by ``1/√2`` — ``2^{-15}`` after 30
layers — and the gradients shrink the same way backwards; with ``2/n`` the factor is 1.
Here: plain ReLU MLPs (no norm, no residuals) of He et al.'s two depths, 30 and 22, three
inits at 30 (He and Xavier at 22), three seeds, SGD with momentum; per-layer activation std at
init (per seed) and the loss curves. Every claim is decided by the one-sided 95% Student t
bound over the per-seed values.

He et al.'s stall is a 30-layer plain *conv* net on ImageNet. The mechanism does not depend on
the layer type: a k×k convolution with c input channels has fan_in n = k²c, and Var(W) = 1/n
(Xavier) or 2/n (He) gives the same per-layer factor 1/√2 or 1 as in a fully connected layer,
so the 30-layer ReLU MLP has the same 2^-15 signal factor. A 30-layer plain conv net of 16
channels at MNIST's 28×28 resolution costs ~54M multiply-adds per example forward (≈20 GFLOP
per batch-64 training step, forward and backward), some 400 times the MLP's; the quick scale
therefore uses the MLP, and the conv net is left to a GPU (not yet a scale of this study).

Control (``--controls``): He ↔ Xavier (each arm takes the other's variance), N(0, 0.01²) → He,
and the moderate depth → the large one (the depth reduction reversed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.report.figures import pyplot
from trainlab.studies._training import (
    LN10,
    act_outputs,
    build_mlp,
    classification_data,
    mean_std,
    mlp_run,
    plot_curves,
)
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

INITS = {"N(0, 0.01²)": ("normal", {"std": 0.01}), "Xavier 1/n": ("lecun_normal", {}),
         "He 2/n": ("he_normal", {})}
COLORS = {"N(0, 0.01²)": "tab:gray", "Xavier 1/n": "tab:blue", "He 2/n": "tab:red"}


CONTROL_INIT = "He <-> Xavier (each arm takes the other's variance), N(0, 0.01²) -> He"
CONTROL_DEPTH = ("moderate depth -> the large depth (and He <-> Xavier): the depth reduction "
                 "reversed")
#: the init each arm uses in the control run
SWAP = {"N(0, 0.01²)": "He 2/n", "Xavier 1/n": "He 2/n", "He 2/n": "Xavier 1/n"}
MODERATE_INITS = ("Xavier 1/n", "He 2/n")  # the moderate-depth claim's two inits


@dataclass(frozen=True)
class Config:
    deep: int = 30      # He et al. 2015 fig. 3: the depth where Xavier stalls
    moderate: int = 22  # fig. 2: the depth where both converge (was 8)
    width: int = 64
    steps: int = 800
    lr: float = 0.01
    batch: int = 128
    n_train: int = 4000
    seeds: int = 3


def layer_stds(model: torch.nn.Module, x: torch.Tensor) -> list[float]:
    """Std of every block's output (after its ReLU), one forward pass without grad."""
    return [float(o.std()) for o in act_outputs(model, x)]


def slope_per_layer(stds: list[float]) -> float:
    """Least-squares slope of log(std) against the layer index (per-layer log factor)."""
    ys = [math.log(max(s, 1e-300)) for s in stds]
    xs = list(range(len(ys)))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


@study(
    "he-depth",
    title="Deep plain ReLU nets: He init trains where Xavier and N(0, 0.01²) stall",
    source="He, Zhang, Ren & Sun 2015, 'Delving deep into rectifiers', §2.2 and fig. 3; "
           "lecture 001, 'Weight initialization' (ReLU halves the variance)",
    summary="Plain ReLU MLPs without normalization are trained at a large depth and at a "
            "moderate depth with three initializations. At init the activation std falls by "
            "1/√2 per layer under Xavier's Var(W)=1/n (and by far more under N(0, 0.01²)) but "
            "stays flat under He's 2/n; accordingly only He trains the deep net, while at "
            "moderate depth Xavier trains too.",
    scales={
        "test": Config(deep=20, moderate=3, width=16, steps=150, n_train=500, seeds=3),
        "quick": Config(),
        "paper": Config(deep=30, moderate=22, width=256, steps=20000, n_train=60000, seeds=3),
    },
    claims=(
        Claim("xavier-halves", "Under Xavier the activation std shrinks by 1/√2 per ReLU layer",
              "per-layer factor of the std at init (exp of the log-linear slope), Xavier",
              "in", (0.64, 0.78),
              why="E[relu(z)²] = Var(z)/2 with Var(W) = 1/n: factor 1/√2 ≈ 0.707; the band "
                  "allows ±10% for the finite width and batch; equivalence test, both "
                  "one-sided 95% t bounds over the per-seed factors inside it",
              control=CONTROL_INIT,
              on={"mnist1d": On(SAME, "a mean-field derivation, not a property of the data: "
                  "E[relu(z)²] = Var(z)/2 for any zero-mean symmetric pre-activation, and from "
                  "layer 2 on the pre-activations are sums over random weights whatever the "
                  "inputs. At finite width the factor of one weight draw scatters around "
                  "1/√2 (the norm of a layer fluctuates by O(1/√width), Hanin & Rolnick "
                  "2018) in the same way on any inputs")}),
        Claim("he-flat", "Under He the std stays flat with depth",
              "per-layer factor of the std at init, He", "in", (0.93, 1.07),
              why="Var(W) = 2/n exactly compensates ReLU's halving: factor 1 (band ±7%); "
                  "both one-sided 95% t bounds over the per-seed factors inside it",
              control=CONTROL_INIT,
              on={"mnist1d": On(SAME, "the same derivation with Var(W) = 2/n: factor 1 "
                  "for any inputs (the same finite-width scatter)")}),
        Claim("he-trains-deep", "He trains the deep net",
              "final train loss / ln 10 at the large depth, He (per seed)", "<", 0.8,
              why="ln 10 is the loss of a uniform guess; below 80% of it the net learns",
              control=CONTROL_INIT,
              on={"mnist1d": On(SAME, "ln 10 is the uniform guess there too (10 balanced "
                  "classes), and Greydanus 2020's 68% MLP test accuracy on MNIST-1D, turned into "
                  "a distribution (0.68 on its class, 0.32/9 on each other), has a log loss of "
                  "h(0.32) + 0.32·ln 9 ≈ 1.33 nats ≈ 0.58·ln 10: 'below 0.8·ln 10' is reachable "
                  "on MNIST-1D")}),
        Claim("xavier-stalls-deep", "Xavier stalls at that depth",
              "final train loss / ln 10 at the large depth, Xavier (per seed)", ">",
              0.95, why="with the signal at 2^{-depth/2} of its input the gradients vanish and "
                        "the loss stays at the uniform guess (He et al. fig. 3: 'does not "
                        "move'); 0.95 leaves 5% for the bias terms' learning",
              control=CONTROL_INIT,
              on={"mnist1d": On(SAME, "a derivation from the architecture, not the data: the "
                  "signal reaching the output is 2^{-depth/2} of the input's on any inputs, so "
                  "the loss stays at ln 10, the uniform guess on MNIST-1D's 10 balanced classes "
                  "too")}),
        Claim("small-stalls-deep", "N(0, 0.01²) stalls at that depth",
              "final train loss / ln 10 at the large depth, N(0, 0.01²) (per seed)", ">", 0.95,
              why="a factor 0.01·√(n/2) ≈ 0.06 per layer: nothing reaches the output",
              control=CONTROL_INIT,
              on={"mnist1d": On(SAME, "the factor 0.01·√(n/2) per layer depends on the width "
                  "only: nothing reaches the output on any inputs")}),
        Claim("both-train-moderate", "At moderate depth both He and Xavier train",
              "per seed, max over He, Xavier of final train loss / ln 10 at the moderate depth",
              "<", 0.8,
              why="He et al. fig. 2: at 22 layers both converge (Xavier more slowly); the "
                  "moderate depth is their 22; 0.8 as he-trains-deep",
              control=CONTROL_DEPTH,
              on={"mnist1d": On(SAME, "ln 10 is the uniform guess there too (10 balanced "
                  "classes), and Greydanus 2020's 68% MLP test accuracy on MNIST-1D, turned into "
                  "a distribution (0.68 on its class, 0.32/9 on each other), has a log loss of "
                  "h(0.32) + 0.32·ln 9 ≈ 1.33 nats ≈ 0.58·ln 10: 'below 0.8·ln 10' is reachable "
                  "on MNIST-1D")}),
    ),
    quick_seconds=60,
    datasets=("mnist", "mnist1d"),
    reference_note="He et al.'s setup is a 30-layer plain conv net on ImageNet; its stand-in "
                   "here would be a 30-layer plain ReLU conv net on MNIST (≈20 GFLOP per "
                   "batch-64 step, some 400 times the MLP's), beyond the 2-core CPU's "
                   "reference budget; the quick MLP has the same per-layer factor (1/√2 "
                   "Xavier, 1 He) and He et al.'s two depths (30, 22)",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()

    data = classification_data(ctx, n_train=cfg.n_train, n_test=1000)
    d_in = data.x_train.shape[1]
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    x0 = data.x_train[:512].to(ctx.device)
    x0 = (x0 - x0.mean(0)) / x0.std(0).clamp_min(1e-6)  # unit-variance input for the picture

    if ctx.control:
        ctx.note(f"Control run: {CONTROL_INIT}; the moderate depth -> {cfg.deep} layers.")

    def used(label: str) -> str:
        """The init an arm uses: its own, or in the control run the swapped one."""
        return SWAP[label] if ctx.control else label

    # per-layer std at init, deep net, one weight draw per seed
    std_rows, std_curves = [], {}
    factors: dict[str, list[float]] = {label: [] for label in INITS}
    for s in seeds:
        for label in INITS:
            scheme, kw = INITS[used(label)]
            sizes = (d_in, *[cfg.width] * cfg.deep, 10)
            model = build_mlp(sizes, "relu", (scheme, kw), seed=s).to(ctx.device)
            stds = layer_stds(model, x0)
            if s == seeds[0]:
                std_curves[label] = stds
            # from layer 2 on (the input is not ReLU'd)
            factors[label].append(math.exp(slope_per_layer(stds[1:])))
            for i, sd in enumerate(stds, 1):
                std_rows.append({"seed": s, "init": label, "layer": i, "std": sd})
    ctx.table("layer_std_at_init", std_rows, f"Std of each block's output at init, depth "
              f"{cfg.deep}, width {cfg.width}, {len(x0)} standardized inputs, per seed.",
              show=False)
    ctx.check("xavier-halves", values=factors["Xavier 1/n"], seeds=seeds)
    ctx.check("he-flat", values=factors["He 2/n"], seeds=seeds)

    moderate = cfg.deep if ctx.control else cfg.moderate
    jobs = [(cfg.deep, label, s) for label in INITS for s in seeds]
    jobs += [(cfg.moderate, label, s) for label in MODERATE_INITS for s in seeds]
    runs = []
    for depth, label, s in jobs:
        d = moderate if depth == cfg.moderate else depth
        scheme, kw = INITS[used(label)]
        runs.append(mlp_run(ctx, data, f"d{depth}-{INITS[label][0]}-seed{s}",
                            (d_in, *[cfg.width] * d, 10), "relu", (scheme, kw), seed=s,
                            steps=cfg.steps, batch_size=cfg.batch, optimizer="momentum",
                            lr=cfg.lr, log_every=max(1, cfg.steps // 40),
                            config={"depth": d, "init_label": label, "init_used": scheme}))
    results: dict[tuple[int, str], list] = {}
    for (depth, label, _), h in zip(jobs, ctx.train_grid(runs)):
        results.setdefault((depth, label), []).append(h)

    def ratios(depth: int, label: str) -> list[float]:
        vals = []
        for h in results[depth, label]:
            v = h.metrics[-1]["train_loss"] if h.metrics else math.nan
            vals.append(v / LN10 if math.isfinite(v) else math.inf)
        return vals

    table = []
    for (depth, label), hs in results.items():
        m, sd = mean_std(ratios(depth, label))
        accs = [h.metrics[-1].get("test_acc", math.nan) for h in hs if h.metrics]
        table.append({"depth": moderate if depth == cfg.moderate else depth, "init": label,
                      "init used": used(label), "final_loss/ln10": m, "std": sd,
                      "per_seed": " ".join(f"{v:.3f}" for v in ratios(depth, label)),
                      "test_acc": mean_std(accs)[0] if accs else math.nan,
                      "status": ",".join(h.status for h in hs)})
    ctx.table("final", table, f"Final training loss (over ln 10) and test accuracy after "
              f"{cfg.steps} steps of momentum SGD (lr {cfg.lr}), seeds {seeds}.")
    for cid, depth, label in (("he-trains-deep", cfg.deep, "He 2/n"),
                              ("xavier-stalls-deep", cfg.deep, "Xavier 1/n"),
                              ("small-stalls-deep", cfg.deep, "N(0, 0.01²)")):
        ctx.check(cid, values=ratios(depth, label), seeds=seeds)
    worst = [max(a, b) for a, b in zip(*(ratios(cfg.moderate, lab) for lab in MODERATE_INITS))]
    ctx.check("both-train-moderate", values=worst, seeds=seeds,
              detail="per seed, the worse of He and Xavier")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    ax = axes[0]
    for label, stds in std_curves.items():
        ax.semilogy(range(1, len(stds) + 1), stds, "o-", ms=3, color=COLORS[label], label=label)
    ks = range(1, len(std_curves["Xavier 1/n"]) + 1)
    ref = std_curves["Xavier 1/n"][0]
    ax.semilogy(ks, [ref * 2 ** (-(k - 1) / 2) for k in ks], "k:", lw=1,
                label="(1/√2)^layer")
    ax.set_xlabel("layer")
    ax.set_ylabel("activation std at init (log)")
    ax.set_title(f"{cfg.deep} ReLU layers at init")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for ax, depth in zip(axes[1:], (cfg.deep, cfg.moderate)):
        plot_curves({lab: results[depth, lab] for lab in INITS if (depth, lab) in results},
                    "train_loss", ax=ax,
                    colors=COLORS,
                    title=f"{moderate if depth == cfg.moderate else depth} layers × "
                          f"{cfg.width}: training loss",
                    hline=LN10, hline_label="ln 10 (uniform guess)")
    ctx.figure("he_depth", fig, "Left: at init the activation std falls by 1/√2 per layer "
               "under Xavier (dotted line), collapses under N(0, 0.01²) and stays flat under "
               "He. Middle: at the large depth only He's net leaves the ln 10 plateau. Right: "
               "at moderate depth Xavier trains as well.")
