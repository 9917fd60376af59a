"""The registries of variants, stages and datasets, and the typed ``register`` objects the
hooks receive.

A plugin registers an object (``register(MyVariant())``), or declares one to be imported
when a pipeline first needs it (``register.lazy("pkg.module:MyVariant", name=..., ...)``),
so that listing plugins and torch-free pipelines never import torch. A lazy declaration
carries the object's identity (name, task, description), so its class need not repeat it
(it is filled in on load; a class that does repeat it must agree). Every object is
checked against its contract (:mod:`ganpipe.conformance`) when it is registered or, for a
lazy one, first loaded; a problem is one line naming the plugin and its distribution. A
variant is then adapted and guarded (:mod:`ganpipe.variant_adapter`): base-class defaults
for plugin objects not derived from :class:`ganpipe.Variant`, and failures inside its
methods reported as one line naming the plugin.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ganpipe import contract
from ganpipe.conformance import CHECKS, NAME_RE
from ganpipe.errors import ConfigError, PluginError, one_line
from ganpipe.modelcard import TASKS

KINDS = ("variants", "stages", "datasets")


@dataclass
class Entry:
    """One registered object, or the declaration of one to import on first use."""

    name: str
    kind: str
    owner: str
    dist: str
    obj: Any = None
    target: str | None = None
    declared: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"plugin {self.owner!r} ({self.dist})"

    @property
    def description(self) -> str:
        if self.obj is not None:
            return getattr(self.obj, "description", "") or self.declared.get("description", "")
        return self.declared.get("description", "")

    @property
    def task(self) -> str | None:
        if self.obj is not None:
            return getattr(self.obj, "task", None)
        return self.declared.get("task")

    def load(self) -> Any:
        """The object; a lazy one is imported, instantiated and checked once."""
        if self.obj is not None:
            return self.obj
        from ganpipe.plugins import plugin_code

        module, _, attr = (self.target or "").partition(":")
        # the plugin's module: an exit or any exception is a PluginError, its prints stderr
        with plugin_code(
            f"{self.where}: cannot load {self.kind[:-1]} {self.name!r} from {self.target}",
            f"fix or uninstall the plugin, or skip it with GANPIPE_DISABLE_PLUGINS={self.owner}",
        ):
            found = getattr(importlib.import_module(module), attr)
            obj = found() if isinstance(found, type) else found
        for key, value in {"name": self.name, **self.declared}.items():
            own = _own_value(obj, key)
            if not own:  # declared once, in the registration: filled in here
                setattr(obj, key, value)
            elif own != value and key != "description":
                raise PluginError(
                    f"{self.where}: {self.target} has {key} {own!r} but was registered "
                    f"with {key} {value!r}; make them agree (or declare it only in "
                    f"register.lazy)"
                )
        self.obj = validate(obj, self.kind, self.owner, self.dist)
        return self.obj


def _own_value(obj: Any, key: str) -> Any:
    """``obj.key`` as the object or its class sets it (``None`` when only the
    registration declares it)."""
    if key in getattr(obj, "__dict__", {}):
        return vars(obj)[key]
    return contract.declared_on_class(type(obj), key)


def validate(obj: Any, kind: str, owner: str, dist: str) -> Any:
    """``obj`` checked against its contract (a one-line :class:`PluginError` naming the
    plugin otherwise); a variant is returned adapted and guarded
    (:func:`ganpipe.variant_adapter.load_variant`)."""
    problems = CHECKS[kind](obj)
    if problems:
        what = getattr(obj, "name", None) or type(obj).__name__
        raise PluginError(
            f"plugin {owner!r} ({dist}) registered an invalid {kind[:-1]} {what!r}: "
            f"{'; '.join(problems)}"
        )
    if kind == "variants":
        from ganpipe.variant_adapter import load_variant

        return load_variant(obj, owner, dist)
    return obj


@dataclass
class Registry:
    """Named variants, stages or datasets, each remembering its plugin."""

    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)
    #: broken plugins that were skipped (name -> problem): a name not found may be theirs
    broken: dict[str, PluginError] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        if entry.name in self.entries:
            first = self.entries[entry.name]
            raise PluginError(
                f"{self.kind[:-1]} {entry.name!r} is registered twice: by {first.where} and "
                f"by {entry.where}; disable one with GANPIPE_DISABLE_PLUGINS"
            )
        self.entries[entry.name] = entry

    def get(self, name: str, *, where: str = "") -> Any:
        """The object named ``name`` (loaded on first use); an unknown name is a
        :class:`ConfigError` with a "did you mean" hint, or, while a broken plugin is
        skipped, a :class:`PluginError` naming it and its problem (it may provide it)."""
        entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "none"
            close = difflib.get_close_matches(name, list(self.entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            loc = f"{where}: " if where else ""
            if self.broken:
                maybe = f" (or did you mean {close[0]!r}?)" if close else ""
                raise PluginError(
                    f"{loc}unknown {self.kind[:-1]} {name!r}{maybe}; it may come from a "
                    f"broken plugin, skipped: {'; and '.join(map(str, self.broken.values()))}"
                )
            raise ConfigError(
                f"{loc}unknown {self.kind[:-1]} {name!r}{hint} (known: {known}; "
                f"`ganpipe plugins` lists what is installed)"
            )
        return entry.load()

    def owner(self, name: str) -> str:
        return self.entries[name].owner

    def forget(self, owner: str) -> None:
        """Drop what the plugin ``owner`` registered (it turned out broken)."""
        self.entries = {n: e for n, e in self.entries.items() if e.owner != owner}

    def load_all(self) -> None:
        for entry in self.entries.values():
            entry.load()

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)


class _Register:
    """Base of the ``register`` objects: ``register(obj)`` or ``register.lazy(...)``."""

    kind = ""

    def __init__(self, registry: Registry, owner: str, dist: str):
        self._registry, self._owner, self._dist = registry, owner, dist

    def _add(self, obj: Any) -> None:
        obj = validate(obj, self.kind, self._owner, self._dist)
        self._registry.add(Entry(obj.name, self.kind, self._owner, self._dist, obj=obj))

    def _lazy(self, target: str, name: str, declared: dict[str, Any]) -> None:
        where = f"plugin {self._owner!r} ({self._dist})"
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr.isidentifier():
            raise PluginError(f"{where}: lazy target {target!r} must be 'package.module:Name'")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PluginError(
                f"{where}: lazy {self.kind[:-1]} name {name!r} must be a "
                f"lower-case name such as 'my-gan'"
            )
        self._registry.add(
            Entry(name, self.kind, self._owner, self._dist, target=target, declared=declared)
        )
        contract.declare(target, {"name": name, **declared})


class VariantRegister(_Register):
    """What ``ganpipe_register_variants`` receives.

    * ``register(variant)``: a :class:`ganpipe.Variant` object, checked now;
    * ``register.lazy("pkg.module:MyVariant", name="my-gan", task="generate",
      description="...")``: imported (and the class instantiated) when a pipeline first
      names it, so ``ganpipe plugins`` and torch-free commands never import your module.
      The declaration is the variant's identity: the class need not set ``name``,
      ``task`` or ``description`` (they are filled in on load); one it does set must
      match what is declared here.
    """

    kind = "variants"

    def __call__(self, variant: Any, /) -> None:
        self._add(variant)

    def lazy(
        self, target: str, /, *, name: str, task: str = "generate", description: str = ""
    ) -> None:
        if task not in TASKS:
            raise PluginError(
                f"plugin {self._owner!r} ({self._dist}): variant {name!r} has "
                f"task {task!r}; use one of {', '.join(TASKS)}"
            )
        self._lazy(target, name, {"task": task, "description": description})


class StageRegister(_Register):
    """What ``ganpipe_register_stages`` receives: ``register(stage)`` with a
    :class:`ganpipe.Stage` object, or ``register.lazy("pkg.module:MyStage", name=...,
    description=...)``."""

    kind = "stages"

    def __call__(self, stage: Any, /) -> None:
        self._add(stage)

    def lazy(self, target: str, /, *, name: str, description: str = "") -> None:
        self._lazy(target, name, {"description": description})


class DatasetRegister(_Register):
    """What ``ganpipe_register_datasets`` receives: ``register(source)`` with a
    :class:`ganpipe.DatasetSource` object, or ``register.lazy(...)`` as for stages."""

    kind = "datasets"

    def __call__(self, source: Any, /) -> None:
        self._add(source)

    def lazy(self, target: str, /, *, name: str, description: str = "") -> None:
        self._lazy(target, name, {"description": description})


REGISTERS: dict[str, type[_Register]] = {
    "variants": VariantRegister,
    "stages": StageRegister,
    "datasets": DatasetRegister,
}


@dataclass
class Registries:
    pm: pluggy.PluginManager
    variants: Registry
    stages: Registry
    datasets: Registry

    def dist(self, plugin: str) -> str:
        return getattr(self.pm, "ganpipe_dists", {}).get(plugin, "ganpipe (built-in)")

    @property
    def problems(self) -> dict[str, PluginError]:
        """The broken third-party plugins that were skipped: name -> problem."""
        return dict(getattr(self.pm, "ganpipe_problems", {}))

    def load_all(self) -> None:
        """Load and check every lazily declared object (imports the plugins' modules)."""
        for kind in KINDS:
            getattr(self, kind).load_all()


def load_registry(
    pm: pluggy.PluginManager | None = None,
    *,
    entry_points: bool = True,
    strict: bool = False,
    warn: bool = True,
) -> Registries:
    """Call every registration hook, one plugin at a time so each object knows its owner.

    A third-party plugin that fails to load or register (or registers something invalid,
    or a name already taken) is broken: ``strict``, its :class:`PluginError` is raised;
    otherwise it is skipped - what it registered dropped, its problem in
    :attr:`Registries.problems`, said once on stderr (``warn``) - and the others work. A
    built-in plugin's failure is always raised."""
    from ganpipe.plugins import get_plugin_manager, report_problems

    pm = pm or get_plugin_manager(entry_points=entry_points, strict=strict)
    with contract.loading():
        registries = _load(pm, strict)
    if warn:
        report_problems(registries.problems.values())
    return registries


def _load(pm: pluggy.PluginManager, strict: bool = True) -> Registries:
    from ganpipe.plugins import set_aside

    regs = {kind: Registry(kind) for kind in KINDS}
    dists = getattr(pm, "ganpipe_dists", {})
    for kind in KINDS:
        caller = getattr(pm.hook, f"ganpipe_register_{kind}")
        for impl in caller.get_hookimpls():
            owner = impl.plugin_name
            if pm.get_plugin(owner) is None:  # set aside by an earlier hook
                continue
            dist = dists.get(owner, "ganpipe (built-in)")
            register = REGISTERS[kind](regs[kind], owner, dist)
            kwargs = {"register": register} if "register" in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except Exception as exc:  # noqa: BLE001
                fatal = strict or owner not in dists  # a built-in's failure: ganpipe's bug
                if isinstance(exc, PluginError):
                    if fatal:
                        raise
                    problem = exc
                else:
                    problem = PluginError(
                        f"plugin {owner!r} ({dist}) failed in ganpipe_register_{kind}: "
                        f"{type(exc).__name__}: {one_line(exc)}"
                    )
                    if fatal:
                        raise problem from exc
                    problem.__cause__ = exc
                set_aside(pm, owner, problem)
                for registry in regs.values():
                    registry.forget(owner)
    broken = dict(getattr(pm, "ganpipe_problems", {}))
    for registry in regs.values():
        registry.broken = broken
    return Registries(pm, regs["variants"], regs["stages"], regs["datasets"])
