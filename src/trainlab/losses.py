"""Losses on class scores and L1/L2 weight penalties.

Losses take ``scores`` of shape ``(N, C)`` (lecture 001's ``s = f(x; W)``, unnormalized) and
``target`` class indices of shape ``(N,)``. Each computes a per-sample loss ``L_i``; the
``reduction`` is over the batch: ``"mean"`` (default, the lecture's ``L = 1/N Σ_i L_i``),
``"sum"`` or ``"none"`` (the vector of ``L_i``)::

    cross_entropy  −log(e^{s_{y_i}} / Σ_j e^{s_j})   softmax, then negative log-likelihood
    hinge          Σ_{j≠y_i} max(0, s_j − s_{y_i} + Δ), Δ = 1   (multiclass SVM)
    mse            ½ ‖s_i − t_i‖², t_i the one-hot target (sum over classes)

Penalties take the model: :func:`l1_penalty` ``= λ·Σ|w|`` and :func:`l2_penalty`
``= λ·½·Σw²`` over the weights of the weight layers (Linear, Conv, Embedding ...: see
:func:`penalized_parameters`) — not biases, not the γ/β of norm layers, unless asked. The full
objective of lecture 001 is ``L = 1/N Σ_i L_i + R(W)``.

Registries: :data:`LOSSES` (family ``"loss"``; ``LOSSES.build("hinge")`` returns a loss
module) and :data:`PENALTIES` (family ``"penalty"``; ``PENALTIES.build("l2", weight=5e-4)``
returns a callable ``penalty(model)``). :class:`PenalizedLoss` adds a penalty to a loss, as
a Trainer's ``loss_fn`` (a run config's ``penalty`` with ``penalty_options``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.nn.kinds import TORCH_NORM_TYPES, WEIGHT_LAYERS_TEXT, is_norm, is_weight_layer
from trainlab.registry import Registry

__all__ = [
    "LOSSES",
    "L1Penalty",
    "L2Penalty",
    "MulticlassHingeLoss",
    "NORM_LAYER_TYPES",
    "PENALTIES",
    "PenalizedLoss",
    "REDUCTIONS",
    "SquaredErrorLoss",
    "cross_entropy",
    "l1_penalty",
    "l2_penalty",
    "mse",
    "multiclass_hinge",
    "penalized_parameters",
]

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {REDUCTIONS}. Received: reduction={reduction!r}."
        )
    return reduction  # type: ignore[return-value]


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _check_scores_target(scores: torch.Tensor, target: torch.Tensor, who: str) -> None:
    if not isinstance(scores, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"{who} needs tensors scores and target. Received: "
            f"{type(scores).__name__} and {type(target).__name__}."
        )
    if scores.dim() != 2:
        raise ValueError(
            f"{who} needs scores of shape (N, C). Received: shape {tuple(scores.shape)}."
        )
    if target.dim() != 1 or target.shape[0] != scores.shape[0]:
        raise ValueError(
            f"{who} needs target class indices of shape (N,) = ({scores.shape[0]},). "
            f"Received: shape {tuple(target.shape)}."
        )
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(
            f"{who} needs integer class indices as target. Received: dtype {target.dtype}."
        )
    # A range check needs the values on the host: done on CPU only (no GPU sync per step).
    if target.device.type == "cpu" and target.numel():
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= scores.shape[1]:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"{who}: target class indices must lie in [0, {scores.shape[1] - 1}] "
                f"(C = {scores.shape[1]} scores). Received: a target of {bad}."
            )


# -- losses ---------------------------------------------------------------------------------
def cross_entropy(
    scores: torch.Tensor, target: torch.Tensor, reduction: str = "mean", **kwargs
) -> torch.Tensor:
    """Softmax cross-entropy: ``L_i = −log(e^{s_{y_i}} / Σ_j e^{s_j})``.

    Formula: ``L_i = −s_{y_i} + log Σ_j e^{s_j}``, i.e. log-softmax followed by the negative
    log-likelihood of the true class, computed stably by ``torch.nn.functional.cross_entropy``
    (this calls it; ``kwargs`` such as ``label_smoothing`` or ``weight`` go to it).
    Reference: lecture 001 ("Softmax" loss). Also known as: softmax loss, multinomial
    logistic loss, ``nn.CrossEntropyLoss``.
    """
    _check_reduction(reduction)
    return F.cross_entropy(scores, target, reduction=reduction, **kwargs)


def multiclass_hinge(
    scores: torch.Tensor, target: torch.Tensor, margin: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """Multiclass SVM (hinge) loss: ``L_i = Σ_{j≠y_i} max(0, s_j − s_{y_i} + Δ)``.

    Formula: with margin ``Δ = 1`` by default, averaged over the batch for
    ``reduction="mean"``: lecture 001's ``L = 1/N Σ_i L_i``. A score that beats the true
    class's minus Δ costs the difference; the gradient is 0 at the kink.

    Relation to torch: ``F.multi_margin_loss(scores, target, margin=Δ)`` divides each ``L_i``
    by the number of classes C, so ``multiclass_hinge = C · F.multi_margin_loss``.
    Reference: lecture 001 (after CS231n); Weston & Watkins 1999. Also known as:
    multiclass SVM loss, Weston–Watkins hinge, ``nn.MultiMarginLoss`` times C.
    """
    _check_reduction(reduction)
    _check_scores_target(scores, target, "multiclass_hinge")
    margin_ = _check_margin(margin)
    idx = target.long().unsqueeze(1)
    s_true = scores.gather(1, idx)
    margins = F.relu(scores - s_true + margin_).scatter(1, idx, 0.0)  # drop j = y_i
    return _reduce(margins.sum(dim=1), reduction)


def _check_margin(margin: object) -> float:
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) \
            or not math.isfinite(margin) or margin < 0:
        raise ValueError(
            f"margin must be a non-negative finite number. Received: margin={margin!r}."
        )
    return float(margin)


def mse(scores: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared error to the one-hot target: ``L_i = ½ ‖s_i − t_i‖² = ½ Σ_c (s_ic − t_ic)²``.

    Formula: ``t_i`` is the one-hot vector of class ``y_i`` (or ``target`` itself when it is a
    float tensor of the scores' shape). Convention: the lecture's ``½‖·‖²`` per sample, summed
    over the C classes, then averaged over the batch (``reduction="mean"``); its gradient with
    respect to ``s_i`` is ``(s_i − t_i)/N``. Relation to torch:
    ``F.mse_loss(scores, t)`` averages over all N·C elements and has no ½, so
    ``mse = (C/2) · F.mse_loss``. Reference: lecture 002 ("MSE loss"). Also known as:
    squared error, Brier-like quadratic loss on one-hot targets.
    """
    _check_reduction(reduction)
    if isinstance(target, torch.Tensor) and target.is_floating_point():
        if target.shape != scores.shape:
            raise ValueError(
                "mse with a float target needs it to have the scores' shape "
                f"{tuple(scores.shape)}. Received: shape {tuple(target.shape)}."
            )
        t = target.to(scores.dtype)
    else:
        _check_scores_target(scores, target, "mse")
        t = F.one_hot(target.long(), scores.shape[1]).to(scores.dtype)
    return _reduce(0.5 * (scores - t).pow(2).sum(dim=1), reduction)


class MulticlassHingeLoss(nn.Module):
    """Module form of :func:`multiclass_hinge` (lecture 001's multiclass SVM loss)."""

    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.margin = _check_margin(margin)
        self.reduction = _check_reduction(reduction)

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return multiclass_hinge(scores, target, self.margin, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"


class SquaredErrorLoss(nn.Module):
    """Module form of :func:`mse`: ``½‖s_i − onehot(y_i)‖²``, mean over the batch.

    Not ``torch.nn.MSELoss``, which averages over all elements and has no ½ (see :func:`mse`).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mse(scores, target, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def _cross_entropy_module(reduction: str = "mean", **kwargs) -> nn.Module:
    _check_reduction(reduction)
    return nn.CrossEntropyLoss(reduction=reduction, **kwargs)


#: Family ``"loss"``: name -> factory of a loss module ``loss(scores, target)``.
LOSSES = Registry("loss")
LOSSES.add("cross_entropy", _cross_entropy_module,
           description="−log softmax(s)_y: log-softmax + NLL (torch's nn.CrossEntropyLoss)",
           reference="lecture 001", aliases=("ce", "softmax", "softmax_cross_entropy"),
           meta={"function": cross_entropy, "target": "class indices"})
LOSSES.add("hinge", MulticlassHingeLoss,
           description="Σ_{j≠y} max(0, s_j − s_y + Δ), Δ = 1: multiclass SVM, mean over batch",
           reference="lecture 001; Weston & Watkins 1999",
           aliases=("svm", "multiclass_hinge", "multiclass_svm"),
           meta={"function": multiclass_hinge, "target": "class indices"})
LOSSES.add("mse", SquaredErrorLoss,
           description="½‖s − onehot(y)‖², summed over classes, mean over batch",
           reference="lecture 002", aliases=("squared_error",),
           meta={"function": mse, "target": "class indices or same-shape floats"})


# -- penalties ------------------------------------------------------------------------------
#: torch's norm layers (``trainlab.nn.kinds.TORCH_NORM_TYPES``). Which layers' parameters are
#: "norm parameters" (γ, β), left out of penalties by default, is
#: :func:`trainlab.nn.kinds.is_norm`: these, trainlab's registered norms and, by name, other
#: normalization layers that are not weight layers ("FilterResponseNorm").
NORM_LAYER_TYPES = TORCH_NORM_TYPES


def penalized_parameters(
    model: nn.Module, include_bias: bool = False, include_norm: bool = False
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of what :func:`l1_penalty` and :func:`l2_penalty` sum over.

    The ``weight`` of every weight layer (:func:`trainlab.nn.kinds.is_weight_layer`: Linear,
    Bilinear, Conv, ConvTranspose, Embedding and trainlab's WhitenedLinear; maxout's ``linear``
    among them; for a parametrized weight, e.g. weight normalization, the effective weight);
    with ``include_bias`` their biases too; with ``include_norm`` the parameters directly
    owned by normalization layers (:func:`trainlab.nn.kinds.is_norm`: torch's BatchNorm,
    InstanceNorm, LayerNorm, GroupNorm, RMSNorm, trainlab's registered norms, and any other
    module whose class name contains "norm"). Each tensor is yielded once.
    """
    seen: dict[int, torch.Tensor] = {}  # holds the tensors, so that no id is reused

    def once(name: str, t: torch.Tensor | None) -> Iterator[tuple[str, torch.Tensor]]:
        if t is not None and id(t) not in seen:
            seen[id(t)] = t
            yield name, t

    for mname, module in model.named_modules():
        prefix = f"{mname}." if mname else ""
        if is_weight_layer(module):
            yield from once(prefix + "weight", module.weight)
            if include_bias:
                yield from once(prefix + "bias", getattr(module, "bias", None))
        elif include_norm and is_norm(module):
            for pname, p in module.named_parameters(recurse=False):
                yield from once(prefix + pname, p)


def _check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) \
            or not math.isfinite(weight) or weight < 0:
        raise ValueError(
            f"weight must be a non-negative finite number. Received: weight={weight!r}."
        )
    return float(weight)


def _penalized(model: nn.Module, include_bias: bool, include_norm: bool, who: str):
    if not isinstance(model, nn.Module):
        raise TypeError(f"{who} needs an nn.Module. Received: {type(model).__name__}.")
    tensors = [t for _, t in penalized_parameters(model, include_bias, include_norm)]
    if not tensors:
        raise ValueError(
            f"{who} found no weight to penalize in {type(model).__name__}: it sums over the "
            f"weights of {WEIGHT_LAYERS_TEXT} layers."
        )
    return tensors


def l1_penalty(
    model: nn.Module, weight: float = 1.0, include_bias: bool = False, include_norm: bool = False
) -> torch.Tensor:
    """L1 penalty ``R(W) = λ · Σ |w|`` over the model's weights.

    Formula: the sum runs over the weights of the weight layers (see
    :func:`penalized_parameters`), not their biases nor norm layers' γ/β unless
    ``include_bias`` / ``include_norm``. Its subgradient ``λ·sign(w)`` drives weights to
    exactly 0 (sparsity). Reference: lecture 001 (regularization ``R(W)``); Tibshirani 1996.
    Also known as: lasso penalty, L1 regularization. Returns a scalar tensor with gradient.
    """
    w = _check_weight(weight)
    tensors = _penalized(model, include_bias, include_norm, "l1_penalty")
    return w * sum(t.abs().sum() for t in tensors)


def l2_penalty(
    model: nn.Module, weight: float = 1.0, include_bias: bool = False, include_norm: bool = False
) -> torch.Tensor:
    """L2 penalty ``R(W) = λ · ½ · Σ w²`` over the model's weights.

    Formula and convention: with the ½, the penalty's gradient is ``λ·w``, exactly what
    ``torch.optim.SGD(..., weight_decay=λ)`` (and ``Adam``'s coupled ``weight_decay``) adds
    to the gradient, so ``loss + l2_penalty(model, λ)`` with plain SGD equals SGD with
    ``weight_decay=λ`` on those parameters. Lecture 001's ``R(W) = λ Σ_k W_k²`` (no ½) is
    ``l2_penalty(model, 2λ)``. Not AdamW's decoupled decay. The sum runs over the weights of
    the weight layers (see :func:`penalized_parameters`), not biases nor norm γ/β unless
    asked. Reference: lecture 001; Krogh & Hertz 1992. Also known as: weight decay (for SGD),
    ridge / Tikhonov regularization. Returns a scalar tensor with gradient.
    """
    w = _check_weight(weight)
    tensors = _penalized(model, include_bias, include_norm, "l2_penalty")
    return (0.5 * w) * sum(t.pow(2).sum() for t in tensors)


class _Penalty:
    _fn = staticmethod(l2_penalty)

    def __init__(
        self, weight: float = 1.0, include_bias: bool = False, include_norm: bool = False
    ) -> None:
        self.weight = _check_weight(weight)
        self.include_bias = bool(include_bias)
        self.include_norm = bool(include_norm)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        return type(self)._fn(model, self.weight, self.include_bias, self.include_norm)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(weight={self.weight}, include_bias={self.include_bias},"
                f" include_norm={self.include_norm})")


class L1Penalty(_Penalty):
    """Callable ``penalty(model) = l1_penalty(model, weight, include_bias, include_norm)``."""

    _fn = staticmethod(l1_penalty)


class L2Penalty(_Penalty):
    """Callable ``penalty(model) = l2_penalty(model, weight, include_bias, include_norm)``."""

    _fn = staticmethod(l2_penalty)


#: Family ``"penalty"``: name -> factory of a callable ``penalty(model)``.
PENALTIES = Registry("penalty")
PENALTIES.add("l1", L1Penalty, description="λ·Σ|w| over weight-layer weights (not bias, norm)",
              reference="lecture 001; Tibshirani 1996", aliases=("lasso",),
              meta={"function": l1_penalty})
PENALTIES.add("l2", L2Penalty,
              description="λ·½·Σw² over weight-layer weights; gradient λw = SGD weight_decay",
              reference="lecture 001; Krogh & Hertz 1992", aliases=("ridge",),
              meta={"function": l2_penalty})


class PenalizedLoss:
    """The objective of lecture 001, ``L = 1/N Σ_i L_i + R(W)``: a loss plus a weight penalty.

    ``PenalizedLoss(loss, penalty, model)(scores, target)`` is ``loss(scores, target) +
    penalty(model)`` while ``model.training`` is true, and the loss alone in eval mode. The
    Trainer evaluates the test split in eval mode, so its ``train_loss`` is the objective
    that is minimized (data loss plus ``R(W)``) and its ``test_loss`` the data loss.

    Args:
        loss: a :data:`LOSSES` spec (``"cross_entropy"``, ``("hinge", {"margin": 0.5})``) or
            a callable ``(scores, target) -> loss``.
        penalty: a :data:`PENALTIES` spec (``("l2", {"weight": 5e-4})``) or a callable
            ``model -> scalar tensor``.
        model: the module whose weights are penalized (held by reference, not copied).

    Example::

        >>> trainer = Trainer(model, optimizer="sgd")
        >>> trainer.loss_fn = PenalizedLoss(trainer.loss_fn, ("l2", {"weight": 5e-4}), model)
    """

    def __init__(self, loss, penalty, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"PenalizedLoss needs the nn.Module it penalizes. Received: "
                            f"{type(model).__name__}.")
        self.loss = LOSSES.build(loss) if isinstance(loss, (str, tuple, list, dict)) else loss
        self.penalty = PENALTIES.build(penalty) if isinstance(
            penalty, (str, tuple, list, dict)) else penalty
        for what, f in (("loss", self.loss), ("penalty", self.penalty)):
            if not callable(f):
                raise TypeError(f"PenalizedLoss: {what} must be a registry spec or a callable. "
                                f"Received: {f!r}.")
        self.model = model
        self.penalty(model)  # no weight to penalize: the penalty's own error, now

    def __call__(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = self.loss(scores, target)
        if self.model.training:
            out = out + self.penalty(self.model)
        return out

    def __repr__(self) -> str:
        return f"PenalizedLoss({self.loss!r}, {self.penalty!r})"
