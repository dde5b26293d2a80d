"""The ``model`` registry :data:`MODELS` and :func:`build_model` (a config's ``model`` spec
to a module). The builders register themselves here (:mod:`trainlab.models.builders`)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from trainlab.registry import Registry, split_spec

__all__ = ["MODELS", "build_model"]

MODELS = Registry("model")


def build_model(spec: Any, **overrides: Any) -> nn.Module:
    """Build a model from a config spec: ``{"name": "mlp", "in_features": 784, ...}``.

    ``spec`` is a dict with a ``name`` key and the builder's arguments, a ``(name, kwargs)``
    pair, or a bare name (the builder's defaults); ``overrides`` are merged on top. Unknown
    keys raise ``ValueError`` naming them and the allowed keys; unknown model names list the
    close matches. Each builder first builds the spec on the ``meta`` device (no storage)
    and refuses it, naming its size arguments, when its parameters and gradients alone
    exceed the host's available memory (:mod:`trainlab.models.memory`).
    """
    if isinstance(spec, Mapping) and "name" not in spec:
        raise ValueError(
            f"A model spec needs a 'name' key (one of {', '.join(MODELS.names())}). "
            f"Received keys: {sorted(spec)}."
        )
    parsed = split_spec(spec)
    if parsed is None:
        raise TypeError(
            f"A model spec is a name, a (name, kwargs) pair or a dict with 'name'. "
            f"Received: {spec!r} of type {type(spec).__name__}."
        )
    name, kwargs = parsed
    entry = MODELS.get(name)
    kwargs.update(overrides)
    params = inspect.signature(entry.factory).parameters
    allowed = [p for p in params if params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = sorted(k for k in kwargs if k not in allowed)
    if unknown:
        raise ValueError(
            f"Unknown key(s) for model {entry.name!r}: {', '.join(unknown)}. "
            f"Allowed: {', '.join(allowed)}."
        )
    missing = [
        p
        for p, v in params.items()
        if v.default is inspect.Parameter.empty
        and p not in kwargs
        and v.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if missing:
        raise ValueError(
            f"Model {entry.name!r} needs key(s): {', '.join(missing)}. "
            f"Allowed: {', '.join(allowed)}."
        )
    return entry.build(**kwargs)

