"""`trainlab train`: train one model from flags, a YAML/TOML file and --set overrides."""

from __future__ import annotations

import argparse
import sys

from trainlab.cli._common import CliError
from trainlab.engine.distributed import is_main
from trainlab.engine.ensemble import AVERAGES, ENSEMBLES
from trainlab.losses import PENALTIES
from trainlab.nn import MODELS
from trainlab.nn.natural import NATURAL_NETS
from trainlab.nn.recurrent import RECURRENT_NORMS
from trainlab.optim.gradients import GRAD_NOISES
from trainlab.probes.registry import PROBES, every_run_probes
from trainlab.runs.config import load_config
from trainlab.runs.run import execute_run, format_table, resume_command, resume_config, summary_rows
from trainlab.store import DEFAULT_DB

NAME = "train"
HELP = "train one model into a run folder (config, metrics, checkpoints, curves)"
EPILOG = """examples:
  trainlab train --dataset spirals --depth 6 --width 64 --activation tanh --init xavier_normal
  trainlab train --dataset mnist1d --norm bn --optimizer adam --lr 1e-3 --epochs 5 --out runs/bn
  trainlab train --config run.yaml --set model.width=256 --set optim.lr=0.05
  trainlab train --out runs/bn --resume          # continue an interrupted run (its stored config)
  trainlab train --out runs/bn --force           # overwrite it
  trainlab train --dataset spirals --activation tanh --probe activations,gradients
  trainlab train --dataset mnist1d --probe all --probe-every 20 --out runs/probed
  trainlab train --dataset mnist1d --activation sigmoid --depth 4 --pretrain denoising
  trainlab train --dataset mnist1d --pretrain rbm --set pretrain.visible=gaussian --set pretrain.k=1
  trainlab train --dataset mnist1d --probe activations --tensorboard runs/tb
  trainlab train --dataset mnist1d --builder seq_classifier --norm bn_frame --depth 1 --width 32
  trainlab train --dataset mnist1d --penalty l2 --set penalty_options.weight=5e-4
  trainlab train --dataset mnist1d --grad-noise gaussian --set optim.grad_noise_options.eta=0.01
  trainlab train --dataset mnist1d --whitening pca --set model.whitening_options.every=100
  trainlab train --dataset mnist1d --norm wn --init wn_data
  trainlab train --dataset mnist1d --bagging 5 --out runs/bagged
  torchrun --nproc-per-node 2 -m trainlab train --dataset mnist1d --batch-size 128 --out runs/ddp

Settings are merged as: defaults < --config file < flags < --set KEY=VALUE. Every unknown key
or wrong value is reported at once, before training starts. Ctrl-C (or SIGTERM) saves a
checkpoint and exits with status 130 (143); `--resume` continues exactly where it stopped,
with the settings stored in DIR/config.json (flags given with it must agree with them).

A config file (YAML, TOML or JSON; a run's own config.json works too) holds the same keys;
`trainlab train --print-config` prints them all. Options of a named technique go in its
*_options key (model.norm_options.groups, optim.schedule_options.step_size,
model.init_options.value, loss_options.margin, ...). Example run.yaml:

  data: {name: mnist1d}
  model: {builder: mlp, depth: 4, width: 128, activation: tanh, init: xavier_uniform,
          norm: gn, norm_options: {groups: 8}}
  optim: {name: momentum, lr: 0.05, schedule: step, schedule_options: {step_size: 500}}
  steps: 2000
  probes: [activations, gradients]

Probes (--probe NAME[,NAME...], or all; the names: `trainlab list probe`, or --probe's help).
The run folder then holds probes.csv, probe_histograms.jsonl, probe_spectra.jsonl and the
lecture figures figures/probe_*.png. Config keys: probes: [...], probe_every: K.

Recurrent nets (--builder seq_classifier): --width is the hidden size, --depth the number of
stacked recurrent layers, --norm a recurrent norm (none, bn_frame, bn_seq, ln); each example
is read as time steps of model.options.input_size features (default: 1 for a flat example,
e.g. MNIST-1D as 40 steps of 1, else its last dimension, e.g. image rows). Further keys:
model.options.cell (lstm|rnn), .T_max, .forget_bias, .bias. --activation, --dropout,
--init, --placement and --pretrain do not apply to it.

Pre-training (--pretrain autoencoder|denoising|rbm, mlp models): each hidden layer is trained
in turn on the previous layer's codes, then the whole network is fine-tuned as usual. The
run folder then also holds pretrain.csv and figures/pretrain.png (per-layer reconstruction
curves). Config keys: pretrain: {method, steps, batch_size, optimizer, lr, tied, loss,
corruption (mask|gaussian), noise, k, visible (bernoulli|gaussian)}.

Under torchrun the model trains with DistributedDataParallel (gloo on CPU, nccl on GPU): each
process takes an equal slice of every global batch of --batch-size examples; rank 0 writes the
run folder and the store.
"""

# flag -> dotted config key (argparse dest is the flag with '-' -> '_')
_FLAGS = {
    "dataset": ("data.name", str, "dataset name (trainlab list dataset)"),
    "preprocess": ("data.preprocess", str, "preprocessing name (e.g. standardize, zca)"),
    "builder": ("model.builder", str, None),  # help: _builder_help(), from the registry
    "depth": ("model.depth", int, "number of hidden blocks (seq_classifier: recurrent layers)"),
    "width": ("model.width", int,
              "units (or channels) per hidden block (seq_classifier: hidden size)"),
    "activation": ("model.activation", str, "activation name (trainlab list activation)"),
    "norm": ("model.norm", str, None),  # help: _norm_help()
    "placement": ("model.placement", str, "norm before or after the activation"),
    "dropout": ("model.dropout", float, "dropout rate after each block"),
    "init": ("model.init", str, "initialization scheme (trainlab list init)"),
    "loss": ("loss", str, "loss: cross_entropy, hinge, mse"),
    "optimizer": ("optim.name", str, "optimizer name (trainlab list optim)"),
    "lr": ("optim.lr", float, "learning rate (default: the optimizer's)"),
    "schedule": ("optim.schedule", str, "learning-rate schedule (trainlab list schedule)"),
    "clip_norm": ("optim.clip_norm", float, "clip the global gradient norm"),
    "batch_size": ("batch_size", int, "examples per step"),
    "epochs": ("epochs", int, "epochs to train (default 10)"),
    "steps": ("steps", int, "steps to train (instead of epochs)"),
    "seed": ("seed", int, "random seed"),
    "device": ("device", str, "auto, cpu, cuda, cuda:N"),
    "eval_every": ("eval_every", int, "steps between test evaluations (default: each epoch)"),
    "checkpoint_every": ("checkpoint_every", int, "steps between checkpoints"),
    "probe_every": ("probe_every", int, "steps between probe records (default: each probe's)"),
    "pretrain": ("pretrain.method", str,
                 "greedy layer-wise pre-training first: autoencoder, denoising or rbm"),
    "pretrain_steps": ("pretrain.steps", int, "pre-training steps per hidden layer (500)"),
    # regularization and training options: help and choices from their registries
    "penalty": ("penalty", str, None),  # help: _penalty_help()
    "grad_noise": ("optim.grad_noise", str, None),  # help: _grad_noise_help()
    "whitening": ("model.whitening", str, None),  # help: _whitening_help()
    "bagging": ("bagging", int, None),  # help: _bagging_help()
}


def _builder_help() -> str:
    """Every model builder, read from the registry (a new builder is listed by itself)."""

    return (f"model builder: {', '.join(MODELS.names())} (trainlab list model); "
            "seq_classifier reads each example as a sequence (MNIST-1D: 40 steps of 1)")


def _norm_help() -> str:
    return ("normalization: none, bn, ln, gn, ... (trainlab list norm); with --builder "
            f"seq_classifier a recurrent norm: {', '.join(RECURRENT_NORMS.names())}")


# flag -> (the registry of the names it takes, what it does, the key of its options)
_NAMED = {
    "penalty": (PENALTIES, "weight penalty R(W) added to the training loss, strength "
                "penalty_options.weight", "penalty_options"),
    "grad_noise": (GRAD_NOISES, "noise added to every gradient after backward",
                   "optim.grad_noise_options"),
    "whitening": (NATURAL_NETS, "make the model a natural neural network",
                  "model.whitening_options"),
}


def _named_help(flag: str) -> str:
    """What the flag does, then every entry of its registry with its description, then where
    the options go: read from the registry, so each text is written once."""
    registry, what, options_key = _NAMED[flag]
    names = "; ".join(f"{e.name}: {e.description}" for e in registry)
    text = (f"{what} ({names}). Options: --set {options_key}.NAME=VALUE "
            f"(trainlab list {registry.family})")
    return text.replace("%", "%%")  # argparse formats help strings with %


def _bagging_help() -> str:
    e = ENSEMBLES.get("bagging")
    return (f"train K bagged members in one run: {e.description} ({e.reference}). Options: "
            f"--set bagging_options.average={'|'.join(AVERAGES)} (trainlab list "
            f"{ENSEMBLES.family})").replace("%", "%%")


_DYNAMIC_HELP = {"builder": _builder_help, "norm": _norm_help, "bagging": _bagging_help,
                 **{flag: (lambda flag=flag: _named_help(flag)) for flag in _NAMED}}


def _metavar(flag: str) -> str | None:
    """``{name,...}`` for a flag that takes a registry name (the choices, from the registry;
    aliases and other spellings are accepted too), ``K`` for --bagging, else argparse's."""
    if flag == "bagging":
        return "K"
    if flag in _NAMED:
        return "{" + ",".join(_NAMED[flag][0].names()) + "}"
    return None


def _probe_help() -> str:
    """The probe names, read from the registry: "all" and those it stands for, then the
    probes given by name only."""

    every = every_run_probes()
    more = [n for n in PROBES.names() if n not in every]
    return (f"record probes: {', '.join(every)}, or all (those {len(every)}); by name only: "
            f"{', '.join(more)} (trainlab list probe)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML or TOML config file")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override one config key, e.g. model.width=256 (repeatable)",
    )
    g = parser.add_argument_group("settings (override the config file)")
    for flag, (_key, typ, help_) in _FLAGS.items():
        if flag in _DYNAMIC_HELP:
            help_ = _DYNAMIC_HELP[flag]()
        g.add_argument(f"--{flag.replace('_', '-')}", type=typ, default=None, help=help_,
                       metavar=_metavar(flag))
    g.add_argument(
        "--probe",
        metavar="NAME[,NAME...]",
        action="append",
        default=None,
        dest="probes",
        help=_probe_help(),
    )
    parser.add_argument("--out", metavar="DIR", help="run folder (default runs/<dataset>-<time>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (with its stored config)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    parser.add_argument("--db", default=None, help="results store (default runs/trainlab.db)")
    parser.add_argument("--no-db", action="store_true", help="do not record the run in the store")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar or table: one line with the folder and status")
    parser.add_argument("--tensorboard", metavar="DIR", default=None,
                        help="also write scalars and probe histograms as TensorBoard event "
                        "files to DIR (needs trainlab[tensorboard])")
    parser.add_argument("--print-config", action="store_true",
                        help="print the full resolved config as YAML (ready to edit and pass "
                        "to --config) and exit without training")


def run(args: argparse.Namespace) -> int:
    import signal

    # Ctrl-C while starting up (imports, data, model) raises KeyboardInterrupt here, which
    # _interrupted turns into one line and status 130.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _train(args)
    except KeyboardInterrupt as e:
        return _interrupted(e, args.out)


def _train(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path


    if args.resume and args.force:
        raise CliError("give --resume or --force, not both.")
    if args.resume and not args.out:
        raise CliError("--resume needs --out DIR, the run folder to continue.")
    flags = {key: getattr(args, flag) for flag, (key, _t, _h) in _FLAGS.items()}
    flags["probes"] = args.probes
    if args.resume:  # the stored config; what is given must agree with it
        cfg = resume_config(args.out, args.config, flags, args.overrides)
    else:
        cfg = load_config(args.config, flags, args.overrides)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    out = args.out or str(Path("runs") / f"{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    args.out = out  # for the message of an interrupt
    db = None if args.no_db else (args.db or DEFAULT_DB)
    sinks = []
    if args.tensorboard:
        from trainlab.engine.tensorboard import TensorBoardSink

        sinks.append(TensorBoardSink(args.tensorboard))
    result = execute_run(
        cfg,
        out,
        resume=args.resume,
        force=args.force,
        db=db,
        progress=False if args.quiet else None,
        warn=lambda msg: print(f"trainlab: warning: {msg}", file=sys.stderr),
        extra_callbacks=sinks,
    )
    for sink in sinks:
        sink.close()

    if not is_main():  # under torchrun only rank 0 reports
        return 1 if result.status == "diverged" else 0
    if not args.quiet:
        rows = summary_rows(result.history)
        rows.append(("folder", str(result.folder)))
        if result.run_id is not None:
            rows.append(("run id", str(result.run_id)))
        curves = result.folder / "figures" / "curves.png"
        if curves.exists():
            rows.append(("curves", str(curves)))
        if "rows" in result.probe_files:
            rows.append(("probe records", str(result.probe_files["rows"])))
        if result.probe_figures:
            pngs = [f for f in result.probe_figures if str(f).endswith(".png")]
            index = result.folder / "figures" / "index.html"
            where = result.folder / "figures" / "probe_*.png"
            rows.append(("probe figures", f"{where} ({len(pngs)} files)"))
            if index.exists():
                rows.append(("figures page", str(index)))
        print(format_table(rows, ["", "value"]))
    else:  # quiet: still say where the run went and how it ended
        print(f"{result.status}: {result.folder}")
    if result.status == "diverged":
        print(f"trainlab: {result.message}", file=sys.stderr)
        return 1
    return 0


def _interrupted(e: KeyboardInterrupt, out: str | None) -> int:
    """One line for a Ctrl-C / SIGTERM, saying what was kept and how to go on; the exit
    status is 128 + the signal (130, 143)."""
    import json
    import os
    import signal
    from pathlib import Path

    signum = getattr(e, "signum", signal.SIGINT)
    name = signal.Signals(signum).name
    state = {}
    if out:
        try:
            state = json.loads((Path(out) / "status.json").read_text())
        except (OSError, ValueError):
            state = {}
    if state.get("pid") != os.getpid():  # this process never started the run
        msg = f"interrupted ({name}) while starting up, before training; nothing was written"
    elif state.get("status") == "interrupted":
        msg = (f"interrupted ({name}) at step {state.get('step')}; checkpoint saved in "
               f"{out}. Resume with: {resume_command(out)}")
    else:
        msg = (f"interrupted ({name}) after the run ended (status {state.get('status')}); "
               "its files and store row are complete")
    print(f"trainlab: {msg}", file=sys.stderr)
    return 128 + int(signum)
