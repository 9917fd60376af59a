"""Plugin manager factory and the registries built from the hooks.

Built-in plugins are modules registered the same way as third-party ones; third-party
plugins are found through the ``ganpipe`` entry-point group. Nothing happens at import:
call :func:`get_plugin_manager`, or :func:`ganpipe.registry.load_registry` for the
variants, stages and datasets the plugins register.

A third-party plugin's code runs guarded (:func:`plugin_code`), at import and in each of
its hooks: what it prints goes to standard error, never into machine-readable output
(``ganpipe plugins --json``), and an exit it attempts (``sys.exit``, ``SystemExit``) or
any other exception it raises is a one-line :class:`PluginError` naming the plugin and
its distribution, like an import error. Only the user's own stop (Ctrl-C, SIGTERM)
passes through.

A plugin's hook functions are read before it is registered (:mod:`ganpipe.plugin_checks`):
a forgotten ``@ganpipe.hookimpl``, a misspelled hook name or argument, or an entry point
that provides no hook at all is one line naming the function and the fix.

A plugin with any such problem is *broken*. By default (``strict``) the first one found
is raised; commands load with ``strict=False`` instead: a broken plugin is set aside
(unregistered) and its problem kept in ``pm.ganpipe_problems``, so the other plugins still
work; :func:`report_problems` says each once on stderr, and a name that no loaded plugin
provides is refused naming the broken ones (it may be theirs).

Environment:
    GANPIPE_DISABLE_PLUGINS  comma-separated plugin names (entry-point or built-in names)
                             that are not loaded.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pluggy

from ganpipe import hookspecs, signals
from ganpipe.errors import PluginError, debugging, one_line

# importlib.metadata, traceback and plugin_checks are imported where used: `ganpipe --help`
# imports this module (for plugin_code), and importlib.metadata alone is a third of its time
if TYPE_CHECKING:
    from importlib import metadata

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


def describe(exc: BaseException) -> str:
    """What a plugin raised, in a few words: ``Type: message``, or the exit it tried."""
    if isinstance(exc, SystemExit):
        return f"it tried to exit ganpipe (SystemExit({exc.code!r}))"
    text = one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def users_stop(exc: BaseException) -> bool:
    """True when ``exc`` is the user's own stop, which must end ganpipe: the CLI's
    :class:`~ganpipe.signals.Interrupted` (SIGINT, SIGTERM), or a KeyboardInterrupt while
    Python's own Ctrl-C handler is installed. A KeyboardInterrupt under another handler
    (the CLI's turns Ctrl-C into Interrupted) was raised by the plugin itself."""
    if isinstance(exc, signals.Interrupted):
        return True
    if isinstance(exc, KeyboardInterrupt):
        return signal.getsignal(signal.SIGINT) is signal.default_int_handler
    return False


def _flush(*streams: Any) -> None:
    for stream in streams:
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


def _flush_c_stdio() -> None:
    """Flush the C library's output buffers (native code's ``printf`` to a pipe waits
    there, and would reach file descriptor 1 after it is restored)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to standard output while the block runs to standard error:
    Python's ``sys.stdout`` and file descriptor 1, which native code writes to (the C
    library's buffers are flushed before it is restored). Machine-readable output written
    after the block stays clean whatever plugin code printed inside it."""
    _flush(sys.stdout, sys.__stdout__)
    saved: int | None = None
    with contextlib.suppress(OSError):
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
        except OSError:
            os.close(saved)
            saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        # a plugin may hold the real stdout (sys.__stdout__): flushed while fd 1 is stderr
        _flush(sys.stdout, sys.__stdout__, sys.stderr)
        _flush_c_stdio()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def plugin_code(
    failure: str, hint: str, *, errors: bool = True, redirect: bool = True
) -> Iterator[None]:
    """Run a third-party plugin's code: what it prints goes to standard error
    (:func:`stdout_to_stderr`), and what it raises is a one-line :class:`PluginError`
    ``"<failure>: <what it raised>; <hint>"`` - ``SystemExit`` and other
    ``BaseException`` s too, so a plugin can neither end ganpipe silently nor with its
    own exit code; only the user's stop (:func:`users_stop`) passes through.
    ``errors=False``: ordinary exceptions pass through too, for callers that word them.
    ``redirect=False``: standard output is left as it is (``ganpipe --help``, whose output
    is text for people, saves the C library flush: importing ctypes is a tenth of it)."""
    try:
        with stdout_to_stderr() if redirect else contextlib.nullcontext():
            yield
    except PluginError:
        raise
    except BaseException as exc:
        if users_stop(exc) or (not errors and isinstance(exc, Exception)):
            raise
        raise PluginError(f"{failure}: {describe(exc)}; {hint}") from exc


def _guarded(function: Callable[..., Any], failure: str, hint: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        with plugin_code(failure, hint, errors=False):
            return function(*args, **kwargs)

    return call


def _guard_hooks(pm: pluggy.PluginManager, plugin: object, name: str, where: str, hint: str):
    """Run each hook of the registered ``plugin`` under :func:`plugin_code`, whoever calls
    it (``pm.hook`` or the registry's per-plugin calls). Hook wrappers, which pluggy drives
    as generators, are left as they are."""
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin_name == name and not (impl.wrapper or impl.hookwrapper):
                failure = f"{where} failed in {caller.name}"
                impl.function = _guarded(impl.function, failure, hint)  # type: ignore[misc]


def get_plugin_manager(
    *, entry_points: bool = True, disabled: Iterable[str] | None = None, strict: bool = True
) -> pluggy.PluginManager:
    """A fresh plugin manager with the built-in plugins and, unless ``entry_points`` is
    false, the installed third-party plugins. A plugin that cannot be loaded (or exits,
    see :func:`plugin_code`) or whose hooks are wrong is a :class:`PluginError` naming
    the plugin and its distribution: raised (``strict``), or kept in
    ``pm.ganpipe_problems`` (plugin name -> error) with the plugin left out."""
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
    pm.ganpipe_problems = {}  # type: ignore[attr-defined]
    if entry_points:
        from importlib import metadata

        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in skip:
                continue
            try:
                _load_entry_point(pm, ep)
            except PluginError as exc:
                if strict:
                    raise
                set_aside(pm, ep.name, exc)
    pm.check_pending()
    return pm


def _load_entry_point(pm: pluggy.PluginManager, ep: metadata.EntryPoint) -> None:
    """Import, check and register one third-party plugin (a :class:`PluginError`
    otherwise, the plugin left unregistered)."""
    where = f"plugin {ep.name!r} (distribution {_dist_name(ep)})"
    hint = f"fix or uninstall it, or skip it with GANPIPE_DISABLE_PLUGINS={ep.name}"
    if pm.get_plugin(ep.name) is not None:
        other = pm.ganpipe_dists.get(ep.name, "ganpipe (built-in)")  # type: ignore[attr-defined]
        raise PluginError(
            f"{where}: the plugin name {ep.name!r} is already taken by "
            f"{other}; uninstall one of them"
        )
    pm.ganpipe_dists[ep.name] = _dist_name(ep)  # type: ignore[attr-defined] # broken ones too
    with plugin_code(f"{where} failed to load", hint):
        plugin = ep.load()
    from ganpipe import plugin_checks

    mistakes = plugin_checks.hook_mistakes(pm, plugin)
    if mistakes:
        raise PluginError(f"{where} is invalid: {'; '.join(mistakes)}")
    try:
        pm.register(plugin, name=ep.name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        if pm.get_plugin(ep.name) is not None:
            pm.unregister(name=ep.name)
        text = plugin_checks.validation_text(exc, plugin_checks.hook_specs(pm))
        raise PluginError(f"{where} is invalid: {text}; {hint}") from exc
    if not pm.get_hookcallers(plugin):
        pm.unregister(name=ep.name)
        raise PluginError(f"{where} {plugin_checks.no_hooks(pm, plugin)}")
    _guard_hooks(pm, plugin, ep.name, where, hint)


def set_aside(pm: pluggy.PluginManager, name: str, problem: PluginError) -> None:
    """Leave the broken plugin ``name`` out of ``pm`` (its hooks are no longer called)
    and keep its ``problem`` in ``pm.ganpipe_problems``."""
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    problems = getattr(pm, "ganpipe_problems", None)
    if problems is None:
        problems = pm.ganpipe_problems = {}  # type: ignore[attr-defined]
    problems.setdefault(name, problem)


def problems_of(pm: pluggy.PluginManager) -> dict[str, PluginError]:
    """The broken plugins of ``pm`` set aside by a non-strict load: name -> problem."""
    return dict(getattr(pm, "ganpipe_problems", {}))


#: the problems already said in this process (each is said once)
_REPORTED: set[str] = set()


def report_problems(problems: Iterable[PluginError]) -> None:
    """Say each broken plugin's problem once on stderr, as a warning (``ganpipe: warning:
    <problem>; it is skipped``); with ``GANPIPE_DEBUG=1`` the traceback of its cause too."""
    for problem in problems:
        text = str(problem)
        if text in _REPORTED:
            continue
        _REPORTED.add(text)
        if debugging() and (problem.__cause__ or problem.__traceback__):
            import traceback

            print("".join(traceback.format_exception(problem)).rstrip(), file=sys.stderr)
        print(f"ganpipe: warning: {text}; it is skipped", file=sys.stderr, flush=True)
