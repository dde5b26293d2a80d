"""`trainlab demo`: why initialization and normalization decide whether a deep net trains.

Three runs of the same deep tanh MLP on embedded data (MNIST-1D, no files needed), same
optimizer, same seed, same batches — only the initialization and the norm differ:

1. ``W ~ N(0, 0.01²)``: each layer multiplies the activation scale by about
   ``0.01·sqrt(width)``, so activations (and the gradients that flow through them) shrink
   geometrically with depth and the loss sits at ``ln(10)`` (lectures 001/004, after CS231n).
2. Xavier (Glorot & Bengio 2010): ``Var(W) = 2 / (fan_in + fan_out)`` keeps
   ``Var(activation)`` roughly constant through the tanh layers, and the net trains.
3. Xavier + batch normalization (Ioffe & Szegedy 2015) before each tanh: every layer's input is
   standardized per batch, so the scale is fixed by construction and training is fastest.

The demo prints the comparison table and the per-layer activation-std table (one forward
pass with temporary hooks on each block's ``act``, at init and after training), writes
``curves.png``, ``activation_std.png``, ``gradient_std.png`` (std of ``dL/ds`` per block at
init) and ``index.html`` (with a paragraph on the data and relative links to the run
folders) in the output folder, and records the three runs in the results store.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from trainlab.engine.checkpoint import load_checkpoint
from trainlab.engine.history import History
from trainlab.report.figures import pyplot, save_figure
from trainlab.report.html import HtmlPage
from trainlab.runs.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from trainlab.runs.run import (
    build_model_from_config,
    execute_run,
    format_table,
    load_data_from_config,
    plot_curves,
)
from trainlab.studies import get_study, run_study
from trainlab.utils import atomic_write_text, seed_everything

__all__ = ["DEMO_STUDIES", "DemoResult", "demo_configs", "run_demo"]

#: quick studies the demo runs after its comparison (each well under 30 s on 2 cores)
DEMO_STUDIES = ("activation-stats", "dynamical-isometry")

_MARKER = "demo.json"


def demo_configs(
    *,
    steps: int = 500,
    depth: int = 8,
    width: int = 128,
    dataset: str = "mnist1d",
    seed: int = 0,
    device: str = "auto",
) -> dict[str, TrainConfig]:
    """The three demo runs as configs, by label."""
    base = TrainConfig(
        data=DataConfig(name=dataset),
        model=ModelConfig(builder="mlp", depth=depth, width=width, activation="tanh"),
        optim=OptimConfig(name="momentum", lr=0.01),
        steps=steps,
        batch_size=128,
        seed=seed,
        device=device,
        eval_every=max(steps // 20, 1),
        log_every=max(steps // 50, 1),
    )
    small = replace(base.model, init="normal", init_options={"std": 0.01})
    xavier = replace(base.model, init="xavier_normal")
    return {
        "tanh, N(0, 0.01²) init": replace(base, model=small),
        "tanh, Xavier init": replace(base, model=xavier),
        "tanh, Xavier + BN": replace(base, model=replace(xavier, norm="bn")),
    }


def _hook_act_modules(model: torch.nn.Module, make_hook: Any) -> tuple[torch.nn.Module, list]:
    """A training-mode copy of ``model`` (batch statistics, as during training; the model's
    running statistics and ``.grad`` stay untouched) with ``make_hook(block)`` registered as
    a forward hook on every ``<block>.act`` module; returns the copy and the handles."""
    import copy

    probe = copy.deepcopy(model).train()
    handles = [m.register_forward_hook(make_hook(name.rsplit(".", 1)[0]))
               for name, m in probe.named_modules() if name.split(".")[-1] == "act"]
    return probe, handles


def activation_stds(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Std of the output of every ``*.act`` module for one forward pass on ``x``, on a copy
    in training mode (in eval mode a fresh BN is the identity)."""
    stds: dict[str, float] = {}

    def make_hook(block: str) -> Any:
        def hook(mod: Any, inp: Any, out: Any) -> None:
            stds[block] = float(out.detach().float().std())

        return hook

    probe, handles = _hook_act_modules(model, make_hook)
    with torch.no_grad():
        probe(x)
    for h in handles:
        h.remove()
    return stds


def gradient_stds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Std of ``dL/ds`` at every block's pre-activation ``s`` (the input of ``*.act``) for one
    cross-entropy forward/backward pass on ``(x, y)`` — the back-propagated gradient whose
    shrinking with depth is "vanishing gradients" (Glorot & Bengio 2010, fig. 7). Runs on a
    copy in training mode, as :func:`activation_stds`.
    """
    stds: dict[str, float] = {}

    def make_hook(block: str) -> Any:
        def hook(mod: Any, inp: Any, out: Any) -> None:
            inp[0].register_hook(
                lambda g: stds.__setitem__(block, float(g.detach().float().std())))

        return hook

    probe, handles = _hook_act_modules(model, make_hook)
    loss = torch.nn.functional.cross_entropy(probe(x), y)
    loss.backward()
    for h in handles:
        h.remove()
    # the hooks fire output side first: put the blocks back in forward order
    order = [n.rsplit(".", 1)[0] for n, _ in probe.named_modules() if n.endswith(".act")]
    return {b: stds[b] for b in order if b in stds}


MNIST1D_TEXT = (
    "MNIST-1D (Greydanus 2020, “Scaling down deep learning”) is a procedurally generated, "
    "one-dimensional stand-in for MNIST: each example is a 40-point signal made from one of "
    "ten hand-made digit templates, padded, scaled, shifted, sheared and given correlated and "
    "independent noise, so that a linear model does poorly and a network must learn "
    "shift-tolerant features. trainlab generates it in memory (no download): {n_train} "
    "training and {n_test} test examples, 40 features, 10 classes (chance accuracy 0.1, "
    "chance loss ln 10 = 2.30)."
)


@dataclass
class DemoResult:
    """Tables, histories and file paths of a demo run."""

    out: Path
    index: Path
    histories: dict[str, History]
    rows: list[list[Any]]
    std_rows: list[list[Any]]
    seconds: float
    run_ids: list[int | None] = field(default_factory=list)


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()) and not (out / _MARKER).exists() and not force:
        raise ValueError(
            f"output folder {str(out)!r} exists, is not empty and holds no earlier demo; "
            "choose another --out or pass --force."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / _MARKER, json.dumps({"started": time.time()}) + "\n")
    except OSError as e:
        raise ValueError(f"cannot write to output folder {str(out)!r}: {e.strerror or e}.") from e


def run_demo(
    out: str | os.PathLike = "trainlab-demo",
    *,
    steps: int = 500,
    depth: int = 8,
    width: int = 128,
    dataset: str = "mnist1d",
    seed: int = 0,
    device: str = "auto",
    db: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
    studies: tuple[str, ...] = DEMO_STUDIES,
    study_scale: str = "quick",
) -> DemoResult:
    """Train the three demo runs, print the tables, write the figures and the HTML page;
    then run ``studies`` at the quick scale into ``OUT/studies/NAME``, linked from the page."""
    t_start = time.perf_counter()
    out = Path(out)
    if studies:
        for name in studies:
            get_study(name)  # an unknown name fails before anything is written
    _prepare_out(out, force)
    threads = torch.get_num_threads()
    try:
        # The demo's matrices are tiny (128 x 128, batch 128): intra-op threads cost more in
        # synchronisation than they save, and on a busy 2-core machine they can make each step
        # 10-30x slower. One thread keeps the demo well inside its time budget.
        torch.set_num_threads(1)
        return _run_demo(out, t_start, steps, depth, width, dataset, seed, device, db,
                         progress, echo, tuple(studies), study_scale)
    finally:
        torch.set_num_threads(threads)


def _run_demo(
    out: Path,
    t_start: float,
    steps: int,
    depth: int,
    width: int,
    dataset: str,
    seed: int,
    device: str,
    db: str | os.PathLike | None,
    progress: bool | None,
    echo: Callable[[str], None],
    studies: tuple[str, ...] = (),
    study_scale: str = "quick",
) -> DemoResult:
    configs = demo_configs(
        steps=steps, depth=depth, width=width, dataset=dataset, seed=seed, device=device
    )
    histories: dict[str, History] = {}
    rows: list[list[Any]] = []
    stds_init: dict[str, dict[str, float]] = {}
    stds_end: dict[str, dict[str, float]] = {}
    grads_init: dict[str, dict[str, float]] = {}
    run_ids: list[int | None] = []
    for i, (label, cfg) in enumerate(configs.items()):
        echo(f"[{i + 1}/{len(configs)}] {label} ...")
        # Same sequence as execute_run (seed, data, model) gives the very same initial weights.
        seed_everything(cfg.seed)
        ds = load_data_from_config(cfg)
        model = build_model_from_config(cfg, ds)
        probe_x = ds.x_test[:1000]
        stds_init[label] = activation_stds(model, probe_x)
        grads_init[label] = gradient_stds(model, probe_x, ds.y_test[:1000])
        t0 = time.perf_counter()
        folder = out / "runs" / f"run{i + 1}"
        res = execute_run(cfg, folder, force=True, db=db, progress=progress, name=f"demo: {label}")
        seconds = time.perf_counter() - t0
        state = load_checkpoint(folder / "checkpoints" / "last.pt")
        model.load_state_dict(state["model"])
        stds_end[label] = activation_stds(model, probe_x)
        h = res.history
        histories[label] = h
        run_ids.append(res.run_id)
        reached = next((r["step"] for r in h.metrics if r["train_loss"] < 1.0), None)
        rows.append([label, res.status, "never" if reached is None else reached,
                     h.last("train_loss"), h.last("test_loss"), h.last("test_acc"),
                     round(seconds, 1)])

    header = ["run", "status", "steps to loss<1", "final train loss", "test loss", "test acc",
              "wall time (s)"]
    echo("")
    echo(f"Deep tanh MLP ({depth} x {width}) on {dataset}, {steps} steps of SGD+momentum:")
    echo(format_table(rows, header))
    labels = list(configs)
    layers = list(next(iter(stds_init.values())))
    std_rows = [
        [layer, *[stds_init[lb].get(layer, math.nan) for lb in labels],
         *[stds_end[lb].get(layer, math.nan) for lb in labels]]
        for layer in layers
    ]
    short = ["0.01", "xavier", "xavier+bn"]
    std_header = ["layer", *[f"{s} @init" for s in short], *[f"{s} @end" for s in short]]
    echo("")
    echo("Std of each block's tanh output (1000 test examples, batch statistics):")
    echo(format_table(std_rows, std_header))

    curves = plot_curves(histories, out / "curves.png", title="same net, same data, same seed")
    std_png = _plot_stds(labels, layers, stds_init, stds_end, out / "activation_std.png")
    grad_png = _plot_grads(labels, grads_init, out / "gradient_std.png")
    n_train, n_test = len(ds.x_train), len(ds.x_test)
    page = HtmlPage("trainlab demo: initialization and normalization in a deep tanh net")
    page.paragraph(
        f"The same {depth}-layer tanh MLP (width {width}) trained on {dataset} for {steps} "
        "steps with SGD + momentum, the same seed and the same batches. Only the initialization "
        "and the normalization differ."
    )
    page.heading("The data")
    page.paragraph(MNIST1D_TEXT.format(n_train=n_train, n_test=n_test)
                   if dataset == "mnist1d" else
                   f"{dataset}: {n_train} training and {n_test} test examples.")
    page.heading("Results").table(rows, header=header)
    page.paragraph("“steps to loss<1”: the first logged step whose training loss (the mean "
                   "since the previous logged step) is below 1; “wall time (s)”: seconds of "
                   "wall-clock time for the run (training, evaluation, checkpoints), on this "
                   "machine.")
    page.figure(curves.name, caption="Training loss (mean over each logging window, drawn as "
                "a step), test loss and test accuracy")
    page.heading("Activation std per layer").table(std_rows, header=std_header)
    page.figure(std_png.name, caption="Std of each block's tanh output, at init and at the end")
    page.heading("Gradient std per layer at init")
    page.figure(grad_png.name, caption="Std of the back-propagated gradient dL/ds at each "
                "block's pre-activation, at init (one cross-entropy backward pass on 1000 test "
                "examples), log scale: with N(0, 0.01²) it shrinks by orders of magnitude "
                "towards the input, the vanishing gradients named below.")
    page.paragraph(
        "With N(0, 0.01²) each layer scales the signal by about 0.01·√width, so activations and "
        "gradients vanish with depth and the loss stays near ln 10 = 2.30. Xavier's "
        "Var(W) = 2/(fan_in + fan_out) keeps the scale through the layers (Glorot & Bengio "
        "2010); batch normalization fixes it by construction (Ioffe & Szegedy 2015).",
        cls="note",
    )
    study_results = _run_studies(out, studies, seed, device, db, progress, echo, study_scale)
    if study_results:
        page.heading("Studies")
        page.paragraph("Experiments of the lectures, run at the quick scale: each page has the "
                       "figures and every claim with its measured value. All studies: "
                       "`trainlab study list`.")
        cells = "".join(
            f'<tr><td><a href="studies/{html.escape(r.name)}/index.html">'
            f"{html.escape(r.name)}</a></td><td>{html.escape(r.title)}</td>"
            f'<td class="num">{r.n_passed}/{len(r.claims)}</td>'
            f'<td class="num">{r.seconds:.1f} s</td></tr>' for r in study_results)
        page.raw("<table><tr><th>study</th><th>what it shows</th><th>claims holding</th>"
                 f"<th>time</th></tr>{cells}</table>")
    page.heading("Run folders")
    links = "".join(
        f'<tr><td>{html.escape(lb)}</td><td><a href="runs/run{i + 1}/">runs/run{i + 1}/</a>'
        f' (<a href="runs/run{i + 1}/config.json">config.json</a>, '
        f'<a href="runs/run{i + 1}/metrics.csv">metrics.csv</a>)</td></tr>'
        for i, lb in enumerate(labels))
    page.raw(f"<table><tr><th>run</th><th>folder (relative to this page)</th></tr>{links}"
             "</table>")
    index = page.write(out / "index.html")
    seconds = time.perf_counter() - t_start
    echo("")
    echo(f"Report: {index.resolve()}  ({seconds:.1f} s)")
    return DemoResult(out, index, histories, rows, std_rows, seconds, run_ids)


def _run_studies(out: Path, names: tuple[str, ...], seed: int, device: str,
                 db: str | os.PathLike | None, progress: bool | None,
                 echo: Callable[[str], None], scale: str = "quick") -> list[Any]:
    """Run the demo's studies at ``scale`` (quick) into ``OUT/studies/NAME``."""
    if not names:
        return []

    results = []
    echo("")
    for name in names:
        r = run_study(name, scale=scale, seed=seed, out=out / "studies" / name, force=True,
                      db=db, device=device, progress=progress, log=None)
        state = "stopped with an error" if r.error else f"{r.n_passed}/{len(r.claims)} claims hold"
        echo(f"study {r.name}: {state} ({r.seconds:.1f} s) -> {r.out / 'index.html'}")
        results.append(r)
    return results


def _plot_stds(
    labels: list[str],
    layers: list[str],
    init: dict[str, dict[str, float]],
    end: dict[str, dict[str, float]],
    path: Path,
) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(1, len(layers) + 1)
    for i, lb in enumerate(labels):
        ax.plot(xs, [init[lb].get(layer, math.nan) for layer in layers], color=f"C{i}",
                marker="o", label=f"{lb} (init)")
        ax.plot(xs, [end[lb].get(layer, math.nan) for layer in layers], color=f"C{i}",
                marker="s", linestyle="--", label=f"{lb} (end)")
    ax.set(xlabel="block", ylabel="std of tanh output", yscale="log",
           title="activation scale through depth")
    ax.grid(alpha=0.3)
    # outside, to the right: inside, the legend covered the N(0, 0.01²) curves
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return save_figure(fig, path, dpi=110)


def _plot_grads(labels: list[str], grads: dict[str, dict[str, float]], path: Path) -> Path:
    """Per-block std of dL/ds at init, one line per run, log axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    blocks = list(next(iter(grads.values())))
    xs = range(1, len(blocks) + 1)
    for i, lb in enumerate(labels):
        vals = [grads[lb].get(b, math.nan) for b in blocks]
        ax.plot(xs, [v if v > 0 else math.nan for v in vals], color=f"C{i}", marker="o",
                label=lb)
    ax.set(xlabel="block (1 = input side)", ylabel="std of dL/ds at init (log)", yscale="log",
           title="back-propagated gradient scale through depth, at init")
    ax.set_xticks(list(xs))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return save_figure(fig, path, dpi=110)
