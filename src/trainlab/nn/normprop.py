"""Normalization propagation (``normprop``): Arpit, Zhou, Kota & Govindaraju 2016.

"Normalization Propagation: A Parametric Technique for Removing Internal Covariate Shift in
Deep Networks" (ICML 2016, lecture 002) replaces batch statistics by their closed form. If a
layer's input has zero mean and unit variance per dimension (the data, standardized) and the
weight rows are (near) orthogonal, the pre-activation of unit ``i`` normalized by its row norm,
``u_i = W_i x / ||W_i||``, is close to ``N(0, 1)``. For ``z ~ N(0, 1)``::

    E[ReLU(z)]   = 1 / sqrt(2 pi)                    (RELU_MEAN   ~ 0.3989)
    Var[ReLU(z)] = 1/2 - 1/(2 pi) = (1 - 1/pi) / 2   (RELU_VAR    ~ 0.3408)

so each hidden layer computes (the paper's Algorithm 1, with learned scale ``gamma`` and
shift ``beta``, initialized to 1 and 0)::

    o_i = (ReLU(gamma_i W_i x / ||W_i|| + beta_i) - RELU_MEAN) / sqrt(RELU_VAR)

and ``o`` again has zero mean and unit variance for the next layer — with no data pass and no
batch dependence, so it works at batch size 1 and in online learning, and is the same
function in training and evaluation. Convolutions use the row norm of each output channel's
filter (``||W_i||_F``).

In trainlab the two halves sit in a block's usual slots: the norm ``"normprop"``
reparametrizes each block's Linear/Conv as ``gamma_i W_i / ||W_i||`` (a weight-normalized
layer in mode ``"normprop"``: ``weight_g`` = gamma, initialized to 1, ``bias`` = beta,
initialized to 0) and puts :class:`NormPropStandardize` — the fixed map
``(h - RELU_MEAN) / sqrt(RELU_VAR)`` — in the ``norm`` slot *after* the ReLU (its registry
entry forces ``placement="after"``). The closed forms are for ReLU; other activations are
refused. NormProp is defined for plain stacks (``mlp``, ``convnet``): residual sums break the
unit-variance propagation, so ``preact_resnet`` refuses it.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from trainlab.nn.norms import NORMS, _check_input, _check_positive
from trainlab.nn.weight_norm import weight_norm_

__all__ = [
    "RELU_MEAN",
    "RELU_STD",
    "RELU_VAR",
    "NormPropStandardize",
    "normprop_",
    "normprop_standardize",
]

#: Mean of ReLU(z) for z ~ N(0, 1): 1/sqrt(2 pi).
RELU_MEAN = 1.0 / math.sqrt(2.0 * math.pi)
#: Variance of ReLU(z) for z ~ N(0, 1): 1/2 - 1/(2 pi).
RELU_VAR = 0.5 - 1.0 / (2.0 * math.pi)
#: Standard deviation of ReLU(z) for z ~ N(0, 1).
RELU_STD = math.sqrt(RELU_VAR)


def normprop_standardize(h: Tensor) -> Tensor:
    """``(h - 1/sqrt(2 pi)) / sqrt(1/2 - 1/(2 pi))``: a ReLU output of a unit Gaussian brought
    back to zero mean and unit variance with the closed-form statistics (Arpit et al. 2016)."""
    return (h - RELU_MEAN) / RELU_STD


class NormPropStandardize(nn.Module):
    """The fixed, data-independent standardization of a ReLU output (NormProp's norm slot).

    No parameters, no buffers, same in training and evaluation; ``num_features`` is only
    checked against the input's channel count.
    """

    norm_kind = "activation"

    def __init__(self, num_features: int) -> None:
        super().__init__()
        _check_positive("num_features", num_features)
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.num_features, "NormPropStandardize ('normprop')")
        return normprop_standardize(x)

    def extra_repr(self) -> str:
        return f"{self.num_features}, mean={RELU_MEAN:.6f}, std={RELU_STD:.6f}"


def normprop_(layer: nn.Module) -> nn.Module:
    """Reparametrize ``layer`` in place for NormProp: ``W_i -> gamma_i W_i / ||W_i||`` with
    ``gamma = 1`` and ``beta`` (the bias) ``= 0``; return it (see :func:`weight_norm_`)."""
    return weight_norm_(layer, mode="normprop")


def _normprop(layer: nn.Module, **kwargs: Any) -> nn.Module:
    """NormProp's layer half: ``gamma W / ||W||`` per output unit, ``gamma = 1``, ``beta = 0``."""
    if kwargs:
        got = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ValueError(f"normprop takes no options. Received: {got}.")
    return normprop_(layer)


NORMS.add(
    "normprop",
    _normprop,
    description="normalization propagation: W/||W|| rows, closed-form ReLU statistics, no data",
    reference="Arpit, Zhou, Kota & Govindaraju 2016",
    aliases=("norm_prop", "normalization_propagation"),
    meta={
        "kind": "weight", "needs_batch_stats": False, "running_stats": False, "min_rank": 2,
        "slot": NormPropStandardize, "placement": "after", "activations": ("relu",),
        "models": ("mlp", "convnet"),
    },
)
