"""Model averaging (lecture 004, "Model Averaging" and "Dropout and MaxOut").

- **Bagging** (Breiman 1996): train ``k`` networks with independent weights, each on its own
  bootstrap sample (``n`` draws with replacement from the ``n`` training examples, so about
  ``1 - 1/e ≈ 63 %`` of them distinct, "about 36 % duplicates"), and predict with the average of
  their predictions: :func:`bootstrap_indices`, :func:`bagging`, :class:`Ensemble`.
  :class:`BaggingTrainer` trains the ``k`` members of a :class:`BaggedEnsemble` together, in
  one loop, each on its own bootstrap sample: the form a run uses (``trainlab train
  --bagging K``; :data:`ENSEMBLES`, family ``"ensemble"``).
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
from trainlab.engine.trainer import Trainer
from trainlab.registry import Registry

__all__ = [
    "AVERAGES",
    "ENSEMBLES",
    "BaggedEnsemble",
    "BaggedLoss",
    "BaggingResult",
    "BaggingTrainer",
    "Ensemble",
    "bagging",
    "bagging_trainer",
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
            if steps is None and epochs is None:
                epochs = 10
            trainer = Trainer(model, seed=seed + i, **trainer_kwargs)
            hist = trainer.fit(part, steps=steps, epochs=None if steps is not None else epochs,
                               batch_size=batch_size)
        members.append(model)
        histories.append(hist)
    return BaggingResult(Ensemble(members, average), idx, histories)


# -- bagging in one training loop ---------------------------------------------------------
class BaggedEnsemble(Ensemble):
    """Bagging's :class:`Ensemble`, trained by one :class:`BaggingTrainer`.

    ``forward(x)`` on examples of ``input_shape`` (``x`` of shape ``(N, *input_shape)``) is
    the ensemble's averaged prediction (:class:`Ensemble`, ``average``). On a *bagged batch*
    ``x`` of shape ``(N, k, *input_shape)`` member ``j`` sees ``x[:, j]`` (its own examples)
    and the result is the members' outputs, ``(N, k, C)``; members must return ``(N, C)``.
    """

    def __init__(self, members: Sequence[nn.Module], input_shape: Sequence[int],
                 average: str = "prob") -> None:
        super().__init__(members, average)
        shape = tuple(input_shape)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
            raise ValueError(f"input_shape must be a tuple of sizes >= 1 (one example's "
                             f"shape). Received: input_shape={input_shape!r}.")
        self.input_shape = shape

    @property
    def k(self) -> int:
        return len(self.members)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != (self.k, *self.input_shape):
            return super().forward(x)
        outs = []
        for j, m in enumerate(self.children()):
            out = m(x[:, j])
            if out.dim() != 2:
                raise ValueError(f"BaggedEnsemble members must return (N, C) outputs. "
                                 f"Received: member{j} output of shape {tuple(out.shape)}.")
            outs.append(out)
        return torch.stack(outs, dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_shape={self.input_shape}"


class BaggedLoss:
    """A loss for :class:`BaggedEnsemble`: on member outputs ``(N, k, C)`` with targets
    ``(N, k)``, the mean of the members' losses ``(1/k) Σ_j L_j(out[:, j], y[:, j])`` as the
    value, with the gradient of their sum, so that each member gets exactly the gradient of
    its own loss (as if trained alone); anything else (the ensemble's ``(N, C)`` prediction
    at evaluation) goes to ``loss`` unchanged."""

    def __init__(self, loss: Callable[[Tensor, Tensor], Tensor], k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1. Received: k={k!r}.")
        self.loss, self.k = loss, k

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        if out.dim() != 3 or out.shape[1] != self.k or tuple(y.shape[:2]) != tuple(out.shape[:2]):
            return self.loss(out, y)
        total = sum(self.loss(out[:, j], y[:, j]) for j in range(self.k))
        # value: total / k (the mean member loss); gradient: that of total
        return total - total.detach() * (1.0 - 1.0 / self.k)

    def __repr__(self) -> str:
        return f"BaggedLoss({self.loss!r}, k={self.k})"


class BaggingTrainer(Trainer):
    """Bagging (Breiman 1996) in one training loop: a :class:`Trainer` for a
    :class:`BaggedEnsemble` whose ``k`` members each train on their own bootstrap sample.

    ``fit(data, ...)`` draws ``bootstrap_indices(n, k)`` from a generator seeded with the
    trainer's ``seed`` (the rows :func:`bagging` draws for the same seed; kept in
    ``self.bootstrap``, shape ``(k, n)``) and trains on the bagged set whose example ``i``
    is ``(x[idx[0, i]], ..., x[idx[k-1, i]])``: every minibatch of ``B`` positions gives
    member ``j`` ``B`` examples of its own sample, each epoch one pass over it, as if it had
    its own loader. The loss is :class:`BaggedLoss` (each member gets its own loss's
    gradient); ``train_loss`` is the mean member loss, the test split is scored on the
    ensemble's averaged prediction. Per-parameter optimizers (SGD, momentum, Adam ...)
    then update each member exactly as if it trained alone; ``clip_norm`` (one norm over
    all members) and the optimizers that evaluate the loss themselves (L-BFGS, Newton,
    natural gradient) would couple the members, and are refused.

    The bagged set holds ``k`` copies' worth of the training inputs.
    """

    def __init__(self, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        if not isinstance(model, BaggedEnsemble):
            raise TypeError(f"BaggingTrainer trains a BaggedEnsemble. Received: "
                            f"{type(model).__name__}.")
        super().__init__(model, *args, **kwargs)
        if self.clip_norm is not None:
            raise ValueError(f"clip_norm clips one gradient norm over all {model.k} members "
                             f"together, so bagging's members would not train independently. "
                             f"Received: clip_norm={self.clip_norm!r}.")
        if getattr(self.optimizer, "closure_kind", None) is not None:
            raise ValueError(f"{type(self.optimizer).__name__} evaluates the loss of all "
                             f"{model.k} members together (one line search or curvature), "
                             "so bagging's members would not train independently; use a "
                             "first-order optimizer.")
        self.loss_fn = BaggedLoss(self.loss_fn, model.k)
        self.bootstrap: Tensor | None = None

    def fit(self, data: Any, *args: Any, **kwargs: Any) -> History:
        x, y, x_test, y_test = _split(data)
        gen = torch.Generator().manual_seed(self.seed)
        self.bootstrap = bootstrap_indices(len(x), self.model.k, generator=gen)
        rows = self.bootstrap.T.to(x.device)  # (n, k): position i of each member's sample
        bagged: tuple = (x[rows], y[rows])
        if x_test is not None and y_test is not None:
            bagged += (x_test, y_test)
        return super().fit(bagged, *args, **kwargs)


_BAGGING_CLASSES: dict[type, type] = {}


def bagging_trainer(base: type[Trainer] = Trainer) -> type[Trainer]:
    """:class:`BaggingTrainer` on top of the Trainer class ``base`` (e.g. the
    ``DistributedTrainer`` of a torchrun job): a class whose ``fit`` trains bagging's
    members, each on its bootstrap sample, in the loop of ``base``."""
    if not (isinstance(base, type) and issubclass(base, Trainer)):
        raise TypeError(f"base must be a Trainer class. Received: {base!r}.")
    if issubclass(base, BaggingTrainer):
        return base
    if base is Trainer:
        return BaggingTrainer
    if base not in _BAGGING_CLASSES:
        _BAGGING_CLASSES[base] = type(f"Bagging{base.__name__}", (BaggingTrainer, base),
                                      {"__doc__": BaggingTrainer.__doc__,
                                       "__module__": __name__})
    return _BAGGING_CLASSES[base]


#: Family ``"ensemble"``: model averaging a run can train. ``"bagging"`` builds a
#: :class:`BaggedEnsemble` (its option: ``average``), trained by :class:`BaggingTrainer`.
ENSEMBLES = Registry("ensemble")
ENSEMBLES.add(
    "bagging", BaggedEnsemble,
    description="K members with their own initial weights, each trained on its own "
                "bootstrap sample (n draws with replacement); prediction = average of their "
                "probabilities (average=prob, or geometric)",
    reference="Breiman 1996, Bagging Predictors; lecture 004, 'Model Averaging'",
    aliases=("bootstrap_aggregating",),
)


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
