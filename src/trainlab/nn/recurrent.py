"""Recurrent networks with normalization (family ``recurrent_norm``): LSTM and Elman RNN.

Lecture 002 ("Batch Normalization for RNN") asks where a norm goes in a recurrent cell and
which statistics it uses on sequence data. Four answers, one registry name each:

=========  ======================================================  ===============================
name       where and with which statistics                         reference
=========  ======================================================  ===============================
none       the plain cell (equals ``nn.LSTM`` / ``nn.RNN``)         Hochreiter & Schmidhuber 1997
bn_frame   BN on ``W_x x_t`` and on ``W_h h_{t-1}`` separately,    Cooijmans et al. 2017
           and on the LSTM cell before its ``tanh``; statistics   ("Recurrent Batch
           over the batch *per time step*, running estimates for  Normalization")
           steps ``0 .. T_max - 1``; ``gamma`` starts at 0.1
bn_seq     BN on the input-to-hidden term ``W_x x_t`` only;        Laurent et al. 2016 ("Batch
           statistics over the batch *and* all time steps          Normalized Recurrent Neural
                                                                   Networks")
ln         LN per sample over the units: LSTM as Cooijmans'        Ba, Kiros & Hinton 2016
           placement (both terms and the cell); Elman RNN on the
           summed pre-activation ``W_x x_t + W_h h_{t-1}``
=========  ======================================================  ===============================

With ``N_x, N_h, N_pre, N_c`` the slots a norm fills (identity elsewhere) and
``b = b_ih + b_hh``, one step of the cells computes::

    a_t = N_pre(N_x(W_ih x_t; t) + N_h(W_hh h_{t-1}; t)) + b
    LSTM:  i, f, g, o = split(a_t)      (torch's gate order, so weights load from nn.LSTM)
           c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
           h_t = sigmoid(o) * tanh(N_c(c_t; t))
    RNN:   h_t = tanh(a_t)              (or relu, as nn.RNN's nonlinearity=)

**Shifts.** The norms on the two terms and on the Elman pre-activation have a gain ``gamma``
and no shift: the bias ``b`` added after them is the shift (Cooijmans et al. fix
``beta_x = beta_h = 0`` for this reason; in Laurent et al. and Ba et al. a shift there would
duplicate ``b``). The cell norm ``N_c`` has both ``gamma_c`` and ``beta_c``.

**Per-time-step statistics and T_max** (``bn_frame``). In training each step ``t`` is
normalized with the batch's mean and (biased) variance at that step, and the running
estimates of step ``t`` are updated (PyTorch's momentum convention, unbiased variance). In
eval mode step ``t`` uses the running estimates of step ``t``. A step at or beyond ``T_max``
(0-based) uses the estimates of the last step ``T_max - 1``, as the paper does to generalize
to longer sequences; in training such a step uses its batch statistics and is not tracked. A
layer warns once when it sees a sequence longer than ``T_max``.

**Speed.** The input term ``N_x(W_ih x)`` of all steps is one matmul (and one norm call:
per-step BN runs as one ``F.batch_norm`` over ``(B, T * C)``), so the Python loop only does
the recurrent matmul and the gates.

Tensors are batch-first: ``(B, T, F)`` in, ``(B, T, H)`` out.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.registry import Registry, split_spec

__all__ = [
    "LSTM",
    "RECURRENT_NORMS",
    "RNN",
    "FrameBatchNorm",
    "LSTMCell",
    "NoRecurrentNorm",
    "RNNCell",
    "RecurrentLayerNorm",
    "SequenceBatchNorm",
    "frame_batch_norm",
    "lstm_step",
    "rnn_step",
]

RECURRENT_NORMS = Registry("recurrent_norm")

_SHAPE = "batch-first (B, T, F)"


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}.")
    return value


def _check_step(t: Any) -> int:
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError(f"t (the time step, 0-based) must be an integer >= 0. Received: t={t!r}.")
    return t


def _check_momentum(momentum: Any) -> float:
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not (
        0.0 < momentum <= 1.0
    ):
        raise ValueError(
            f"momentum must be a number in (0, 1] (weight of the new batch in the running "
            f"statistics). Received: momentum={momentum!r}."
        )
    return float(momentum)


def _batch_stats_error(name: str, x: Tensor, over: str) -> ValueError:
    return ValueError(
        f"{name} in training mode normalizes with the mean and variance over {over}, but the "
        f"input of shape {_shape(x)} has a single value per unit there, which cannot give "
        "batch statistics. Train with a batch size above 1, call model.eval() to use the "
        "running statistics, or use a norm that needs no batch: 'ln' (or 'none')."
    )


# -- pure functions --------------------------------------------------------------------------
def frame_batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    t: int = 0,
) -> Tensor:
    """Batch norm with separate statistics per time step (Cooijmans et al. 2017).

    ``x`` is one step ``(B, C)`` at time ``t`` or the steps ``t .. t + T - 1`` as ``(B, T, C)``.
    Step ``s`` is normalized as ``y = weight * (x_s - mu_s) / sqrt(var_s + eps) + bias``:
    in training ``mu_s, var_s`` are the batch's (biased) statistics at that step and the
    running rows ``running_mean[s], running_var[s]`` (shape ``(T_max, C)``) are updated in
    place (``(1 - momentum) running + momentum batch``, unbiased variance) for ``s < T_max``;
    in eval mode the running rows are used, row ``T_max - 1`` for every ``s >= T_max``.
    ``weight`` and ``bias`` (shape ``(C,)``) are shared by all steps. Without running
    statistics (``None``) batch statistics are used in both modes.
    """
    tracked = running_mean is not None and running_var is not None
    if x.dim() == 2:  # one step: the fused kernel on (B, C) with row t (the loop's hot path)
        if not tracked:
            return F.batch_norm(x, None, None, weight, bias, True, momentum, eps)
        T_max = running_mean.shape[0]
        if training:
            if t < T_max:
                return F.batch_norm(x, running_mean[t], running_var[t], weight, bias, True,
                                    momentum, eps)
            return F.batch_norm(x, None, None, weight, bias, True, momentum, eps)
        s = min(t, T_max - 1)
        return F.batch_norm(x, running_mean[s], running_var[s], weight, bias, False, momentum,
                            eps)
    xs = x
    B, T, C = xs.shape

    def bn(chunk: Tensor, rm: Tensor | None, rv: Tensor | None, use_batch: bool) -> Tensor:
        n = chunk.shape[1]
        w = None if weight is None else weight.repeat(n)
        b = None if bias is None else bias.repeat(n)
        # (B, n, C) -> (B, n * C): one BN channel per (step, unit), the fused kernel does all
        # steps at once; rm/rv are views of the (T_max, C) buffers, so updates land in place.
        flat = chunk.reshape(B, n * C)
        out = F.batch_norm(flat, rm, rv, w, b, use_batch, momentum, eps)
        return out.reshape(B, n, C)

    if training or not tracked:
        T_max = running_mean.shape[0] if tracked else 0
        inside = max(0, min(T, T_max - t))  # steps with a running row to update
        parts = []
        if inside:
            rm = running_mean[t : t + inside].view(-1)
            rv = running_var[t : t + inside].view(-1)
            parts.append(bn(xs[:, :inside], rm, rv, True))
        if inside < T:
            parts.append(bn(xs[:, inside:], None, None, True))
        y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    else:
        T_max = running_mean.shape[0]
        idx = torch.arange(t, t + T, device=xs.device).clamp(max=T_max - 1)
        y = bn(xs, running_mean[idx].reshape(-1), running_var[idx].reshape(-1), False)
    return y


def lstm_step(
    pre: Tensor, c: Tensor, cell_norm: Any = None
) -> tuple[Tensor, Tensor]:
    """One LSTM update from the pre-activations ``pre = (i, f, g, o)`` (torch's order).

    ``c_t = sigmoid(f) * c + sigmoid(i) * tanh(g)``, ``h_t = sigmoid(o) * tanh(N_c(c_t))``
    with ``N_c = cell_norm`` (a callable; identity when ``None``). Returns ``(h_t, c_t)``.
    """
    i, f, g, o = pre.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    c_out = c_new if cell_norm is None else cell_norm(c_new)
    return torch.sigmoid(o) * torch.tanh(c_out), c_new


def rnn_step(pre: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """One Elman update ``h_t = tanh(pre)`` (or ``relu``) from the pre-activation."""
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


# -- norm modules ----------------------------------------------------------------------------
class _RecurrentNorm(nn.Module):
    """A norm for one slot of a cell: ``forward(x, t=0)`` with ``x`` one step ``(B, C)`` at
    time ``t`` or a sequence ``(B, T, C)`` starting at ``t``. Cells call :meth:`normalize`
    (no checks or warnings: the layer made them once)."""

    uses_time = False  # whether the statistics depend on the time step

    def forward(self, x: Tensor, t: int = 0) -> Tensor:
        _check_step(t)
        if x.dim() not in (2, 3) or x.shape[-1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__} was built for num_features={self.num_features} and "
                f"expects (B, C) or (B, T, C) with C={self.num_features}. "
                f"Received: input of shape {_shape(x)}."
            )
        return self.normalize(x, t)

    def normalize(self, x: Tensor, t: int = 0) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class NoRecurrentNorm(_RecurrentNorm):
    """No normalization: ``normalize(x, t) = x`` (the plain cell's slots)."""

    def __init__(self, num_features: int = 1) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor, t: int = 0) -> Tensor:
        return x

    def normalize(self, x: Tensor, t: int = 0) -> Tensor:
        return x


def _affine(module: nn.Module, num_features: int, shift: bool, kw: dict) -> None:
    module.weight = nn.Parameter(torch.empty(num_features, **kw))
    if shift:
        module.bias = nn.Parameter(torch.empty(num_features, **kw))
    else:
        module.register_parameter("bias", None)


class FrameBatchNorm(_RecurrentNorm):
    """Frame-wise batch norm with per-time-step statistics (Cooijmans et al. 2017).

    ``BN(x_t) = beta + gamma * (x_t - mu_t) / sqrt(var_t + eps)`` with ``mu_t, var_t`` the
    statistics of time step ``t`` (see :func:`frame_batch_norm`); ``gamma, beta`` are shared
    by all steps. Buffers ``running_mean``, ``running_var`` of shape ``(T_max, C)``.

    Args:
        num_features: units ``C``.
        T_max: time steps with their own running statistics (the longest training
            sequence); later steps use those of step ``T_max - 1`` in eval mode.
        gamma_init: initial ``gamma``; 0.1 as the paper recommends (a gain of 1 saturates
            the ``tanh`` and kills the gradient through time).
        shift: learn ``beta`` (the cell slot); without it there is no ``bias`` parameter.
        eps, momentum: as ``nn.BatchNorm1d`` (PyTorch's momentum convention).
    """

    uses_time = True

    def __init__(
        self,
        num_features: int,
        T_max: int = 100,
        gamma_init: float = 0.1,
        shift: bool = True,
        eps: float = 1e-5,
        momentum: float = 0.1,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.num_features = _check_positive("num_features", num_features)
        self.T_max = _check_positive("T_max", T_max)
        self.gamma_init = float(gamma_init)
        self.eps = float(eps)
        self.momentum = _check_momentum(momentum)
        kw = {"device": device, "dtype": dtype}
        _affine(self, num_features, shift, kw)
        self.register_buffer("running_mean", torch.zeros(T_max, num_features, **kw))
        self.register_buffer("running_var", torch.ones(T_max, num_features, **kw))
        self._warned = False
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        nn.init.constant_(self.weight, self.gamma_init)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, t: int = 0) -> Tensor:
        _check_step(t)
        steps = 1 if x.dim() == 2 else x.shape[1] if x.dim() == 3 else 0
        if not self._warned and steps and t + steps > self.T_max:
            _warn_beyond(self, type(self).__name__, t + steps)
        return super().forward(x, t)

    def normalize(self, x: Tensor, t: int = 0) -> Tensor:
        if self.training and x.shape[0] <= 1:
            raise _batch_stats_error("FrameBatchNorm ('bn_frame')", x, "the batch at each step")
        return frame_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training, self.momentum, self.eps, t)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, T_max={self.T_max}, gamma_init={self.gamma_init}, "
                f"shift={self.bias is not None}, eps={self.eps}, momentum={self.momentum}")


class SequenceBatchNorm(_RecurrentNorm):
    """Sequence-wise batch norm: statistics over the batch and all time steps (Laurent 2016).

    ``BN(x_{b,t}) = beta + gamma * (x_{b,t} - mu) / sqrt(var + eps)`` with ``mu, var`` the
    mean and biased variance of each unit over all ``B * T`` frames (``F.batch_norm`` on
    ``(B * T, C)``); one set of running statistics for eval mode. A single step ``(B, C)`` is
    a sequence of length one.
    """

    def __init__(
        self,
        num_features: int,
        gamma_init: float = 1.0,
        shift: bool = True,
        eps: float = 1e-5,
        momentum: float = 0.1,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.num_features = _check_positive("num_features", num_features)
        self.gamma_init = float(gamma_init)
        self.eps = float(eps)
        self.momentum = _check_momentum(momentum)
        kw = {"device": device, "dtype": dtype}
        _affine(self, num_features, shift, kw)
        self.register_buffer("running_mean", torch.zeros(num_features, **kw))
        self.register_buffer("running_var", torch.ones(num_features, **kw))
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        nn.init.constant_(self.weight, self.gamma_init)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def normalize(self, x: Tensor, t: int = 0) -> Tensor:
        flat = x.reshape(-1, self.num_features)
        if self.training and flat.shape[0] <= 1:
            raise _batch_stats_error("SequenceBatchNorm ('bn_seq')", x, "the batch and time")
        y = F.batch_norm(flat, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)
        return y.reshape(x.shape)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, gamma_init={self.gamma_init}, "
                f"shift={self.bias is not None}, eps={self.eps}, momentum={self.momentum}")


class RecurrentLayerNorm(_RecurrentNorm):
    """Layer norm over the units of each sample and step (Ba, Kiros & Hinton 2016).

    ``LN(x) = beta + gamma * (x - mean(x)) / sqrt(var(x) + eps)`` over the last dimension
    (``F.layer_norm``); the same in training and eval, any batch size.
    """

    def __init__(
        self,
        num_features: int,
        gamma_init: float = 1.0,
        shift: bool = True,
        eps: float = 1e-5,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.num_features = _check_positive("num_features", num_features)
        if num_features == 1:
            raise ValueError(
                "RecurrentLayerNorm ('ln') over a single unit would output beta for every "
                f"input. Received: num_features={num_features}."
            )
        self.gamma_init = float(gamma_init)
        self.eps = float(eps)
        _affine(self, num_features, shift, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.gamma_init)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def normalize(self, x: Tensor, t: int = 0) -> Tensor:
        return F.layer_norm(x, (self.num_features,), self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, gamma_init={self.gamma_init}, "
                f"shift={self.bias is not None}, eps={self.eps}")


def _warn_beyond(owner: Any, what: str, steps: int) -> None:
    owner._warned = True
    warnings.warn(
        f"{what} keeps per-time-step statistics for T_max={owner.T_max} steps but received "
        f"{steps} steps: steps {owner.T_max + 1}..{steps} use the running statistics of step "
        f"{owner.T_max} in eval mode (as Cooijmans et al. 2017 do), and in training their "
        f"batch statistics, which are not tracked. Build it with T_max >= {steps} to track "
        "them. (Warned once.)",
        UserWarning,
        stacklevel=3,
    )


# -- registry ---------------------------------------------------------------------------------
# A factory builds the norm of one slot: factory(num_features, slot=..., T_max=..., **options).
# meta["slots"][cell] lists the slots the norm fills in that cell; the others get the identity.
def _none_factory(num_features: int, slot: str = "ih", T_max: int = 100) -> NoRecurrentNorm:
    """The identity (plain cell)."""
    return NoRecurrentNorm(num_features)


def _frame_factory(num_features: int, slot: str = "ih", T_max: int = 100, gamma_init: float = 0.1,
                   eps: float = 1e-5, momentum: float = 0.1, device: Any = None,
                   dtype: Any = None) -> FrameBatchNorm:
    """Frame-wise BN for one slot; only the cell slot has a shift."""
    return FrameBatchNorm(num_features, T_max, gamma_init, slot == "c", eps, momentum,
                          device=device, dtype=dtype)


def _seq_factory(num_features: int, slot: str = "ih", T_max: int = 100, gamma_init: float = 1.0,
                 eps: float = 1e-5, momentum: float = 0.1, device: Any = None,
                 dtype: Any = None) -> SequenceBatchNorm:
    """Sequence-wise BN for one slot (no shift: the cell's bias follows it)."""
    return SequenceBatchNorm(num_features, gamma_init, slot == "c", eps, momentum,
                             device=device, dtype=dtype)


def _ln_factory(num_features: int, slot: str = "ih", T_max: int = 100, gamma_init: float = 1.0,
                eps: float = 1e-5, device: Any = None, dtype: Any = None) -> RecurrentLayerNorm:
    """Layer norm for one slot; only the cell slot has a shift."""
    return RecurrentLayerNorm(num_features, gamma_init, slot == "c", eps, device=device,
                              dtype=dtype)


RECURRENT_NORMS.add(
    "none",
    _none_factory,
    description="plain recurrent cell (equals torch's nn.LSTM / nn.RNN)",
    reference="Hochreiter & Schmidhuber 1997; Elman 1990",
    aliases=("plain",),
    meta={"slots": {"lstm": (), "rnn": ()}, "needs_batch_stats": False, "per_step_stats": False},
)
RECURRENT_NORMS.add(
    "bn_frame",
    _frame_factory,
    description="frame-wise BN on W_x x, W_h h and the LSTM cell; per-time-step statistics "
    "up to T_max, gamma init 0.1",
    reference="Cooijmans, Ballas, Laurent, Gulcehre & Courville 2017 (Recurrent Batch "
    "Normalization)",
    aliases=("frame_bn", "bn_lstm", "recurrent_bn"),
    meta={"slots": {"lstm": ("ih", "hh", "c"), "rnn": ("ih", "hh")},
          "needs_batch_stats": True, "per_step_stats": True},
)
RECURRENT_NORMS.add(
    "bn_seq",
    _seq_factory,
    description="sequence-wise BN on the input-to-hidden term W_x x only; statistics over "
    "batch and time",
    reference="Laurent, Pereyra, Brakel, Zhang & Bengio 2016 (Batch Normalized Recurrent "
    "Neural Networks)",
    aliases=("seq_bn", "sequence_bn"),
    meta={"slots": {"lstm": ("ih",), "rnn": ("ih",)},
          "needs_batch_stats": True, "per_step_stats": False},
)
RECURRENT_NORMS.add(
    "ln",
    _ln_factory,
    description="layer norm per sample: LSTM on W_x x, W_h h and the cell; Elman RNN on the "
    "summed pre-activation",
    reference="Ba, Kiros & Hinton 2016 (Layer Normalization)",
    aliases=("layer_norm", "ln_lstm"),
    meta={"slots": {"lstm": ("ih", "hh", "c"), "rnn": ("pre",)},
          "needs_batch_stats": False, "per_step_stats": False},
)


# -- cells ------------------------------------------------------------------------------------
class _Cell(nn.Module):
    """Shared parts of :class:`LSTMCell` and :class:`RNNCell` (parameters named as torch's
    cells: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``; norms ``norm_<slot>``)."""

    kind = ""
    gates = 1
    slots: tuple[str, ...] = ()

    def __init__(self, input_size: int, hidden_size: int, norm: Any = "none", *,
                 T_max: int = 100, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.input_size = _check_positive("input_size", input_size)
        self.hidden_size = _check_positive("hidden_size", hidden_size)
        self.T_max = _check_positive("T_max", T_max)
        kw = {"device": device, "dtype": dtype}
        G = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G, **kw))
            self.bias_hh = nn.Parameter(torch.empty(G, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        parsed = split_spec("none" if norm is None else norm, "recurrent_norm")
        if parsed is None:
            raise TypeError(
                "norm must be a recurrent_norm name (one of "
                f"{', '.join(RECURRENT_NORMS.names())}), a (name, kwargs) pair or a dict with "
                f"'name'. Received: norm={norm!r}."
            )
        entry = RECURRENT_NORMS.get(parsed[0])
        self.norm = entry.name
        filled = entry.meta["slots"][self.kind]
        sizes = {"ih": G, "hh": G, "c": hidden_size, "pre": G}
        for slot in self.slots:
            module = (entry.build(sizes[slot], slot=slot, T_max=T_max, **parsed[1], **kw)
                      if slot in filled and entry.name != "none" else NoRecurrentNorm(sizes[slot]))
            self.add_module(f"norm_{slot}", module)
        self._pre_norm = "pre" in self.slots and not isinstance(self.norm_pre, NoRecurrentNorm)
        self._per_step = any(getattr(self, f"norm_{s}").uses_time for s in self.slots)
        self._warned = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's init: every weight and bias ``U(-1/sqrt(H), 1/sqrt(H))``; norms reset."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)
        for slot in self.slots:
            m = getattr(self, f"norm_{slot}")
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def _bias(self) -> Tensor | None:
        return None if self.bias_ih is None else self.bias_ih + self.bias_hh

    # the two halves of a step ---------------------------------------------------------------
    def input_term(self, x: Tensor, t: int = 0) -> Tensor:
        """``N_x(W_ih x) (+ b when no norm follows)`` for one step ``(B, F)`` or all steps
        ``(B, T, F)`` at once (one matmul)."""
        b = None if self._pre_norm else self._bias()
        if isinstance(self.norm_ih, NoRecurrentNorm):
            return F.linear(x, self.weight_ih, b)
        gx = self.norm_ih.normalize(F.linear(x, self.weight_ih), t)
        return gx if b is None else gx + b

    def _pre(self, gx: Tensor, h: Tensor, t: int) -> Tensor:
        a = gx + self.norm_hh.normalize(F.linear(h, self.weight_hh), t)
        if not self._pre_norm:
            return a
        a = self.norm_pre.normalize(a, t)
        b = self._bias()
        return a if b is None else a + b

    # checks -----------------------------------------------------------------------------------
    def _check_state(self, name: str, s: Tensor, B: int, x: Tensor) -> None:
        want = (B, self.hidden_size)
        if s.dim() != 2 or tuple(s.shape) != want:
            raise ValueError(
                f"{name} must have shape (B, hidden_size) = {want} for an input of shape "
                f"{_shape(x)}. Received: {name} of shape {_shape(s)}."
            )

    def _check_steps(self, steps: int) -> None:
        if self._per_step and not self._warned and steps > self.T_max:
            _warn_beyond(self, f"{type(self).__name__} with norm {self.norm!r}", steps)

    def _check_one_step(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} takes one time step of shape (B, input_size) = "
                f"(B, {self.input_size}). Received: input of shape {_shape(x)}."
            )

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, norm={self.norm!r}"
        if self._per_step:
            s += f", T_max={self.T_max}"
        return s + (", bias=False" if self.bias_ih is None else "")


class LSTMCell(_Cell):
    """One LSTM step with a recurrent norm (see the module docstring for the equations).

    ``cell(x_t, (h, c), t=0) -> (h_t, c_t)`` with ``x_t`` of shape ``(B, input_size)`` and
    ``t`` the 0-based time step (it selects ``bn_frame``'s statistics). With ``norm="none"``
    it equals ``nn.LSTMCell`` given the same weights.

    Args:
        input_size, hidden_size: ``F`` and ``H``.
        norm: a ``recurrent_norm`` name (``"none"``, ``"bn_frame"``, ``"bn_seq"``, ``"ln"``)
            or ``(name, {options})`` such as ``("bn_frame", {"gamma_init": 0.1, "eps": 1e-5,
            "momentum": 0.1})``.
        T_max: time steps with their own statistics (``bn_frame``).
        bias: learn ``b = b_ih + b_hh``.
        forget_bias: when given, the forget-gate bias starts at this value (``b_ih`` slice set
            to it, ``b_hh`` slice to 0) — 1.0 is the usual choice (Gers et al. 2000;
            Jozefowicz et al. 2015); ``None`` keeps torch's uniform init.
    """

    kind = "lstm"
    gates = 4
    slots = ("ih", "hh", "c")

    def __init__(self, input_size: int, hidden_size: int, norm: Any = "none", *,
                 T_max: int = 100, bias: bool = True, forget_bias: float | None = None,
                 device: Any = None, dtype: Any = None) -> None:
        if forget_bias is not None and not bias:
            raise ValueError(
                f"forget_bias needs bias=True. Received: forget_bias={forget_bias!r}, bias=False."
            )
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, norm, T_max=T_max, bias=bias, device=device,
                         dtype=dtype)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None:
            H = self.hidden_size
            with torch.no_grad():
                self.bias_ih[H : 2 * H].fill_(float(self.forget_bias))
                self.bias_hh[H : 2 * H].zero_()

    def step(self, gx: Tensor, state: tuple[Tensor, Tensor], t: int) -> tuple[Tensor, Tensor]:
        """One update from the precomputed input term ``gx`` (:meth:`input_term`)."""
        h, c = state
        pre = self._pre(gx, h, t)
        norm_c = self.norm_c
        cell_norm = None if isinstance(norm_c, NoRecurrentNorm) else (
            lambda v: norm_c.normalize(v, t))
        return lstm_step(pre, c, cell_norm)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None,
                t: int = 0) -> tuple[Tensor, Tensor]:
        self._check_one_step(x)
        _check_step(t)
        self._check_steps(t + 1)
        if state is None:
            state = (self._zeros(x), self._zeros(x))
        self._check_state("h", state[0], x.shape[0], x)
        self._check_state("c", state[1], x.shape[0], x)
        return self.step(self.input_term(x, t), state, t)


class RNNCell(_Cell):
    """One Elman step ``h_t = tanh(a_t)`` with a recurrent norm (module docstring).

    ``cell(x_t, h, t=0) -> h_t``. With ``norm="none"`` it equals ``nn.RNNCell``; with
    ``"ln"`` it is Ba et al.'s layer-normalized RNN (LN of ``W_x x + W_h h``, then ``+ b``).
    ``nonlinearity`` is ``"tanh"`` or ``"relu"``, as in ``nn.RNN``.
    """

    kind = "rnn"
    gates = 1
    slots = ("ih", "hh", "pre")

    def __init__(self, input_size: int, hidden_size: int, norm: Any = "none", *,
                 T_max: int = 100, bias: bool = True, nonlinearity: str = "tanh",
                 device: Any = None, dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"nonlinearity must be one of ('tanh', 'relu'). "
                f"Received: nonlinearity={nonlinearity!r}."
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, norm, T_max=T_max, bias=bias, device=device,
                         dtype=dtype)

    def step(self, gx: Tensor, h: Tensor, t: int) -> Tensor:
        """One update from the precomputed input term ``gx`` (:meth:`input_term`)."""
        return rnn_step(self._pre(gx, h, t), self.nonlinearity)

    def forward(self, x: Tensor, h: Tensor | None = None, t: int = 0) -> Tensor:
        self._check_one_step(x)
        _check_step(t)
        self._check_steps(t + 1)
        h = self._zeros(x) if h is None else h
        self._check_state("h", h, x.shape[0], x)
        return self.step(self.input_term(x, t), h, t)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")


# -- layers -----------------------------------------------------------------------------------
class _Layer(nn.Module):
    cell: _Cell

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[2] != self.cell.input_size:
            raise ValueError(
                f"{type(self).__name__} expects a {_SHAPE} input with "
                f"F = input_size = {self.cell.input_size}, i.e. shape (B, T, "
                f"{self.cell.input_size}). Received: input of shape {_shape(x)}."
            )
        if x.shape[1] < 1:
            raise ValueError(f"The sequence is empty. Received: input of shape {_shape(x)}.")
        cell = self.cell
        if cell._per_step and not cell._warned and x.shape[1] > cell.T_max:
            _warn_beyond(cell, f"{type(self).__name__} with norm {cell.norm!r}", x.shape[1])

    @property
    def input_size(self) -> int:
        return self.cell.input_size

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size


class LSTM(_Layer):
    """An LSTM layer over batch-first sequences, with a recurrent norm.

    ``lstm(x, (h0, c0)=None) -> (out, (h_T, c_T))`` with ``x`` of shape ``(B, T, F)``,
    ``out`` of shape ``(B, T, H)`` (every ``h_t``) and ``h_T, c_T`` of shape ``(B, H)``
    (torch's ``nn.LSTM`` returns them as ``(1, B, H)``). The cell is ``self.cell`` (an
    :class:`LSTMCell`; its parameters are ``cell.weight_ih`` ...). ``norm="none"`` equals
    ``nn.LSTM(F, H, batch_first=True)`` given the same weights. Arguments as
    :class:`LSTMCell`.
    """

    def __init__(self, input_size: int, hidden_size: int, norm: Any = "none", *,
                 T_max: int = 100, bias: bool = True, forget_bias: float | None = None,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.cell = LSTMCell(input_size, hidden_size, norm, T_max=T_max, bias=bias,
                             forget_bias=forget_bias, device=device, dtype=dtype)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        self._check_input(x)
        cell = self.cell
        B, T, _ = x.shape
        if state is None:
            h, c = x.new_zeros(B, cell.hidden_size), x.new_zeros(B, cell.hidden_size)
        else:
            h, c = state
            cell._check_state("h0", h, B, x)
            cell._check_state("c0", c, B, x)
        gx = cell.input_term(x)  # (B, T, 4H): all input terms in one matmul
        outs = []
        for t in range(T):
            h, c = cell.step(gx[:, t], (h, c), t)
            outs.append(h)
        return torch.stack(outs, dim=1), (h, c)


class RNN(_Layer):
    """An Elman RNN layer over batch-first sequences, with a recurrent norm.

    ``rnn(x, h0=None) -> (out, h_T)`` with ``x`` of shape ``(B, T, F)``, ``out`` ``(B, T, H)``
    and ``h_T`` ``(B, H)``. ``norm="none"`` equals ``nn.RNN(F, H, batch_first=True)`` (and
    its ``nonlinearity``) given the same weights. Arguments as :class:`RNNCell`.
    """

    def __init__(self, input_size: int, hidden_size: int, norm: Any = "none", *,
                 T_max: int = 100, bias: bool = True, nonlinearity: str = "tanh",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.cell = RNNCell(input_size, hidden_size, norm, T_max=T_max, bias=bias,
                            nonlinearity=nonlinearity, device=device, dtype=dtype)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_input(x)
        cell = self.cell
        B, T, _ = x.shape
        h = x.new_zeros(B, cell.hidden_size) if h0 is None else h0
        if h0 is not None:
            cell._check_state("h0", h, B, x)
        gx = cell.input_term(x)
        outs = []
        for t in range(T):
            h = cell.step(gx[:, t], h, t)
            outs.append(h)
        return torch.stack(outs, dim=1), h
