"""Calling a hook once per plugin, so that what each call registers (or raises) is
attributed to the plugin and distribution it came from.

The extension hooks (input kinds, model-card fields, report sections, commands) hand each
plugin its own ``register`` object, as :func:`ganpipe.registry.load_registry` does for
variants, stages and datasets; :func:`calls` yields one :class:`HookCall` per plugin,
whose :meth:`HookCall.__call__` passes the arguments the plugin's function names and
turns what it raises into one :class:`~ganpipe.errors.PluginError` line. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ganpipe.errors import PluginError

__all__ = ["HookCall", "calls"]


@dataclass(frozen=True)
class HookCall:
    """One plugin's implementation of ``hook``."""

    hook: str
    owner: str
    dist: str
    impl: Any

    @property
    def where(self) -> str:
        return f"plugin {self.owner!r} ({self.dist})"

    def __call__(self, **kwargs: Any) -> Any:
        """Call the plugin's function with the arguments it names; an exception it raises
        is a one-line :class:`PluginError` naming the plugin, its distribution and the
        hook (a :class:`PluginError` passes as it is)."""
        from ganpipe.plugins import describe

        names = self.impl.argnames
        try:
            return self.impl.function(**{k: v for k, v in kwargs.items() if k in names})
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - the plugin's code: one line naming it
            raise PluginError(f"{self.where} failed in {self.hook}: {describe(exc)}") from exc


def calls(pm: Any, hook: str) -> Iterator[HookCall]:
    """The implementations of ``hook`` in ``pm``, one per plugin, in pluggy's order."""
    dists = getattr(pm, "ganpipe_dists", {})
    for impl in getattr(pm.hook, hook).get_hookimpls():
        owner = impl.plugin_name
        yield HookCall(hook, owner, dists.get(owner, "ganpipe (built-in)"), impl)
