"""The model card: what an exported ``.onnx`` says about itself, typed and torch-free.

Every ``.onnx`` ganpipe writes carries a :class:`ModelCard` in its ``metadata_props``, one
``ganpipe.<field>`` entry per field (JSON values), so that ``generate``, ``upscale``,
``evaluate`` and the metrics need nothing but the file. Export writes it with
:meth:`ModelCard.to_props`; every reader goes through :meth:`ModelCard.from_props`, which
validates the values and refuses a file from a newer format version.

Fields a plugin adds through ``ExportSpec.metadata`` that are not fields of the card are
kept in :attr:`ModelCard.extra` and written back unchanged. A key that later became a field
(``min_size``, once an extra key) is read into the field, from files and from ``extra``
alike, so older files and callers keep working.

**Extension fields** (since 0.3) are a plugin's own, namespaced: ``ExportSpec.metadata
["extensions"] = {"my-ns": {...}}`` (a pydantic model instance, or a JSON object), written
as one ``ganpipe.extensions.<namespace>`` entry each and read back into
:attr:`ModelCard.extensions`; :meth:`ModelCard.extension` returns a namespace typed by the
pydantic model its plugin declares (hook ``ganpipe_model_card_fields``,
:mod:`ganpipe.card_extensions`). A namespace no installed plugin declares is kept as it is
and written back unchanged; neither extensions nor ``extra`` can shadow a key of ganpipe's.
Input kinds are names (:mod:`ganpipe.inputs` says what each means; plugins add kinds), so
a card with a plugin's kind reads without that plugin.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ganpipe.errors import ModelFileError

#: Prefix of ganpipe's keys in an ONNX file's ``metadata_props``.
PREFIX = "ganpipe."
#: Format version written by this ganpipe; files with a higher one are refused.
FORMAT_VERSION = 1
#: What a model does: latent -> image, image -> larger image, image -> image (scale 1).
Task = Literal["generate", "super_resolve", "translate"]
#: The same, as a tuple (``ganpipe.TASKS``): every task a variant declares and a card names.
TASKS: tuple[str, ...] = get_args(Task)
#: Input kinds built into ganpipe (see :class:`InputSpec`; plugins add others, named like
#: :data:`NAME_PATTERN`, see :mod:`ganpipe.inputs`).
INPUT_KINDS = ("normal", "label", "image", "categorical", "uniform", "truncation")
#: what an input kind or an extension namespace is named: lower-case, digits, ``-``, ``_``
NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
#: key prefix (after :data:`PREFIX`) of the extension namespaces in ``metadata_props``
EXTENSIONS = "extensions."
#: What ``generate --truncation T`` does to a model (:attr:`ModelCard.truncation`).
TRUNCATIONS = ("z_redraw", "w_lerp", "none")


@dataclass(frozen=True)
class InputSpec:
    """One input of an exported model.

    ``kind``: ``normal`` (standard normal noise of ``shape`` per sample), ``label`` (int64
    class index per sample), ``image`` (float NCHW image, ``shape`` = (channels,); height
    and width are dynamic), ``categorical`` (float one-hot along the last axis of
    ``shape``, each code uniform over its classes), ``uniform`` (float U(-1, 1) of
    ``shape``): the two latent codes that ``ganpipe generate --code`` can fix, or
    ``truncation`` (float psi of ``shape``, one per style layer: each layer's w is pulled
    towards the average w, ``w_avg + psi * (w - w_avg)``; 1 is no truncation, 0 the
    average image; ``generate --truncation`` sets it), or a kind a plugin registers
    (since 0.3, :mod:`ganpipe.inputs`).
    """

    name: str
    kind: str
    shape: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "shape": list(self.shape)}


def _encode(value: Any) -> str:
    """JSON, except plain strings, which stay as they are (``ganpipe.variant = dcgan``) unless
    they would read back as something else (``"123"``, ``"true"``): those are quoted."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str
    kind: str = Field(pattern=NAME_PATTERN)
    shape: tuple[int, ...] = ()


class ModelCard(BaseModel):
    """The metadata contract of an exported model (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    variant: str = ""
    task: Task
    image_size: int = Field(0, ge=0, description="training image size (0: any size)")
    channels: int = Field(3, ge=1, le=4)
    class_names: tuple[str, ...] = ()
    value_range: tuple[float, float] = (-1.0, 1.0)
    inputs: tuple[InputSpec, ...] = ()
    output: str = "image"
    latent_dim: int = Field(0, ge=0)
    scale: int | None = Field(None, description="output size / input size (image tasks)")
    tile_multiple: int = Field(1, ge=1, description="input sides must be multiples of it")
    min_size: int = Field(
        0,
        ge=0,
        description="smallest input height and width the net takes (smaller inputs are "
        "padded up to it); 0: any",
    )
    fixed_tile: int | None = Field(
        None,
        ge=1,
        description="the net takes exactly fixed_tile x fixed_tile inputs with batch 1 (its "
        "graph was exported at that one shape, e.g. SwinIR, HAT): the upscaler pads smaller "
        "inputs up to it and tiles larger images in windows no larger; unset: any size",
    )
    direction: str | None = Field(None, description="translate: AtoB or BtoA")
    resolution: int | None = Field(None, ge=1, description="output size (pggan: level)")
    precision: Literal["float32", "float16"] = "float32"
    truncation: Literal["z_redraw", "w_lerp", "none"] | None = Field(
        None,
        description="what generate --truncation T does: 'z_redraw' redraws Gaussian noise "
        "values beyond +-T (BigGAN; for generators that take z as drawn), 'w_lerp' feeds "
        "psi = T to the 'truncation' input (StyleGAN: w pulled towards the average w), "
        "'none': the model has no truncation (pggan: z is normalised, so truncating it "
        "does nothing); unset (cards before this field): 'z_redraw' where the model has "
        "Gaussian noise",
    )
    imported_from: str | None = None
    model_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the variant's options as training resolved them (scaled defaults included)",
    )
    extensions: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="plugins' namespaced fields: namespace -> JSON object (since 0.3)",
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="plugin-defined keys")

    @model_validator(mode="before")
    @classmethod
    def _legacy_extra(cls, data: Any) -> Any:
        """``extra["min_size"]`` (where cards before the field kept it) moves to the field;
        a ``min_size`` given as a field wins."""
        if isinstance(data, dict) and isinstance(data.get("extra"), dict):
            extra = dict(data["extra"])
            if "min_size" in extra:
                value = extra.pop("min_size")
                data = {**data, "extra": extra}
                data.setdefault("min_size", value)
        return data

    @field_validator("extensions", mode="before")
    @classmethod
    def _extensions(cls, value: Any) -> dict[str, dict[str, Any]]:
        """Namespaces named like input kinds; a pydantic model instance (a plugin's typed
        fields) is stored as its JSON object."""
        if not isinstance(value, dict):
            raise ValueError("extensions must be a mapping of namespace -> fields")
        out = {}
        for namespace, fields in value.items():
            if not isinstance(namespace, str) or not re.match(NAME_PATTERN, namespace):
                raise ValueError(
                    f"extension namespace {namespace!r} must be lower-case letters, digits, "
                    f"'-' or '_' (the plugin's name, e.g. 'my-plugin')"
                )
            if isinstance(fields, BaseModel):
                fields = fields.model_dump(mode="json")
            if not isinstance(fields, dict):
                raise ValueError(
                    f"extension {namespace!r} must be a pydantic model or a mapping of "
                    f"fields, not {type(fields).__name__}"
                )
            out[namespace] = fields
        return out

    @field_validator("extra")
    @classmethod
    def _no_shadowing(cls, value: dict[str, Any]) -> dict[str, Any]:
        """ganpipe's own keys are its fields': ``extra`` may not write over them."""
        for key in value:
            if key in cls.model_fields or key == "num_classes" or key.startswith(EXTENSIONS):
                raise ValueError(
                    f"extra key {key!r} is ganpipe's own; set the card field (or "
                    f"metadata['extensions'] for a plugin's namespaced fields) instead"
                )
        return value

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> tuple[InputSpec, ...]:
        out = []
        for item in value or ():
            if isinstance(item, InputSpec):
                out.append(item)
            else:
                spec = _Input.model_validate(item)
                out.append(InputSpec(spec.name, spec.kind, tuple(spec.shape)))
        return tuple(out)

    @field_validator("value_range")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[1] > value[0]:
            raise ValueError(f"value_range must be [low, high] with high > low, got {value}")
        return value

    # -- derived ---------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def conditional(self) -> bool:
        return any(s.kind == "label" for s in self.inputs)

    def image_input(self) -> InputSpec | None:
        return next((s for s in self.inputs if s.kind == "image"), None)

    def extension(self, namespace: str, model: type[BaseModel] | None = None) -> Any:
        """The extension fields of ``namespace``: an instance of ``model`` (default: the
        pydantic model the installed plugins declare for it, hook
        ``ganpipe_model_card_fields``), or the plain mapping when none is declared;
        ``None`` when the card has none. Values the model refuses are a one-line
        :class:`ModelFileError` naming the field."""
        fields = self.extensions.get(namespace)
        if fields is None:
            return None
        if model is None:
            from ganpipe.card_extensions import declared_model

            model = declared_model(namespace)
            if model is None:
                return dict(fields)
        try:
            return model.model_validate(fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ModelFileError(
                f"model card extension {namespace!r}: field {where!r} is invalid "
                f"({err['msg']}) for {model.__name__}; re-export the model with the "
                f"plugin's version that reads it"
            ) from None

    # -- ONNX metadata_props ---------------------------------------------------------------
    def to_props(self) -> dict[str, str]:
        """``{"ganpipe.<field>": json}`` for an ONNX file's ``metadata_props``."""
        data = self.model_dump(mode="json", exclude={"extra", "extensions"}, exclude_none=True)
        data["num_classes"] = self.num_classes  # written for older readers
        data = {**self.extra, **data}  # ganpipe's keys win (``extra`` cannot hold them)
        data.update({EXTENSIONS + ns: fields for ns, fields in self.extensions.items()})
        return {PREFIX + k: _encode(v) for k, v in data.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: object = "model") -> ModelCard:
        """Read the card from ``metadata_props`` (as a dict); a missing card, bad values or
        a newer format version are one-line :class:`ModelFileError`\\ s naming ``source``."""
        raw: dict[str, Any] = {}
        for key, value in props.items():
            if key.startswith(PREFIX):
                try:
                    raw[key[len(PREFIX) :]] = json.loads(value)
                except json.JSONDecodeError:
                    raw[key[len(PREFIX) :]] = value
        if "task" not in raw:
            raise ModelFileError(
                f"{source} is not a ganpipe model (no ganpipe metadata); pass an .onnx "
                f"written by `ganpipe run` (export stage) or `ganpipe import`"
            )
        try:
            version = int(raw.get("format_version", 1))
        except (TypeError, ValueError):
            version = -1
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{source} has model card format {version}, newer than this ganpipe "
                f"reads (up to {FORMAT_VERSION}); upgrade ganpipe (pip install -U ganpipe)"
            )
        raw.pop("num_classes", None)
        fields = set(cls.model_fields) - {"extra", "extensions"}
        known = {k: v for k, v in raw.items() if k in fields}
        known["extensions"] = {
            k[len(EXTENSIONS) :]: v for k, v in raw.items() if k.startswith(EXTENSIONS)
        }
        known["extra"] = {
            k: v for k, v in raw.items() if k not in fields and not k.startswith(EXTENSIONS)
        }
        try:
            return cls.model_validate(known)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ModelFileError(
                f"{source}: model card field {where!r} is invalid ({err['msg']}); "
                f"re-export the model with this ganpipe"
            ) from None

    @classmethod
    def from_onnx(cls, model: Any, source: object = "model") -> ModelCard:
        """The card of a loaded ``onnx.ModelProto``."""
        return cls.from_props({p.key: p.value for p in model.metadata_props}, source)
