"""How much memory a model spec needs, estimated before anything is allocated.

The spec is built once on PyTorch's ``meta`` device (shapes and dtypes, no storage), so the
parameter count is exact for every builder (it equals ``sum(p.numel())`` of the real model)
and costs microseconds even for a spec that would need petabytes. A forward pass of a
``meta`` batch through it counts the activations. The estimate of a training step is

    parameters + gradients (one per parameter) + optimizer state (``slots`` per parameter:
    0 for SGD, 1 for momentum/Adagrad/RMSprop, 2 for Adam/Adadelta) + activations
    (the output of every leaf module at the batch size, views and pass-throughs not
    counted: what autograd keeps for backward)

times the bytes of the dtype (4 for float32). It is a lower bound of what the allocator will
ask for (temporaries and the allocator's rounding come on top), so a spec refused by
:func:`check_fits` would certainly fail.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainlab.models.build import build_model

__all__ = ["MemoryEstimate", "available_memory", "check_fits", "estimate_memory",
           "format_bytes", "OPTIMIZER_SLOTS"]

#: state tensors per parameter kept by each optimizer of trainlab.optim
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1,
                   "adadelta": 2, "adam": 2, "adamw": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed by one training step (see the module docstring)."""

    parameters: int          # number of parameters
    activations: int         # number of activation elements at the batch size (0: unknown)
    bytes_per_element: int = 4
    slots: int = 2

    @property
    def parameter_bytes(self) -> int:
        return self.parameters * self.bytes_per_element

    @property
    def total_bytes(self) -> int:
        """Parameters, gradients, optimizer state and activations."""
        return (self.parameters * (2 + self.slots) + self.activations) * self.bytes_per_element

    def describe(self) -> str:
        b = self.bytes_per_element
        parts = [f"{self.parameters:,} parameters ({format_bytes(self.parameters * b)}, "
                 f"as much again for gradients"]
        if self.slots:
            parts[0] += f", {self.slots}x for the optimizer state"
        parts[0] += ")"
        if self.activations:
            parts.append(f"activations {format_bytes(self.activations * b)}")
        return f"about {format_bytes(self.total_bytes)}: " + ", ".join(parts)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000.0
    return f"{n:.3g} PB"  # pragma: no cover


def _meta_model(spec: Any) -> nn.Module:
    with torch.device("meta"):
        return build_model(spec)


def estimate_memory(spec: Mapping[str, Any] | nn.Module, input_shape: Sequence[int] | None = None,
                    batch_size: int = 0, *, optimizer: str | None = "adam",
                    dtype: torch.dtype = torch.float32) -> MemoryEstimate:
    """The :class:`MemoryEstimate` of a builder spec (``{"name": "mlp", ...}``) or a model.

    ``input_shape`` (one example's shape) and ``batch_size`` add the activations; without
    them only parameters, gradients and optimizer state are counted. A model given as a
    module is measured as it is (its activations on the ``meta`` device only when all its
    parameters are there).
    """
    model = spec if isinstance(spec, nn.Module) else _meta_model(spec)
    seen: set[int] = set()
    n_params = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n_params += p.numel()
    acts = 0
    if input_shape is not None and batch_size and all(p.is_meta for p in model.parameters()):
        counts: list[int] = []

        def hook(_m: nn.Module, args: Any, out: Any) -> None:
            # a view (Flatten) or the input itself (Identity) takes no new memory
            if isinstance(out, torch.Tensor) and out._base is None and not any(
                    out is a for a in args):
                counts.append(out.numel())

        leaves = [m for m in model.modules() if not list(m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        try:
            with torch.no_grad():
                model(torch.empty(batch_size, *input_shape, device="meta"))
            acts = sum(counts)
        except Exception:  # a model the meta device cannot run: parameters only
            acts = 0
        finally:
            for h in handles:
                h.remove()
    slots = OPTIMIZER_SLOTS.get(str(optimizer).lower(), 2) if optimizer is not None else 0
    return MemoryEstimate(n_params, acts, torch.empty((), dtype=dtype).element_size(), slots)


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes the device can still give: free GPU memory, or the host's available RAM
    (``MemAvailable`` of /proc/meminfo, else total physical memory); None when unknown."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(estimate: MemoryEstimate, device: str | torch.device, arguments: str) -> None:
    """Raise ``ValueError`` when ``estimate`` exceeds what ``device`` has, naming the
    ``arguments`` that set the size (e.g. ``"model.width=10000000, model.depth=3"``)."""
    have = available_memory(device)
    if have is not None and estimate.total_bytes > have:
        raise ValueError(
            f"the model does not fit in memory: {arguments} needs {estimate.describe()}; "
            f"the device ({device}) has {format_bytes(have)} available. Use smaller values."
        )
