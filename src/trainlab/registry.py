"""One small registry type: name -> factory, with aliases and "did you mean" errors.

Every family of techniques (activations, initializers, norms, optimizers, losses, datasets,
preprocessors, studies ...) owns one :class:`Registry`. An entry is a frozen
:class:`Entry` record: the canonical name, the factory, a one-line description, the reference
(paper or lecture), default keyword arguments and free-form capability metadata (for example
an activation's output range or the rule that says when a unit is saturated). The CLI's
``trainlab list`` and the HTML reports read the descriptions from here, so each text is
written once.

Lookup normalizes case and ``-``/``_``/spaces, so ``"Leaky-ReLU"``, ``"leaky_relu"`` and
``"LEAKY RELU"`` are the same name. An unknown name raises :class:`ValueError` naming the
close matches and the full list.

Example::

    >>> from trainlab.registry import Registry
    >>> ACTS = Registry("activation")
    >>> @ACTS.register("relu", description="max(0, x)", reference="Nair & Hinton 2010")
    ... class ReLU(torch.nn.Module): ...
    >>> ACTS.build("ReLU")        # -> ReLU()
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Entry", "Registry", "check_keywords", "normalize_name", "split_spec"]


def normalize_name(name: str) -> str:
    """Canonical form of a user-typed name: lower case, ``-`` and spaces become ``_``."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def split_spec(spec: Any, family: str = "") -> tuple[str, dict[str, Any]] | None:
    """``(name, kwargs)`` for a spec given by name, without looking the name up.

    The named forms are ``"name"``, ``("name", {kwargs})`` (or the list ``["name",
    {kwargs}]`` that JSON and YAML give) and ``{"name": ..., **kwargs}``; anything else
    (a class, a callable, a module) gives ``None``. A malformed named form is an error;
    ``family`` names what the spec is for in its message.
    """
    what = f"{family} " if family else ""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
        if not isinstance(spec[1], Mapping):
            raise TypeError(
                f"The ({what}name, kwargs) spec needs a mapping of kwargs. Received: {spec!r}."
            )
        return spec[0], dict(spec[1])
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        if not isinstance(kwargs.get("name"), str):
            raise ValueError(
                f"The {what}spec given as a mapping needs a 'name' key. Received: {kwargs!r}."
            )
        return kwargs.pop("name"), kwargs
    return None


def _keyword_names(fn: Callable[..., Any]) -> tuple[list[str], bool]:
    """The keyword arguments ``fn`` accepts, and whether it takes ``**kwargs``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: accept anything
        return [], True
    names = [p.name for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def check_keywords(what: str, kwargs: Mapping[str, Any], *fns: Callable[..., Any],
                   skip: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` for a keyword none of ``fns`` takes, with the close matches.

    ``fns`` is the factory followed by what it hands its ``**kwargs`` on to (an optimizer
    factory, then the ``torch.optim`` class): a name counts when one of them takes it. No
    check when the last one takes ``**kwargs`` too. ``skip``: names not to offer (``params``).
    """
    allowed: list[str] = []
    for fn in fns:
        names, var_kw = _keyword_names(fn)
        allowed += [n for n in names if n not in allowed and n not in skip]
        if not var_kw:
            break
    else:
        return
    for k in kwargs:
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            takes = ", ".join(allowed) if allowed else "no keyword arguments"
            raise ValueError(
                f"{what} takes no argument {k!r}.{hint} It takes: {takes}. "
                f"Received: {k}={kwargs[k]!r}."
            )


@dataclass(frozen=True)
class Entry:
    """One registered technique.

    Attributes:
        name: canonical lower-case name.
        factory: class or function that builds the object.
        description: one line, shown by ``trainlab list`` and in reports.
        reference: paper or lecture the technique comes from.
        aliases: other accepted names.
        defaults: keyword arguments merged under the caller's in :meth:`Registry.build`.
        meta: capability metadata for probes, builders and reports (read-only mapping).
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    reference: str = ""
    aliases: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    family: str = ""

    def __post_init__(self) -> None:
        # Freeze the mappings so an entry cannot be changed behind the registry's back.
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Call the factory with ``defaults`` updated by ``kwargs``; a keyword the factory
        does not take is a ``ValueError`` naming the close matches (not a ``TypeError``)."""
        check_keywords(f"{self.family} {self.name!r}".strip(), kwargs, self.factory)
        return self.factory(*args, **{**self.defaults, **kwargs})


class Registry:
    """A named family of techniques.

    Args:
        family: the family's name as users see it (``"activation"``, ``"init"`` ...), used in
            error messages and by ``trainlab list FAMILY``.
    """

    _families: dict[str, Registry] = {}

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Entry] = {}
        self._lookup: dict[str, str] = {}  # normalized name or alias -> canonical name
        Registry._families[family] = self

    # -- registration -----------------------------------------------------------------------
    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        description: str = "",
        reference: str = "",
        aliases: tuple[str, ...] | list[str] = (),
        defaults: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Register ``factory`` under ``name`` (and ``aliases``); return the entry."""
        key = normalize_name(name)
        entry = Entry(
            name=key,
            factory=factory,
            description=description,
            reference=reference,
            aliases=tuple(normalize_name(a) for a in aliases),
            defaults=dict(defaults or {}),
            meta=dict(meta or {}),
            family=self.family,
        )
        for k in (key, *entry.aliases):
            if k in self._lookup:
                raise ValueError(
                    f"{self.family} name {k!r} is already registered "
                    f"(for {self._lookup[k]!r})."
                )
        self._entries[key] = entry
        for k in (key, *entry.aliases):
            self._lookup[k] = key
        return entry

    def register(self, name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        """Decorator form of :meth:`add`; returns the decorated object unchanged."""

        def deco(obj: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, obj, **kwargs)
            return obj

        return deco

    # -- lookup -----------------------------------------------------------------------------
    def get(self, name: str) -> Entry:
        """The entry for ``name`` or an alias; ``ValueError`` with close matches otherwise."""
        if not isinstance(name, str):
            raise TypeError(
                f"{self.family} name must be a string. Received: {name!r} "
                f"of type {type(name).__name__}."
            )
        key = normalize_name(name)
        if key in self._lookup:
            return self._entries[self._lookup[key]]
        close = difflib.get_close_matches(key, list(self._lookup), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown {self.family} {name!r}.{hint} "
            f"Available: {', '.join(sorted(self._entries))}."
        )

    def resolve(self, spec: Any) -> tuple[Entry, dict[str, Any]] | None:
        """``(entry, kwargs)`` for a spec given by name (see :func:`split_spec`), or ``None``
        for anything else (a class or callable: the caller decides what it means)."""
        parsed = split_spec(spec, self.family)
        if parsed is None:
            return None
        name, kwargs = parsed
        return self.get(name), kwargs

    def build(self, spec: Any, *args: Any, **kwargs: Any) -> Any:
        """Build an object from a spec.

        ``spec`` may be a registered name, a ``(name, kwargs)`` pair, a ``{"name": ...,
        **kwargs}`` dict (see :meth:`resolve`; the caller's ``kwargs`` win), or a class or
        callable (called with ``*args, **kwargs``).
        """
        resolved = self.resolve(spec)
        if resolved is not None:
            entry, spec_kwargs = resolved
            return entry.build(*args, **{**spec_kwargs, **kwargs})
        if isinstance(spec, type) or callable(spec):
            return spec(*args, **kwargs)
        raise TypeError(
            f"Cannot build a {self.family} from {spec!r} of type {type(spec).__name__}; "
            f"give a name, a (name, kwargs) pair, a dict with 'name', or a callable."
        )

    def names(self) -> list[str]:
        """Canonical names in registration order."""
        return list(self._entries)

    def sort(self) -> None:
        """Order the entries by name (for a family whose modules may be imported in any
        order, such as the studies: listings then do not depend on what was imported first)."""
        self._entries = dict(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._lookup

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, {len(self)} entries)"

    # -- all families -----------------------------------------------------------------------
    @classmethod
    def families(cls) -> dict[str, Registry]:
        """Every registry created so far, by family name (import trainlab first)."""
        return dict(cls._families)

    @classmethod
    def family_of(cls, family: str) -> Registry:
        """The registry of ``family``; ``ValueError`` with close matches otherwise."""
        key = normalize_name(family)
        if key in cls._families:
            return cls._families[key]
        close = difflib.get_close_matches(key, list(cls._families), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown family {family!r}.{hint} Available: {', '.join(sorted(cls._families))}."
        )
