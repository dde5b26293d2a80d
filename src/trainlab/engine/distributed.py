"""One model on several processes: ``trainlab train`` under ``torchrun`` uses DDP.

``torchrun --nproc-per-node N -m trainlab train ...`` (or ``python -m torch.distributed.run``)
starts N processes with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address
in their environment. :func:`setup` joins them into one process group — the ``gloo`` backend
on CPU, ``nccl`` on CUDA (each process on ``cuda:LOCAL_RANK``) — and
:class:`DistributedTrainer` trains one model with
:class:`torch.nn.parallel.DistributedDataParallel`:

- Every process builds the same model from the same seed and draws the same *global* batch
  of ``batch_size`` examples (same batcher, same seed); process ``r`` trains on the ``r``-th
  of ``N`` equal contiguous slices of it. DDP averages the gradients over the processes, so
  with a loss that is a mean over the batch each step takes the gradient of the global
  batch, as one process with the same ``batch_size`` would — the same result within float
  tolerance (summation order differs). Batch norm is the exception: each process normalizes
  with its own slice's statistics (use ``torch.nn.SyncBatchNorm`` on CUDA for global ones).
- The logged training loss is the mean over the processes (one ``all_reduce`` per step,
  asynchronous); the test split is evaluated by every process on the same weights.
- Only rank 0 writes: the run folder, checkpoints, the results store, progress bars.

``batch_size`` must be divisible by the number of processes.

Leaving the group. :func:`cleanup` first releases the DDP wrapper of every
:class:`DistributedTrainer` still alive (:meth:`DistributedTrainer.release`), then destroys
the group. DDP's reducer holds the process group; were it the last owner, the group would be
destroyed whenever the trainer is garbage-collected, from a destructor that holds the GIL
while joining gloo's worker threads, one of which may be waiting for the GIL to free a
tensor: the process then hangs forever after training (seen on the rank > 0 processes of
``trainlab train`` under torchrun, whose trainer outlives the group).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import torch
from torch import nn

from trainlab.engine.trainer import Trainer

__all__ = ["DistributedTrainer", "cleanup", "is_distributed", "is_main", "rank", "setup",
           "world_size"]


def world_size() -> int:
    """Processes in the job: ``WORLD_SIZE`` set by torchrun (1 when not under it)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ValueError("WORLD_SIZE must be an integer. "
                         f"Received: WORLD_SIZE={os.environ['WORLD_SIZE']!r}.") from None


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0


def is_distributed() -> bool:
    """True under torchrun with more than one process."""
    return world_size() > 1


def is_main() -> bool:
    """True on the process that writes files (rank 0, or the only process)."""
    return rank() == 0


def setup(device: Any = None) -> torch.device:
    """Join the process group (once) and return this process's device.

    ``device``: ``None``/``"auto"`` picks ``cuda:LOCAL_RANK`` when CUDA is present, else the
    CPU; the backend follows (``nccl`` for CUDA, ``gloo`` for CPU).
    """
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device in (None, "auto"):
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dev


def cleanup() -> None:
    """Leave the process group (after training): release every live
    :class:`DistributedTrainer`'s DDP wrapper first (see the module docstring), then
    destroy the group."""
    import torch.distributed as dist

    for trainer in list(_LIVE):
        trainer.release()
    if dist.is_initialized():
        dist.destroy_process_group()


# DistributedTrainers whose DDP wrapper is not released yet (cleanup releases them)
_LIVE: weakref.WeakSet[DistributedTrainer] = weakref.WeakSet()


class DistributedTrainer(Trainer):
    """A :class:`Trainer` whose steps run data-parallel over the torchrun processes.

    Same arguments as :class:`Trainer`; call :func:`setup` first (``device`` should be the
    device it returned). See the module docstring for what is shared and what is not.
    """

    def __init__(self, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("DistributedTrainer needs the process group: call "
                               "trainlab.engine.distributed.setup() first (under torchrun).")
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        if self.rank != 0:
            kwargs["progress"] = False
            kwargs["checkpoint"] = None  # only rank 0 writes
        super().__init__(model, *args, **kwargs)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp: nn.parallel.DistributedDataParallel | None = \
            nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        _LIVE.add(self)

    def release(self) -> None:
        """Drop the DDP wrapper and its reducer (which holds the process group) while the
        group is alive; :func:`cleanup` calls it. The trained ``model`` stays; ``fit`` is no
        longer possible."""
        ddp, self.ddp = self.ddp, None
        _LIVE.discard(self)
        if ddp is not None:
            # the logger owns the reducer too: drop both, so the reducer goes now, whatever
            # else still refers to the wrapper
            for attr in ("logger", "reducer"):
                ddp.__dict__.pop(attr, None)

    def fit(self, data: Any, epochs: int | None = None, steps: int | None = None,
            batch_size: int = 128, **kwargs: Any):
        if self.ddp is None:
            raise RuntimeError("This DistributedTrainer was released (cleanup() left the "
                               "process group); build a new one to train again.")
        if batch_size % self.world:
            raise ValueError(
                f"batch_size must be divisible by the {self.world} processes (each trains on "
                f"an equal slice of the global batch). Received: batch_size={batch_size}.")
        return super().fit(data, epochs=epochs, steps=steps, batch_size=batch_size, **kwargs)

    def _stream(self):
        for xb, yb in super()._stream():
            n = xb.shape[0] // self.world  # the last batch of an epoch may be short
            if n == 0:
                yield xb, yb
                continue
            lo = self.rank * n
            yield xb[lo:lo + n], yb[lo:lo + n]

    def _forward(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        assert self.ddp is not None, "released: fit refuses to start"
        return self.loss_fn(self.ddp(xb), yb)

    def _step(self, xb: torch.Tensor, yb: torch.Tensor, step: int, probes: bool) -> torch.Tensor:
        import torch.distributed as dist

        loss = super()._step(xb, yb, step, probes)
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # SUM (gloo has no AVG); divided below
        return mean / self.world

    def save(self, path):
        if self.rank == 0:
            return super().save(path)
        return None
