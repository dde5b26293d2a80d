"""Batches drawn on the training device, with no per-sample Python work.

:class:`DeviceBatcher` keeps ``x`` and ``y`` as whole tensors on the device. A shuffled epoch
is one ``torch.randperm`` from the batcher's own ``torch.Generator``; the examples are then
gathered with ``index_select`` a block of batches at a time (about 8 MB) and handed out as
slices of the block. An unshuffled (evaluation) epoch is a sequence of slices, which are views
and copy nothing. Compare ``torch.utils.data.DataLoader`` over a ``TensorDataset``,
which indexes and collates example by example in Python (see ``benchmarks/bench_data.py``).

The permutation is drawn on the CPU from a generator seeded with ``seed`` and then moved to
the device, so the same seed gives the same batches on every device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from trainlab.utils import resolve_device

__all__ = ["DeviceBatcher"]


class DeviceBatcher:
    """Shuffled epochs (or fixed evaluation batches) from device-resident tensors.

    Args:
        x: inputs, shape ``(N, ...)``.
        y: labels (or any per-example tensor), shape ``(N, ...)``.
        batch_size: examples per batch (``>= 1``).
        shuffle: draw a new permutation each epoch; ``False`` gives the fixed order
            ``0..N-1`` (evaluation batches).
        drop_last: drop the last, smaller batch of an epoch.
        seed: seed of the batcher's own ``torch.Generator`` (global RNG untouched).
        device: where batches live; ``None`` keeps the tensors where they are.

    Iterating yields ``(xb, yb)`` for one epoch; ``len(batcher)`` is batches per epoch. An
    epoch left early (``break``) is continued by the next ``for`` loop, so a training loop
    that counts steps sees one uninterrupted stream of epochs. :meth:`state_dict` captures the
    generator, the epoch and the position within it, so a resumed run draws the same batches.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(
                "x and y must be torch tensors. Received: "
                f"x of type {type(x).__name__}, y of type {type(y).__name__}."
            )
        if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(
                "x and y must have the same number of examples (first dimension). Received: "
                f"x.shape={tuple(x.shape)}, y.shape={tuple(y.shape)}."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"batch_size must be an integer >= 1. Received: batch_size={batch_size!r}."
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}.")
        if device is not None:
            device = resolve_device(device)
            x, y = x.to(device), y.to(device)
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0  # epochs started so far
        self._pos: int | None = None  # next batch of the current epoch; None between epochs
        self._epoch_state: torch.Tensor | None = None  # generator state before this epoch's perm

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def num_examples(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _permutation(self) -> torch.Tensor:
        perm = torch.randperm(self.num_examples, generator=self.generator)
        return perm.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._pos is None:  # start a new epoch
            self._epoch_state = self.generator.get_state()
            self.epoch += 1
            self._pos = 0
            perm = self._permutation() if self.shuffle else None
        else:  # continue an epoch left early or restored by load_state_dict
            perm = None
            if self.shuffle:
                self.generator.set_state(self._epoch_state)
                perm = self._permutation()
        b, n, nb = self.batch_size, self.num_examples, len(self)
        # Gather several batches with one index_select (about 8 MB of inputs at a time), then
        # hand out slices of the block: far fewer small, thread-synchronized kernel calls.
        row = max(1, self.x[0].numel() * self.x.element_size())
        block = max(1, min(nb, (8 << 20) // (row * b)))
        i = self._pos
        while i < nb:
            j = min(i + block, nb)
            lo, hi = i * b, min(j * b, n)
            if perm is None:
                xs, ys = self.x[lo:hi], self.y[lo:hi]
            else:
                idx = perm[lo:hi]
                xs, ys = self.x.index_select(0, idx), self.y.index_select(0, idx)
            for k in range(i, j):
                self._pos = k + 1  # a checkpoint taken after this batch resumes at the next
                s = slice((k - i) * b, min((k - i + 1) * b, hi - lo))
                yield xs[s], ys[s]
            i = j
        self._pos = None

    def steps(self, num_steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield exactly ``num_steps`` batches, running through as many epochs as needed."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
            raise ValueError(
                f"num_steps must be an integer >= 0. Received: num_steps={num_steps!r}."
            )
        if len(self) == 0 and num_steps > 0:
            raise ValueError(
                f"no batch can be drawn: {self.num_examples} examples, batch_size="
                f"{self.batch_size}, drop_last=True."
            )
        done = 0
        while done < num_steps:
            for batch in self:
                yield batch
                done += 1
                if done == num_steps:
                    return

    def state_dict(self) -> dict[str, Any]:
        """Generator state, epoch counter and position: enough to redraw the same batches."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self._pos,
            "generator": self.generator.get_state(),
            "epoch_generator": self._epoch_state,
            "num_examples": self.num_examples,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the data and batch size must match."""
        for key in ("num_examples", "batch_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"cannot load a batcher state saved with {key}={state[key]} into a "
                    f"batcher with {key}={getattr(self, key)}."
                )
        self.seed = state["seed"]
        self.epoch = state["epoch"]
        self._pos = state["position"]
        self.generator.set_state(state["generator"])
        self._epoch_state = state["epoch_generator"]

    def __repr__(self) -> str:
        return (
            f"DeviceBatcher(n={self.num_examples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed}, "
            f"device={self.device})"
        )
