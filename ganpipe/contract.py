"""How a plugin contract is declared on its base class, and what is derived from it.

The contracts of variants, stages and dataset sources are their base classes
(:class:`ganpipe.Variant`, :class:`ganpipe.Stage`, :class:`ganpipe.DatasetSource`) and
nothing else: each method a plugin may implement is marked there with :func:`hook`
(required or not, the version it exists from, the fix to name when it is broken), so the
checks of :mod:`ganpipe.conformance`, the adapter of plugin objects not derived from the
base (:mod:`ganpipe.variant_adapter`), the messages of ``ganpipe.testing`` and the docs
read one source: :func:`hooks` lists the marked methods, :func:`call_params` the
arguments ganpipe passes (the parameters without a default, from the signature itself).

Identity - ``name``, ``task`` and ``description`` - is declared once: in the plugin's lazy
registration (``register.lazy("pkg.module:Class", name=..., task=...)``, which ganpipe
reads without importing the module) or on the class. :class:`Declared` reads what the
registration declared for a class that does not set it (:func:`declare` records it).
Torch-free.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: the version of the plugin contract from which the methods marked without ``since`` exist
FIRST = "0.2"


@dataclass(frozen=True)
class Hook:
    """One method of a contract: whether a plugin must implement it, the ganpipe version
    it exists from (an optional one added later is skipped by older ganpipes) and the
    fix to name when it raises or returns the wrong thing."""

    name: str
    required: bool = False
    since: str = FIRST
    fix: str = ""


def hook(*, required: bool = False, since: str = FIRST, fix: str = "") -> Callable[[F], F]:
    """Marks a method of a contract's base class (see :class:`Hook`)."""

    def mark(fn: F) -> F:
        fn.__ganpipe_hook__ = Hook(fn.__name__, required, since, fix)  # type: ignore[attr-defined]
        return fn

    return mark


def hooks(base: type) -> dict[str, Hook]:
    """The marked methods of ``base`` (and its bases), in the order they are defined."""
    found: dict[str, Hook] = {}
    for cls in reversed(base.__mro__):
        for name, value in vars(cls).items():
            marker = getattr(value, "__ganpipe_hook__", None)
            if isinstance(marker, Hook):
                found[name] = marker
    return found


def call_params(base: type, name: str) -> tuple[str, ...]:
    """The arguments ganpipe passes to ``base.name``: its positional parameters without a
    default, ``self`` left out (e.g. ``("opts", "info")`` for ``Variant.build``)."""
    params = list(inspect.signature(getattr(base, name)).parameters.values())[1:]
    return tuple(
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


def own(obj: Any, base: type, name: str) -> bool:
    """True when ``obj`` implements ``name`` itself rather than inheriting ``base``'s (an
    instance attribute counts: the adapter's, or a guarded method's own function)."""
    value = vars(obj).get(name) if hasattr(obj, "__dict__") else None
    if value is None:
        return getattr(type(obj), name, None) is not getattr(base, name, object())
    value = getattr(value, "fn", value)  # a guarded method: the method it guards
    return getattr(value, "__func__", value) is not getattr(base, name, object())


# -- identity ------------------------------------------------------------------------------

#: "package.module:Name" -> what its lazy registration declared (name, task, description)
_DECLARATIONS: dict[str, dict[str, Any]] = {}
#: registries being loaded now (no lookup starts another), and whether one lookup loaded them
_loading = 0
_looked_up = False


def declare(target: str, identity: dict[str, Any]) -> None:
    """Record what a lazy registration declared for ``target`` (called by the registers)."""
    _DECLARATIONS[target] = dict(identity)


def declared_for(cls: type) -> dict[str, Any] | None:
    """What a lazy registration declared for ``cls`` or its nearest declared base class.
    The installed plugins' registrations are read once when none is known yet (a plugin's
    own tests instantiate its classes without loading the registry); never while a
    registry is being loaded."""
    global _looked_up
    found = _lookup(cls)
    if found is None and not _loading and not _looked_up:
        _looked_up = True
        from ganpipe.registry import load_registry

        load_registry(warn=False)  # quietly: a broken plugin is said where it matters
        found = _lookup(cls)
    return found


class loading:
    """``with loading():`` around a registry load: :func:`declared_for` starts no other."""

    def __enter__(self) -> None:
        global _loading
        _loading += 1

    def __exit__(self, *exc: object) -> None:
        global _loading
        _loading -= 1


def _lookup(cls: type) -> dict[str, Any] | None:
    for klass in cls.__mro__:
        found = _DECLARATIONS.get(f"{klass.__module__}:{klass.__qualname__}")
        if found is not None:
            return found
    return None


def declared_on_class(cls: type, key: str) -> Any:
    """``cls.key`` when some class in its MRO sets it, ``None`` when only the base class's
    :class:`Declared` would answer."""
    for klass in cls.__mro__:
        if key in vars(klass):
            value = vars(klass)[key]
            return None if isinstance(value, Declared) else value
    return None


class Declared:
    """A class attribute of identity (``name``, ``task``, ``description``) that a plugin may
    leave to its lazy registration: set on the class it is the class's; otherwise it is
    what ``register.lazy(...)`` declared for the class (filled in on the object when the
    registry loads it), else ``default`` (no default: ``None``, which the contract checks
    refuse with the fix)."""

    def __init__(self, default: Any = None):
        self.default = default

    def __set_name__(self, owner: type, key: str) -> None:
        self.key = key

    def __get__(self, obj: Any, cls: type | None = None) -> Any:
        cls = cls if cls is not None else type(obj)
        if vars(cls).get(self.key) is self:  # the contract's base class itself
            return self.default
        found = declared_for(cls)
        if found is not None and found.get(self.key) not in (None, ""):
            return found[self.key]
        return self.default
