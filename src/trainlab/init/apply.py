"""Apply an initialization scheme to every weight of any ``nn.Module``.

:func:`init_model` walks ``model.named_modules()`` and initializes, on models trainlab built
and on any other:

- the ``weight`` (and the ``bias``) of every weight layer
  (:func:`trainlab.nn.kinds.is_weight_layer`) but ``nn.Embedding``: ``nn.Linear``,
  ``nn.Bilinear``, ``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d`` and trainlab's
  ``WhitenedLinear``, with the fans torch computes for their weight. A maxout layer holds its
  pieces in one plain ``nn.Linear`` named ``linear`` (contract C1), so it is found as such;
- recurrent layers ``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` and their cells **gate by gate**:
  ``weight_ih_l{k}`` of shape ``(G·H, in)`` and ``weight_hh_l{k}`` of shape ``(G·H, H)`` hold
  ``G`` stacked gate matrices (LSTM: i, f, g, o; GRU: r, z, n; RNN: one), and each ``(H, in)``
  or ``(H, H)`` block gets the scheme with its own fans — the fans a separate layer per gate
  would have (Glorot & Bengio's fan rule; Keras initializes its gates the same way). Biases
  follow ``bias`` (default 0; an LSTM forget-gate bias of 1, Jozefowicz et al. 2015, is one
  override away: ``bias=`` applies to all gates alike). ``weight_hr_l{k}`` (LSTM
  projections) is one matrix;
- ``nn.MultiheadAttention``'s packed ``in_proj_weight`` ``(3E, E)`` **as three matrices**
  q, k, v, each ``(E, E)`` with ``fan_in = fan_out = E`` (as three ``nn.Linear(E, E)``
  would be; torch's own ``_reset_parameters`` draws Xavier over the packed matrix, whose
  fan_out is 3E); ``q/k/v_proj_weight`` when the dimensions differ; ``in_proj_bias`` follows
  ``bias``; ``out_proj`` is an ``nn.Linear``.

Left as they are, by rule:

- the scale and shift of normalization layers (:func:`trainlab.nn.kinds.is_norm`:
  BatchNorm, LayerNorm, GroupNorm, ...: 1 and 0 at construction) and the parameters of
  activations (PReLU's slope, Swish's β): their own initial values are the ones the papers
  prescribe; no warning;
- ``nn.Embedding`` weights (a lookup table has no fan_in: its scale is a modelling choice —
  torch draws N(0, 1), transformer codebases N(0, 0.02²)) and free parameters of custom
  modules (a ViT's ``cls_token`` and ``pos_embed``, attention's ``bias_k``/``bias_v``): left,
  and named in **one** ``UserWarning`` that says how to set them.

Overrides are fnmatch patterns on qualified names. They match a layer's module name or the
name of a module containing it, and also a tensor's own name: ``"lstm.weight_hh_l0"`` (all its
gates), ``"lstm.weight_hh_l0.f"`` (one gate), ``"*.in_proj_weight.q"``, ``"pos_embed"``,
``"embed"``. A parameter shared by several modules (tied weights) is initialized once, by the
first module in ``named_modules()`` order whose rule initializes it::

    init_model(model, "he_normal", bias=0.0,
               overrides={"block1.*": "orthogonal", "head": ("normal", {"std": 0.01})},
               generator=0)

A scheme (for the whole model, an override or the bias) is given as

- a registered name: ``"xavier_uniform"`` (see ``trainlab list init``);
- a ``(name, kwargs)`` pair: ``("normal", {"std": 0.05})``;
- a dict with a ``"name"`` key: ``{"name": "he_normal", "mode": "fan_out"}``;
- a callable ``fn(weight, generator=None)`` filling ``weight`` in place (``generator`` is
  passed when the callable takes it, e.g. ``torch.nn.init.kaiming_normal_``).

Model-level schemes (:mod:`trainlab.init.data_dependent`) take the whole model instead of
one tensor: ``init_model(model, "lsuv", data=x)`` (LSUV), ``"data_dependent"`` (Kraehenbuehl
et al.), both of which need a batch of inputs ``data=``, and ``"fixup"`` (residual networks;
``branches=`` names them). Their keyword arguments are the scheme's; ``overrides=`` and
``activation=`` do not apply to them.
"""

from __future__ import annotations

import fnmatch
import inspect
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from trainlab.init.schemes import INITS
from trainlab.nn.activations import activation_info
from trainlab.nn.kinds import WEIGHT_LAYER_TYPES, is_norm, is_weight_layer, weight_layers
from trainlab.nn.weight_norm import is_weight_normalized
from trainlab.registry import check_keywords

__all__ = ["WEIGHT_LAYER_TYPES", "ResolvedInit", "init_model", "model_level_entry", "resolve_init",
           "weight_layers"]

# WEIGHT_LAYER_TYPES and weight_layers are trainlab.nn.kinds' (re-exported): init_model gives
# the scheme to every weight layer but nn.Embedding (a lookup table: no fan-in).
_LAYER_TYPES_TEXT = (
    "the weight layers with a fan-in: nn.Linear, nn.Bilinear, nn.Conv1d/2d/3d, "
    "nn.ConvTranspose1d/2d/3d and trainlab's WhitenedLinear (a maxout layer's pieces are the "
    "nn.Linear named 'linear' inside it)"
)


# -- scheme specs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedInit:
    """An initializer ready to call as ``init(tensor, generator=None)``.

    Attributes:
        name: registered name, or the callable's ``__name__``.
        fn: the in-place function.
        kwargs: keyword arguments passed to ``fn`` besides the tensor and the generator.
        takes_generator: whether ``fn`` accepts ``generator=``.
        takes_gain: whether ``fn`` accepts ``gain=`` (used by ``activation=``).
        needs_fans: whether ``fn`` needs a tensor with ≥ 2 dimensions (unknown for a
            callable: assumed False).
    """

    name: str
    fn: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    takes_generator: bool = True
    takes_gain: bool = False
    needs_fans: bool = False

    def __call__(
        self, tensor: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        kw = dict(self.kwargs)
        if self.takes_generator:
            kw["generator"] = generator
        elif generator is not None:
            warnings.warn(
                f"init {self.name!r} takes no generator= argument; its random draws come "
                "from torch's global RNG, so the result is not fixed by the generator.",
                stacklevel=3,
            )
        with torch.no_grad():
            self.fn(tensor, **kw)  # in place; a returned value is ignored
        return tensor

    def with_kwargs(self, **kwargs: Any) -> ResolvedInit:
        """The same initializer with ``kwargs`` added (checked against the signature)."""
        _check_kwargs(self.name, self.fn, kwargs)
        return ResolvedInit(self.name, self.fn, {**self.kwargs, **kwargs},
                            self.takes_generator, self.takes_gain, self.needs_fans)


def _parameters(fn: Callable[..., Any]) -> tuple[list[str], bool]:
    """Names ``fn`` accepts after its first (tensor) argument, and whether it takes **kw."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: accept anything
        return [], True
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    names = [p.name for p in params[1:]
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, var_kw


def _check_kwargs(name: str, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    names, var_kw = _parameters(fn)
    if var_kw:
        return
    allowed = [n for n in names if n != "generator"]
    for k in kwargs:
        if k not in allowed:
            takes = ", ".join(allowed) if allowed else "no keyword arguments"
            raise ValueError(
                f"init {name!r} takes no argument {k!r}. It takes: {takes}. "
                f"Received: {k}={kwargs[k]!r}."
            )


def resolve_init(spec: Any, **kwargs: Any) -> ResolvedInit:
    """Turn a scheme spec (name, ``(name, kwargs)``, dict with ``"name"``, callable) into a
    :class:`ResolvedInit`; ``kwargs`` are added to the spec's own keyword arguments.

    Raises:
        ValueError: unknown name (with close matches), a data-dependent scheme, a keyword
            argument the scheme does not take, a dict without ``"name"``.
        TypeError: anything else than the forms above.
    """
    resolved = INITS.resolve(spec)
    if resolved is not None:
        entry, spec_kwargs = resolved
        spec = entry.name
    else:
        spec_kwargs = {}
    kw = {**spec_kwargs, **kwargs}

    if isinstance(spec, str):
        entry = INITS.get(spec)
        if entry.meta.get("data_dependent", False) or entry.meta.get("applies_to") == "model":
            need = " and a batch of data (data=x)" if entry.meta.get("data_dependent") else ""
            raise ValueError(
                f"init {entry.name!r} is data-dependent or applies to a whole model: it needs "
                f"the model{need}, so it cannot initialize one tensor (an override, a bias). "
                f"Use init_model(model, {entry.name!r}{', data=x' if need else ''}). "
                f"Received: {spec!r}."
            )
        kw = {**entry.defaults, **kw}
        fn, name, needs_fans = entry.factory, entry.name, bool(entry.meta.get("needs_fans"))
    elif callable(spec) and not isinstance(spec, type):
        fn, name, needs_fans = spec, getattr(spec, "__name__", repr(spec)), False
    else:
        raise TypeError(
            "an init must be a registered name, a (name, kwargs) pair, a dict with 'name', "
            f"or a callable fn(weight, generator=None). Received: {spec!r} "
            f"of type {type(spec).__name__}."
        )
    _check_kwargs(name, fn, kw)
    names, var_kw = _parameters(fn)
    return ResolvedInit(
        name=name,
        fn=fn,
        kwargs=kw,
        takes_generator=var_kw or "generator" in names,
        takes_gain=var_kw or "gain" in names,
        needs_fans=needs_fans,
    )


def _resolve_bias(bias: Any) -> ResolvedInit | None:
    if bias is None:
        return None
    if isinstance(bias, bool):
        raise TypeError(
            "bias must be a number (constant), an init scheme, or None (leave biases). "
            f"Received: bias={bias!r}."
        )
    if isinstance(bias, numbers.Real):
        return resolve_init("constant", value=float(bias))
    init = resolve_init(bias)
    if init.needs_fans:
        raise ValueError(
            f"bias init {init.name!r} needs a weight with fan_in/fan_out (2 or more "
            "dimensions); a bias is a vector. Give a number, 'zeros', 'constant', 'normal', "
            f"'uniform' or None. Received: bias={bias!r}."
        )
    return init


def _activation_gain(activation: str) -> float:
    gain = activation_info(activation).gain
    if gain is None:
        raise ValueError(
            f"activation {activation!r} has no recommended gain; give gain= explicitly. "
            f"Received: activation={activation!r}."
        )
    return float(gain)


def _as_generator(generator: Any) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, numbers.Integral) \
            or generator < 0:
        raise TypeError(
            "generator must be a torch.Generator, a non-negative integer seed or None. "
            f"Received: generator={generator!r}."
        )
    return torch.Generator().manual_seed(int(generator))


def _pattern_matches(pattern: str, name: str) -> bool:
    """``pattern`` matches the layer's name or the name of a module containing it."""
    parts = name.split(".")
    return any(fnmatch.fnmatchcase(".".join(parts[:i]), pattern)
               for i in range(len(parts), 0, -1))


# -- applying -------------------------------------------------------------------------------
#: gate names of the stacked blocks of torch's recurrent weights, by ``mode``
_GATES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n"), "RNN_TANH": ("h",),
          "RNN_RELU": ("h",)}
_CELL_GATES = {nn.LSTMCell: _GATES["LSTM"], nn.GRUCell: _GATES["GRU"], nn.RNNCell: ("h",)}


@dataclass
class _Target:
    """One tensor (or one gate block of it) :func:`init_model` may write.

    ``kind``: ``"weight"`` (gets the scheme), ``"bias"`` (gets ``bias``), ``"left"`` (an
    Embedding or free parameter: only an override initializes it).
    """

    name: str            # what override patterns match
    module: nn.Module
    pname: str
    kind: str
    block: tuple[int, int] | None = None  # rows [start, stop) of the parameter
    owner: str = ""      # the layer a "weight"/"bias" target belongs to, for messages

    @property
    def key(self) -> tuple:
        """Identifies the tensor written, so that a parameter shared by two modules (tied
        weights) is initialized once. A registered parameter is keyed by the object, which
        tied modules share. A computed weight (weight normalization, a parametrization) is a
        fresh tensor on every access whose id() a later one may reuse once it is freed: it is
        keyed by its module instead (alive throughout, so the id is unique)."""
        if self.pname in self.module._parameters:
            return ("parameter", id(self.module._parameters[self.pname]), self.block)
        return ("computed", id(self.module), self.pname, self.block)


def _is_norm(module: nn.Module) -> bool:
    """A norm layer or a weight-normalized layer (what Fixup's branch check in
    :mod:`trainlab.init.data_dependent` asks): :func:`trainlab.nn.kinds.is_norm`,
    :func:`trainlab.nn.weight_norm.is_weight_normalized`."""
    return is_norm(module) or is_weight_normalized(module)


def _is_activation(module: nn.Module) -> bool:
    return activation_info(module) is not None


def _blocks(tensor: torch.Tensor, gates: tuple[str, ...]) -> list[tuple[str, tuple[int, int]]]:
    h = tensor.shape[0] // len(gates)
    return [(g, (k * h, (k + 1) * h)) for k, g in enumerate(gates)]


def _targets(model: nn.Module) -> tuple[list[_Target], list[tuple[str, str]]]:
    """Every tensor init_model can write, in ``named_modules()`` order, and the parameters it
    leaves by rule without a word (norm and activation parameters), as ``(name, why)``."""
    out: list[_Target] = []
    quiet: list[tuple[str, str]] = []
    for mname, m in model.named_modules():
        prefix = f"{mname}." if mname else ""
        own = dict(m.named_parameters(recurse=False))
        done: set[str] = set()
        if is_weight_layer(m) and not isinstance(m, nn.Embedding):  # a lookup table: below
            out.append(_Target(mname, m, "weight", "weight", owner=mname))
            if getattr(m, "bias", None) is not None:
                out.append(_Target(mname, m, "bias", "bias", owner=mname))
            done |= {"weight", "bias"}
            # weight-normalized layers (trainlab.nn.weight_norm): weight is set through them
            sources = tuple(getattr(m, "weight_sources", ()))
            quiet += [(prefix + n, "weight normalization (set through weight)") for n in sources]
            done |= set(sources)
        elif isinstance(m, (nn.RNNBase, nn.RNNCellBase)):
            gates = _GATES.get(getattr(m, "mode", ""), None) or next(
                (g for t, g in _CELL_GATES.items() if isinstance(m, t)), ("h",))
            for pname, p in own.items():
                tname = prefix + pname
                if pname.startswith(("weight_ih", "weight_hh")):
                    out += [_Target(f"{tname}.{g}", m, pname, "weight", b, mname)
                            for g, b in _blocks(p, gates)]
                elif pname.startswith("weight_hr"):
                    out.append(_Target(tname, m, pname, "weight", owner=mname))
                elif pname.startswith("bias"):
                    out.append(_Target(tname, m, pname, "bias", owner=mname))
                else:
                    continue
                done.add(pname)
        elif isinstance(m, nn.MultiheadAttention):
            for pname, p in own.items():
                tname = prefix + pname
                if pname == "in_proj_weight":
                    out += [_Target(f"{tname}.{g}", m, pname, "weight", b, mname)
                            for g, b in _blocks(p, ("q", "k", "v"))]
                elif pname in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                    out.append(_Target(tname, m, pname, "weight", owner=mname))
                elif pname == "in_proj_bias":
                    out.append(_Target(tname, m, pname, "bias", owner=mname))
                else:
                    continue
                done.add(pname)
        elif isinstance(m, nn.Embedding):
            out.append(_Target(prefix + "weight", m, "weight", "left", owner=mname))
            done.add("weight")
        elif isinstance(m, parametrize.ParametrizationList):
            # the originals of a parametrized tensor: set through its owner's right_inverse
            quiet += [(prefix + n, "parametrization") for n in own]
            done |= set(own)
        elif own and (is_norm(m) or _is_activation(m)):
            why = "normalization" if is_norm(m) else "activation"
            quiet += [(prefix + n, why) for n in own]
            done |= set(own)
        for pname in own:
            if pname not in done:
                out.append(_Target(prefix + pname, m, pname, "left", owner=mname))
    return out, quiet


def _check_settable(module: nn.Module, pname: str, layer: str) -> None:
    if isinstance(getattr(module, pname), nn.parameter.UninitializedParameter):
        raise ValueError(
            f"layer {layer!r} ({type(module).__name__}) has uninitialized lazy "
            "parameters; run one forward pass before init_model."
        )
    derived_ok = pname == "weight" and getattr(module, "settable_weight", False)
    if not parametrize.is_parametrized(module, pname) and pname not in module._parameters \
            and not derived_ok:  # fmt: skip
        # e.g. the deprecated hook-based nn.utils.weight_norm, which recomputes `weight` from
        # weight_g and weight_v before every forward: writing into it would be undone.
        raise ValueError(
            f"layer {layer!r} ({type(module).__name__}): its {pname} is not a parameter but "
            "derived from others (hook-based torch.nn.utils.weight_norm?), so an init written "
            "into it would be lost. Initialize before wrapping, or use "
            "torch.nn.utils.parametrizations.weight_norm."
        )


def _init_parameter(
    module: nn.Module,
    pname: str,
    init: ResolvedInit,
    generator: torch.Generator | None,
    layer: str,
    block: tuple[int, int] | None = None,
) -> None:
    full = getattr(module, pname)
    tensor = full if block is None else full[block[0]:block[1]]
    derived = pname == "weight" and getattr(module, "settable_weight", False)
    is_param = parametrize.is_parametrized(module, pname) or derived
    if is_param and block is not None:
        raise ValueError(
            f"{layer!r}: {pname} is parametrized, so init_model cannot set one gate block of "
            "it; initialize it before adding the parametrization."
        )
    # Draw on the generator's device (and in float32 for half types) so that one seed gives
    # the same weights whatever device or dtype the model is on; then copy into place.
    draw_device = generator.device if generator is not None else tensor.device
    draw_dtype = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) \
        else tensor.dtype
    direct = not is_param and draw_device == tensor.device and draw_dtype == tensor.dtype
    with torch.no_grad():
        if direct:
            if block is None:
                init(tensor, generator)
            else:  # a contiguous buffer: initializers may assume one (orthogonal's copy_)
                buf = torch.empty(tensor.shape, dtype=draw_dtype, device=draw_device)
                init(buf, generator)
                tensor.copy_(buf)
            return
        buf = torch.empty(tensor.shape, dtype=draw_dtype, device=draw_device)
        init(buf, generator)
        buf = buf.to(device=tensor.device, dtype=tensor.dtype)
        if not is_param:
            tensor.copy_(buf)
            return
        if derived:  # weight-normalized layer: it decides what the init sets (v, g)
            module.init_weight_(buf)
            return
        try:
            setattr(module, pname, buf)  # goes through the parametrization's right_inverse
        except NotImplementedError as e:
            raise ValueError(
                f"layer {layer!r} has a parametrized {pname} without right_inverse, so "
                f"init_model cannot set it; initialize it by hand. ({e})"
            ) from e


_LEFT_HOW = (
    "Set them with overrides={pattern: scheme}, e.g. overrides={'embed': ('normal', "
    "{'std': 0.02}), 'pos_embed': ('normal', {'std': 0.02})}, or silence this with "
    "overrides={pattern: None}."
)


def model_level_entry(spec: Any) -> tuple[Any, dict[str, Any]] | None:
    """``(entry, kwargs)`` when ``spec`` names a model-level scheme (``lsuv``,
    ``data_dependent``, ``fixup``: ``meta["applies_to"] == "model"``), else ``None``."""
    if isinstance(spec, type) or (callable(spec) and not isinstance(spec, str)):
        return None
    try:
        resolved = INITS.resolve(spec)
    except (ValueError, TypeError):
        return None
    if resolved is None:
        return None
    entry, kw = resolved
    if entry.meta.get("applies_to") != "model" and not entry.meta.get("data_dependent"):
        return None
    return entry, dict(kw)


def _init_model_level(model: nn.Module, entry: Any, spec_kwargs: dict[str, Any], bias: Any,
                      overrides: Any, activation: Any, data: Any, generator: Any,
                      kwargs: dict[str, Any]) -> nn.Module:
    name = entry.name
    if entry.meta.get("data_dependent") and data is None:
        raise ValueError(
            f"init {name!r} is data-dependent: it needs a batch of inputs. Pass data=x (a "
            f"tensor of inputs, or an (x, y) pair): init_model(model, {name!r}, data=x). "
            "Received: data=None."
        )
    if overrides:
        raise ValueError(f"init {name!r} initializes the whole model; overrides= does not "
                         f"apply to it. Received: overrides={dict(overrides)!r}.")
    if activation is not None:
        raise ValueError(f"init {name!r} takes no activation= (it sets its own scales). "
                         f"Received: activation={activation!r}.")
    if not (isinstance(bias, numbers.Real) and not isinstance(bias, bool) and bias == 0):
        raise ValueError(f"init {name!r} sets the biases itself; bias= is not supported. "
                         f"Received: bias={bias!r}.")
    kw = {**entry.defaults, **spec_kwargs, **kwargs}
    check_keywords(f"init {name!r}", kw, entry.factory, skip=("model", "data", "generator"))
    entry.factory(model, data, generator=_as_generator(generator), **kw)
    return model


def init_model(
    model: nn.Module,
    scheme: Any,
    bias: Any = 0.0,
    *,
    overrides: Mapping[str, Any] | None = None,
    activation: str | None = None,
    generator: torch.Generator | int | None = None,
    data: Any = None,
    **kwargs: Any,
) -> nn.Module:
    """Initialize every Linear, Conv, recurrent, attention and maxout weight of ``model``.

    The rules for each kind of layer, and what is left as it is, are in the module
    docstring: recurrent weights gate by gate, attention's packed projection as q, k, v;
    Embedding weights and free parameters are left and named in one ``UserWarning`` unless an
    override sets them.

    Args:
        model: any ``nn.Module``.
        scheme: the weights' init: a name (``"he_normal"``), ``(name, kwargs)``, a dict with
            ``"name"``, or a callable ``fn(weight, generator=None)``.
        bias: a number (every bias set to that constant; default 0), an init scheme (e.g.
            ``("normal", {"std": 0.01})``), or ``None`` to leave biases as they are.
        overrides: ``{pattern: scheme}``; a pattern (fnmatch, e.g. ``"block1.*"``,
            ``"head"``, ``"lstm.weight_hh_l0.f"``, ``"pos_embed"``) matches a tensor when it
            matches the tensor's name, its layer's name or the name of a module containing
            it; the first matching pattern (in the mapping's order) gives that tensor's
            scheme (biases keep ``bias``), and ``None`` leaves it (and its layer's bias)
            untouched. ``kwargs`` and ``activation`` do not apply to overrides.
        activation: name of the nonlinearity that follows the layers; its recommended gain
            (``trainlab.nn.activation_info(name).gain``) is passed as ``gain=`` to a scheme
            that takes one (xavier_*, he_*, orthogonal).
        generator: a ``torch.Generator`` or an integer seed; tensors are drawn in
            ``named_modules()`` order, so one seed fixes the whole model (the same weights on
            CPU and GPU when the generator is a CPU one).
        data: a batch of inputs (or ``(x, y)``) for the data-dependent schemes (``"lsuv"``,
            ``"data_dependent"``); a model-level scheme gets the model and ``data`` and does
            the rest (see :mod:`trainlab.init.data_dependent`; its report comes from calling
            :func:`~trainlab.init.lsuv_` etc. directly). Ignored, with a warning, by the
            per-tensor schemes.
        **kwargs: keyword arguments for ``scheme`` (e.g. ``std=0.05``, ``mode="fan_out"``;
            ``tol=0.05`` for LSUV, ``branches="layer*.*"`` for Fixup).

    Returns:
        ``model``, initialized in place.

    Raises:
        ValueError: no weight of the kinds above in ``model``; an override pattern that
            matches nothing, or only tensors taken by earlier patterns; an unknown scheme
            name (with close matches); a keyword argument the scheme does not take;
            ``activation`` with a scheme without gain or with ``gain=`` also given; lazy
            layers not yet run; a weight derived from other parameters by hooks. Every check
            runs before any tensor is written.
        TypeError: ``model`` is not an ``nn.Module``; a malformed spec.

    Warns:
        UserWarning: once, naming every parameter left as it was that no rule covers
            (Embedding weights, free parameters).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"init_model needs an nn.Module. Received: {type(model).__name__}.")
    level = model_level_entry(scheme)
    if level is not None:
        return _init_model_level(model, level[0], level[1], bias, overrides, activation, data,
                                 generator, kwargs)
    if data is not None:
        warnings.warn(
            f"init_model: data= is used only by data-dependent schemes (lsuv, "
            f"data_dependent); {scheme!r} ignores it.", UserWarning, stacklevel=2)
    targets, _quiet = _targets(model)
    if not any(t.kind == "weight" for t in targets):
        raise ValueError(
            f"init_model found no layer to initialize in {type(model).__name__}: it looks "
            f"for {_LAYER_TYPES_TEXT}, recurrent layers (nn.RNN/LSTM/GRU and cells) and "
            "nn.MultiheadAttention."
        )

    main = resolve_init(scheme, **kwargs)
    if activation is not None:
        if "gain" in main.kwargs:
            raise ValueError(
                "give activation= or gain=, not both. "
                f"Received: activation={activation!r}, gain={main.kwargs['gain']!r}."
            )
        if not main.takes_gain:
            raise ValueError(
                f"activation= sets a gain, but init {main.name!r} takes none; use one of "
                f"xavier_uniform, xavier_normal, he_normal, he_uniform, orthogonal. "
                f"Received: activation={activation!r}."
            )
        main = main.with_kwargs(gain=_activation_gain(activation))
    bias_init = _resolve_bias(bias)

    rules: list[tuple[str, ResolvedInit | None]] = []
    for pattern, spec in (overrides or {}).items():
        if not isinstance(pattern, str):
            raise TypeError(
                f"override patterns must be strings (module or parameter names, fnmatch). "
                f"Received: {pattern!r}."
            )
        rules.append((pattern, None if spec is None else resolve_init(spec)))

    # Decide every tensor's init first, so that a bad pattern raises before anything changes.
    # A bias is matched by its own name and its layer's: None leaves it, a scheme gives it
    # ``bias`` (an override's scheme is for weights).
    plan: list[tuple[_Target, ResolvedInit]] = []
    used: set[str] = set()
    silenced: set[tuple] = set()
    for t in targets:
        rule: tuple[str, ResolvedInit | None] | None = None
        for pattern, init in rules:
            if _pattern_matches(pattern, t.name) or (t.owner and t.kind == "bias"
                                                     and _pattern_matches(pattern, t.owner)):
                rule = (pattern, init)
                used.add(pattern)
                break
        if rule is not None and rule[1] is None:
            silenced.add(t.key)
            continue
        if t.kind == "bias":
            if bias_init is not None:
                plan.append((t, bias_init))
        elif rule is not None:
            plan.append((t, rule[1]))
        elif t.kind == "weight":
            plan.append((t, main))
    for pattern, _ in rules:
        if pattern in used:
            continue
        hits = list(dict.fromkeys(t.owner if t.kind == "weight" and t.block is None
                                  else t.name for t in targets
                                  if _pattern_matches(pattern, t.name)))
        if hits:
            raise ValueError(
                f"override pattern {pattern!r} is shadowed: the layers it matches "
                f"({', '.join(map(repr, hits[:8]))}) are all taken by earlier patterns (the "
                "first match wins); put it before them."
            )
        layer_names = list(dict.fromkeys(t.owner for t in targets if t.kind == "weight"))
        others = [t.name for t in targets if t.kind == "left"]
        raise ValueError(
            f"override pattern {pattern!r} matches no layer to initialize. "
            f"The layers are: {', '.join(map(repr, layer_names))}."
            + (f" Other parameters: {', '.join(map(repr, others))}." if others else "")
            + " Gate blocks are named like 'lstm.weight_hh_l0.f', attention's packed "
            "projection like 'attn.in_proj_weight.q'."
        )
    for t, _ in plan:
        _check_settable(t.module, t.pname, t.owner or t.name)

    gen = _as_generator(generator)
    written: set[tuple] = set()
    for t, init in plan:
        if t.key in written:  # a tied parameter: initialized by its first module
            continue
        _init_parameter(t.module, t.pname, init, gen, t.owner or t.name, t.block)
        written.add(t.key)
    left = [t for t in targets if t.kind == "left"
            and t.key not in written and t.key not in silenced]
    if left:
        kinds = ["nn.Embedding" if isinstance(t.module, nn.Embedding) else "free parameter"
                 for t in left]
        names = ", ".join(f"{t.name} ({k})" for t, k in zip(left, kinds))
        warnings.warn(
            f"init_model left {len(left)} parameter(s) as they were: {names}. An embedding "
            f"table has no fan_in and a free parameter no known role, so {main.name!r} does "
            f"not apply to them. {_LEFT_HOW}",
            UserWarning, stacklevel=2,
        )
    return model
