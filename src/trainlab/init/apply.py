"""Apply an initialization scheme to every weight layer of any ``nn.Module``.

:func:`init_model` walks ``model.named_modules()`` and initializes the ``weight`` (and,
on request, the ``bias``) of every ``nn.Linear``, ``nn.Conv1d/2d/3d`` and
``nn.ConvTranspose1d/2d/3d`` — on models trainlab built and on any other. A maxout layer holds
its pieces in one plain ``nn.Linear`` named ``linear`` (contract C1), so it is found as such.
Per-layer overrides are fnmatch patterns on the module names::

    init_model(model, "he_normal", bias=0.0,
               overrides={"block1.*": "orthogonal", "head": ("normal", {"std": 0.01})},
               generator=0)

A scheme (for the whole model, an override or the bias) is given as

- a registered name: ``"xavier_uniform"`` (see ``trainlab list init``);
- a ``(name, kwargs)`` pair: ``("normal", {"std": 0.05})``;
- a dict with a ``"name"`` key: ``{"name": "he_normal", "mode": "fan_out"}``;
- a callable ``fn(weight, generator=None)`` filling ``weight`` in place (``generator`` is
  passed when the callable takes it, e.g. ``torch.nn.init.kaiming_normal_``).

Data-dependent initializations (LSUV, Kraehenbuehl et al.) need a batch of data and are not
applied through :func:`init_model`.
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

__all__ = ["WEIGHT_LAYER_TYPES", "ResolvedInit", "init_model", "resolve_init", "weight_layers"]

#: Layers whose ``weight`` :func:`init_model` initializes (lazy variants are subclasses).
WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_LAYER_TYPES_TEXT = (
    "nn.Linear, nn.Conv1d/2d/3d and nn.ConvTranspose1d/2d/3d "
    "(a maxout layer's pieces are the nn.Linear named 'linear' inside it)"
)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every layer of ``model`` whose weight :func:`init_model` sets."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYER_TYPES)]


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
        if entry.meta.get("data_dependent", False):
            raise ValueError(
                f"init {entry.name!r} is data-dependent: it needs a batch of data and is "
                f"applied by its own function, not by init_model. Received: {spec!r}."
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
    from trainlab.nn import activation_info  # lazy: trainlab.nn imports trainlab.init

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
def _check_settable(module: nn.Module, pname: str, layer: str) -> None:
    if isinstance(getattr(module, pname), nn.parameter.UninitializedParameter):
        raise ValueError(
            f"layer {layer!r} ({type(module).__name__}) has uninitialized lazy "
            "parameters; run one forward pass before init_model."
        )
    if not parametrize.is_parametrized(module, pname) and pname not in module._parameters:
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
) -> None:
    tensor = getattr(module, pname)
    is_param = parametrize.is_parametrized(module, pname)
    # Draw on the generator's device (and in float32 for half types) so that one seed gives
    # the same weights whatever device or dtype the model is on; then copy into place.
    draw_device = generator.device if generator is not None else tensor.device
    draw_dtype = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) \
        else tensor.dtype
    direct = not is_param and draw_device == tensor.device and draw_dtype == tensor.dtype
    with torch.no_grad():
        if direct:
            init(tensor, generator)
            return
        buf = torch.empty(tensor.shape, dtype=draw_dtype, device=draw_device)
        init(buf, generator)
        buf = buf.to(device=tensor.device, dtype=tensor.dtype)
        if not is_param:
            tensor.copy_(buf)
            return
        try:
            setattr(module, pname, buf)  # goes through the parametrization's right_inverse
        except NotImplementedError as e:
            raise ValueError(
                f"layer {layer!r} has a parametrized {pname} without right_inverse, so "
                f"init_model cannot set it; initialize it by hand. ({e})"
            ) from e


def init_model(
    model: nn.Module,
    scheme: Any,
    bias: Any = 0.0,
    *,
    overrides: Mapping[str, Any] | None = None,
    activation: str | None = None,
    generator: torch.Generator | int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Initialize every Linear, Conv and maxout layer of ``model`` with ``scheme``.

    Args:
        model: any ``nn.Module``.
        scheme: the weights' init: a name (``"he_normal"``), ``(name, kwargs)``, a dict with
            ``"name"``, or a callable ``fn(weight, generator=None)``.
        bias: a number (every bias set to that constant; default 0), an init scheme (e.g.
            ``("normal", {"std": 0.01})``), or ``None`` to leave biases as they are.
        overrides: ``{pattern: scheme}``; a pattern (fnmatch, e.g. ``"block1.*"``,
            ``"head"``) matches a layer when it matches the layer's name or the name of a
            module containing it; the first matching pattern (in the mapping's order) gives
            that layer's weight scheme, and ``None`` leaves the layer (weight and bias)
            untouched. ``kwargs`` and ``activation`` do not apply to overrides.
        activation: name of the nonlinearity that follows the layers; its recommended gain
            (``trainlab.nn.activation_info(name).gain``) is passed as ``gain=`` to a scheme
            that takes one (xavier_*, he_*, orthogonal).
        generator: a ``torch.Generator`` or an integer seed; layers are drawn in
            ``named_modules()`` order, so one seed fixes the whole model (the same weights on
            CPU and GPU when the generator is a CPU one).
        **kwargs: keyword arguments for ``scheme`` (e.g. ``std=0.05``, ``mode="fan_out"``).

    Returns:
        ``model``, initialized in place.

    Raises:
        ValueError: no layer of the types above in ``model``; an override pattern that
            matches no such layer, or only layers taken by earlier patterns; an unknown
            scheme name (with close matches); a keyword argument the scheme does not take;
            ``activation`` with a scheme without gain or with ``gain=`` also given; lazy
            layers not yet run; a weight derived from other parameters by hooks. Every check
            runs before any tensor is written.
        TypeError: ``model`` is not an ``nn.Module``; a malformed spec.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"init_model needs an nn.Module. Received: {type(model).__name__}.")
    layers = weight_layers(model)
    if not layers:
        raise ValueError(
            f"init_model found no layer to initialize in {type(model).__name__}: it looks "
            f"for {_LAYER_TYPES_TEXT}."
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
                f"override patterns must be strings (module names, fnmatch). "
                f"Received: {pattern!r}."
            )
        rules.append((pattern, None if spec is None else resolve_init(spec)))

    # Decide every layer's init first, so that a bad pattern raises before anything changes.
    plan: list[tuple[str, nn.Module, ResolvedInit | None]] = []
    used: set[str] = set()
    for name, layer in layers:
        chosen: ResolvedInit | None = main
        for pattern, init in rules:
            if _pattern_matches(pattern, name):
                chosen = init
                used.add(pattern)
                break
        plan.append((name, layer, chosen))
    for pattern, _ in rules:
        if pattern in used:
            continue
        hits = [n for n, _ in layers if _pattern_matches(pattern, n)]
        if hits:
            raise ValueError(
                f"override pattern {pattern!r} is shadowed: the layers it matches "
                f"({', '.join(map(repr, hits))}) are all taken by earlier patterns (the first "
                "match wins); put it before them."
            )
        names = ", ".join(repr(n) for n, _ in layers)
        raise ValueError(
            f"override pattern {pattern!r} matches no layer to initialize. "
            f"The layers are: {names}."
        )
    for name, layer, init in plan:
        if init is None:
            continue
        for pname, pinit in (("weight", init), ("bias", bias_init)):
            if pinit is not None and getattr(layer, pname, None) is not None:
                _check_settable(layer, pname, name)

    gen = _as_generator(generator)
    for name, layer, init in plan:
        if init is None:
            continue
        _init_parameter(layer, "weight", init, gen, name)
        if bias_init is not None and getattr(layer, "bias", None) is not None:
            _init_parameter(layer, "bias", bias_init, gen, name)
    return model
