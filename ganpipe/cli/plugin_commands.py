"""Commands that plugins add to ``ganpipe`` (hook ``ganpipe_register_commands``, since 0.3).

Like llm's ``register_commands``, each plugin's hook receives a click group and adds
commands to it (:class:`PluginGroup`: also ``cli.lazy("pkg.module:command", name=...,
help=...)``, which imports the command's module only when it runs). It is called only when the command line needs them - ``ganpipe --help``
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
from typing import Any

import click
import pluggy

from ganpipe import hookspecs
from ganpipe.errors import GanpipeError, PluginError, one_line
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


class PluginCommands:
    """The plugins' commands by name, the plugin of each, and what was refused. (Plain
    classes here, not dataclasses: making a dataclass costs ``--help`` a millisecond.)"""

    def __init__(self) -> None:
        self.commands: dict[str, click.Command] = {}
        self.owners: dict[str, str] = {}
        self.problems: list[str] = []


class EntryPoint:
    """One entry point of the ``ganpipe`` group: its name, ``module:attr`` value, and
    the distribution's folder (``*.dist-info`` or ``*.egg-info``)."""

    def __init__(self, name: str, value: str, folder: str):
        self.name, self.value, self.folder = name, value, folder

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
            file = os.path.join(path, "entry_points.txt")
            if not os.path.isfile(file):  # most have none: a stat is cheaper than a failed open
                continue
            try:
                with open(file, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
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


class PluginGroup(click.Group):
    """What ``ganpipe_register_commands`` receives: a click group (``@cli.command()``,
    ``@cli.group()``, ``cli.add_command(cmd)``), plus :meth:`lazy`."""

    def lazy(self, target: str, /, *, name: str, help: str = "") -> None:
        """Add the click command ``target`` (``"package.module:command"``) as ``name``,
        imported only when it runs or shows its own help; ``ganpipe --help`` lists it with
        ``help`` (so the plugin module need not import the command's module)."""
        module, sep, attr = target.partition(":") if isinstance(target, str) else ("", "", "")
        if not sep or not module or not attr.isidentifier():
            raise ValueError(f"lazy command target {target!r} must be 'package.module:command'")
        self.add_command(LazyCommand(name, target, help))


class LazyCommand(click.Command):
    """A plugin's command declared by :meth:`PluginGroup.lazy`: listed with its help,
    imported (and checked) when click makes its context, i.e. when it is run."""

    def __init__(self, name: str, target: str, help: str):
        super().__init__(name, help=help, short_help=help)
        self.target, self.where, self.plugin = target, "", ""
        self._loaded: click.Command | None = None

    def load(self) -> click.Command:
        if self._loaded is None:
            module, _, attr = self.target.partition(":")
            with plugin_code(
                f"{self.where}: cannot load command {self.name!r} from {self.target}",
                f"fix or uninstall it, or skip it with GANPIPE_DISABLE_PLUGINS={self.plugin}",
            ):
                found = getattr(importlib.import_module(module), attr)
            if not isinstance(found, click.Command):
                raise PluginError(
                    f"{self.where}: {self.target} is {type(found).__name__}, not a click "
                    f"command; decorate it with @click.command()"
                )
            self._loaded = _guard(found, self.where, self.plugin)
        return self._loaded

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN001
        return self.load().make_context(info_name, args, parent=parent, **extra)


def load_commands(
    builtin: Iterable[str], *, entry_points: bool = True, redirect: bool = True
) -> PluginCommands:
    """The commands of the installed plugins (none unless ``entry_points``), skipping
    those in ``GANPIPE_DISABLE_PLUGINS``; ``builtin``: ganpipe's own command names.
    ``redirect=False`` (for ``--help`` only): what plugins print is not sent to stderr
    (see :func:`~ganpipe.plugins.plugin_code`)."""
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
            with plugin_code(f"{where} failed to load", hint, redirect=redirect):
                plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except PluginError as exc:
            found.problems.append(str(exc))
            continue
        except (pluggy.PluginValidationError, ValueError) as exc:
            found.problems.append(f"{where} is invalid: {one_line(exc)}; {hint}")
            continue
        for impl in getattr(pm.hook, HOOK).get_hookimpls():
            if impl.plugin_name == ep.name:
                _add(found, impl, ep.name, where, hint, taken, redirect)
    return found


def _add(
    found: PluginCommands, impl: Any, plugin: str, where: str, hint: str, taken: set, redirect
) -> None:
    group = PluginGroup("ganpipe")
    try:
        with plugin_code(f"{where} failed in {HOOK}", hint, redirect=redirect):
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
        elif isinstance(cmd, LazyCommand):
            cmd.where, cmd.plugin = where, plugin
            found.commands[name] = cmd
        else:
            found.commands[name] = _guard(cmd, where, plugin)
            found.owners[name] = where
