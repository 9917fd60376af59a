"""Plugin manager factory and the registries built from the hooks.

Built-in plugins are modules registered the same way as third-party ones; third-party
plugins are found through the ``ganpipe`` entry-point group. Nothing happens at import:
call :func:`get_plugin_manager`, or :func:`ganpipe.registry.load_registry` for the
variants, stages and datasets the plugins register.

Environment:
    GANPIPE_DISABLE_PLUGINS  comma-separated plugin names (entry-point or built-in names)
                             that are not loaded.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib import metadata

import pluggy

from ganpipe import hookspecs
from ganpipe.errors import PluginError

ENTRY_POINT_GROUP = "ganpipe"


#: Built-in plugins: (name, module or object), loaded exactly like third-party plugins. The
#: variants are declared in :mod:`ganpipe.variants` and imported only when a pipeline uses one.
def builtin_plugins() -> tuple[tuple[str, object], ...]:
    from ganpipe.variants import BUILTIN_VARIANTS

    return (
        ("ganpipe.datasets", "ganpipe.data.sources"),
        ("ganpipe.stages", "ganpipe.stages.builtin"),
        *((v.plugin, v) for v in BUILTIN_VARIANTS),
    )


def disabled_plugins() -> set[str]:
    raw = os.environ.get("GANPIPE_DISABLE_PLUGINS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown distribution"
    return f"{dist.name} {dist.version}"


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (pluggy's validation errors span several)."""
    return " ".join(str(exc).split())


def get_plugin_manager(
    *, entry_points: bool = True, disabled: Iterable[str] | None = None
) -> pluggy.PluginManager:
    """A fresh plugin manager with the built-in plugins and, unless ``entry_points`` is
    false, the installed third-party plugins. Raises :class:`PluginError` naming the
    plugin and its distribution when one cannot be loaded."""
    skip = set(disabled_plugins() if disabled is None else disabled)
    pm = pluggy.PluginManager("ganpipe")
    pm.add_hookspecs(hookspecs)
    for name, plugin in builtin_plugins():
        if name in skip:
            continue
        pm.register(
            importlib.import_module(plugin) if isinstance(plugin, str) else plugin, name=name
        )
    pm.ganpipe_dists = {}  # type: ignore[attr-defined]
    if entry_points:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in skip:
                continue
            where = f"plugin {ep.name!r} (distribution {_dist_name(ep)})"
            hint = f"fix or uninstall it, or skip it with GANPIPE_DISABLE_PLUGINS={ep.name}"
            if pm.get_plugin(ep.name) is not None:
                other = pm.ganpipe_dists.get(ep.name, "ganpipe (built-in)")  # type: ignore[attr-defined]
                raise PluginError(
                    f"{where}: the plugin name {ep.name!r} is already taken by "
                    f"{other}; uninstall one of them"
                )
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is reported
                raise PluginError(
                    f"{where} failed to load: {type(exc).__name__}: {_one_line(exc)}; {hint}"
                ) from exc
            try:
                pm.register(plugin, name=ep.name)
                pm.check_pending()
            except pluggy.PluginValidationError as exc:
                pm.unregister(name=ep.name)
                raise PluginError(f"{where} is invalid: {_one_line(exc)}; {hint}") from exc
            pm.ganpipe_dists[ep.name] = _dist_name(ep)  # type: ignore[attr-defined]
    pm.check_pending()
    return pm
