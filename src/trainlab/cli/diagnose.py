"""`trainlab diagnose`: run the doctor on a model and print what is wrong and how to fix it."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from trainlab.data import load_dataset
from trainlab.doctor import diagnose
from trainlab.models.builders import build_model

NAME = "diagnose"
HELP = "diagnose a model: vanishing/exploding signals, saturation, dead units, fixes"
DESCRIPTION = """Run one probed forward/backward pass (optionally after a few training steps) and
report per layer the activation std, saturated and dead fractions, gradient std, |dL/dW|/|W|
and mean Jacobian singular value; flag the lectures' pathologies with the evidence and name
the fixes. With --try-fixes every named fix is applied to a copy and the diagnosis re-run."""
EPILOG = """examples:
  trainlab diagnose --spec '{"builder": "mlp", "in_features": 64, "widths": [256, 256, 256, 256],
      "activation": "tanh", "init": {"name": "normal", "std": 0.01}}' --try-fixes
  trainlab diagnose --spec '{"builder": "mlp", "in_features": 40, "widths": [128, 128],
      "activation": "relu"}' --dataset mnist1d --steps 5 --lr 0.1
  trainlab diagnose --model mypackage.models:build --input-shape 784 --html out/diag.html
  trainlab diagnose --model ./my_net.py:make_net --input-shape 3,32,32 --batch-size 64

The model comes from --model MODULE:FUNCTION (a module path or a .py file; the function is
called with no arguments and returns an nn.Module) or from --spec, a trainlab model spec
({"builder" or "name": "mlp" | "convnet" | "preact_resnet", ...builder arguments}). The batch
is the first --batch-size training examples of --dataset, or a standard Gaussian batch of
--input-shape (inferred from the first Linear layer when omitted) with random class targets.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="MODULE:FUNCTION", help="function returning the model")
    src.add_argument("--spec", metavar="JSON", help="trainlab model spec (JSON object)")
    parser.add_argument("--dataset", help="take the batch from this dataset (see `trainlab list`)")
    parser.add_argument("--input-shape", metavar="D[,H,W]",
                        help="one example's shape for a Gaussian batch: 784 or 3,32,32")
    parser.add_argument("--batch-size", type=int, default=128, help="examples (default 128)")
    parser.add_argument("--classes", type=int, default=None,
                        help="classes of the random targets (default: the model's outputs)")
    parser.add_argument("--steps", type=int, default=0, help="training steps before diagnosing")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate for --steps")
    parser.add_argument("--optimizer", default="sgd", help="optimizer for --steps (default sgd)")
    parser.add_argument("--try-fixes", action="store_true", help="re-run with each named fix")
    parser.add_argument("--no-jacobian", action="store_true", help="skip Jacobian spectra")
    parser.add_argument("--html", default="diagnosis.html",
                        help="HTML report path (default diagnosis.html; '' for none); an "
                        "existing file is kept unless --force")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --html")
    parser.add_argument("--seed", type=int, default=0, help="seed for the batch and the model")


def load_model(target: str) -> Any:
    """Call ``module:function`` (a dotted module or a ``.py`` path) and return its model."""
    import torch

    if ":" not in target:
        raise ValueError(f"--model must be MODULE:FUNCTION. Received: {target!r}.")
    mod_name, fn_name = target.rsplit(":", 1)
    if mod_name.endswith(".py") or "/" in mod_name:
        path = Path(mod_name)
        if not path.exists():
            raise FileNotFoundError(f"--model file {mod_name!r} does not exist.")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, ".")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise ValueError(f"--model: cannot import module {mod_name!r}: {e}") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ValueError(f"--model: {mod_name!r} has no function {fn_name!r}.")
    model = fn()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"--model: {target} returned {type(model).__name__}, not an nn.Module.")
    return model


def model_from_spec(text: str) -> Any:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--spec is not valid JSON ({e}). Received: {text!r}.") from e
    if not isinstance(spec, dict):
        raise ValueError(f"--spec must be a JSON object. Received: {text!r}.")
    if "builder" in spec:
        spec["name"] = spec.pop("builder")
    return build_model(spec)


def _batch(args: argparse.Namespace, model: Any) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(args.seed)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1. Received: {args.batch_size}.")
    if args.dataset:
        ds = load_dataset(args.dataset)
        return ds.x_train[: args.batch_size], ds.y_train[: args.batch_size]
    if args.input_shape:
        try:
            shape = tuple(int(s) for s in args.input_shape.split(","))
        except ValueError as e:
            raise ValueError(f"--input-shape must be integers like 784 or 3,32,32. "
                             f"Received: {args.input_shape!r}.") from e
    else:
        first = next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)
        if first is None or any(isinstance(m, torch.nn.modules.conv._ConvNd)
                                for m in model.modules()):
            raise ValueError("give --input-shape (or --dataset): the input shape cannot be "
                             "inferred from this model.")
        shape = (first.in_features,)
    x = torch.randn(args.batch_size, *shape, generator=g)
    classes = args.classes
    if classes is None:
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        classes = last[-1].out_features if last else None
    y = None if not classes else torch.randint(0, classes, (args.batch_size,), generator=g)
    return x, y


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys
    from pathlib import Path

    import torch


    if args.classes is not None and args.classes < 2:
        raise ValueError(f"--classes must be >= 2 (with one class the loss is 0 and every "
                         f"gradient vanishes trivially). Received: --classes {args.classes}.")
    if args.html and Path(args.html).exists() and not args.force:
        raise ValueError(f"--html {args.html} exists; give --force to overwrite it, or "
                         "another path with --html PATH.")
    torch.manual_seed(args.seed)
    model = load_model(args.model) if args.model else model_from_spec(args.spec)
    x, y = _batch(args, model)
    report = diagnose(model, (x, y) if y is not None else x, steps=args.steps, lr=args.lr,
                      optimizer=args.optimizer, try_fixes=args.try_fixes,
                      jacobian=not args.no_jacobian, seed=args.seed)
    context = getattr(report, "context", None)
    if isinstance(context, dict):  # the page says which command made it
        context["command"] = " ".join(["trainlab", *map(shlex.quote, sys.argv[1:])])
    print(report.to_text())
    if args.html:
        path = report.to_html(args.html)
        print(f"\nHTML report: {path}")
    return 0
