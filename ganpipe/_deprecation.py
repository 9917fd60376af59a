"""Deprecations of the public API, written one way (the policy: docs/plugins.md,
"Compatibility").

A public name, hook, contract method or way of writing a plugin that changes keeps working
for at least one minor version after the one that deprecates it, and each use warns once
per call site with one line naming what changed and what to use instead::

    ganpipe.OLD_NAME is deprecated since ganpipe 0.3 and goes in 0.5; use ganpipe.NEW_NAME

The warning is a :class:`GanpipeDeprecationWarning` (a :class:`DeprecationWarning`):
Python hides it from end users of a command, pytest shows it to the plugin author running
their tests, and ``-W error::DeprecationWarning`` turns it into an error to find every use.

Every deprecation in force is declared here, once: renamed module attributes in
:data:`RENAMED` (the module's ``__getattr__`` calls :func:`renamed_attribute`), other
changes in :data:`CHANGES` (the code that detects the old way calls :func:`deprecated`
with the entry's fields). docs/plugins.md lists both (``tools/compat_docs.py``).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass


class GanpipeDeprecationWarning(DeprecationWarning):
    """A plugin uses a part of ganpipe's public API that is deprecated; the message names
    the replacement and the version that removes the old way."""


@dataclass(frozen=True)
class Deprecation:
    """One deprecated way of using the public API and what replaces it."""

    name: str  # what is deprecated, as plugin code writes it
    replacement: str  # what to write instead
    since: str  # the minor version that deprecated it, e.g. "0.3"
    remove_in: str  # the first version that may not have it, at least two minors later

    def warn(
        self, name: str | None = None, *, replacement: str | None = None, stacklevel: int = 4
    ) -> None:
        """:func:`deprecated` with this entry's versions; ``name`` and ``replacement``: more
        precise wordings of the entry's (naming the plugin, its class); ``stacklevel`` 4:
        the plugin's line that called the function that calls this."""
        deprecated(
            name or self.name,
            replacement or self.replacement,
            self.since,
            self.remove_in,
            stacklevel=stacklevel,
        )


@dataclass(frozen=True)
class Renamed:
    """A public attribute of a module that now lives under another name (or module)."""

    new: str  # "module:attribute" of the replacement
    since: str
    remove_in: str

    @property
    def replacement(self) -> str:
        module, _, attr = self.new.partition(":")
        return f"{module}.{attr}"


#: module -> {old attribute name: Renamed}; an entry per public name renamed or moved
RENAMED: dict[str, dict[str, Renamed]] = {
    "ganpipe": {},
}

#: key -> Deprecation: the other deprecated ways of writing a plugin (not renamed names)
CHANGES: dict[str, Deprecation] = {
    "variant-not-derived": Deprecation(
        name="a variant class not derived from ganpipe.Variant (the duck-typed contract)",
        replacement="a subclass of ganpipe.Variant",
        since="0.3",
        remove_in="0.5",
    ),
}


def message(name: str, replacement: str, since: str, remove_in: str) -> str:
    """The one line every deprecation warning of ganpipe says."""
    return f"{name} is deprecated since ganpipe {since} and goes in {remove_in}; use {replacement}"


def deprecated(
    name: str, replacement: str, since: str, remove_in: str, *, stacklevel: int = 3
) -> None:
    """Warns that ``name`` (what the plugin used, as it wrote it) is deprecated.

    ``stacklevel`` 3 points at the caller of the function that calls this one: the plugin
    line that used the old way, so that Python shows (and counts) it once per line.
    """
    warnings.warn(
        message(name, replacement, since, remove_in),
        GanpipeDeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_attribute(module: str, name: str) -> object:
    """The value of the renamed attribute ``module.name`` (a deprecation warning at the
    caller's line), for a module's ``__getattr__``; :class:`AttributeError` when ``name``
    was never a name of ``module``."""
    entry = RENAMED.get(module, {}).get(name)
    if entry is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    # stacklevel 4: this function, the module's __getattr__, then the plugin's line
    deprecated(f"{module}.{name}", entry.replacement, entry.since, entry.remove_in, stacklevel=4)
    target, _, attr = entry.new.partition(":")
    return getattr(importlib.import_module(target), attr)
