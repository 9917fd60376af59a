"""Objects as ``ganpipe run`` finds them: through the installed plugins' entry points."""

from __future__ import annotations

from typing import Any

from ganpipe.testing._checker import ContractError

KIND_NAMES = {"variant": "variants", "stage": "stages", "dataset": "datasets"}


def registered(kind: str, name: str, *, plugin: str | None = None) -> Any:
    """The ``kind`` (``variant``, ``stage`` or ``dataset``) registered as ``name`` by the
    installed plugins, loaded and checked as ``ganpipe run`` would (a lazy declaration is
    imported, its class instantiated, its name and task compared); ``plugin``: the
    entry-point name that must own it. Raises :class:`ContractError` when it is not
    installed, owned by another plugin, or fails to load."""
    from ganpipe.errors import PluginError
    from ganpipe.registry import load_registry

    kinds = KIND_NAMES.get(kind, kind)
    if kinds not in KIND_NAMES.values():
        raise ValueError(f"kind must be one of {', '.join(KIND_NAMES)}, got {kind!r}")
    try:
        reg = getattr(load_registry(entry_points=True, warn=False), kinds)
    except PluginError as exc:
        raise ContractError(f"{kind} {name!r}: the plugins do not load: {exc}") from exc
    if name not in reg and reg.broken:  # a broken plugin (yours?) was skipped: say why
        broken = "; and ".join(map(str, reg.broken.values()))
        raise ContractError(f"{kind} {name!r} is not registered, and {broken}")
    if name not in reg:
        raise ContractError(
            f"{kind} {name!r} is not registered by any installed plugin (registered: "
            f"{', '.join(reg) or 'none'}); is the distribution installed (pip install -e .) "
            f"and its [project.entry-points.ganpipe] right?"
        )
    owner = reg.owner(name)
    if plugin is not None and owner != plugin:
        raise ContractError(f"{kind} {name!r} is registered by plugin {owner!r}, not {plugin!r}")
    try:
        return reg.get(name)
    except PluginError as exc:
        raise ContractError(f"{kind} {name!r}: {exc}") from exc
