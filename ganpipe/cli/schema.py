"""Click options derived from a pydantic options model, so that a command's options are
defined once (the model: type, default, bounds, help) and the CLI, the pipeline stage and
the library all take the same model.

    @main.command()
    @options_from(UpscaleOptions, exclude={"input"}, flags={"overlap": ("--tile-overlap",)})
    def upscale(**values):
        opts = build(UpscaleOptions, values)      # validated; errors name the --flag

Mapping: ``bool`` -> ``--name/--no-name``; ``int``/``float`` with ``ge``/``le`` bounds ->
``IntRange``/``FloatRange``; ``Literal[...]`` -> ``Choice``; ``list[...]`` -> a repeatable
option; ``dict[str, ...]`` -> a repeatable ``NAME=VALUE`` option (values as strings, for the
model to convert); everything else -> a string. ``None`` defaults stay unset and leave the
model's default in force.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal

import annotated_types
import click
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ganpipe.errors import ConfigError


def flag_name(field: str, flags: dict[str, tuple[str, ...]] | None = None) -> str:
    """The long option of ``field`` (``png_compression`` -> ``--png-compression``)."""
    names = (flags or {}).get(field)
    if names:
        return next((n for n in names if n.startswith("--")), names[0])
    return "--" + field.replace("_", "-")


def _bounds(info: FieldInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            out["min"] = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            out["min"], out["min_open"] = meta.gt, True
        elif isinstance(meta, annotated_types.Le):
            out["max"] = meta.le
        elif isinstance(meta, annotated_types.Lt):
            out["max"], out["max_open"] = meta.lt, True
    return out


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _click_type(tp: Any, info: FieldInfo) -> tuple[Any, bool]:
    """(click type, multiple) for a field's annotation."""
    tp = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return click.Choice([str(a) for a in typing.get_args(tp)]), False
    if origin in (list, tuple):
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
        return _click_type(inner, FieldInfo())[0], True
    if origin is dict:
        return click.STRING, True
    if tp is int:
        return (click.IntRange(**_bounds(info)) if _bounds(info) else int), False
    if tp is float:
        return (click.FloatRange(**_bounds(info)) if _bounds(info) else float), False
    return click.STRING, False


def options_from(
    model: type[BaseModel],
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    flags: dict[str, tuple[str, ...]] | None = None,
    help: dict[str, str] | None = None,
    metavars: dict[str, str] | None = None,
) -> Callable[[Callable], Callable]:
    """A decorator adding one click option per field of ``model`` (in field order)."""
    names = [n for n in (include or model.model_fields) if n not in set(exclude)]
    flags, help, metavars = flags or {}, help or {}, metavars or {}

    def decorate(fn: Callable) -> Callable:
        for name in reversed(names):
            info = model.model_fields[name]
            text = help.get(name) or info.description or ""
            decls = flags.get(name) or (flag_name(name),)
            ctype, multiple = _click_type(info.annotation, info)
            default = None if info.is_required() else info.get_default(call_default_factory=True)
            bare = _strip_optional(info.annotation)
            if bare is bool:
                long = next(d for d in decls if d.startswith("--"))
                decls = (*[d for d in decls if not d.startswith("--")], f"{long}/--no-{long[2:]}")
                option = click.option(
                    *decls, name, default=default, show_default=default is not None, help=text
                )
            else:
                option = click.option(
                    *decls,
                    name,
                    type=ctype,
                    multiple=multiple,
                    default=None if multiple or default is None else default,
                    show_default=default is not None and not multiple,
                    metavar=metavars.get(name),
                    required=info.is_required(),
                    help=text,
                )
            fn = option(fn)
        return fn

    return decorate


def build(
    model: type[BaseModel], values: dict[str, Any], flags: dict[str, tuple[str, ...]] | None = None
) -> Any:
    """``model`` from the values of :func:`options_from`'s options (unset ones left to the
    model's defaults); a validation problem is a :class:`ConfigError` naming the flag."""
    data = {
        k: v for k, v in values.items() if k in model.model_fields and v is not None and v != ()
    }
    for name, value in data.items():
        bare = _strip_optional(model.model_fields[name].annotation)
        if typing.get_origin(bare) is dict and isinstance(value, list | tuple):
            data[name] = _pairs(value, flag_name(name, flags))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        given = err.get("input")
        got = "" if repr(given) in err["msg"] else f", got {given!r}"
        raise ConfigError(f"{flag_name(field, flags)}: {err['msg']}{got}") from None


def _pairs(items: Iterable[str], flag: str) -> dict[str, str]:
    """``("a=1", "b=2,3")`` -> ``{"a": "1", "b": "2,3"}``; a one-line error naming ``flag``
    for an item without ``=`` or a name given twice."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = (p.strip() for p in str(item).partition("="))
        if not sep or not name or not value:
            raise ConfigError(f"{flag} {item!r}: use NAME=VALUE, e.g. {flag} name=1")
        if name in out:
            raise ConfigError(f"{flag} {name} is given twice; give each name once")
        out[name] = value
    return out
