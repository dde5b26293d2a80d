"""Model averaging (lecture 004, "Model Averaging" and "Dropout and MaxOut").

- **Bagging** (Breiman 1996): train ``k`` networks with independent weights, each on its own
  bootstrap sample (``n`` draws with replacement from the ``n`` training examples, so about
  ``1 - 1/e ≈ 63 %`` of them distinct, "about 36 % duplicates"), and predict with the average of
  their predictions: :func:`bootstrap_indices`, :func:`bagging`, :class:`Ensemble`.
- **Dropout as an ensemble of sub-networks** (Srivastava et al. 2014): each training step
  samples one of the ``2^n`` thinned networks (weights shared). At test time the ensemble's
  prediction can be approximated by averaging ``T`` sampled masks (Monte-Carlo averaging,
  :func:`mc_dropout_predict`) or by one pass of the full network with the weights scaled by
  the retain probability (the *weight scaling inference rule*; torch's inverted dropout
  scales in training instead, so it is simply eval mode: :func:`weight_scaling_predict`).
  For a network that is linear in the dropped units the two agree exactly in expectation
  (``E[W (m ⊙ x) / (1 - p)] = W x``); with nonlinearities weight scaling approximates the
  geometric mean of the sub-networks (exact for one softmax layer, Baldi & Sadowski 2013).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.engine.history import History

__all__ = [
    "AVERAGES",
    "BaggingResult",
    "Ensemble",
    "bagging",
    "bootstrap_indices",
    "dropout_active",
    "mc_dropout_predict",
    "weight_scaling_predict",
]

#: How :class:`Ensemble` combines its members.
AVERAGES = ("prob", "geometric", "mean")
_OUTPUTS = ("prob", "logits", "raw")


def bootstrap_indices(n: int, k: int, *, size: int | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
    """``(k, size)`` int64 indices into ``n`` examples, each row ``size`` (default ``n``) draws
    uniformly *with replacement*: one bootstrap sample per ensemble member."""
    for name, v in (("n", n), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1. Received: {name}={v!r}.")
    size = n if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1. Received: size={size!r}.")
    return torch.randint(0, n, (k, size), generator=generator)


class Ensemble(nn.Module):
    """The averaged prediction of ``members`` (``member0``, ``member1`` ...).

    ``average``:

    - ``"prob"`` (default): the arithmetic mean of the members' softmax probabilities
      ``p̄ = (1/k) Σ softmax(f_i(x))``; :meth:`forward` returns ``log p̄``, which is a valid
      logit vector (``softmax(log p̄) = p̄``), so cross-entropy and accuracy work on it as on one
      model's output.
    - ``"geometric"``: the normalized geometric mean ``∝ Π p_i^{1/k}``; forward returns the mean
      of the members' log-probabilities (its softmax renormalizes).
    - ``"mean"``: the mean of the raw outputs (regression).
    """

    def __init__(self, members: Sequence[nn.Module], average: str = "prob") -> None:
        super().__init__()
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}. Received: average={average!r}.")
        members = list(members)
        if not members:
            raise ValueError("an Ensemble needs at least one member. Received: members=[].")
        for i, m in enumerate(members):
            self.add_module(f"member{i}", m)
        self.average = average

    @property
    def members(self) -> list[nn.Module]:
        return list(self.children())

    def forward(self, x: Tensor) -> Tensor:
        outs = torch.stack([m(x) for m in self.children()])
        if self.average == "mean":
            return outs.mean(0)
        logp = F.log_softmax(outs, dim=-1)
        if self.average == "geometric":
            return logp.mean(0)
        return torch.logsumexp(logp, dim=0) - math.log(len(outs))

    def extra_repr(self) -> str:
        return f"k={len(self.members)}, average={self.average!r}"


@dataclass
class BaggingResult:
    """What :func:`bagging` returns: the :class:`Ensemble`, each member's bootstrap indices
    ``(k, n)`` into the training set, and each member's History."""

    ensemble: Ensemble
    indices: Tensor
    histories: list[History] = field(default_factory=list)


def _split(data: Any) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    if hasattr(data, "x_train"):
        return data.x_train, data.y_train, getattr(data, "x_test", None), \
            getattr(data, "y_test", None)
    if isinstance(data, (tuple, list)) and len(data) in (2, 4):
        return (*data, None, None) if len(data) == 2 else tuple(data)  # type: ignore[return-value]
    raise TypeError("data must be a trainlab Dataset or a tuple (x_train, y_train[, x_test, "
                    f"y_test]). Received: {type(data).__name__}.")


def bagging(
    make_model: Callable[[], nn.Module],
    data: Any,
    k: int = 5,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    average: str = "prob",
    fit_member: Callable[[nn.Module, tuple, int], History] | None = None,
    **trainer_kwargs: Any,
) -> BaggingResult:
    """Bagging: ``k`` models from ``make_model()``, each trained on its own bootstrap sample.

    Member ``i`` is built after ``torch.manual_seed(seed + i)`` (independent initial
    weights) and trained on ``(x[idx_i], y[idx_i], x_test, y_test)`` with ``idx_i`` row ``i``
    of :func:`bootstrap_indices` (drawn from a generator seeded with ``seed``), by
    ``Trainer(model, seed=seed + i, **trainer_kwargs).fit(..., steps=, epochs=,
    batch_size=)`` — or by ``fit_member(model, data_i, i)`` when given, which returns a
    History. The sample of each member is fixed across its epochs (unlike dropout's
    sub-networks, which see a new minibatch at every step).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (ensemble members). Received: k={k!r}.")
    x, y, x_test, y_test = _split(data)
    gen = torch.Generator().manual_seed(seed)
    idx = bootstrap_indices(len(x), k, generator=gen)
    members: list[nn.Module] = []
    histories: list[History] = []
    for i in range(k):
        torch.manual_seed(seed + i)
        model = make_model()
        rows = idx[i].to(x.device)
        part = (x[rows], y[rows]) if x_test is None else (x[rows], y[rows], x_test, y_test)
        if fit_member is not None:
            hist = fit_member(model, part, i)
        else:
            from trainlab.engine.trainer import Trainer

            if steps is None and epochs is None:
                epochs = 10
            trainer = Trainer(model, seed=seed + i, **trainer_kwargs)
            hist = trainer.fit(part, steps=steps, epochs=None if steps is not None else epochs,
                               batch_size=batch_size)
        members.append(model)
        histories.append(hist)
    return BaggingResult(Ensemble(members, average), idx, histories)


# -- dropout: Monte-Carlo averaging and weight scaling ------------------------------------
def _dropouts(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@contextmanager
def dropout_active(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for everything (BatchNorm uses its running statistics) except the dropout
    modules, which keep sampling masks; every module's mode is restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    for m in _dropouts(model):
        m.train()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.train(mode)


def _transform(out: Tensor, output: str) -> Tensor:
    if output == "prob":
        return F.softmax(out, dim=-1)
    if output == "logits":
        return F.log_softmax(out, dim=-1)
    return out


def _check_output(output: str) -> None:
    if output not in _OUTPUTS:
        raise ValueError(f"output must be one of {_OUTPUTS}. Received: output={output!r}.")


@torch.no_grad()
def mc_dropout_predict(model: nn.Module, x: Tensor, samples: int = 100, *,
                       output: str = "prob", seed: int | None = None,
                       return_std: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Monte-Carlo average over ``samples`` dropout masks: ``(1/T) Σ_t g(f(x; m_t))``.

    ``output``: ``"prob"`` (``g`` = softmax: the arithmetic mean of the sub-networks'
    probabilities), ``"logits"`` (``g`` = log-softmax: the log of their geometric mean, up to
    normalization) or ``"raw"`` (the outputs themselves). Dropout modules sample masks, all
    other modules are in eval mode (:func:`dropout_active`). ``seed`` makes the masks
    reproducible without touching the global RNG. With ``return_std`` also returns the
    standard error of the mean over the samples (elementwise). A model without dropout
    modules raises ``ValueError``: its average is its own output.
    """
    _check_output(output)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1. Received: samples={samples!r}.")
    if not _dropouts(model):
        raise ValueError(
            f"mc_dropout_predict needs a model with dropout modules; {type(model).__name__} "
            "has none (its Monte-Carlo average is its eval-mode output)."
        )
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        total = sq = None
        with dropout_active(model):
            for _ in range(samples):
                o = _transform(model(x), output).double()
                total = o if total is None else total + o
                sq = o * o if sq is None else sq + o * o
    mean = total / samples
    out = mean.to(x.dtype if x.is_floating_point() else torch.float32)
    if not return_std:
        return out
    var = (sq / samples - mean * mean).clamp_min(0) * samples / max(samples - 1, 1)
    return out, (var / samples).sqrt().to(out.dtype)


@torch.no_grad()
def weight_scaling_predict(model: nn.Module, x: Tensor, *, output: str = "prob") -> Tensor:
    """The weight scaling inference rule: one pass of the full network in eval mode (torch's
    inverted dropout already scaled the kept units by ``1 / (1 - p)`` in training, which is
    the paper's "multiply the weights by the retain probability" at test time)."""
    _check_output(output)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return _transform(model(x), output)
    finally:
        for m, mode in modes:
            m.train(mode)
