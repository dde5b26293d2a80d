"""`trainlab data list|show|prepare`: the datasets trainlab knows, a look at one, getting files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainlab.cli._common import examples
from trainlab.data import DATASETS, load_dataset
from trainlab.data.images import IMAGE_SPECS, data_root, find_folder, prepare
from trainlab.report.figures import pyplot, save_figure

NAME = "data"
HELP = "list datasets, show one (shapes, class counts, a PNG of examples), fetch real ones"
EPILOG = """examples:
  trainlab data list
  trainlab data show ring                      # counts + ring.png (scatter plot)
  trainlab data show shapeset --out shapes.png --count 64
  trainlab data show mnist --root ~/datasets/mnist
  trainlab data prepare fashion_mnist          # from a folder or dataset-fashion-mnist
  trainlab data prepare cifar10 --download     # canonical files, MD5-checked, then cached

Real datasets (mnist, fashion_mnist, cifar10, svhn) are looked for in --root, else in
$TRAINLAB_DATA (default ~/.cache/trainlab/data)/<name>/, else in a system package
(/usr/share/datasets/fashion-mnist); --download fetches them from the canonical locations.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True,
                                parser_class=type(parser))
    sub.add_parser("list", help="every dataset with its source and whether it is available",
                   **examples("trainlab data list"))
    show = sub.add_parser("show", help="shapes, class counts and a PNG of examples",
                          **examples(
                              "trainlab data show ring                 # ring.png, a scatter plot",
                              "trainlab data show mnist1d --out figs/  # figs/mnist1d.png",
                              "trainlab data show shapeset --count 64 --seed 3",
                              "trainlab data show mnist --root ~/datasets/mnist --no-png",
                          ))
    show.add_argument("name", help="dataset name (see `trainlab data list`)")
    show.add_argument(
        "--out", default=None, help="PNG path or folder (default ./<name>.png)"
    )
    show.add_argument("--count", type=int, default=36, help="examples in the grid (images)")
    show.add_argument("--seed", type=int, default=0, help="seed of generated datasets")
    show.add_argument("--root", default=None, help="folder holding a real dataset's files")
    show.add_argument("--download", action="store_true", help="download if absent")
    show.add_argument("--no-png", action="store_true", help="print the summary only")
    prep = sub.add_parser("prepare", help="find or download a real dataset and cache it",
                          **examples(
                              "trainlab data prepare fashion_mnist  # --root, $TRAINLAB_DATA",
                              "trainlab data prepare mnist --root ~/datasets/mnist",
                              "trainlab data prepare cifar10 --download   # MD5-checked",
                          ))
    prep.add_argument("name", help="dataset name")
    prep.add_argument("--root", default=None, help="folder holding (or to receive) the files")
    prep.add_argument("--download", action="store_true",
                      help="download from the canonical locations (MD5-checked)")


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "show": _show, "prepare": _prepare}[args.data_command](args)


def _list(args: argparse.Namespace) -> int:
    width = max(len(e.name) for e in DATASETS)
    for e in DATASETS:
        if e.name in IMAGE_SPECS:
            folder = find_folder(e.name)
            cache = (data_root() / e.name / f"{e.name}.trainlab.pt").is_file()
            where = f"files in {folder}" if folder else ("cached" if cache else "not present")
        else:
            where = "generated"
        print(f"  {e.name:<{width}}  {e.description}  [{where}]")
    print(f"\nreal datasets: folder --root, $TRAINLAB_DATA or {data_root()}")
    return 0


def _load(args: argparse.Namespace):
    entry = DATASETS.get(args.name)
    if entry.name in IMAGE_SPECS:
        return load_dataset(entry.name, root=args.root, download=args.download)
    if args.root or args.download:
        raise ValueError(f"{entry.name} is generated; --root/--download do not apply.")
    return load_dataset(entry.name, seed=args.seed)


def _show(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ValueError(f"--count must be >= 1. Received: --count={args.count}.")
    ds = _load(args)
    print(ds.summary())
    if not args.no_png:
        out = Path(args.out or f"{ds.name}.png")
        if out.is_dir() or not out.suffix:  # a folder: the picture goes inside it
            out = out / f"{ds.name}.png"
        save_examples_png(ds, out, count=args.count, seed=args.seed)
        print(f"wrote {out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    entry = DATASETS.get(args.name)
    if entry.name not in IMAGE_SPECS:
        print(f"{entry.name} is generated on the fly (no files): nothing to prepare.")
        return 0
    c = prepare(entry.name, root=args.root, download=args.download)
    print(f"{entry.name}: {len(c['y_train'])} train / {len(c['y_test'])} test images")
    print(f"  files: {c['folder'] or '(cache only)'}")
    print(f"  cache: {c['cache'] or '(not written)'}")
    return 0


def save_examples_png(ds: Any, path: Path, count: int = 36, seed: int = 0) -> Path:
    """A scatter plot (2-D sets), a grid of images, or signal plots (1-D sets) as a PNG."""
    import torch

    plt = pyplot()
    x, y = ds.x_train, ds.y_train
    classes = ds.meta.classes
    shape = ds.input_shape
    if shape == (2,):
        fig, ax = plt.subplots(figsize=(5, 5))
        for k, name in enumerate(classes):
            pts = x[y == k]
            ax.scatter(pts[:, 0], pts[:, 1], s=4, label=name)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, markerscale=3)
        ax.set_title(f"{ds.name}: {len(x)} training points")
    else:
        vmin, vmax = float(x.min()), float(x.max())
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(x), generator=g)[:count]
        cols = min(len(idx), 12 if len(shape) == 1 else 9)
        rows = -(-len(idx) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.4 * rows), squeeze=False)
        for a in axes.flat:
            a.axis("off")
        for a, i in zip(axes.flat, idx.tolist()):
            xi = x[i]
            if len(shape) == 1:
                a.plot(xi.numpy(), lw=1)
            elif shape[0] == 1:
                # One grey scale for all examples, so grey levels compare across images.
                a.imshow(xi[0].numpy(), cmap="gray", vmin=vmin, vmax=vmax)
            else:
                img = xi.permute(1, 2, 0)
                lo, hi = img.min(), img.max()
                a.imshow(((img - lo) / (hi - lo + 1e-12)).numpy())
            a.set_title(classes[int(y[i])][:18], fontsize=6)
        fig.suptitle(f"{ds.name}: {len(idx)} training examples", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90, tight=False)
