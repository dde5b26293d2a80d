"""What a training loop shares: the pieces :class:`~trainlab.engine.trainer.Trainer` and
:class:`~trainlab.engine.pack.PackTrainer` both run.

- *fit's arguments* (:func:`fit_data`): exactly one of ``epochs`` and ``steps``, counts
  >= 1, the data as a Dataset or a tuple, a warning when a batch holds every example.
- *the sync cadence* (:class:`Cadence`): the device is read only at sync points, the
  multiples of any cadence (``log_every``, ``eval_every``, ``checkpoint_every``) and the
  last step; the test split is evaluated at multiples of ``eval_every`` and at the end.
- *a sync point's values* (:func:`window_divergence`, :func:`history_row`): the losses of
  the window and the largest ``|w|`` of each parameter tensor, read in one host sync; the
  first non-finite one is a divergence, else they make a History row.
- *evaluation in batches* (:func:`evaluate_in_batches`): mean loss and accuracy as a device
  tensor (no sync), of one model or of every member of a pack.
- *locating a divergence* (:func:`locate`): replay a window with hooks on every module
  (:class:`NonFiniteWatch`) and name the step and the first module whose output (forward),
  output gradient or parameter gradient (backward) is NaN or Inf.
- *the progress bar* (:func:`progress_bar`, :func:`advance_bar`): tqdm over steps, quiet
  when stderr is not a terminal.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.engine.history import Divergence

__all__ = [
    "Cadence",
    "NonFiniteWatch",
    "advance_bar",
    "check_count",
    "evaluate_in_batches",
    "first_nonfinite",
    "fit_data",
    "history_row",
    "layer_of",
    "locate",
    "nonfinite",
    "progress_bar",
    "split_data",
    "eval_split",
    "window_divergence",
]


# -- fit's arguments -------------------------------------------------------------------------
def check_count(name: str, value: Any) -> None:
    """``value`` is ``None`` or an integer >= 1 (not a bool)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be an integer >= 1 or None. Received: {name}={value!r}.")


def split_data(data: Any) -> tuple[Tensor, Tensor, Tensor | None, Any]:
    """Accept a trainlab Dataset (or anything with x_train ...), or a 2- or 4-tuple."""
    if hasattr(data, "x_train"):
        x_test, y_test = getattr(data, "x_test", None), getattr(data, "y_test", None)
        return data.x_train, data.y_train, x_test, y_test
    if isinstance(data, (tuple, list)) and len(data) in (2, 4):
        return (*data, None, None) if len(data) == 2 else tuple(data)  # type: ignore[return-value]
    raise TypeError(
        "data must be a trainlab Dataset (x_train, y_train, x_test, y_test), or a tuple "
        f"(x_train, y_train[, x_test, y_test]). Received: {type(data).__name__}."
    )


def fit_data(data: Any, epochs: int | None, steps: int | None, batch_size: int,
             eval_every: int | None) -> tuple[Tensor, Tensor, Tensor | None, Any]:
    """Check ``fit``'s arguments and split ``data`` into ``(x, y, x_test, y_test)``; warn
    (at ``fit``'s caller) when ``batch_size`` exceeds the training examples."""
    if (epochs is None) == (steps is None):
        raise ValueError(
            f"give exactly one of epochs and steps. Received: epochs={epochs!r}, "
            f"steps={steps!r}."
        )
    for name, v in (("epochs", epochs), ("steps", steps), ("batch_size", batch_size),
                    ("eval_every", eval_every)):
        check_count(name, v)
    x, y, x_test, y_test = split_data(data)
    if batch_size > len(x):
        warnings.warn(
            f"batch_size={batch_size} is larger than the {len(x)} training examples: every "
            f"step uses the whole training set (full-batch gradient descent).",
            UserWarning, stacklevel=3)
    return x, y, x_test, y_test


def eval_split(x_test: Tensor | None, y_test: Tensor | None,
               device: torch.device) -> tuple[Tensor, Tensor] | None:
    """The test split on ``device``, or ``None`` when there is none (or it is empty)."""
    if x_test is not None and y_test is not None and len(x_test) > 0:
        return x_test.to(device), y_test.to(device)
    return None


# -- the sync cadence ------------------------------------------------------------------------
@dataclass(frozen=True)
class Cadence:
    """When a loop of ``total`` steps syncs: after step ``s`` where ``s`` is a multiple of
    any of ``every``, or ``s == total``; it evaluates at multiples of ``eval_every`` and at
    the end."""

    total: int
    every: tuple[int, ...]
    eval_every: int

    def next(self, step: int) -> int:
        """The first sync point after ``step``."""
        return min(self.total, *[(step // k + 1) * k for k in self.every])

    def evaluates(self, step: int) -> bool:
        return step % self.eval_every == 0 or step == self.total


# -- a sync point's values -------------------------------------------------------------------
def _kind(v: float) -> str:
    return "nan" if v != v else "inf"


def window_divergence(window_start: int, step: int, losses: Sequence[float],
                      norms: Sequence[float]) -> Divergence | None:
    """The divergence the values read at a sync point show, or ``None``.

    ``losses`` are the window's losses (steps ``window_start ..``), ``norms`` the largest
    ``|w|`` of each parameter tensor after step ``step - 1``. A loss that is NaN *or* ±Inf
    is a divergence (``math.isfinite``, not ``isnan``: an infinite loss with finite
    gradients must stop training too), and so is a non-finite norm (max ``|w|``, not a
    2-norm, which could overflow to inf on finite weights). The module is ``"?"``:
    :func:`locate` names it."""
    for j, v in enumerate(losses):
        if not math.isfinite(v):
            return Divergence(window_start + j, "?", "loss", _kind(v))
    for v in norms:
        if not math.isfinite(v):
            return Divergence(step - 1, "?", "parameter", _kind(v))
    return None


def history_row(step: int, per_epoch: int, losses: Sequence[float], lr: float,
                seconds: float) -> dict[str, Any]:
    """A History row: ``step``, ``epoch`` (steps / steps per epoch), ``train_loss`` (the
    window's mean), ``lr`` and ``time`` (seconds of training so far)."""
    return {
        "step": step,
        "epoch": round(step / max(per_epoch, 1), 4),
        "train_loss": sum(losses) / len(losses),
        "lr": lr,
        "time": round(seconds, 4),
    }


# -- evaluation ------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_in_batches(
    module: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    score: Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]],
    *,
    device: torch.device,
    members: int | None = None,
) -> Tensor:
    """``[mean loss, accuracy]`` of ``module`` on ``(x, y)``, in eval mode, as a device
    tensor (no host sync): ``(2,)`` for one model, ``(2, M)`` for ``members=M``.

    ``score(xb, yb)`` gives ``(outputs, mean loss, targets)`` of a batch: ``(b, C)``
    outputs, a scalar loss and ``(b,)`` targets for a model; ``(M, b, C)``, ``(M,)`` and
    ``(M, b)`` for a pack. Accuracy is the share of ``argmax`` over the classes equal to
    the target; NaN for outputs without a class dimension."""
    shape: tuple[int, ...] = () if members is None else (members,)
    cls = len(shape) + 1  # the class dimension of the outputs
    was_training = module.training
    module.eval()
    loss_sum = torch.zeros(shape, device=device, dtype=torch.float64)
    correct = torch.zeros(shape, device=device, dtype=torch.float64)
    n = x.shape[0]
    for i in range(0, n, batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        out, loss, target = score(xb, yb)
        loss_sum += loss.double() * xb.shape[0]
        if out.ndim == cls + 1:
            correct += (out.argmax(dim=cls) == target).sum(cls - 1)
        else:
            correct += math.nan
    module.train(was_training)
    return torch.stack([loss_sum / n, correct / n])


# -- locating a divergence -------------------------------------------------------------------
def nonfinite(t: Any) -> str | None:
    """``"nan"`` or ``"inf"`` when the floating tensor ``t`` holds one (NaN first), else
    ``None`` (also for anything that is not a floating tensor)."""
    if isinstance(t, Tensor) and t.is_floating_point():
        if torch.isnan(t).any():
            return "nan"
        if torch.isinf(t).any():
            return "inf"
    return None


def layer_of(param_name: str) -> str:
    """The module a parameter belongs to: ``"block1.linear"`` for ``"block1.linear.weight"``."""
    return param_name.rpartition(".")[0] or param_name


def first_nonfinite(named: Iterable[tuple[str, Tensor | None]],
                    kind: str) -> tuple[str, str, str] | None:
    """``(layer, kind, "nan"/"inf")`` of the first non-finite tensor of ``(parameter name,
    tensor)`` pairs (``None`` tensors skipped), or ``None``."""
    for name, t in named:
        v = nonfinite(t) if t is not None else None
        if v:
            return layer_of(name), kind, v
    return None


class NonFiniteWatch:
    """Hooks on every module of ``model`` (and every parameter that requires a gradient)
    while in a ``with`` block: :attr:`first` is ``(module, kind, value)`` of the first
    non-finite output (``"activation"``, forward), output gradient or parameter gradient
    (``"gradient"``, backward), or ``None``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.first: tuple[str, str, str] | None = None
        self._handles: list[Any] = []

    def _grad_hook(self, name: str) -> Callable[[Tensor], None]:
        def hook(g: Tensor) -> None:
            v = nonfinite(g)
            if v and self.first is None:
                self.first = (name, "gradient", v)

        return hook

    def _forward_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            for o in output if isinstance(output, (tuple, list)) else (output,):
                v = nonfinite(o)
                if v and self.first is None:
                    self.first = (name, "activation", v)
                if isinstance(o, Tensor) and o.requires_grad:
                    o.register_hook(self._grad_hook(name))

        return hook

    def __enter__(self) -> NonFiniteWatch:
        for name, m in self.model.named_modules():
            self._handles.append(m.register_forward_hook(
                self._forward_hook(name or type(m).__name__)))
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                self._handles.append(p.register_hook(self._grad_hook(layer_of(name))))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def locate(
    model: nn.Module,
    steps: Iterable[int],
    forward: Callable[[int], Tensor],
    update: Callable[[Tensor, int], None],
    parameters: Callable[[], Iterable[tuple[str, Tensor]]],
    *,
    gradients: Callable[[], Iterable[tuple[str, Tensor | None]]] | None = None,
    finish: Callable[[int], None] | None = None,
) -> Divergence | None:
    """Replay ``steps`` with a :class:`NonFiniteWatch` on ``model``; the first divergence.

    Each step: ``loss = forward(step)`` (a non-finite output, then a non-finite loss, is
    the divergence), ``update(loss, step)`` (at least the backward pass: a non-finite
    gradient), then ``gradients()`` checked (for a model whose parameters carry no hooks,
    as a pack's template on the meta device), ``finish(step)`` (the rest of the update) and
    ``parameters()`` checked. ``None`` when the replay stays finite."""
    with torch.enable_grad(), NonFiniteWatch(model) as watch:  # a pack locates from no_grad
        for step in steps:
            loss = forward(step)
            if watch.first is not None:
                return Divergence(step, *watch.first)
            v = nonfinite(loss)
            if v:
                return Divergence(step, "loss", "loss", v)
            update(loss, step)
            if watch.first is not None:
                return Divergence(step, *watch.first)
            hit = first_nonfinite(gradients(), "gradient") if gradients is not None else None
            if hit is not None:
                return Divergence(step, *hit)
            if finish is not None:
                finish(step)
            hit = first_nonfinite(parameters(), "parameter")
            if hit is not None:
                return Divergence(step, *hit)
    return None


# -- the progress bar ------------------------------------------------------------------------
def progress_bar(show: bool | None, total: int, initial: int, desc: str | None = None) -> Any:
    """A tqdm bar over steps, or ``None``: ``show=None`` shows it only when stderr is a
    terminal (quiet in logs, pipes and tests)."""
    show = show if show is not None else sys.stderr.isatty()
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False,
                desc=desc)


def advance_bar(bar: Any, step: int, postfix: dict[str, str] | None = None) -> None:
    """Move ``bar`` (``None``: no bar) to ``step``, with ``postfix`` shown at its next
    refresh."""
    if bar is None:
        return
    bar.update(step - bar.n)
    if postfix is not None:
        bar.set_postfix(postfix, refresh=False)
