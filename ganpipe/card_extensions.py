"""Typed model-card extension fields: the pydantic models plugins declare for their
namespaces of :attr:`ganpipe.ModelCard.extensions` (hook ``ganpipe_model_card_fields``,
since 0.3).

A variant writes its namespace at export (``ExportSpec.metadata["extensions"] =
{"my-ns": MyFields(...)}``); every reader gets it back typed with
``card.extension("my-ns")``, which finds ``MyFields`` here. The plugins are loaded only
when a typed namespace is asked for, so reading a card (generate, upscale) never loads
them. A namespace is declared by one plugin; ``ganpipe`` is reserved. Torch-free.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

from ganpipe.errors import PluginError
from ganpipe.modelcard import NAME_PATTERN

__all__ = ["CardFieldsRegister", "declared_fields", "declared_model"]

RESERVED = ("ganpipe",)


@dataclass
class DeclaredFields:
    """A namespace, the plugin declaring it, and its model (or ``target`` to import)."""

    namespace: str
    owner: str
    dist: str
    model: Any = None
    target: str | None = None

    @property
    def where(self) -> str:
        return f"plugin {self.owner!r} ({self.dist})"

    def load(self) -> Any:
        """The pydantic model class, imported on first use for a lazy declaration."""
        if self.model is None:
            from ganpipe.plugins import plugin_code

            module, _, attr = (self.target or "").partition(":")
            with plugin_code(
                f"{self.where}: cannot load the model card fields of {self.namespace!r} "
                f"from {self.target}",
                f"fix or uninstall the plugin, or skip it with "
                f"GANPIPE_DISABLE_PLUGINS={self.owner}",
            ):
                found = getattr(importlib.import_module(module), attr)
            _check_model(found, self.namespace, self.where)
            self.model = found
        return self.model


def _check_model(model: Any, namespace: str, where: str) -> None:
    from pydantic import BaseModel

    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(
            f"{where}: the model card fields of {namespace!r} must be a pydantic model "
            f"class (class MyFields(pydantic.BaseModel)), got {model!r}"
        )


class CardFieldsRegister:
    """What ``ganpipe_model_card_fields`` receives (since 0.3):
    ``register("my-ns", MyFields)`` with a pydantic model class, or
    ``register.lazy("pkg.module:MyFields", namespace="my-ns")`` to import it only when a
    card's ``my-ns`` fields are read typed. Name the namespace after your plugin."""

    def __init__(self, declared: dict[str, DeclaredFields], owner: str, dist: str):
        self._declared, self._owner, self._dist = declared, owner, dist

    def _add(self, entry: DeclaredFields) -> None:
        ns = entry.namespace
        if not isinstance(ns, str) or not re.match(NAME_PATTERN, ns) or ns in RESERVED:
            raise PluginError(
                f"{entry.where}: model card namespace {ns!r} must be lower-case letters, "
                f"digits, '-' or '_' and not {', '.join(RESERVED)}; use your plugin's name"
            )
        first = self._declared.get(ns)
        if first is not None:
            raise PluginError(
                f"model card namespace {ns!r} is declared twice: by {first.where} and by "
                f"{entry.where}; disable one with GANPIPE_DISABLE_PLUGINS"
            )
        self._declared[ns] = entry

    def __call__(self, namespace: str, model: Any, /) -> None:
        entry = DeclaredFields(namespace, self._owner, self._dist, model=model)
        _check_model(model, namespace, entry.where)
        self._add(entry)

    def lazy(self, target: str, /, *, namespace: str) -> None:
        entry = DeclaredFields(namespace, self._owner, self._dist, target=target)
        module, sep, attr = target.partition(":") if isinstance(target, str) else ("", "", "")
        if not sep or not module or not attr.isidentifier():
            raise PluginError(
                f"{entry.where}: lazy target {target!r} of model card namespace "
                f"{namespace!r} must be 'package.module:Name'"
            )
        self._add(entry)


_CACHE: dict[str, dict[str, DeclaredFields] | None] = {"declared": None}


def declared_fields(pm: Any = None) -> dict[str, DeclaredFields]:
    """Namespace -> declaration, from the plugins of ``pm`` (default: the installed
    plugins, loaded once per process)."""
    if pm is None:
        if _CACHE["declared"] is None:
            from ganpipe.plugins import get_plugin_manager, problems_of, report_problems

            pm = get_plugin_manager(strict=False)  # a broken plugin: said once, skipped
            report_problems(problems_of(pm).values())
            _CACHE["declared"] = declared_fields(pm)
        return _CACHE["declared"]  # type: ignore[return-value]
    from ganpipe.hookcall import calls

    declared: dict[str, DeclaredFields] = {}
    for call in calls(pm, "ganpipe_model_card_fields"):
        call(register=CardFieldsRegister(declared, call.owner, call.dist))
    return declared


def declared_model(namespace: str, pm: Any = None) -> Any:
    """The pydantic model the plugins declare for ``namespace``, or ``None``."""
    entry = declared_fields(pm).get(namespace)
    return None if entry is None else entry.load()
