"""activation-stats: lecture 001's forward pass through a 6-layer net at initialization.

Lecture 001 ("Weight initialization: activation statistics", after CS231n) feeds 16
unit-Gaussian inputs through 6 fully connected layers of 4096 units, without biases, and
plots each layer's activation histogram for five choices: tanh with ``N(0, 0.01²)`` and
``N(0, 0.05²)`` weights, tanh with "Xavier" ``std = 1/sqrt(D_in)`` (trainlab's
``lecun_normal``), ReLU with the same, and ReLU with He's ``std = sqrt(2/D_in)``
(``he_normal``). Here a linear readout to 10 classes and the cross-entropy of random labels
are added so that ``∂L/∂W`` (the lecture's "what do the gradients look like?") can be drawn.

What decides each picture is the per-layer gain ``σ·sqrt(D)``: ``Var(s) = D·σ²·E[h²]`` (the
lecture's derivation). A fixed ``σ`` means a different gain at another width, so the
``quick`` scale (width 1024) scales the two fixed stds by ``sqrt(4096/1024) = 2`` (0.02 and
0.1) to keep the lecture's gains 0.64 and 3.2; the ``paper`` scale uses 0.01 and 0.05 at
width 4096 as on the slide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainlab.init import init_model
from trainlab.models.builders import mlp
from trainlab.nn.activations import TANH_SATURATION
from trainlab.studies._signal import (
    abs_fraction,
    gaussian_input,
    geo_mean_ratio,
    mean_spread,
    plot_hist_rows,
    plot_layer_curves,
    probe_at_init,
    series,
)
from trainlab.studies.base import Claim, StudyContext, study

#: a tanh unit with ``|h| >=`` this is shown as "near 1" in the table (derivative
#: ``1 - h² <= 0.19``); the claim uses the registry's saturation rule, ``|h| >= 0.97``
#: (:data:`trainlab.nn.activations.TANH_SATURATION`), the one every probe applies.
NEAR_ONE = 0.9


@dataclass(frozen=True)
class Config:
    width: int = 1024
    depth: int = 6
    batch: int = 16
    small_std: float = 0.02  # lecture: 0.01 at width 4096 (gain 0.64)
    large_std: float = 0.1  # lecture: 0.05 at width 4096 (gain 3.2)
    classes: int = 10
    seeds: int = 3


#: (key, label, activation, init scheme, scheme kwargs from the config)
def _cases(cfg: Config) -> list[tuple[str, str, str, str, dict]]:
    return [
        ("tanh-small", f"tanh, N(0, {cfg.small_std:g}²)", "tanh", "normal",
         {"std": cfg.small_std}),
        ("tanh-large", f"tanh, N(0, {cfg.large_std:g}²)", "tanh", "normal",
         {"std": cfg.large_std}),
        ("tanh-xavier", "tanh, Xavier 1/√D", "tanh", "lecun_normal", {}),
        ("relu-xavier", "ReLU, Xavier 1/√D", "relu", "lecun_normal", {}),
        ("relu-he", "ReLU, He √(2/D)", "relu", "he_normal", {}),
    ]


@study(
    "activation-stats",
    title="Activation statistics through a deep net at initialization",
    source="Lecture 001, 'Weight initialization: activation statistics' slides (after "
           "CS231n); Glorot & Bengio 2010; He et al. 2015",
    summary="Sixteen unit-Gaussian inputs go through 6 fully connected layers without biases "
            "at initialization; each layer's activation histogram, mean and std, and the "
            "weight gradients of a random-label cross-entropy, for tanh with small and large "
            "fixed-std weights, tanh and ReLU with Xavier (1/√D) and ReLU with He (√(2/D)). "
            "Small weights shrink the signal geometrically, large ones saturate tanh, Xavier "
            "suits tanh but halves the variance of ReLU layers, and He keeps ReLU's constant.",
    scales={
        "test": Config(width=64, small_std=0.08, large_std=0.4, seeds=3),
        "quick": Config(),
        "paper": Config(width=4096, small_std=0.01, large_std=0.05),
    },
    claims=(
        Claim("small-init-vanishes",
              "With small fixed-std weights (gain σ√D = 0.64) the tanh activations' std "
              "shrinks geometrically toward 0",
              quantity="per-layer factor of the activation std, (std_6/std_1)^(1/5), "
                       "tanh + small std", op="<", threshold=0.8,
              why="in tanh's linear range each layer multiplies the std by about "
                  "σ√D = 0.64 (mean-field: 0.61); 0.8 leaves room for the first layer, "
                  "whose unit-variance input reaches tanh's curved part, and would still "
                  "mean a 3x loss over 5 layers; Xavier's gain 1 gives 0.86 (mean-field)",
              control="small std -> Xavier 1/√D"),
        Claim("small-init-grad-vanishes",
              "With small fixed-std weights the weight gradients dL/dW vanish",
              quantity="median over the hidden layers of std(dL/dW), tanh + small std, "
                       "divided by the same for tanh + Xavier", op="<", threshold=0.1,
              why="an order of magnitude below the Xavier net's, the lecture's 'dL/dW all "
                  "zero'. dL/dW_l = δ_l·h_(l-1)ᵀ: the activations below shrink by 0.64 per "
                  "layer and the gradient from above by 0.64 per layer, about 0.64^6 ≈ 0.07 "
                  "in all; that estimate (made before measuring) overlooks that the Xavier "
                  "tanh net's signal shrinks too (std_6/std_1 ≈ 0.47), which predicts ≈ 0.15",
              control="small std -> Xavier 1/√D (its own draws of inputs and weights, "
                      "seeds disjoint from the Xavier arm's)"),
        Claim("large-init-saturates",
              "With large fixed-std weights (gain 3.2) a large fraction of the last layer's "
              "tanh units are saturated (|h| near 1)",
              quantity=f"fraction of last-layer tanh outputs saturated by the registry's rule "
                       f"(|h| >= {TANH_SATURATION:g}, as every probe counts them), tanh + "
                       "large std", op=">", threshold=0.35,
              why=f"|h| >= {TANH_SATURATION:g} means tanh' <= 0.059, 6% of its peak; the "
                  "mean-field fixed point at gain 3.2 (pre-activation std 2.7) puts 44.1% of "
                  "the units there (2Φ(-atanh(0.97)/2.72), computed before the run; 59% at "
                  "|h| >= 0.9); 0.35 leaves 0.09 for finite width and 16 inputs. The lecture's "
                  "'most units saturated' holds only with the looser |h| >= 0.9 cutoff, "
                  "shown in the table; Xavier's layer 6 has none saturated (mean field 0.000)",
              control="large std -> Xavier 1/√D"),
        Claim("xavier-tanh-band",
              "With Xavier (1/√D) weights the tanh activations' std stays within a narrow "
              "band across layers",
              quantity="std_6 / std_1, tanh + Xavier", op=">", threshold=0.3,
              why="at gain 1 tanh shrinks the variance only through its curvature (q_l ~ "
                  "1/(2l) for small q): mean-field gives 0.47; geometric vanishing at gain "
                  "0.64 would give 0.09",
              control="Xavier -> small std (gain 0.64)"),
        Claim("xavier-relu-halves",
              "With Xavier (1/√D) weights the ReLU activations' variance halves at every "
              "layer (collapse)",
              quantity="per-layer factor of the activation variance, (var_6/var_1)^(1/5), "
                       "ReLU + Xavier", op="in", threshold=(0.4, 0.6),
              why="Var(s_(l+1)) = D·(1/D)·E[relu(s_l)²] = Var(s_l)/2: ReLU keeps half the "
                  "second moment (He et al. 2015, eq. 8); He's gain 2 gives 1",
              control="Xavier -> He √(2/D)"),
        Claim("he-relu-constant",
              "With He (√(2/D)) weights the ReLU activations' std stays roughly constant",
              quantity="std_6 / std_1, ReLU + He", op="in", threshold=(0.75, 1.33),
              why="the factor 2 exactly compensates ReLU's halving (He et al. 2015): the "
                  "expected ratio is 1; finite width moves it by a few percent per layer; "
                  "Xavier's halving gives 0.5^(5/2) = 0.18",
              control="He -> Xavier 1/√D"),
    ),
    quick_seconds=12,
    data_note="Gaussian inputs; no data set needed.",
    reference_note="data-free (Gaussian inputs at initialization, no training): the quick "
                   "scale is the lecture's setup at width 1024 with the fixed stds rescaled to "
                   "the lecture's gains, and the paper scale is the lecture's own width 4096, "
                   "which a CPU runs in under a minute",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    cases = _cases(cfg)
    if ctx.control:  # the control of small-init-grad-vanishes: Xavier against Xavier, drawn
        # from seeds disjoint from the Xavier arm's
        cases.append(("tanh-xavier-alt", "tanh, Xavier 1/√D (disjoint seeds)", "tanh",
                      "lecun_normal", {}))
    layers = [f"block{i}.act" for i in range(1, cfg.depth + 1)]
    weights = [f"block{i}.linear" for i in range(1, cfg.depth + 1)]
    # per case: per seed: per-layer lists
    stats: dict[str, dict[str, list[list[float]]]] = {
        key: {"std": [], "mean": [], "near1": [], "sat": [], "gw": []} for key, *_ in cases}
    hists: dict[str, tuple[list, list]] = {}
    for s in ctx.progress(range(cfg.seeds), "seeds"):
        g = ctx.generator(s)
        x = gaussian_input(cfg.batch, cfg.width, g).to(ctx.device)
        y = torch.randint(0, cfg.classes, (cfg.batch,), generator=g).to(ctx.device)
        g_alt = ctx.generator(1000 + s)
        x_alt = gaussian_input(cfg.batch, cfg.width, g_alt).to(ctx.device)
        y_alt = torch.randint(0, cfg.classes, (cfg.batch,), generator=g_alt).to(ctx.device)
        for key, _label, act, scheme, kw in cases:
            alt = key.endswith("-alt")
            model = mlp(cfg.width, [cfg.width] * cfg.depth, cfg.classes, activation=act,
                        bias=False).to(ctx.device)
            init_model(model, scheme, generator=g_alt if alt else g, **kw)
            log = probe_at_init(model, x_alt if alt else x, y_alt if alt else y,
                                F.cross_entropy)
            st = stats[key]
            st["std"].append(series(log, "act_std", layers))
            st["mean"].append(series(log, "act_mean", layers))
            st["gw"].append(series(log, "grad_w_std", weights))
            act_h = {h["layer"]: h for h in log.hists("act")}
            gw_h = {h["layer"]: h for h in log.hists("grad_w")}
            if act == "tanh":
                st["near1"].append([abs_fraction(act_h[lay], NEAR_ONE) for lay in layers])
                st["sat"].append(series(log, "act_saturated", layers))
            if s == 0 and not alt:
                hists[key] = ([act_h[lay] for lay in layers], [gw_h[w] for w in weights])

    def layer_mean(key: str, q: str) -> tuple[list[float], list[float]]:
        cols = list(zip(*stats[key][q]))
        ms = [mean_spread(c) for c in cols]
        return [m for m, _ in ms], [sd for _, sd in ms]

    # -- figures ----------------------------------------------------------------------------
    labels = {key: label for key, label, *_ in cases if not key.endswith("-alt")}
    std_of = {key: layer_mean(key, "std")[0] for key in labels}

    def act_note(r: int, col: int) -> str:
        key = cases[r][0]
        return f"mean {layer_mean(key, 'mean')[0][col]:.2g}\nstd {std_of[key][col]:.2g}"

    fig = plot_hist_rows([(labels[k], hists[k][0]) for k in labels], xlabel="activation h",
                         title=f"Activations at initialization, {cfg.depth} layers × "
                               f"{cfg.width} units, batch {cfg.batch} (seed {ctx.seed})",
                         symmetric=False, shared="row", panel_note=act_note)
    ctx.figure("activation_histograms", fig,
               "Each row is one init: with small weights the histograms narrow to a spike at "
               "0 layer after layer, with large ones tanh piles up at ±1, Xavier keeps tanh "
               "spread, and ReLU's positive part collapses toward 0 with Xavier but keeps "
               "its width with He (zeros of ReLU fill the first bin).")

    curves = []
    for key in labels:
        m, sd = layer_mean(key, "std")
        curves.append((labels[key], m, sd))
    fig = plot_layer_curves(curves, xlabel="layer", ylabel="std of the activations (log)",
                            title=f"Activation std per layer (mean ± std over {cfg.seeds} "
                                  "seeds)")
    ctx.figure("activation_std", fig,
               "On a log axis a straight falling line is geometric vanishing: the small-std "
               "tanh net and the Xavier ReLU net fall, the others stay level.")

    curves = []
    for key in labels:
        m, sd = layer_mean(key, "gw")
        curves.append((labels[key], m, sd))
    fig = plot_layer_curves(curves, xlabel="layer (weight matrix)",
                            ylabel="std of dL/dW (log)",
                            title="Weight-gradient std per layer, random-label cross-entropy")
    ctx.figure("weight_gradient_std", fig,
               "The small-std tanh net's weight gradients sit far below the Xavier net's at "
               "every layer (the lecture's 'dL/dW all zero'); the large-std net's grow toward "
               "the input: saturated tanh is past the edge of chaos, and gradients explode.")

    pair = ("tanh-small", "tanh-xavier")
    fig = plot_hist_rows([(labels[k], hists[k][1]) for k in pair], xlabel="dL/dW",
                         title="Weight gradients at initialization (tanh), one x range for "
                               "both rows", shared="all")
    ctx.figure("weight_gradient_histograms", fig,
               "With one x range for both rows, the small-std net's weight gradients are a "
               "spike at 0 at every layer (the lecture's 'dL/dW all zero') while Xavier's "
               "spread.")

    # -- table ------------------------------------------------------------------------------
    rows = []
    for key, label, act, *_ in cases:
        if key.endswith("-alt"):
            continue
        m_std, s_std = layer_mean(key, "std")
        m_mean, _ = layer_mean(key, "mean")
        m_gw, _ = layer_mean(key, "gw")
        near = layer_mean(key, "near1")[0] if act == "tanh" else [math.nan] * cfg.depth
        sat = layer_mean(key, "sat")[0] if act == "tanh" else [math.nan] * cfg.depth
        for i in range(cfg.depth):
            rows.append({"init": label, "layer": i + 1, "act_mean": round(m_mean[i], 5),
                         "act_std": round(m_std[i], 5), "act_std_spread": round(s_std[i], 5),
                         f"frac_abs_h_ge_{NEAR_ONE}": round(near[i], 4),
                         "frac_saturated_0.97": round(sat[i], 4),
                         "grad_w_std": float(f"{m_gw[i]:.4g}")})
    ctx.table("layer_stats", rows,
              f"Mean over {cfg.seeds} seeds of each layer's activation mean and std, the "
              "fraction of tanh outputs near ±1 and the weight-gradient std.")

    # -- claims -----------------------------------------------------------------------------
    def per_seed(key: str, q: str, fn) -> tuple[float, float]:
        return mean_spread([fn(v) for v in stats[key][q]])

    seeds = list(range(cfg.seeds))
    c = ctx.controlled  # each claim's technique, or its control under --controls
    small = c("tanh-small", "tanh-xavier")
    v, sp = per_seed(small, "std", geo_mean_ratio)
    ctx.check("small-init-vanishes", v, spread=sp, seeds=seeds,
              detail=f"std per layer {', '.join(f'{a:.3g}' for a in std_of[small])}")
    ratios = [_median(a) / _median(b) for a, b in
              zip(stats[c("tanh-small", "tanh-xavier-alt")]["gw"], stats["tanh-xavier"]["gw"])]
    v, sp = mean_spread(ratios)
    ctx.check("small-init-grad-vanishes", v, spread=sp, seeds=seeds)
    large = c("tanh-large", "tanh-xavier")
    v, sp = per_seed(large, "sat", lambda a: a[-1])
    ctx.check("large-init-saturates", v, spread=sp, seeds=seeds,
              detail=f"|h| >= {NEAR_ONE} (the lecture's looser 'near 1'): "
                     f"{mean_spread([a[-1] for a in stats[large]['near1']])[0]:.3f}")
    v, sp = per_seed(c("tanh-xavier", "tanh-small"), "std", lambda a: a[-1] / a[0])
    ctx.check("xavier-tanh-band", v, spread=sp, seeds=seeds)
    v, sp = per_seed(c("relu-xavier", "relu-he"), "std", lambda a: geo_mean_ratio(a) ** 2)
    ctx.check("xavier-relu-halves", v, spread=sp, seeds=seeds)
    v, sp = per_seed(c("relu-he", "relu-xavier"), "std", lambda a: a[-1] / a[0])
    ctx.check("he-relu-constant", v, spread=sp, seeds=seeds)


def _median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
