"""sigmoid-init: lecture 004's forward pass of 1000 Gaussian points through 5 × 500 sigmoid
and tanh layers under four weight initializations.

Lecture 004 (Module 7.4, "Better initialization strategies", after Khapra): the input is
``D = np.random.randn(1000, 500)``, each of the 5 layers computes ``h = f(h W)`` with a
500 × 500 ``W`` and no bias, and the slides show each layer's activation histogram for
``W = 0.01·randn`` (small), ``W = randn`` (large), ``randn / sqrt(fan_in)`` ("Xavier",
trainlab's ``lecun_normal``) and ``randn / sqrt(fan_in / 2)`` (He, ``he_normal``).

Small weights: the pre-activation std is ``0.01·sqrt(500)·rms(h) ≈ 0.22·rms(h)``, so tanh
outputs shrink to 0 and sigmoid outputs to ``σ(0) = 0.5`` (sigmoid's outputs are not zero
centred: ``rms(h) ≈ 0.5`` keeps its pre-activations at std ≈ 0.11, ``σ' = 1/4``, output std
≈ 0.028). Large weights: pre-activation std ≈ ``sqrt(500)·rms(h) ≈ 16–21``, far beyond the
saturation points ``|x| ≈ 3.5`` (sigmoid) and ``2.1`` (tanh): the outputs pile at the
asymptotes. The setup is small, so ``quick`` and ``paper`` are the lecture's own.

Controls (``--controls``): every claim's init is swapped for the lecture's "Xavier"
``randn / sqrt(fan_in)`` (gain 1 per layer), under which the outputs neither pile at the
centre nor saturate, so every claim must FAIL. Each claim is decided by the one-sided 95%
Student t bound over the per-seed last-layer values (3 seeds at every scale).
"""

from __future__ import annotations

from dataclasses import dataclass

from trainlab.init import init_model
from trainlab.models.builders import mlp
from trainlab.studies._signal import (
    gaussian_input,
    mean_spread,
    plot_hist_rows,
    plot_layer_curves,
    probe_at_init,
    series,
)
from trainlab.studies.base import Claim, StudyContext, study


@dataclass(frozen=True)
class Config:
    n_inputs: int = 1000
    width: int = 500
    depth: int = 5
    small_std: float = 0.01
    large_std: float = 1.0
    seeds: int = 3


INITS = (  # key, label, scheme, kwargs from the config
    ("small", "0.01·N(0,1)", "normal", "small_std"),
    ("large", "N(0,1)", "normal", "large_std"),
    ("xavier", "Xavier 1/√fan_in", "lecun_normal", None),
    ("he", "He √(2/fan_in)", "he_normal", None),
)
ACTS = ("sigmoid", "tanh")
#: the value each activation takes at 0 (where small weights pile its outputs)
CENTRE = {"sigmoid": 0.5, "tanh": 0.0}


@study(
    "sigmoid-init",
    title="Sigmoid and tanh activations under small, large, Xavier and He initializations",
    source="Lecture 004, Module 7.4 'Better initialization strategies' (5 layers × 500 "
           "units, 1000 Gaussian inputs)",
    summary="A thousand unit-Gaussian points go through 5 layers of 500 sigmoid or tanh units "
            "(no bias) at initialization, with weights 0.01·N(0,1), N(0,1), Xavier and He; "
            "one histogram per layer. Small weights pile sigmoid outputs at 0.5 and tanh "
            "outputs at 0; N(0,1) weights saturate both at their asymptotes.",
    scales={
        "test": Config(n_inputs=100, width=128, seeds=3),
        "quick": Config(),
        "paper": Config(seeds=5),
    },
    claims=(
        Claim("small-sigmoid-half",
              "With 0.01·N(0,1) weights the sigmoid outputs pile at 0.5",
              quantity="RMS of (h − 0.5) in the last layer, sigmoid + 0.01·N(0,1)",
              op="<", threshold=0.05,
              why="pre-activation std 0.01·√500·rms(h) ≈ 0.11 with rms(h) ≈ 0.5, and σ' = 1/4 "
                  "at 0: theory 0.028; 0.05 = every output within a few hundredths of 0.5 "
                  "(Xavier's gain 1 gives 0.12 by the mean-field recursion)",
              control="0.01·N(0,1) -> Xavier randn/√fan_in"),
        Claim("small-tanh-zero",
              "With 0.01·N(0,1) weights the tanh outputs pile at 0",
              quantity="RMS of h in the last layer, tanh + 0.01·N(0,1)", op="<",
              threshold=0.01,
              why="each layer multiplies the std by 0.01·√500 ≈ 0.22: 0.22^5 · 0.76 ≈ 4e-4 "
                  "after 5 layers; 0.01 = 1% of tanh's range (Xavier's gain 1 keeps an RMS of "
                  "0.32 after 5 layers, mean field)",
              control="0.01·N(0,1) -> Xavier randn/√fan_in"),
        Claim("large-sigmoid-saturates",
              "With N(0,1) weights the sigmoid units saturate at 0 and 1",
              quantity="fraction of last-layer sigmoid outputs <= 0.03 or >= 0.97 (the "
                       "activation registry's saturation rule)", op=">", threshold=0.5,
              why="pre-activation std ≈ √500·rms(h) ≈ 16 against the saturation point "
                  "|x| = 3.48: theory ≈ 83% saturated; 'saturation' = most units (Xavier: "
                  "pre-activation std ≈ 0.6, none saturated)",
              control="N(0,1) -> Xavier randn/√fan_in"),
        Claim("large-tanh-saturates",
              "With N(0,1) weights the tanh units saturate at ±1",
              quantity="fraction of last-layer tanh outputs with |h| >= 0.97 (the registry's "
                       "rule)", op=">", threshold=0.5,
              why="pre-activation std ≈ √500·0.95 ≈ 21 against |x| = 2.09: theory ≈ 92%; "
                  "'saturation' = most units (Xavier: pre-activation std < 1, none saturated)",
              control="N(0,1) -> Xavier randn/√fan_in"),
    ),
    quick_seconds=10,
    data_note="Gaussian inputs; no data set needed.",
    reference_note="data-free (unit-Gaussian inputs at initialization, no training): the "
                   "quick scale is the lecture's own setup (1000 points, 5 × 500 units)",
)
def run(ctx: StudyContext, cfg: Config) -> None:
    layers = [f"block{i}.act" for i in range(1, cfg.depth + 1)]
    keys = [(act, key) for act in ACTS for key, *_ in INITS]
    st: dict[tuple[str, str], dict[str, list[list[float]]]] = {
        k: {"mean": [], "std": [], "sat": [], "rms_c": []} for k in keys}
    hists: dict[tuple[str, str], list] = {}
    for s in ctx.progress(range(cfg.seeds), "seeds"):
        g = ctx.generator(s)
        x = gaussian_input(cfg.n_inputs, cfg.width, g).to(ctx.device)
        for act in ACTS:
            for key, _label, scheme, std_field in INITS:
                # out_features=1: the head is not part of the lecture's net (its Linear is
                # never looked at); the probe watches the activation modules only.
                model = mlp(cfg.width, [cfg.width] * cfg.depth, 1, activation=act,
                            bias=False).to(ctx.device)
                kw = {} if std_field is None else {"std": getattr(cfg, std_field)}
                init_model(model, scheme, generator=g, **kw)
                log = probe_at_init(model, x, gradients=False)
                mean = series(log, "act_mean", layers)
                std = series(log, "act_std", layers)
                r = st[(act, key)]
                r["mean"].append(mean)
                r["std"].append(std)
                r["sat"].append(series(log, "act_saturated", layers))
                # RMS distance from the centre value: sqrt(std² + (mean − c)²) (std is
                # Bessel-corrected over n·width elements: the difference is negligible)
                c = CENTRE[act]
                r["rms_c"].append([(sd * sd + (m - c) ** 2) ** 0.5 for m, sd in zip(mean, std)])
                if s == 0:
                    by_layer = {h["layer"]: h for h in log.hists("act")}
                    hists[(act, key)] = [by_layer[lay] for lay in layers]

    def avg(k: tuple[str, str], q: str) -> tuple[list[float], list[float]]:
        ms = [mean_spread(c) for c in zip(*st[k][q])]
        return [m for m, _ in ms], [sd for _, sd in ms]

    labels = {key: label for key, label, *_ in INITS}
    for act in ACTS:
        def note(r: int, col: int, act: str = act) -> str:
            k = (act, INITS[r][0])
            return (f"mean {avg(k, 'mean')[0][col]:.2g}\nstd {avg(k, 'std')[0][col]:.2g}\n"
                    f"sat {avg(k, 'sat')[0][col]:.0%}")

        fig = plot_hist_rows([(labels[key], hists[(act, key)]) for key, *_ in INITS],
                             xlabel=f"{act} output", symmetric=False, panel_note=note,
                             title=f"{act}: activations of {cfg.depth} layers × {cfg.width} "
                                   f"units, {cfg.n_inputs} Gaussian inputs (seed {ctx.seed})")
        centre = "0.5" if act == "sigmoid" else "0"
        ends = "0 and 1" if act == "sigmoid" else "−1 and 1"
        ctx.figure(f"{act}_histograms", fig,
                   f"Small weights squeeze every {act} layer into a spike at {centre}, N(0,1) "
                   f"weights pile the outputs at {ends}, and Xavier and He keep them spread "
                   "(sat = fraction saturated).")

    curves, styles = [], []
    for i, act in enumerate(ACTS):
        for j, (key, label, *_) in enumerate(INITS):
            m, sd = avg((act, key), "std")
            curves.append((f"{act}, {label}", m, sd))
            styles.append({"color": f"C{j}", "ls": "-" if i == 0 else "--",
                           "marker": "os"[i]})
    fig = plot_layer_curves(curves, xlabel="layer", ylabel="std of the outputs (log)",
                            styles=styles,
                            title=f"Output std per layer (mean ± std over {cfg.seeds} seeds); "
                                  "solid sigmoid, dashed tanh")
    ctx.figure("output_std", fig,
               "Small-weight tanh outputs fall by about 0.22 per layer, small-weight sigmoid "
               "outputs stay at a tiny spread around 0.5, and N(0,1) outputs stay near the "
               "largest spread possible (saturated).")

    rows = []
    for act in ACTS:
        for key, label, *_ in INITS:
            k = (act, key)
            m, _ = avg(k, "mean")
            sd, _ = avg(k, "std")
            sat, _ = avg(k, "sat")
            rc, _ = avg(k, "rms_c")
            for i in range(cfg.depth):
                rows.append({"activation": act, "init": label, "layer": i + 1,
                             "mean": round(m[i], 5), "std": float(f"{sd[i]:.4g}"),
                             "rms_from_centre": float(f"{rc[i]:.4g}"),
                             "saturated": round(sat[i], 4)})
    ctx.table("layer_stats", rows,
              f"Per activation, init and layer: output mean and std, RMS distance from the "
              f"value at 0 (0.5 or 0) and saturated fraction (|h| within 0.03 of an "
              f"asymptote), mean over {cfg.seeds} seeds.")

    seeds = list(range(cfg.seeds))

    if ctx.control:
        ctx.note("Control run: every claim reads the Xavier (randn/√fan_in) net in place of "
                 "the small or large init it names.")
    for claim, (act, key), q in (("small-sigmoid-half", ("sigmoid", "small"), "rms_c"),
                                 ("small-tanh-zero", ("tanh", "small"), "rms_c"),
                                 ("large-sigmoid-saturates", ("sigmoid", "large"), "sat"),
                                 ("large-tanh-saturates", ("tanh", "large"), "sat")):
        k = (act, ctx.controlled(key, "xavier"))
        ctx.check(claim, values=[v[-1] for v in st[k][q]], seeds=seeds,
                  detail="" if not ctx.control else "control: the Xavier net")
