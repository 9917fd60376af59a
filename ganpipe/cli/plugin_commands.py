"""Commands that plugins add to ``ganpipe`` (hook ``ganpipe_register_commands``, since 0.3).

Like llm's ``register_commands``, each plugin's hook receives a click group and adds
commands to it. It is called only when the command line needs them - ``ganpipe --help``
listing the commands, or a command name that is not one of ganpipe's own - and only the
third-party plugins' modules are loaded for it (no registry, no built-in plugins, no
torch), so ``ganpipe --help`` stays fast and ganpipe's own commands never pay for it.

The entry points are read from the distributions' ``entry_points.txt`` as
:mod:`importlib.metadata` finds them (:func:`find_entry_points`), without importing it: that
import alone would double the time of ``ganpipe --help``.

Each plugin gets a group of its own, so every command is known by its plugin: a name that
is one of ganpipe's commands, or that another plugin took first, is refused in one line,
as is a plugin that fails to load or whose hook raises; these :attr:`PluginCommands.problems`
are warnings, and the other plugins' commands still work. An exception a plugin command
raises (other than ganpipe's and click's own errors, which are one line already) is a
one-line :class:`~ganpipe.errors.PluginError` naming the plugin and its distribution.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import click
import pluggy

from ganpipe import hookspecs
from ganpipe.errors import GanpipeError, PluginError
from ganpipe.plugins import ENTRY_POINT_GROUP, describe, disabled_plugins, plugin_code

__all__ = ["HOOK", "PluginCommands", "load_commands"]

HOOK = "ganpipe_register_commands"
#: exceptions a command may raise that the CLI already prints as one line (or that stop it)
PASS_THROUGH = (
    GanpipeError,
    click.ClickException,
    click.exceptions.Exit,
    click.Abort,
    KeyboardInterrupt,
    SystemExit,
)


class _Spec:
    """The one hook this module calls (a plugin's other hooks are not checked here)."""

    ganpipe_register_commands = hookspecs.ganpipe_register_commands


@dataclass
class PluginCommands:
    """The plugins' commands by name, the plugin of each, and what was refused."""

    commands: dict[str, click.Command] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EntryPoint:
    """One entry point of the ``ganpipe`` group: its name, ``module:attr`` value, and
    the distribution's folder (``*.dist-info`` or ``*.egg-info``)."""

    name: str
    value: str
    folder: str

    @property
    def dist(self) -> str:
        """``"name version"`` from the distribution's METADATA (as ganpipe names it)."""
        fields = {}
        for meta in ("METADATA", "PKG-INFO"):
            try:
                with open(os.path.join(self.folder, meta), encoding="utf-8") as f:
                    for line in f:
                        key, sep, value = line.partition(":")
                        if not sep or not line.strip():
                            break
                        fields.setdefault(key.strip(), value.strip())
                break
            except OSError:
                continue
        if "Name" not in fields:
            return "unknown distribution"
        return f"{fields['Name']} {fields.get('Version', '')}".strip()

    def load(self) -> Any:
        module, _, attrs = self.value.partition(":")
        found = importlib.import_module(module.strip())
        for attr in attrs.split("[")[0].strip().split(".") if attrs.strip() else ():
            found = getattr(found, attr)
        return found


def _group(text: str, group: str) -> list[tuple[str, str]]:
    """``(name, value)`` of the section ``[group]`` of an ``entry_points.txt``."""
    out, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            out.append((name.strip(), value.strip()))
    return out


def find_entry_points(group: str = ENTRY_POINT_GROUP) -> list[EntryPoint]:
    """The entry points of ``group`` of the distributions on ``sys.path``: the first
    distribution of each (normalised) name wins, as in :mod:`importlib.metadata`."""
    seen: set[str] = set()
    found = []
    for base in sys.path:
        try:
            names = os.listdir(base or ".")
        except OSError:
            continue
        for folder in names:
            stem, _, suffix = folder.rpartition(".")
            if suffix not in ("dist-info", "egg-info"):
                continue
            key = re.sub(r"[-_.]+", "_", stem.partition("-")[0]).lower()
            if key in seen:
                continue
            seen.add(key)
            path = os.path.join(base or ".", folder)
            try:
                with open(os.path.join(path, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            found += [EntryPoint(n, v, path) for n, v in _group(text, group)]
    return found


def _guard(cmd: click.Command, where: str, plugin: str) -> click.Command:
    """``cmd`` whose unexpected exceptions are one line naming its plugin."""
    invoke = cmd.invoke

    def guarded(ctx: click.Context) -> Any:
        try:
            return invoke(ctx)
        except PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - the plugin's bug: one line naming it
            raise PluginError(
                f"{where}: command {cmd.name!r} failed: {describe(exc)}; report it to the "
                f"plugin's authors, or skip the plugin with GANPIPE_DISABLE_PLUGINS={plugin} "
                f"(ganpipe --debug shows the traceback)"
            ) from exc

    cmd.invoke = guarded  # type: ignore[method-assign]
    return cmd


def load_commands(builtin: Iterable[str], *, entry_points: bool = True) -> PluginCommands:
    """The commands of the installed plugins (none unless ``entry_points``), skipping
    those in ``GANPIPE_DISABLE_PLUGINS``; ``builtin``: ganpipe's own command names."""
    found = PluginCommands()
    if not entry_points:
        return found
    taken = set(builtin)
    skip = disabled_plugins()
    pm = pluggy.PluginManager("ganpipe")
    pm.add_hookspecs(_Spec)
    for ep in sorted(find_entry_points(), key=lambda e: e.name):
        if ep.name in skip or pm.get_plugin(ep.name) is not None:
            continue
        where = f"plugin {ep.name!r} ({ep.dist})"
        hint = f"fix or uninstall it, or skip it with GANPIPE_DISABLE_PLUGINS={ep.name}"
        try:
            with plugin_code(f"{where} failed to load", hint):
                plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except PluginError as exc:
            found.problems.append(str(exc))
            continue
        except (pluggy.PluginValidationError, ValueError) as exc:
            found.problems.append(f"{where} is invalid: {' '.join(str(exc).split())}; {hint}")
            continue
        for impl in getattr(pm.hook, HOOK).get_hookimpls():
            if impl.plugin_name == ep.name:
                _add(found, impl, ep.name, where, hint, taken)
    return found


def _add(found: PluginCommands, impl: Any, plugin: str, where: str, hint: str, taken: set):
    group = click.Group("ganpipe")
    try:
        with plugin_code(f"{where} failed in {HOOK}", hint):
            impl.function(**({"cli": group} if "cli" in impl.argnames else {}))
    except PluginError as exc:
        found.problems.append(str(exc))
        return
    for name, cmd in sorted(group.commands.items()):
        if name in taken:
            found.problems.append(
                f"{where}: command {name!r} is one of ganpipe's own commands and was not "
                f"added; rename it in the plugin"
            )
        elif name in found.commands:
            found.problems.append(
                f"{where}: command {name!r} is already added by {found.owners[name]} and "
                f"was not added again; disable one with GANPIPE_DISABLE_PLUGINS"
            )
        else:
            found.commands[name] = _guard(cmd, where, plugin)
            found.owners[name] = where
