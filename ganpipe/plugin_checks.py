"""The mistakes a plugin author makes with hooks, found before pluggy hides or garbles them,
each worded as one phrase naming the function and the fix.

pluggy ignores a function that lacks the ``@ganpipe.hookimpl`` marker (the plugin then
registers nothing, and ``ganpipe run`` blames the user's variant name); it refuses a
marked function with a misspelled name or argument, in several lines about hookimpl
definitions. :func:`hook_mistakes` reads the plugin's functions against the hookspecs
and says, for instance::

    ganpipe_register_variants in my_gan.plugin is not marked with @ganpipe.hookimpl,
    so ganpipe never calls it; add the decorator

    unknown hook 'ganpipe_register_variant' in my_gan.plugin; did you mean
    ganpipe_register_variants?

    ganpipe_register_variants(registry) in my_gan.plugin takes 'registry', which the
    hook does not pass; name it 'register'

Torch-free; used by :func:`ganpipe.plugins.get_plugin_manager` for every third-party
plugin it loads.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import pluggy

from ganpipe.errors import one_line

#: pluggy's marker attribute on a function decorated with ``@ganpipe.hookimpl``
MARK = "ganpipe_impl"
#: how close a name must be to a hook's to be taken for a misspelling of it
CUTOFF = 0.75


def hook_specs(pm: pluggy.PluginManager) -> dict[str, tuple[str, ...]]:
    """Every hook of ``pm``: name -> the arguments it passes."""
    return {
        name: tuple(caller.spec.argnames)
        for name, caller in sorted(vars(pm.hook).items())
        if getattr(caller, "spec", None) is not None
    }


def owner_name(plugin: Any) -> str:
    """How the plugin's code is named in messages: its module (``my_gan.plugin``), or the
    class of an object registered as a plugin."""
    if inspect.ismodule(plugin):
        return plugin.__name__
    return getattr(plugin, "__name__", None) or type(plugin).__qualname__


def _functions(plugin: Any) -> list[tuple[str, Any]]:
    out = []
    for name in dir(plugin):
        if name.startswith("__"):
            continue
        try:
            value = getattr(plugin, name)
        except Exception:  # noqa: BLE001 - a property that fails is no hook
            continue
        if inspect.isroutine(value):
            out.append((name, value))
    return out


def _arguments(function: Any) -> tuple[str, ...]:
    """The arguments pluggy would pass by name (``self`` of a method left out)."""
    return pluggy._hooks.varnames(function)[0]  # type: ignore[attr-defined]


def _close(name: str, specs: dict[str, tuple[str, ...]]) -> str | None:
    found = difflib.get_close_matches(name, list(specs), n=1, cutoff=CUTOFF)
    if not found and not name.startswith("ganpipe_"):  # the prefix forgotten
        found = difflib.get_close_matches("ganpipe_" + name, list(specs), n=1, cutoff=CUTOFF)
    return found[0] if found else None


def hook_mistakes(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """What is wrong with the hook functions of ``plugin`` (before it is registered):
    a hook function without the marker, a name that is no hook (marked, or unmarked but
    close to a hook's name), an argument the hook does not pass. Empty: nothing found."""
    specs = hook_specs(pm)
    where = owner_name(plugin)
    problems = []
    for name, function in _functions(plugin):
        marked = getattr(function, MARK, None) is not None
        close = _close(name, specs)
        if name in specs:
            if not marked:
                problems.append(
                    f"{name} in {where} is not marked with @ganpipe.hookimpl, so ganpipe "
                    f"never calls it; add the decorator"
                )
                continue
            problems += _wrong_arguments(name, function, specs[name], where)
        elif marked:
            hint = f"; did you mean {close}?" if close else f" (hooks: {', '.join(specs)})"
            problems.append(f"unknown hook {name!r} in {where}{hint}")
        elif close is not None:
            problems.append(
                f"{name} in {where} is not a ganpipe hook, and ganpipe never calls it; did "
                f"you mean {close}? Rename it and mark it with @ganpipe.hookimpl"
            )
    return problems


def _wrong_arguments(name: str, function: Any, passed: tuple[str, ...], where: str) -> list[str]:
    try:
        takes = _arguments(function)
    except Exception:  # noqa: BLE001 - pluggy will say what it cannot read
        return []
    extra = [arg for arg in takes if arg not in passed]
    if not extra:
        return []
    missing = [arg for arg in passed if arg not in takes]
    expected = (
        f"name it {missing[0]!r}"
        if len(extra) == 1 and len(missing) == 1
        else f"the hook passes only {', '.join(repr(a) for a in passed)}"
    )
    wrong = " and ".join(repr(arg) for arg in extra)
    return [
        f"{name}({', '.join(takes)}) in {where} takes {wrong}, which the hook does not "
        f"pass; {expected}"
    ]


def no_hooks(pm: pluggy.PluginManager, plugin: Any) -> str:
    """Why a plugin that registered without error provides nothing: no function of it
    is a marked hook."""
    return (
        f"registers nothing: {owner_name(plugin)} has no function marked with "
        f"@ganpipe.hookimpl (the hooks: {', '.join(hook_specs(pm))}); add one, or point "
        f"the entry point at the module that has them"
    )


def validation_text(exc: pluggy.PluginValidationError, specs: dict[str, tuple[str, ...]]) -> str:
    """pluggy's refusal (several lines) as one phrase, with a "did you mean" for an
    unknown hook name. What :func:`hook_mistakes` did not foresee ends up here."""
    text = one_line(exc)
    if text.startswith("unknown hook "):
        name = text.split("'")[1] if "'" in text else ""
        close = _close(name, specs) if name else None
        if close:
            text += f"; did you mean {close}?"
    return text
