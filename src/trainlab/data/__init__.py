"""Datasets, preprocessing and device-resident batching.

* :data:`DATASETS` / :func:`load_dataset`: ``quadrants``, ``ring``, ``three_modes``,
  ``spirals``, ``blobs`` (2-D), ``shapeset`` (Shapeset-3x2), ``mnist1d`` (no files needed);
  ``mnist``, ``fashion_mnist``, ``cifar10``, ``svhn`` (files from a folder, a system package or
  a checksummed download; see :mod:`trainlab.data.images`).
* :data:`PREPROCESSORS` / :func:`build_preprocessor`: centering, standardizing, PCA,
  PCA/ZCA whitening and pipelines, fitted on training data.
* :class:`DeviceBatcher`: shuffled epochs and evaluation batches on the training device.
"""

from __future__ import annotations

from trainlab.data import images as _images  # noqa: F401  (registers the file-backed sets)
from trainlab.data import mnist1d as _mnist1d  # noqa: F401  (registers mnist1d)
from trainlab.data import synthetic as _synthetic  # noqa: F401  (registers the 2-D sets)
from trainlab.data.base import DATASETS, Dataset, DatasetMeta, load_dataset
from trainlab.data.batching import DeviceBatcher
from trainlab.data.preprocess import (
    PCA,
    PREPROCESSORS,
    ZCA,
    Center,
    Identity,
    Pipeline,
    Preprocessor,
    Standardize,
    build_preprocessor,
    load_preprocessor,
    preprocess_dataset,
)
from trainlab.data.shapeset import SHAPESET_CLASSES, ShapesetStream
from trainlab.data.synthetic import blobs, quadrants, ring, spirals, three_modes

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetMeta",
    "DeviceBatcher",
    "load_dataset",
    "PREPROCESSORS",
    "Preprocessor",
    "Center",
    "Standardize",
    "PCA",
    "ZCA",
    "Identity",
    "Pipeline",
    "build_preprocessor",
    "load_preprocessor",
    "preprocess_dataset",
    "SHAPESET_CLASSES",
    "ShapesetStream",
    "blobs",
    "quadrants",
    "ring",
    "spirals",
    "three_modes",
]
