"""optimizers: first-order descent vs momentum, adaptive and second-order steps.

Lecture 003 ("Improving descent for DNNs") draws SGD zig-zagging across a narrow valley,
momentum overshooting and adaptive methods rescaling each coordinate; lecture 002 ("Newton
or quasi-Newton", "natural gradient: inverse of FIM") draws SGD's path in red beside the
natural gradient's in green. This study runs every optimizer of the registry on two 2-D
problems from the same start, each at its best learning rate from a grid (a fair comparison:
the best lr of each, not one lr for all):

- the ill-conditioned quadratic ``f(x, y) = ½ (x² + κ y²)`` (condition number ``κ``);
- Rosenbrock's valley ``f(x, y) = (1 − x)² + 100 (y − x²)²``, a sum of squared residuals
  ``r = (1 − x, 10 (y − x²))``, so the natural gradient uses the Fisher of a unit-variance
  Gaussian model of those residuals (the Gauss–Newton matrix).

It then trains one MLP on MNIST-1D (or MNIST when present) with each first-order optimizer at
its registry default learning rate, over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.optim import build_optimizer
from trainlab.report.figures import pyplot
from trainlab.studies._training import classification_data, mean_std, mlp_run, plot_curves
from trainlab.studies.base import SAME, Claim, On, StudyContext, study

FIRST_ORDER = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam")
SECOND_ORDER = ("newton", "natural_gradient", "lbfgs")
COLORS = {"sgd": "tab:red", "natural_gradient": "tab:green", "momentum": "tab:blue",
          "nesterov": "tab:cyan", "adagrad": "tab:orange", "rmsprop": "tab:purple",
          "adadelta": "tab:brown", "adam": "tab:pink", "newton": "black", "lbfgs": "tab:olive"}


@dataclass(frozen=True)
class Config:
    kappa: float = 50.0
    steps_2d: int = 100
    lr_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
    mlp_steps: int = 400
    mlp_sizes: tuple[int, ...] = (40, 128, 128, 10)
    mlp_n_train: int = 4000
    seeds: int = 2


def quadratic(kappa: float):
    def f(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * (w[0] ** 2 + kappa * w[1] ** 2)

    def residuals(w: torch.Tensor) -> torch.Tensor:  # f = ½ Σ r²
        return torch.stack([w[0], math.sqrt(kappa) * w[1]])
    return f, residuals, torch.tensor([0.0, 0.0])


def rosenbrock():
    def f(w: torch.Tensor) -> torch.Tensor:
        return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2

    def residuals(w: torch.Tensor) -> torch.Tensor:
        return torch.stack([1 - w[0], 10 * (w[1] - w[0] ** 2)])
    return f, residuals, torch.tensor([1.0, 1.0])


def run_path(name: str, f, residuals, start: torch.Tensor, steps: int, lr: float | None
             ) -> tuple[torch.Tensor, list[float], list[float]]:
    """The path (steps+1, 2), f along it, and Adagrad-style effective step sizes |Δw|/|g|."""

    w = start.clone().double().requires_grad_(True)
    kw = {} if lr is None else {"lr": lr}
    if name == "lbfgs":
        kw["max_iter"] = 1  # one inner iteration per step: comparable step counts
    if name == "natural_gradient":
        kw.update(fisher="gauss_newton", damping=1e-6)
    opt = build_optimizer(name, [w], **kw)
    kind = getattr(opt, "closure_kind", None)
    path, values, eff = [w.detach().clone()], [float(f(w.detach()))], []
    for _ in range(steps):
        before = w.detach().clone()
        if kind == "loss":
            opt.step(lambda: f(w))
        elif kind == "per_example":
            # NGD sees ½ mean r² = f / n and F = JᵀJ / n: the 1/n cancels in F⁻¹g, so the
            # full step (lr 1) is the Gauss–Newton step on f
            opt.step(lambda: residuals(w))
        else:
            def closure():
                opt.zero_grad()
                loss = f(w)
                loss.backward()
                return loss

            if kind == "backward":
                opt.step(closure)
            else:
                closure()
                opt.step()
        g = w.grad.detach().abs() if w.grad is not None else torch.zeros(2)
        d = (w.detach() - before).abs()
        eff.append(float((d / g.clamp_min(1e-12)).mean()))
        path.append(w.detach().clone())
        v = float(f(w.detach()))
        values.append(v if math.isfinite(v) else math.inf)
        if not math.isfinite(v) or float(w.detach().abs().max()) > 1e6:
            break
    return torch.stack(path), values, eff


def best_lr(name: str, f, residuals, start, steps: int, grid) -> tuple[float | None, list[float]]:
    """The lr of ``grid`` with the lowest final value (``None`` = the optimizer's own lr,
    for adadelta whose rule has none and the second-order methods whose natural lr is 1)."""
    if name in ("adadelta", "newton", "natural_gradient", "lbfgs"):
        return None, run_path(name, f, residuals, start, steps, None)[1]
    best = None
    for lr in grid:
        vals = run_path(name, f, residuals, start, steps, lr)[1]
        final = vals[-1] if len(vals) == steps + 1 else math.inf
        if best is None or final < best[1][-1]:
            best = (lr, vals if len(vals) == steps + 1 else vals + [math.inf])
    return best


def steps_to(values: list[float], target: float) -> int:
    """First step at which ``values`` is below ``target`` (len(values) if never)."""
    for i, v in enumerate(values):
        if v < target:
            return i
    return len(values)


def path_ratio(path: torch.Tensor, opt: torch.Tensor) -> float:
    """Length of the path over the straight distance from its start to the optimum."""
    length = float((path[1:] - path[:-1]).norm(dim=1).sum())
    return length / max(float((path[0] - opt.double()).norm()), 1e-12)


def sign_flip_fraction(path: torch.Tensor, coord: int = 1) -> float:
    """Fraction of steps on which the coordinate ``coord`` changes sign (zig-zag)."""
    s = torch.sign(path[:, coord])
    nz = s != 0
    s = s[nz]
    if len(s) < 3:
        return 0.0
    return float((s[1:] != s[:-1]).float().mean())


@study(
    "optimizers",
    title="SGD's zig-zag against momentum, adaptive and second-order steps",
    source="Lecture 003, 'Improving descent for DNNs' (SGD, momentum, NAG, Adagrad, RMSProp, "
           "Adadelta, Adam); lecture 002, 'Newton or quasi-Newton' and 'natural gradient: "
           "inverse of FIM' (SGD in red, NGD in green)",
    summary="Every optimizer of the registry runs from the same start on an ill-conditioned "
            "quadratic and on Rosenbrock's valley, each at its best learning rate from a grid; "
            "the paths are drawn on the contours. SGD zig-zags across the steep direction, "
            "momentum and the adaptive methods get much closer in the same number of steps, "
            "Adagrad's effective step shrinks, and Newton's and the natural gradient's "
            "preconditioned steps go straight to the minimum. Then the first-order "
            "optimizers train the same MLP at their default learning rates.",
    scales={
        "test": Config(steps_2d=30, lr_grid=(1e-3, 1e-2, 0.1), mlp_steps=30,
                       mlp_sizes=(40, 16, 10), mlp_n_train=500, seeds=1),
        "quick": Config(seeds=3),
        "paper": Config(steps_2d=300, mlp_steps=3000, mlp_sizes=(784, 500, 500, 10),
                        mlp_n_train=60000, seeds=5),
    },
    claims=(
        Claim("sgd-zigzag", "On the ill-conditioned quadratic SGD zig-zags across the steep "
              "direction", "fraction of SGD steps (best lr) on which y changes sign", ">", 0.5,
              why="at its best lr, 2/(1+κ), SGD's factor on the steep coordinate is "
                  "(1−κ)/(1+κ) < 0: the sign flips on every step",
              on={"mnist1d": On(SAME, "a derivation on functions given in closed form (a "
                  "quadratic, Rosenbrock's valley): the dataset does not enter")}),
        Claim("momentum-beats-sgd", "Momentum beats plain SGD on the ill-conditioned problem",
              "f(momentum) / f(SGD) after the same steps (each at its best lr)", "<", 0.1,
              why="heavy-ball's rate is (√κ−1)/(√κ+1) ≈ 0.75 against SGD's (κ−1)/(κ+1) ≈ 0.96 "
                  "per step at κ = 50: after 100 steps, orders of magnitude apart",
              on={"mnist1d": On(SAME, "a derivation on functions given in closed form (a "
                  "quadratic, Rosenbrock's valley): the dataset does not enter")}),
        Claim("adaptive-beats-sgd", "Adaptive methods beat plain SGD on the ill-conditioned "
              "problem", "min over Adagrad, RMSProp, Adam of f / f(SGD), same steps, best lr",
              "<", 0.1,
              why="per-coordinate scaling removes an axis-aligned condition number",
              on={"mnist1d": On(SAME, "a derivation on functions given in closed form (a "
                  "quadratic, Rosenbrock's valley): the dataset does not enter")}),
        Claim("adagrad-shrinks", "Adagrad's step shrinks over time",
              "Adagrad's mean effective step |Δw|/|g| at the last step / at the first", "<",
              0.5, why="the denominator √Σg² only grows; on a fixed lr grid its step must fall",
              on={"mnist1d": On(SAME, "a derivation on functions given in closed form (a "
                  "quadratic, Rosenbrock's valley): the dataset does not enter")}),
        Claim("newton-quadratic", "Newton's method minimizes a quadratic in one step",
              "f after one undamped Newton step on the quadratic, from f ≈ 44", "<", 1e-20,
              why="the quadratic model is exact: one step lands on the minimum up to float64 "
                  "rounding (the paths use damping 1e-4, which leaves ≈ λ²·f ≈ 1e-7)",
              on={"mnist1d": On(SAME, "a derivation on functions given in closed form (a "
                  "quadratic, Rosenbrock's valley): the dataset does not enter")}),
        Claim("ngd-straight", "The natural gradient goes straight to the minimum where SGD "
              "zig-zags", "NGD path length / straight distance on the quadratic", "<", 1.05,
              why="with the Gaussian Fisher F = JᵀJ = H the step is the Newton direction: a "
                  "straight line for a quadratic",
              on={"mnist1d": On(SAME, "a derivation on functions given in closed form (a "
                  "quadratic, Rosenbrock's valley): the dataset does not enter")}),
        Claim("second-order-rosenbrock", "Second-order steps cross Rosenbrock's valley in "
              "far fewer steps than SGD", "steps to f < 1e-6: min(Newton, NGD) / SGD", "<", 0.2,
              why="Newton converges quadratically near the minimum; SGD's best lr is bounded "
                  "by the valley's steep walls (curvature ≈ 1000)",
              on={"mnist1d": On(SAME, "a derivation on functions given in closed form (a "
                  "quadratic, Rosenbrock's valley): the dataset does not enter")}),
        Claim("mlp-momentum-or-adaptive", "On an MLP, momentum or an adaptive method ends "
              "below plain SGD", "min over momentum, RMSProp, Adam of final train loss − "
              "SGD's (mean over seeds; margin beyond the spread)", "<", 0.0,
              why="lecture 003: the same claim on a real network, at each optimizer's "
                  "registry default learning rate",
              on={"mnist1d": On(SAME, "a pure comparison between optimizers on the same data (< "
                  "0, beyond the spread over seeds)")}),
    ),
    quick_seconds=45,
    datasets=("mnist", "mnist1d"),
)
def run(ctx: StudyContext, cfg: Config) -> None:
    plt = pyplot()
    import numpy as np


    problems = {"quadratic": quadratic(cfg.kappa), "rosenbrock": rosenbrock()}
    ctx.note("The 2-D problems run each optimizer's own step loop on one 2-vector (closures "
             "for Newton, the natural gradient and L-BFGS): there is no model or Trainer to "
             "pack, so only the MLP runs are packed.")
    starts = {"quadratic": torch.tensor([-4.0, 1.2]), "rosenbrock": torch.tensor([-1.2, 1.0])}
    rows, paths, values = [], {}, {}
    for pname, (f, res, opt_pt) in problems.items():
        for name in ctx.progress(FIRST_ORDER + SECOND_ORDER, f"2-D {pname}"):
            lr, _ = best_lr(name, f, res, starts[pname], cfg.steps_2d, cfg.lr_grid)
            path, vals, eff = run_path(name, f, res, starts[pname], cfg.steps_2d, lr)
            paths[pname, name], values[pname, name] = path, vals
            if name == "adagrad":
                values[pname, "adagrad-eff"] = eff
            rows.append({"problem": pname, "optimizer": name,
                         "lr": "default" if lr is None else lr, "final_f": vals[-1],
                         "steps_to_1e-6": steps_to(vals, 1e-6),
                         "path/straight": path_ratio(path, opt_pt)})
    ctx.table("paths_2d", rows, "Each optimizer on the 2-D problems at its best lr of the grid "
              f"{list(cfg.lr_grid)} ({cfg.steps_2d} steps); 'default' = the optimizer's own "
              "(Adadelta has no lr; Newton, NGD and L-BFGS take the full step).")

    # figure: paths on contours
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, (pname, (f, _, opt_pt)) in zip(axes, problems.items()):
        if pname == "quadratic":
            xs, ys = np.linspace(-4.5, 4.5, 200), np.linspace(-1.6, 1.6, 200)
        else:
            xs, ys = np.linspace(-1.6, 1.6, 200), np.linspace(-0.6, 1.8, 200)
        gx, gy = np.meshgrid(xs, ys)
        grid = torch.tensor(np.stack([gx, gy]))
        z = f(grid).numpy()
        ax.contour(gx, gy, np.log10(z + 1e-3), levels=20, cmap="Greys", linewidths=0.6)
        for name in ("sgd", "momentum", "adam", "newton", "natural_gradient"):
            p = paths[pname, name].numpy()
            lw = 2.2 if name in ("sgd", "natural_gradient") else 1.2
            ax.plot(p[:, 0], p[:, 1], "-o", ms=2, lw=lw, color=COLORS[name], label=name)
        ax.plot(*opt_pt.tolist(), "*", ms=14, color="gold", mec="k", label="minimum")
        ax.set_xlim(xs[0], xs[-1])
        ax.set_ylim(ys[0], ys[-1])
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        title = f"½(x² + {cfg.kappa:g} y²)" if pname == "quadratic" else "Rosenbrock"
        ax.set_title(f"{title}: paths over {cfg.steps_2d} steps")
        ax.legend(fontsize=8, loc="upper right")
    ctx.figure("paths", fig, "SGD (red) zig-zags across the steep direction of the quadratic "
               "and crawls along Rosenbrock's valley; the natural gradient (green) and Newton "
               "(black) head straight for the minimum; momentum and Adam are in between.")

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for ax, pname in zip(axes, problems):
        for name in FIRST_ORDER + SECOND_ORDER:
            v = np.maximum(np.array(values[pname, name]), 1e-16)
            ax.semilogy(v, color=COLORS[name], label=name, lw=1.3)
        ax.set_xlabel("step")
        ax.set_ylabel("f(w) (log scale)")
        ax.set_title(pname)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    ctx.figure("values_2d", fig, "Function value per step, log scale, each optimizer at its "
               "best lr: second-order methods reach machine precision in a few steps; SGD is "
               "the slowest first-order method on both problems.")

    qv = {n: values["quadratic", n][-1] for n in FIRST_ORDER + SECOND_ORDER}
    ctx.check("sgd-zigzag", sign_flip_fraction(paths["quadratic", "sgd"]))
    ctx.check("momentum-beats-sgd", qv["momentum"] / max(qv["sgd"], 1e-300),
              detail=f"f(momentum) = {qv['momentum']:.3g}, f(SGD) = {qv['sgd']:.3g}")
    best_adaptive = min(("adagrad", "rmsprop", "adam"), key=lambda n: qv[n])
    ctx.check("adaptive-beats-sgd", qv[best_adaptive] / max(qv["sgd"], 1e-300),
              detail=f"best adaptive: {best_adaptive}, f = {qv[best_adaptive]:.3g}")
    eff = values["quadratic", "adagrad-eff"]
    ctx.check("adagrad-shrinks", eff[-1] / max(eff[0], 1e-300))
    f_q, _, _ = problems["quadratic"]
    w = starts["quadratic"].clone().double().requires_grad_(True)
    build_optimizer("newton", [w], damping=0.0).step(lambda: f_q(w))
    ctx.check("newton-quadratic", float(f_q(w.detach())))
    ctx.check("ngd-straight", path_ratio(paths["quadratic", "natural_gradient"],
                                         problems["quadratic"][2]))
    rv = {n: steps_to(values["rosenbrock", n], 1e-6) for n in ("sgd", "newton",
                                                                "natural_gradient")}
    sgd_steps = rv["sgd"] if rv["sgd"] < len(values["rosenbrock", "sgd"]) else cfg.steps_2d + 1
    ctx.check("second-order-rosenbrock", min(rv["newton"], rv["natural_gradient"]) / sgd_steps,
              detail=f"steps to 1e-6: Newton {rv['newton']}, NGD {rv['natural_gradient']}, "
                     f"SGD {rv['sgd'] if rv['sgd'] <= cfg.steps_2d else f'> {cfg.steps_2d}'}")

    # one MLP, each first-order optimizer at its default lr
    data = classification_data(ctx, n_train=cfg.mlp_n_train, n_test=1000)
    sizes = (data.x_train.shape[1], *cfg.mlp_sizes[1:-1], 10)
    hists: dict[str, list] = {n: [] for n in FIRST_ORDER}
    final: dict[str, list[float]] = {n: [] for n in FIRST_ORDER}
    seeds = [ctx.seed + k for k in range(cfg.seeds)]
    runs = [mlp_run(ctx, data, f"mlp-{name}-seed{s}", sizes, "relu", "he_normal", seed=s,
                    steps=cfg.mlp_steps, batch_size=128, optimizer=name,
                    log_every=max(1, cfg.mlp_steps // 40))
            for name in FIRST_ORDER for s in seeds]
    histories = iter(ctx.train_grid(runs))
    for name in FIRST_ORDER:
        for _ in seeds:
            h = next(histories)
            hists[name].append(h)
            final[name].append(h.metrics[-1]["train_loss"] if h.metrics else math.nan)
    fig = plot_curves(hists, "train_loss", logy=True, colors=COLORS,
                      title=f"MLP {list(sizes)} on {data.meta.name}, default lr per optimizer")
    ctx.figure("mlp_curves", fig, "Training loss of the same ReLU MLP with each first-order "
               "optimizer at its registry default lr (mean over seeds, band ± one std).")
    table = []
    for n in FIRST_ORDER:
        m, s = mean_std(final[n])
        table.append({"optimizer": n, "final_train_loss_mean": m, "std": s,
                      "test_acc_mean": mean_std([h.metrics[-1].get("test_acc", math.nan)
                                                 for h in hists[n]])[0]})
    ctx.table("mlp_final", table, f"Final training loss and test accuracy after "
              f"{cfg.mlp_steps} steps, over seeds {seeds}.")
    diffs = []
    for k in range(len(seeds)):
        best = min(final[n][k] for n in ("momentum", "rmsprop", "adam"))
        diffs.append(best - final["sgd"][k])
    m, s = mean_std(diffs)
    ctx.check("mlp-momentum-or-adaptive", m, spread=s if len(seeds) > 1 else None,
              seeds=seeds)
