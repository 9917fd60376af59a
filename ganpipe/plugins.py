"""Plugin manager factory and the registries built from the hooks.

Built-in plugins are modules registered the same way as third-party ones; third-party
plugins are found through the ``ganpipe`` entry-point group. Nothing happens at import:
call :func:`get_plugin_manager` / :func:`load_registry`.

Environment:
    GANPIPE_DISABLE_PLUGINS  comma-separated plugin names (entry-point or built-in names)
                             that are not loaded.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from ganpipe import hookspecs
from ganpipe.errors import ConfigError, PluginError

ENTRY_POINT_GROUP = "ganpipe"

#: Built-in plugins: (name, module). Loaded exactly like third-party plugins.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("ganpipe.datasets", "ganpipe.data.sources"),
    ("ganpipe.stages", "ganpipe.stages.builtin"),
    ("ganpipe.gan", "ganpipe.variants.gan"),
    ("ganpipe.dcgan", "ganpipe.variants.dcgan"),
    ("ganpipe.cgan", "ganpipe.variants.cgan"),
    ("ganpipe.wgan", "ganpipe.variants.wgan"),
    ("ganpipe.vae", "ganpipe.variants.vae"),
    ("ganpipe.infogan", "ganpipe.variants.infogan"),
    ("ganpipe.biggan", "ganpipe.variants.biggan"),
    ("ganpipe.stylegan", "ganpipe.variants.stylegan"),
    ("ganpipe.pggan", "ganpipe.variants.pggan"),
    ("ganpipe.srgan", "ganpipe.variants.srgan"),
    ("ganpipe.esrgan", "ganpipe.variants.esrgan"),
    ("ganpipe.compact", "ganpipe.variants.compact"),
    ("ganpipe.espcn", "ganpipe.variants.espcn"),
    ("ganpipe.cyclegan", "ganpipe.variants.cyclegan"),
)

KINDS = ("variants", "stages", "datasets")


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
    for name, modname in DEFAULT_PLUGINS:
        if name in skip:
            continue
        pm.register(importlib.import_module(modname), name=name)
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


@dataclass
class Registry:
    """Named objects (variants, stages, datasets), each remembering its plugin."""

    kind: str
    items: dict[str, Any] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)

    def add(self, obj: Any, owner: str, dists: dict[str, str] | None = None) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {owner!r} registered a {self.kind[:-1]} without a "
                f"string 'name' attribute: {obj!r}"
            )
        if name in self.items:
            dists = dists or {}

            def who(plugin: str) -> str:
                return f"plugin {plugin!r} ({dists.get(plugin, 'ganpipe, built-in')})"

            raise PluginError(
                f"{self.kind[:-1]} {name!r} is registered twice: by {who(self.owners[name])} "
                f"and by {who(owner)}; disable one with GANPIPE_DISABLE_PLUGINS"
            )
        self.items[name] = obj
        self.owners[name] = owner

    def get(self, name: str, *, where: str = "") -> Any:
        try:
            return self.items[name]
        except KeyError:
            known = ", ".join(sorted(self.items)) or "none"
            close = difflib.get_close_matches(name, list(self.items), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            loc = f"{where}: " if where else ""
            raise ConfigError(
                f"{loc}unknown {self.kind[:-1]} {name!r}{hint} (known: {known}; "
                f"`ganpipe plugins` lists what is installed)"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self.items

    def __iter__(self):
        return iter(sorted(self.items))


@dataclass
class Registries:
    pm: pluggy.PluginManager
    variants: Registry
    stages: Registry
    datasets: Registry


def load_registry(
    pm: pluggy.PluginManager | None = None, *, entry_points: bool = True
) -> Registries:
    """Call every registration hook, one plugin at a time so each object knows its owner."""
    pm = pm or get_plugin_manager(entry_points=entry_points)
    regs = {kind: Registry(kind) for kind in KINDS}
    dists = getattr(pm, "ganpipe_dists", {})
    for kind in KINDS:
        caller = getattr(pm.hook, f"ganpipe_register_{kind}")
        for impl in caller.get_hookimpls():
            owner = impl.plugin_name

            def register(obj: Any, _kind=kind, _owner=owner) -> None:
                regs[_kind].add(obj, _owner, dists)

            kwargs = {"register": register} if "register" in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001
                dist = dists.get(owner, "built-in")
                raise PluginError(
                    f"plugin {owner!r} ({dist}) failed in ganpipe_register_{kind}: "
                    f"{type(exc).__name__}: {_one_line(exc)}"
                ) from exc
    return Registries(pm, regs["variants"], regs["stages"], regs["datasets"])
