"""The dataset record, its metadata, and the ``dataset`` registry.

A dataset is four tensors and a small metadata record: ``x_train, y_train, x_test, y_test``
with float32 inputs (first dimension = examples) and int64 class labels in ``0..C-1``. Every
loader in :mod:`trainlab.data` is registered in :data:`DATASETS` and built by
:func:`load_dataset`, so a dataset is reachable by the same short name in Python, in config
files and on the command line (``trainlab data show ring``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from trainlab.registry import Registry

__all__ = ["DATASETS", "Dataset", "DatasetMeta", "load_dataset", "check_split_sizes"]

DATASETS = Registry("dataset")


@dataclass(frozen=True)
class DatasetMeta:
    """What a dataset is.

    Attributes:
        name: registry name (``"ring"``, ``"mnist"`` ...).
        classes: class names, index ``i`` names label ``i``.
        input_shape: shape of one example (``(2,)``, ``(1, 28, 28)``, ``(40,)`` ...).
        source: where the data come from (paper, URL or generator).
        licence: licence / terms-of-use note.
        description: one line for listings.
        extra: free-form details (generator parameters, file paths, checksums).
    """

    name: str
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    source: str
    licence: str
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(eq=False)  # tensors have no single truth value: compare fields yourself
class Dataset:
    """Train and test tensors plus :class:`DatasetMeta`.

    ``x_*`` are float32 of shape ``(N, *meta.input_shape)``; ``y_*`` are int64 of shape ``(N,)``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    meta: DatasetMeta

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
                raise TypeError(
                    f"x_{split} and y_{split} must be torch tensors. Received: "
                    f"{type(x).__name__} and {type(y).__name__}."
                )
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise TypeError(
                    f"x_{split} must be float32 and y_{split} int64. Received: "
                    f"x_{split}.dtype={x.dtype}, y_{split}.dtype={y.dtype}."
                )
            if y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"x_{split} and y_{split} must hold the same number of examples and "
                    f"y_{split} must be 1-D. Received: x_{split}.shape={tuple(x.shape)}, "
                    f"y_{split}.shape={tuple(y.shape)}."
                )
            if tuple(x.shape[1:]) != tuple(self.meta.input_shape):
                raise ValueError(
                    f"x_{split} examples must have shape meta.input_shape="
                    f"{tuple(self.meta.input_shape)}. Received: x_{split}.shape={tuple(x.shape)}."
                )

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta.input_shape)

    @property
    def name(self) -> str:
        return self.meta.name

    def to(self, device: str | torch.device) -> Dataset:
        """A copy whose four tensors live on ``device`` (metadata shared)."""
        return Dataset(
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.meta,
        )

    def class_counts(self, split: str = "train") -> list[int]:
        """Number of examples of each class in ``split`` (``"train"`` or ``"test"``)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}.")
        y = getattr(self, f"y_{split}")
        return torch.bincount(y.cpu(), minlength=self.num_classes).tolist()

    def summary(self) -> str:
        """A few lines: name, shapes, value range, class counts, source, licence."""
        m = self.meta
        lines = [
            f"{m.name}: {m.description}".rstrip(": "),
            f"  input shape {tuple(m.input_shape)}, {m.num_classes} classes",
        ]
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            rng = (
                f", values in [{x.min().item():.3g}, {x.max().item():.3g}]" if x.numel() else ""
            )
            lines.append(f"  {split:<5} x {tuple(x.shape)}{rng}")
            counts = self.class_counts(split)
            pairs = ", ".join(f"{c}={n}" for c, n in zip(m.classes, counts))
            lines.append(f"        class counts: {pairs}")
        lines.append(f"  source: {m.source}")
        lines.append(f"  licence: {m.licence}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.meta.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.num_classes})"
        )


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Build the dataset registered as ``name`` with the loader's keyword arguments.

    An unknown name raises ``ValueError`` listing the close matches, e.g.
    ``load_dataset("rings")`` -> "Unknown dataset 'rings'. Did you mean 'ring'? ...".
    """
    return DATASETS.get(name).build(**kwargs)


def check_split_sizes(n_train: Any, n_test: Any, *, optional: bool = False) -> tuple[int, int]:
    """Validate ``n_train >= 1`` and ``n_test >= 0`` (integers); return them.

    One rule for every dataset factory: a training split needs an example, a test split may
    be empty. With ``optional``, ``None`` (keep the whole split) is allowed too.
    """
    for arg, val, lo in (("n_train", n_train, 1), ("n_test", n_test, 0)):
        if optional and val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            what = "None or an integer" if optional else "an integer"
            raise ValueError(f"{arg} must be {what} >= {lo}. Received: {arg}={val!r}.")
    return n_train, n_test


def check_nonnegative(name: str, value: Any) -> float:
    """Validate a finite number ``>= 0`` (a noise level, a scale); return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0. Received: {name}={value!r}.")
    return float(value)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}.")
    return seed


def as_int_tuple(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)
