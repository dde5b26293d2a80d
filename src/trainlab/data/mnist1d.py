"""MNIST-1D (Greydanus 2020), generated procedurally: no files, no network.

Greydanus, "Scaling down deep learning" (2020), https://github.com/greydanus/mnist1d. Ten
hand-made 12-point templates (one per digit) are each standardized, shifted to start at 0 and
divided by 6. Every example then goes through, in this order and with these defaults:

1. pad: append ``p ~ U{36..60}`` zeros, then resample linearly to ``12 + 60 = 72`` points;
2. scale: multiply by ``1 + 0.4 (u - 1/2)``, ``u ~ U(0, 1)``;
3. translate: roll right by ``k ~ U{0..47}`` places;
4. correlated noise: where the signal is exactly zero (the padding), substitute
   ``gaussian_filter(0.25 * N(0, 1), sigma=2)``;
5. iid noise: add ``0.02 * N(0, 1)``;
6. shear: subtract ``c * linspace(-1/2, 1/2, 72)`` with ``c = 0.75 (u - 1/2)``;
7. resample linearly to ``final_seq_length = 40`` points.

500 examples per class (5000 in all) are made class by class, shuffled, standardized with the
mean and std of the whole set, and split 4000 / 1000. Random numbers come from a NumPy legacy
``RandomState(seed)`` drawn in the reference generator's order (pad, scale, translate,
correlated noise, iid noise, shear per example; then the shuffle), so the defaults follow the
reference distribution draw for draw; only the per-example arithmetic is vectorized.
"""

from __future__ import annotations

import numpy as np
import torch

from trainlab.data.base import (
    DATASETS,
    Dataset,
    DatasetMeta,
    check_nonnegative,
    check_seed,
    check_split_sizes,
)

__all__ = ["mnist1d", "mnist1d_templates"]

# The reference templates (points 0..11 of digits 0..9), before standardization.
_TEMPLATES = np.array(
    [
        [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
        [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
        [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
        [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
        [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
        [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
        [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
        [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
        [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
    ],
    dtype=np.float64,
)


def mnist1d_templates() -> np.ndarray:
    """The ten templates, shape (10, 12): standardized, shifted to start at 0, divided by 6."""
    x = _TEMPLATES - _TEMPLATES.mean(1, keepdims=True)
    x = x / x.std(1, keepdims=True)
    x = x - x[:, :1]
    return x / 6.0


def _resample(x: np.ndarray, lengths: np.ndarray, n_out: int) -> np.ndarray:
    """Row-wise linear resampling of ``x[i, :lengths[i]]`` onto ``n_out`` evenly spaced points
    (``linspace(0, 1, L)`` -> ``linspace(0, 1, n_out)``, as ``scipy.interpolate.interp1d``)."""
    rows = np.arange(len(x))[:, None]
    pos = np.linspace(0.0, 1.0, n_out)[None, :] * (lengths[:, None] - 1)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, lengths[:, None] - 2)
    frac = pos - i0
    return x[rows, i0] * (1 - frac) + x[rows, i0 + 1] * frac


def mnist1d(
    num_samples: int = 5000,
    train_split: float = 0.8,
    seed: int = 42,
    *,
    padding: tuple[int, int] = (36, 60),
    scale_coeff: float = 0.4,
    max_translation: int = 48,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 2e-2,
    shear_scale: float = 0.75,
    shuffle_seq: bool = False,
    final_seq_length: int = 40,
    n_train: int | None = None,
    n_test: int | None = None,
) -> Dataset:
    """MNIST-1D with the reference defaults: 4000 train / 1000 test sequences of length 40.

    Arguments have the reference generator's names and defaults (``get_dataset_args``);
    ``n_train`` / ``n_test`` keep only the first examples of each split (quick runs).
    """
    check_split_sizes(n_train, n_test, optional=True)
    for arg, val in (("scale_coeff", scale_coeff), ("corr_noise_scale", corr_noise_scale),
                     ("iid_noise_scale", iid_noise_scale), ("shear_scale", shear_scale)):
        check_nonnegative(arg, val)
    check_seed(seed)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 10:
        raise ValueError(
            f"num_samples must be an integer >= 10. Received: num_samples={num_samples!r}."
        )
    if not isinstance(train_split, (int, float)) or not 0 < train_split < 1:
        raise ValueError(f"train_split must be in (0, 1). Received: train_split={train_split!r}.")
    lo, hi = padding
    if not (0 <= lo <= hi):
        raise ValueError(f"padding must be (low, high) with 0 <= low <= high. Received: {padding}.")
    if final_seq_length < 2 or max_translation < 1:
        raise ValueError(
            "final_seq_length must be >= 2 and max_translation >= 1. Received: "
            f"final_seq_length={final_seq_length}, max_translation={max_translation}."
        )
    from scipy.ndimage import gaussian_filter1d  # lazy: keeps `import trainlab` fast

    templates = mnist1d_templates()
    n_classes, tlen = templates.shape
    per_class = num_samples // n_classes
    n = per_class * n_classes
    width = tlen + hi  # every padded signal is resampled to this length

    rs = np.random.RandomState(seed)
    pads = np.empty(n, dtype=np.int64)
    scales = np.empty(n)
    shifts = np.empty(n, dtype=np.int64)
    corr = np.empty((n, width))
    iid = np.empty((n, width))
    shears = np.empty(n)
    # Draws in the reference order, one example at a time (cheap scalar draws only).
    for i in range(n):
        pads[i] = lo + int(rs.rand() * (hi - lo + 1))
        scales[i] = 1 + scale_coeff * (rs.rand() - 0.5)
        shifts[i] = rs.choice(max_translation)
        corr[i] = corr_noise_scale * rs.randn(width)
        iid[i] = iid_noise_scale * rs.randn(width)
        shears[i] = shear_scale * (rs.rand() - 0.5)
    labels = np.repeat(np.arange(n_classes), per_class)

    # 1. pad (+1e-8 keeps template points non-zero so step 4 only fills the padding) and dilate.
    padded = np.zeros((n, width))
    padded[:, :tlen] = templates[labels] + 1e-8
    x = _resample(padded, tlen + pads, width)
    x *= scales[:, None]  # 2. scale
    cols = (np.arange(width)[None, :] - shifts[:, None]) % width
    x = x[np.arange(n)[:, None], cols]  # 3. translate (roll right by k)
    corr = gaussian_filter1d(corr, 2, axis=-1)  # sigma 2, 'reflect' border, as the reference
    x = np.where(x != 0, x, corr)  # 4. correlated noise in the padding
    x = x + iid  # 5. iid noise
    x = x - shears[:, None] * np.linspace(-0.5, 0.5, width)[None, :]  # 6. shear
    x = _resample(x, np.full(n, width), final_seq_length)  # 7. subsample

    perm = rs.permutation(n)
    x, labels = x[perm], labels[perm]
    if shuffle_seq:
        x = x[:, rs.permutation(final_seq_length)]
    x = (x - x.mean()) / x.std()
    split = int(n * train_split)
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(labels.astype(np.int64))
    meta = DatasetMeta(
        "mnist1d",
        tuple(str(d) for d in range(n_classes)),
        (final_seq_length,),
        "Greydanus 2020, 'Scaling down deep learning', github.com/greydanus/mnist1d "
        "(procedural generator, re-implemented)",
        "generated by trainlab; MNIST-1D is Apache-2.0 (Greydanus)",
        "1-D digit templates, padded, scaled, shifted, sheared and noised",
        {"num_samples": n, "train_split": train_split, "seed": seed},
    )
    xtr, ytr, xte, yte = xt[:split], yt[:split], xt[split:], yt[split:]
    return Dataset(xtr[:n_train], ytr[:n_train], xte[:n_test], yte[:n_test], meta)


DATASETS.add(
    "mnist1d",
    mnist1d,
    description="MNIST-1D: 10 classes of length-40 1-D signals, 4000/1000, procedural",
    reference="Greydanus 2020, Scaling down deep learning",
    aliases=("mnist_1d",),
    meta={"embedded": True, "kind": "sequence"},
)
