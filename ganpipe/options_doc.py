"""What an options model offers, as users write it in pipeline.toml: each option's key,
type, default, bounds and description (the pydantic ``Field(description=...)``).

One source for everything that shows options: ``ganpipe plugins show NAME`` and the
generated docs page of the built-ins. Torch-free: it reads the pydantic model only.

    >>> from ganpipe.options_doc import describe_options
    >>> [(o.name, o.type, o.default) for o in describe_options(MyVariant.Options)][:1]
    [('latent_dim', 'int', '100')]

Types and defaults are written in TOML terms (``true``, ``"hinge"``, ``[0.5, 0.999]``,
``path``), since that is where users type them.
"""

from __future__ import annotations

import enum
import json
import math
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

#: Python types as users write them in TOML
_NAMES: dict[Any, str] = {
    int: "int",
    float: "float",
    bool: "bool",
    str: "str",
    bytes: "str",
    type(None): "none",
    Any: "any",
}


@dataclass(frozen=True)
class OptionDoc:
    """One option of an options model, ready to print.

    ``name``: the TOML key; ``type``: its type in TOML terms (``int``, ``"bce" | "ragan"``,
    ``list of float``, ``[float, float]``, ``path``); ``default``: the default as TOML text, ``None`` when the
    option is required; ``bounds``: e.g. ``">= 1, <= 1000000"`` (empty when none);
    ``description``: the field's description (empty when the author gave none)."""

    name: str
    type: str
    default: str | None
    description: str
    bounds: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``required`` spelled out."""
        return {**asdict(self), "required": self.required}


def describe_options(options: type[BaseModel]) -> list[OptionDoc]:
    """The options of the pydantic model class ``options``, in declaration order
    (inherited ones first, as pydantic orders them)."""
    return [_describe(name, info) for name, info in options.model_fields.items()]


def _describe(name: str, info: FieldInfo) -> OptionDoc:
    return OptionDoc(
        name=info.alias or name,
        type=type_text(info.annotation),
        default=_default(info),
        description=" ".join((info.description or "").split()),
        bounds=bounds_text(info),
    )


def type_text(tp: Any) -> str:
    """``tp`` in TOML terms: ``int``, ``path``, ``"a" | "b"``, ``list of int``,
    ``table of float``, ``int or unset`` (for ``X | None``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is Literal:
        return " | ".join(toml_value(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        text = " or ".join(type_text(a) for a in kept)
        return f"{text} or unset" if len(kept) < len(args) else text
    if origin in (list, set, frozenset, tuple) or tp in (list, tuple, set):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"[{', '.join(type_text(a) for a in args)}]"
        return f"list of {_grouped(args[0])}" if args else "list"
    if origin is dict or tp is dict:
        return f"table of {_grouped(args[1])}" if len(args) == 2 else "table"
    if tp in _NAMES:
        return _NAMES[tp]
    if isinstance(tp, type):
        if issubclass(tp, PurePath):
            return "path"
        if issubclass(tp, enum.Enum):
            return " | ".join(toml_value(m.value) for m in tp)
        if issubclass(tp, BaseModel):
            return f"table ({tp.__name__})"
        if issubclass(tp, str | int | float):  # text parsed into a value: Device -> device
            return tp.__name__.lower()
        return tp.__name__
    return str(tp).replace("typing.", "")


def _grouped(tp: Any) -> str:
    """``type_text(tp)``, in parentheses when it is a choice (``list of ("a" | "b")``)."""
    text = type_text(tp)
    return f"({text})" if " or " in text or " | " in text else text


def toml_value(value: Any) -> str:
    """``value`` as it is written in a pipeline.toml: ``true``, ``"text"``, ``[1, 2]``,
    ``{ key = 1 }``; ``None`` (not writable in TOML) is ``unset``."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return toml_value(value.value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else "inf")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | PurePath):
        return json.dumps(str(value))
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, BaseModel):
        return toml_value(value.model_dump())
    return repr(value)


def _default(info: FieldInfo) -> str | None:
    if info.default is not PydanticUndefined:
        return toml_value(info.default)
    if info.default_factory is not None:
        try:
            return toml_value(info.default_factory())  # type: ignore[call-arg]
        except Exception:  # noqa: BLE001 - a factory that needs arguments: say so
            return "(computed)"
    return None


def bounds_text(info: FieldInfo) -> str:
    """The numeric and length bounds of a field, e.g. ``">= 1, <= 100"``."""
    out = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None and isinstance(meta, annotated_types.BaseMetadata):
                out.append(f"{sign} {toml_value(value)}")
        if isinstance(meta, annotated_types.MinLen) and meta.min_length:
            out.append(f"at least {meta.min_length} items")
        if isinstance(meta, annotated_types.MaxLen) and meta.max_length is not None:
            out.append(f"at most {meta.max_length} items")
    return ", ".join(out)
