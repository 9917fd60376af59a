"""Typed options: every variant, stage and dataset declares a pydantic model derived from
:class:`Options`. Unknown keys are rejected; errors name the key path and suggest fixes."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from ganpipe.errors import ConfigError


class Options(BaseModel):
    """Base for option schemas: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
    # The folder relative paths in these options are relative to: the pipeline.toml's, set
    # by load_config (variants get no base_dir argument, unlike datasets and stages). Private,
    # so not in model_dump: fingerprints and resume checks keep the paths as written, and a
    # project folder that moves keeps its runs.
    _base_dir: Path | None = PrivateAttr(None)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A field redeclared to change its default or bounds (``lr_g: float = Field(1e-4,
        gt=0)`` in a subclass) keeps the description of the field it overrides, so that
        ``ganpipe plugins show`` and docs/options.md describe every option once."""
        super().__pydantic_init_subclass__(**kwargs)
        inherited = False
        for name, info in cls.model_fields.items():
            if info.description:
                continue
            for base in cls.__mro__[1:]:
                parent = vars(base).get("__pydantic_fields__", {}).get(name)
                if parent is not None and parent.description:
                    info.description, inherited = parent.description, True
                    break
        if inherited:  # the JSON schema reads it from the rebuilt core schema
            cls.model_rebuild(force=True, raise_errors=False)

    def resolve_path(self, path: str | os.PathLike) -> Path:
        """``path`` (``~`` expanded) relative to the pipeline.toml's folder; to the current
        folder for options made in code, not loaded from a file."""
        return resolve_from(self._base_dir, path)


def resolve_from(base: Path | None, path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded, and relative to ``base`` unless absolute (or ``base``
    is None)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or base is None else base / p


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], prefix: str, locate=None
) -> str:
    """First error of ``exc`` as one line: ``[file:line: ]prefix.key: what; fix``."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    path = ".".join([p for p in (prefix, *loc) if p])
    where = locate(path) if locate else ""
    where = f"{where}: " if where else ""
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = list(model.model_fields) if len(loc) == 1 else []
        close = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{where}{path}: unknown key{hint}{known}"
    if kind == "missing":
        return f"{where}{path}: required key is missing; add `{loc[-1]} = ...`"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not loc or isinstance(err.get("input"), dict):  # a check of several keys: no "got"
        return f"{where}{path}: {msg}{more}"
    return f"{where}{path}: {msg}, got {_describe(err.get('input'))}{more}"


def validate(model: type[BaseModel], data: dict[str, Any], prefix: str, locate=None):
    """Validate ``data`` against ``model``; raise :class:`ConfigError` on the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, prefix, locate)) from None
