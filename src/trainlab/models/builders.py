"""Model builders (family ``model``): ``mlp``, ``convnet``, ``preact_resnet``, ``seq_classifier``.

Each builder takes a small spec — widths or channels, activation, norm, norm placement,
dropout, init — and returns a plain ``nn.Module`` whose submodules have stable, readable
names, so probes and reports can label layers::

    >>> m = mlp(784, [100, 100], 10, activation="tanh", norm="bn")
    >>> [n for n, _ in m.named_children()]
    ['flatten', 'block1', 'block2', 'head']
    >>> [n for n, _ in m.block1.named_children()]
    ['linear', 'norm', 'act']

Names (``i`` counts from 1, in forward order):

- ``mlp``: ``flatten`` (``input_drop`` when ``input_dropout > 0``), ``block{i}`` =
  ``linear``, ``norm``, ``act`` (``drop`` when ``dropout > 0``), then ``head`` (a ``Linear``).
- ``convnet``: ``block{i}`` = ``conv``, ``norm``, ``act``, ``pool`` (``drop``), then
  ``gap`` (global average pool), ``flatten``, ``head``.
- ``preact_resnet``: ``stem`` (a conv), ``block{i}`` = ``norm1``, ``act1``, ``conv1``,
  ``norm2``, ``act2``, (``drop``), ``conv2``, ``shortcut``, then ``norm``, ``act``, ``gap``,
  ``flatten``, ``head``.
- ``seq_classifier``: ``to_seq`` (reshapes a flat input into time steps), ``rnn{i}`` (an
  :class:`~trainlab.nn.recurrent.LSTM` or :class:`~trainlab.nn.recurrent.RNN` layer, its
  cell at ``rnn{i}.cell``), ``head`` (a ``Linear`` on the last hidden state).

Every block keeps its ``norm`` and ``act`` slots: ``norm="none"`` puts ``nn.Identity`` there,
so a layer has the same name in every variant of a sweep. Blocks are ``nn.Sequential``
containers, so their children run in the order they are listed: with ``placement="before"``
a block runs ``linear -> norm -> act``, with ``"after"`` ``linear -> act -> norm``.

Activations come from the ``activation`` registry by name (or ``(name, kwargs)``,
``{"name": ..., **kwargs}``, a class). An activation whose registry info says
``replaces_linear`` (maxout) is built as ``factory(in_features, out_features, **kwargs)`` and
takes the place of ``linear``; ``act`` is then ``Identity``. In ``convnet`` such a unit is a
convolution with ``k`` times the channels followed by a max over each group of ``k`` channels
(:class:`ConvMaxout`). Norms come from the ``norm`` registry; a norm of kind ``"weight"``
(weight normalization ``wn``, ``cwn``, ``normprop``) reparametrizes the layer instead, and
the ``norm`` slot holds ``Identity`` or the norm its registry meta names as ``slot``
(``wn_mobn``: mean-only BN; ``normprop``: the fixed ReLU standardization, whose meta also
forces ``placement="after"`` and a ReLU). See :mod:`trainlab.nn.norms`.

Dropout (Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014) follows torch's
convention: ``dropout`` is the probability of *dropping* a unit (``nn.Dropout(p)``), so the
paper's retain probability is ``1 - dropout`` (its ``p = 0.5`` for hidden units is
``dropout=0.5`` here, its input ``p = 0.8`` is ``input_dropout=0.2``). Scaling is *inverted*:
in training the kept units are multiplied by ``1 / (1 - dropout)``, and in eval mode the
network is used as it is, which equals the paper's test-time rule of multiplying the outgoing
weights by the retain probability (the "weight scaling inference rule"; see
:mod:`trainlab.engine.ensemble` for its comparison with Monte-Carlo averaging of masks).

``init`` is ``None`` (keep torch's default init), a scheme name, or a dict
``{"name": scheme, **options}``; it is applied by :func:`trainlab.init.init_model` after the
model is built.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.init import init_model
from trainlab.models.build import MODELS, build_model
from trainlab.models.memory import check_fits, estimate_memory
from trainlab.nn.blocks import (
    PreActBlock,
    _build_activation,
    _check_norm_for_vectors,
    _layer_and_norm,
    _linear_unit,
    _norm_placement,
    _replaces_linear,
    _spec_name,
)
from trainlab.nn.functional import maxout_pool
from trainlab.nn.norms import NORMS, check_placement, norm_kind, norm_layer
from trainlab.nn.recurrent import LSTM, RNN

__all__ = [
    "MODELS",
    "POOLS",
    "ConvMaxout",
    "ConvNet",
    "MLP",
    "PreActBlock",
    "PreActResNet",
    "SeqClassifier",
    "ToSequence",
    "build_model",
    "convnet",
    "mlp",
    "preact_resnet",
    "seq_classifier",
]


#: Pooling choices of ``convnet`` blocks.
POOLS = ("max", "avg", "none")


# -- argument checks -----------------------------------------------------------------------
def _check_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {kind}. Received: {name}={value!r}.")
    return value


def _check_widths(name: str, widths: Any, allow_empty: bool = True) -> list[int]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(
            f"{name} must be a sequence of positive integers (one per layer). "
            f"Received: {name}={widths!r}."
        )
    widths = list(widths)
    bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, int) or w < 1]
    if bad or (not widths and not allow_empty):
        raise ValueError(
            f"{name} must be a {'' if allow_empty else 'non-empty '}sequence of positive "
            f"integers. Received: {name}={widths!r}."
        )
    return widths


def _check_dropout(p: Any, name: str = "dropout") -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1). Received: {name}={p!r}.")
    return float(p)


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    v = value.strip().lower() if isinstance(value, str) else value
    if v not in allowed:
        raise ValueError(f"{name} must be one of {allowed}. Received: {name}={value!r}.")
    return v


# the units of a block (activation, norm, weight norm) live in trainlab.nn.blocks


def _block(
    layer_name: str,
    layer: nn.Module,
    norm: nn.Module,
    act: nn.Module,
    placement: str,
    extra: list[tuple[str, nn.Module]],
) -> nn.Sequential:
    """A block whose children run in the order listed (placement decides norm vs act)."""
    order = [("norm", norm), ("act", act)]
    if placement == "after":
        order.reverse()
    return nn.Sequential(OrderedDict([(layer_name, layer), *order, *extra]))


def _apply_init(model: nn.Module, init: Any) -> nn.Module:
    """Apply ``init`` with :func:`trainlab.init.init_model` (None keeps torch's default)."""
    if init is None:
        return model
    if isinstance(init, Mapping):
        # {"name": scheme, **options}: the options are init_model's (bias, generator,
        # overrides) and the scheme's keyword arguments together.
        options = dict(init)
        if "name" not in options:
            raise ValueError(
                "The init spec given as a mapping needs a 'name' key naming the scheme. "
                f"Received: init={init!r}."
            )
        init_model(model, options.pop("name"), **options)
    else:
        init_model(model, init)
    return model


# -- MLP -----------------------------------------------------------------------------------
class MLP(nn.Sequential):
    """A multilayer perceptron built by :func:`mlp`; ``spec`` holds its arguments."""

    spec: dict[str, Any]



_SIZE_ARGS = ("in_features", "widths", "out_features", "channels", "in_channels", "depth",
              "width", "k", "input_size", "hidden_size", "num_classes", "layers")


def _memory_checked(builder):
    """Build the model on the ``meta`` device first (no storage, microseconds) and refuse,
    naming the size arguments, when its parameters and gradients alone exceed the host's
    available memory — instead of an allocator error after minutes of swapping."""

    @functools.wraps(builder)
    def build(*args: Any, **kwargs: Any) -> nn.Module:
        if torch.empty(()).device.type != "meta":  # not already the meta pass
            # no init in the meta pass: sizes do not depend on it, and an init's generator
            # must not be advanced by draws on the meta device (the real pass would then get
            # other weights than the same seed gives)
            meta_kwargs = {**kwargs, "init": None} if "init" in kwargs else kwargs
            with torch.device("meta"):
                meta = builder(*args, **meta_kwargs)
            bound = inspect.signature(builder).bind(*args, **kwargs).arguments
            sizes = ", ".join(f"{k}={v!r}" for k, v in bound.items() if k in _SIZE_ARGS)
            check_fits(estimate_memory(meta, optimizer=None), "cpu",
                       f"{builder.__name__}({sizes})")
        return builder(*args, **kwargs)

    return build


@_memory_checked
def mlp(
    in_features: int | Sequence[int],
    widths: Sequence[int] | None = None,
    out_features: int | None = None,
    *,
    activation: Any = "relu",
    norm: Any = "none",
    placement: str = "before",
    dropout: float = 0.0,
    init: Any = None,
    bias: bool = True,
    input_dropout: float = 0.0,
) -> MLP:
    """A fully connected network: ``flatten``, ``block1..blockL``, ``head``.

    Two equivalent call forms: the list of every layer size, input to output
    (``mlp([784, 256, 256, 10], activation="tanh", norm="bn", init="xavier_uniform")``),
    or ``mlp(784, [256, 256], 10, ...)``. Without ``widths`` the hidden layers are
    ``[100, 100]``; without ``out_features`` the output has 10 units.

    Block ``i`` maps ``widths[i-2]`` (or ``in_features``) to ``widths[i-1]`` units with
    ``linear -> norm -> act`` (placement ``"before"``, as Ioffe & Szegedy 2015) or
    ``linear -> act -> norm`` (``"after"``), then ``drop`` when ``dropout > 0``. ``head`` is
    a ``Linear`` to ``out_features`` (no activation: logits). ``len(widths) + 1`` weight
    layers in all; ``widths=[]`` gives a linear model. Inputs of any shape ``(N, ...)`` are
    flattened first.

    Args:
        in_features: input size (after flattening).
        widths: hidden layer widths.
        out_features: output size.
        activation: activation name or spec (``"relu"``, ``("leaky_relu", {...})``, ...).
        norm: norm name or spec (``"none"``, ``"bn"``, ``"ln"``, ``"gn"`` ...).
        placement: ``"before"`` or ``"after"`` the nonlinearity.
        dropout: probability of dropping each unit after each block (torch's ``p``; the
            paper's retain probability is ``1 - dropout``; 0 = no ``drop`` module).
        init: ``None`` (torch's default), a scheme name or ``{"name": ..., **options}``.
        bias: whether hidden layers have biases (the head always has one).
        input_dropout: probability of dropping each input (after ``flatten``; 0 = none).
    """
    if isinstance(in_features, Sequence) and not isinstance(in_features, str):
        sizes = list(in_features)
        if widths is not None or out_features is not None:
            raise ValueError(
                "mlp takes either the list of all layer sizes or (in_features, widths, "
                f"out_features), not both. Received: {sizes!r}, widths={widths!r}, "
                f"out_features={out_features!r}."
            )
        if len(sizes) < 2:
            raise ValueError(
                "mlp's list of layer sizes needs at least the input and output sizes. "
                f"Received: {sizes!r}."
            )
        in_features, widths, out_features = sizes[0], sizes[1:-1], sizes[-1]
    widths = [100, 100] if widths is None else widths
    out_features = 10 if out_features is None else out_features
    spec = {
        "in_features": in_features,
        "widths": list(widths) if isinstance(widths, Sequence) else widths,
        "out_features": out_features,
        "activation": activation,
        "norm": norm,
        "placement": placement,
        "dropout": dropout,
        "input_dropout": input_dropout,
        "init": init,
        "bias": bias,
    }
    _check_int("in_features", in_features)
    _check_int("out_features", out_features)
    widths = _check_widths("widths", widths)
    placement = check_placement(placement)
    dropout = _check_dropout(dropout)
    input_dropout = _check_dropout(input_dropout, "input_dropout")

    _check_norm_for_vectors(norm)
    placement = _norm_placement(norm, placement, activation, "mlp")

    parts: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    if input_dropout > 0:
        parts.append(("input_drop", nn.Dropout(input_dropout)))
    prev = in_features
    for i, w in enumerate(widths, start=1):
        layer, act = _linear_unit(activation, prev, w, bias)
        layer, nrm = _layer_and_norm(norm, layer, w)
        extra = [("drop", nn.Dropout(dropout))] if dropout > 0 else []
        parts.append((f"block{i}", _block("linear", layer, nrm, act, placement, extra)))
        prev = w
    parts.append(("head", nn.Linear(prev, out_features)))
    model = MLP(OrderedDict(parts))
    model.spec = spec
    return _apply_init(model, init)


# -- ConvNet -------------------------------------------------------------------------------
class ConvMaxout(nn.Module):
    """A convolutional maxout unit: ``conv`` to ``out_channels * k`` channels, then the max
    over each group of ``k`` consecutive channels (Goodfellow et al. 2013)."""

    def __init__(self, conv: nn.Module, k: int) -> None:
        super().__init__()
        self.conv = conv
        self.k = _check_int("k", k, low=2)

    def forward(self, x: Tensor) -> Tensor:
        return maxout_pool(self.conv(x), self.k, dim=1)

    def extra_repr(self) -> str:
        return f"k={self.k}"


_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_POOL = {
    ("max", 1): nn.MaxPool1d,
    ("max", 2): nn.MaxPool2d,
    ("avg", 1): nn.AvgPool1d,
    ("avg", 2): nn.AvgPool2d,
}
_GAP = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}


def _conv_unit(
    activation: Any, dims: int, in_c: int, out_c: int, kernel_size: int, stride: int, bias: bool
) -> tuple[nn.Module, nn.Module]:
    """``(conv, act)``: a convolution and the activation, or a :class:`ConvMaxout` unit and
    ``Identity`` for an activation that replaces the linear layer."""
    conv_cls = _CONV[dims]
    pad = kernel_size // 2
    if _replaces_linear(activation):
        # Read k from the unit itself, so the registry's default k holds here too.
        probe = _build_activation(activation, 1, 1)
        k = int(probe.k)
        conv = conv_cls(in_c, out_c * k, kernel_size, stride=stride, padding=pad, bias=bias)
        return ConvMaxout(conv, k), nn.Identity()
    conv = conv_cls(in_c, out_c, kernel_size, stride=stride, padding=pad, bias=bias)
    return conv, _build_activation(activation)


class ConvNet(nn.Sequential):
    """A small CNN built by :func:`convnet`; ``spec`` holds its arguments."""

    spec: dict[str, Any]


@_memory_checked
def convnet(
    in_channels: int = 3,
    channels: Sequence[int] = (32, 64),
    out_features: int = 10,
    *,
    kernel_size: int = 3,
    pool: str = "max",
    activation: Any = "relu",
    norm: Any = "none",
    placement: str = "before",
    dropout: float = 0.0,
    init: Any = None,
    bias: bool = True,
    dims: int = 2,
) -> ConvNet:
    """A small CNN: ``block1..blockL`` (conv–norm–act–pool), ``gap``, ``flatten``, ``head``.

    Block ``i`` is a ``kernel_size`` convolution with "same" padding to ``channels[i-1]``
    channels, the norm before or after the activation, then a 2x2 pool (``"max"``, ``"avg"``,
    or ``"none"`` = no downsampling, an ``Identity`` at ``pool``) and ``drop`` when
    ``dropout > 0``. Global average pooling makes the head independent of the input size.
    ``dims=1`` builds the same net with 1-D convolutions for ``(N, C, L)`` signals.
    """
    spec = {
        "in_channels": in_channels,
        "channels": list(channels) if isinstance(channels, Sequence) else channels,
        "out_features": out_features,
        "kernel_size": kernel_size,
        "pool": pool,
        "activation": activation,
        "norm": norm,
        "placement": placement,
        "dropout": dropout,
        "init": init,
        "bias": bias,
        "dims": dims,
    }
    _check_int("in_channels", in_channels)
    _check_int("out_features", out_features)
    channels = _check_widths("channels", channels, allow_empty=False)
    _check_int("kernel_size", kernel_size)
    pool = _check_choice("pool", pool, POOLS)
    placement = check_placement(placement)
    dropout = _check_dropout(dropout)
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2. Received: dims={dims!r}.")
    placement = _norm_placement(norm, placement, activation, "convnet")

    parts: list[tuple[str, nn.Module]] = []
    prev = in_channels
    for i, c in enumerate(channels, start=1):
        layer, act = _conv_unit(activation, dims, prev, c, kernel_size, 1, bias)
        layer, nrm = _layer_and_norm(norm, layer, c)
        extra: list[tuple[str, nn.Module]] = [
            ("pool", nn.Identity() if pool == "none" else _POOL[(pool, dims)](2))
        ]
        if dropout > 0:
            extra.append(("drop", nn.Dropout(dropout)))
        parts.append((f"block{i}", _block("conv", layer, nrm, act, placement, extra)))
        prev = c
    parts += [
        ("gap", _GAP[dims](1)),
        ("flatten", nn.Flatten()),
        ("head", nn.Linear(prev, out_features)),
    ]
    model = ConvNet(OrderedDict(parts))
    model.spec = spec
    return _apply_init(model, init)


# -- pre-activation ResNet -----------------------------------------------------------------
class PreActResNet(nn.Module):
    """A CIFAR-sized pre-activation ResNet built by :func:`preact_resnet`."""

    def __init__(
        self,
        stem: nn.Module,
        blocks: list[nn.Module],
        head_in: int,
        norm: Any,
        activation: Any,
        out_features: int,
    ) -> None:
        super().__init__()
        self.stem = stem
        for i, b in enumerate(blocks, start=1):
            self.add_module(f"block{i}", b)
        self.num_blocks = len(blocks)
        self.norm = norm_layer(norm, head_in) if norm_kind(norm) != "weight" else nn.Identity()
        self.act = _build_activation(activation)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(head_in, out_features)
        self.spec: dict[str, Any] = {}

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for i in range(1, self.num_blocks + 1):
            x = getattr(self, f"block{i}")(x)
        return self.head(self.flatten(self.gap(self.act(self.norm(x)))))


@_memory_checked
def preact_resnet(
    depth: int = 20,
    out_features: int = 10,
    in_channels: int = 3,
    *,
    widths: Sequence[int] = (16, 32, 64),
    activation: Any = "relu",
    norm: Any = "bn",
    dropout: float = 0.0,
    init: Any = None,
    bias: bool | None = None,
) -> PreActResNet:
    """A CIFAR-sized pre-activation ResNet (He et al. 2016): ``depth = 6 n + 2``.

    ``stem`` (3x3 conv to ``widths[0]``), then ``n`` blocks per stage for each width in
    ``widths`` (the first block of stages 2.. halves the resolution with stride 2 and a
    projection shortcut), then ``norm``, ``act``, global average pool and a linear ``head``.
    Blocks are numbered through the stages: depth 20 has ``block1`` .. ``block9``. Each block
    runs norm -> act -> conv twice (``placement`` is fixed by the design). ``bias=None``
    gives convolutions a bias only when ``norm="none"`` (a norm makes it redundant). An
    activation that replaces the linear layer (maxout) is rejected here.
    """
    spec = {
        "depth": depth,
        "out_features": out_features,
        "in_channels": in_channels,
        "widths": list(widths) if isinstance(widths, Sequence) else widths,
        "activation": activation,
        "norm": norm,
        "dropout": dropout,
        "init": init,
        "bias": bias,
    }
    _check_int("depth", depth)
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(
            "depth must be 6n + 2 with n >= 1 (n blocks of two convolutions per stage): "
            f"8, 14, 20, 26, 32, 44, 56, 110 ... Received: depth={depth!r}."
        )
    _check_int("out_features", out_features)
    _check_int("in_channels", in_channels)
    widths = _check_widths("widths", widths, allow_empty=False)
    dropout = _check_dropout(dropout)
    if _replaces_linear(activation):
        raise ValueError(
            f"activation {activation!r} replaces the linear layer (maxout); preact_resnet "
            "applies the activation before each convolution and does not support it. Use it "
            "with mlp or convnet."
        )
    _norm_placement(norm, "before", activation, "preact_resnet")
    if bias is None:
        name = "none" if norm is None else _spec_name(norm)
        bias = name is not None and NORMS.get(name).name == "none"

    n = (depth - 2) // 6
    stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=bias)
    blocks: list[nn.Module] = []
    prev = widths[0]
    for s, w in enumerate(widths):
        for b in range(n):
            stride = 2 if (s > 0 and b == 0) else 1
            blocks.append(PreActBlock(prev, w, stride, activation, norm, dropout, bias))
            prev = w
    model = PreActResNet(stem, blocks, prev, norm, activation, out_features)
    model.spec = spec
    return _apply_init(model, init)


# -- sequence classifier -------------------------------------------------------------------
class ToSequence(nn.Module):
    """Read each example as a batch-first sequence ``(B, T, input_size)``.

    A ``(B, T, input_size)`` input passes unchanged. Any other ``(B, ...)`` input is
    flattened from dim 1 (row-major: an ``(N, 1, 28, 28)`` image becomes its 28 rows) and
    cut into ``D // input_size`` steps; ``D`` must be a multiple of ``input_size`` (and equal
    ``steps * input_size`` when ``steps`` is given). A rank-3 input whose last dimension is
    not ``input_size`` is rejected unless its dim 1 is a single channel ``(B, 1, L)``.
    """

    def __init__(self, input_size: int, steps: int | None = None) -> None:
        super().__init__()
        self.input_size = _check_int("input_size", input_size)
        self.steps = None if steps is None else _check_int("steps", steps)

    def forward(self, x: Tensor) -> Tensor:
        F = self.input_size
        if x.dim() == 3 and x.shape[2] == F and (self.steps is None or x.shape[1] == self.steps):
            return x
        want = f"(B, T, {F})" if self.steps is None else f"(B, {self.steps}, {F})"
        if x.dim() < 2 or (x.dim() == 3 and x.shape[2] != F and x.shape[1] != 1):
            raise ValueError(
                f"seq_classifier expects {want} sequences or flat (B, D) examples with D a "
                f"multiple of input_size={F}. Received: input of shape {tuple(x.shape)}."
            )
        D = math.prod(x.shape[1:])
        T = self.steps if self.steps is not None else D // F
        if D != T * F or T < 1:
            raise ValueError(
                f"seq_classifier reads each example as {want}: the {D} values of an input of "
                f"shape {tuple(x.shape)} do not make {'whole' if self.steps is None else T} "
                f"steps of input_size={F}"
                + ("." if self.steps is None else f" (shape (B, {T * F}) expected).")
            )
        return x.reshape(x.shape[0], T, F)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}" + (
            f", steps={self.steps}" if self.steps is not None else "")


class SeqClassifier(nn.Module):
    """A recurrent sequence classifier built by :func:`seq_classifier`; ``spec`` holds its
    arguments."""

    def __init__(self, to_seq: ToSequence, layers: list[nn.Module], head: nn.Linear) -> None:
        super().__init__()
        self.to_seq = to_seq
        for i, layer in enumerate(layers, start=1):
            self.add_module(f"rnn{i}", layer)
        self.num_layers = len(layers)
        self.head = head
        self.spec: dict[str, Any] = {}

    def forward(self, x: Tensor) -> Tensor:
        h = self.to_seq(x)
        for i in range(1, self.num_layers + 1):
            h, _ = getattr(self, f"rnn{i}")(h)
        return self.head(h[:, -1])


#: Recurrent cells of ``seq_classifier``.
CELLS = ("lstm", "rnn")


@_memory_checked
def seq_classifier(
    input_size: int,
    hidden_size: int = 64,
    num_classes: int = 10,
    *,
    cell: str = "lstm",
    norm: Any = "none",
    layers: int = 1,
    steps: int | None = None,
    T_max: int | None = None,
    forget_bias: float | None = None,
    bias: bool = True,
) -> SeqClassifier:
    """A recurrent classifier: ``to_seq``, ``rnn1..rnnL``, ``head`` on the last hidden state.

    Each example is read as a sequence of ``input_size`` features per step (see
    :class:`ToSequence`): MNIST rows are ``seq_classifier(28, ...)`` on ``(N, 1, 28, 28)``
    images (28 steps of 28 pixels); MNIST-1D as a sequence is ``seq_classifier(1, ...)``
    (40 steps of 1) or ``seq_classifier(4, ...)`` (10 steps of 4). ``layers`` recurrent layers
    of ``hidden_size`` units are stacked; the head maps ``h_T`` of the last one to
    ``num_classes`` logits.

    Args:
        input_size: features per time step.
        hidden_size: units of each recurrent layer.
        num_classes: outputs of the head.
        cell: ``"lstm"`` or ``"rnn"`` (Elman, tanh).
        norm: a ``recurrent_norm`` name or ``(name, {options})``: ``"none"`` (plain),
            ``"bn_frame"`` (Cooijmans et al. 2017), ``"bn_seq"`` (Laurent et al. 2016),
            ``"ln"`` (Ba et al. 2016); see :mod:`trainlab.nn.recurrent`.
        layers: stacked recurrent layers.
        steps: the number of time steps, when fixed (checked on every input).
        T_max: steps with their own statistics for ``bn_frame``; default ``steps``, else 100.
        forget_bias: initial forget-gate bias of LSTM cells (``None``: torch's init).
        bias: biases in the recurrent cells (the head always has one).
    """

    spec = {
        "input_size": input_size, "hidden_size": hidden_size, "num_classes": num_classes,
        "cell": cell, "norm": norm, "layers": layers, "steps": steps, "T_max": T_max,
        "forget_bias": forget_bias, "bias": bias,
    }
    _check_int("input_size", input_size)
    _check_int("hidden_size", hidden_size)
    _check_int("num_classes", num_classes)
    _check_int("layers", layers)
    cell = _check_choice("cell", cell, CELLS)
    if steps is not None:
        _check_int("steps", steps)
    T_max = _check_int("T_max", T_max) if T_max is not None else (steps or 100)
    if forget_bias is not None and cell != "lstm":
        raise ValueError(
            f"forget_bias is an LSTM option. Received: forget_bias={forget_bias!r}, cell={cell!r}."
        )
    rnns: list[nn.Module] = []
    prev = input_size
    for _ in range(layers):
        if cell == "lstm":
            rnns.append(LSTM(prev, hidden_size, norm, T_max=T_max, bias=bias,
                             forget_bias=forget_bias))
        else:
            rnns.append(RNN(prev, hidden_size, norm, T_max=T_max, bias=bias))
        prev = hidden_size
    model = SeqClassifier(ToSequence(input_size, steps), rnns, nn.Linear(prev, num_classes))
    model.spec = spec
    return model


# -- registry and config entry point -------------------------------------------------------
MODELS.add(
    "mlp",
    mlp,
    description="multilayer perceptron: flatten, blocks of linear/norm/act, linear head",
    reference="Rumelhart, Hinton & Williams 1986",
    meta={"input": "(N, ...) flattened to (N, in_features)"},
)
MODELS.add(
    "convnet",
    convnet,
    description="small CNN: conv/norm/act/pool blocks, global average pool, linear head",
    reference="LeCun et al. 1998",
    aliases=("cnn",),
    meta={"input": "(N, C, H, W) (or (N, C, L) with dims=1)"},
)
MODELS.add(
    "preact_resnet",
    preact_resnet,
    description="CIFAR-sized pre-activation ResNet (depth 6n+2, widths 16/32/64)",
    reference="He, Zhang, Ren & Sun 2016 (Identity Mappings in Deep Residual Networks)",
    aliases=("resnet",),
    meta={"input": "(N, C, H, W), e.g. 32x32"},
)
MODELS.add(
    "seq_classifier",
    seq_classifier,
    description="recurrent sequence classifier: LSTM or Elman RNN with a recurrent norm "
    "(none, bn_frame, bn_seq, ln), linear head on the last hidden state",
    reference="Hochreiter & Schmidhuber 1997; Cooijmans et al. 2017; Laurent et al. 2016; "
    "Ba et al. 2016",
    aliases=("rnn_classifier", "lstm_classifier"),
    meta={"input": "(N, T, input_size) or flat (N, T * input_size), e.g. MNIST rows"},
)


