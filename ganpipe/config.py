"""pipeline.toml -> typed objects.

Layout::

    [run]        name, out_dir, seed, device, threads
    [data]       dataset, image_size, channels, + the dataset's own keys
    [model]      variant, + the variant's own keys
    [augment]    \
    [train]       | one table per stage, run in the order they appear;
    [export]      | keys are the stage's own options
    [generate]   /

Everything is validated at load time, before any stage runs; errors carry
``file:line`` and the key path, and unknown keys get a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ganpipe.devices import TORCH_KINDS, Device, grammar, training_device
from ganpipe.errors import ConfigError
from ganpipe.options import Options, validate

RESERVED = ("run", "data", "model")


class RunSection(Options):
    name: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="run folder name under out_dir",
    )
    out_dir: str = Field("runs", description="parent of run folders, relative to the toml")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed for every random number in the run")
    device: Device = Field(
        Device("auto"), description=f"training device: one of {grammar(TORCH_KINDS)}"
    )
    threads: int = Field(
        0,
        ge=0,
        description="CPU threads of each process's pools (torch training, ONNX Runtime, "
        "OpenVINO, ncnn); 0: the cores this process may use (CPU affinity and container "
        "quota), shared among the data-parallel processes of a machine",
    )

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: Any) -> Any:
        """Parsed once, here, by the one device grammar (:func:`ganpipe.devices.parse_device`)
        into a :class:`~ganpipe.devices.Device` (its text canonical: ``" cuda:0 "`` ->
        ``"cuda:0"``) that the stages carry."""
        if not isinstance(value, str | Device):
            return value  # pydantic's own "should be a string" error
        return training_device(value)


class DataSection(Options):
    model_config = Options.model_config | {"extra": "allow"}
    dataset: str = Field(
        "folder", description="the dataset source: folder, shapes, patches or a plugin's"
    )
    image_size: int = Field(
        64, ge=4, le=4096, description="side in pixels of the square images the nets train on"
    )
    channels: Literal[1, 3] = Field(3, description="1: grayscale, 3: RGB")
    holdout: float = Field(
        0.0, ge=0.0, lt=1.0, description="fraction of images kept out of training, for evaluate"
    )


class ModelSection(Options):
    model_config = Options.model_config | {"extra": "allow"}
    variant: str


@dataclass
class StageConfig:
    name: str
    stage: Any
    options: Any


@dataclass
class PipelineConfig:
    path: Path
    base_dir: Path
    run: RunSection
    data: DataSection
    dataset: Any  # None when no stage uses the data and there is no [data] table
    data_options: Any
    model: ModelSection | None  # None when no stage uses a model and there is no [model]
    variant: Any
    variant_options: Any
    stages: list[StageConfig] = field(default_factory=list)
    #: ``keypath -> "file:line"`` (see :meth:`where`)
    locate: Any = None
    #: the ``[train]`` values taken from the variant's ``train_defaults`` (keys the user
    #: did not set), already in the train stage's options
    train_defaults: dict[str, Any] = field(default_factory=dict)

    def where(self, keypath: str) -> str:
        """``file:line`` of a key (``"data.image_size"``), for one-line errors."""
        return self.locate(keypath) if self.locate is not None else str(self.path)

    def error(self, keypath: str, message: str) -> ConfigError:
        """A :class:`ConfigError` ``file:line: keypath: message`` (the key path is not
        repeated when ``message`` starts with it)."""
        lead = "" if message.startswith(keypath) else f"{keypath}: "
        return ConfigError(f"{self.where(keypath)}: {lead}{message}")

    def located(self, message: str) -> ConfigError:
        """A :class:`ConfigError` for a check's ``message`` (no ``file:line`` yet): at the
        first key path it names that is a key of this pipeline (``data.image_size``,
        ``model.scale``...), else at the file."""
        keys = {
            "run": set(RunSection.model_fields),
            "data": set(DataSection.model_fields) | _fields(self.data_options),
            "model": {"variant"} | _fields(self.variant_options),
            **{sc.name: _fields(sc.options) for sc in self.stages},
        }
        for m in re.finditer(r"(?<![\w./\\-])([a-z_][\w-]*)\.([a-z_]\w*)", message):
            if m.group(2) in keys.get(m.group(1), ()):
                return self.error(m.group(0), message)
        return ConfigError(f"{self.path}: {message}")

    @property
    def run_dir(self) -> Path:
        out = Path(self.run.out_dir)
        if not out.is_absolute():
            out = self.base_dir / out
        return (out / self.run.name).resolve()

    def stage(self, name: str) -> StageConfig | None:
        return next((s for s in self.stages if s.name == name), None)


def _fields(options: Any) -> set[str]:
    return set(getattr(type(options), "model_fields", ()))


class _Locator:
    """Maps a key path (``train.batch_size``) to ``file:line`` by scanning the TOML text."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()

    def __call__(self, keypath: str) -> str:
        parts = keypath.split(".")
        table, key = parts[0], parts[1] if len(parts) > 1 else None
        current = None
        header_line = None
        for i, raw in enumerate(self.lines, 1):
            line = raw.strip()
            m = re.match(r"^\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]", line)
            if m:
                current = m.group(1).replace('"', "").replace(" ", "")
                if current == table:
                    header_line = i
                continue
            if (
                current == table
                and key is not None
                and re.match(rf'^"?{re.escape(key)}"?\s*=', line)
            ):
                return f"{self.path}:{i}"
        return f"{self.path}:{header_line}" if header_line else str(self.path)


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass the path of a pipeline.toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            msg = msg[: m.start()].strip()
            raise ConfigError(
                f"{path}:{m.group(1)}:{m.group(2)}: TOML syntax error: {msg}"
            ) from None
        raise ConfigError(f"{path}: TOML syntax error: {msg}") from None


def _check_keys(
    table: dict[str, Any], section: type[Options], options: type, prefix: str, locate
) -> None:
    """Unknown keys of a table shared by a section and a plugin's options ([data], [model]):
    the hint and the allowed list cover both, and come before any "missing key" error."""
    if getattr(options, "model_config", {}).get("extra") != "forbid":
        return
    allowed = [*section.model_fields, *options.model_fields]
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{locate(f'{prefix}.{key}')}: {prefix}.{key}: unknown key{hint} "
                f"(allowed: {', '.join(allowed)})"
            )


def _check_key_names(table: dict[str, Any], path: Path, prefix: str = "") -> None:
    """Quoted TOML keys may hold anything; a key with a line break or another control
    character is refused here, so that no message ever spans two lines."""
    for key, value in table.items():
        if not key.isprintable():
            raise ConfigError(
                f"{path}: {prefix}{key!r}: key names must be printable text (no line "
                f"breaks or control characters)"
            )
        if isinstance(value, dict):
            _check_key_names(value, path, f"{prefix}{key}.")


def load_config(path: str | Path, registries) -> PipelineConfig:
    """Parse and validate a pipeline file against the installed plugins."""
    path = Path(path)
    raw, text = read_toml(path)
    _check_key_names(raw, path)
    locate = _Locator(path, text)
    known = list(RESERVED) + list(registries.stages)
    for key, value in raw.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            raise ConfigError(
                f"{locate(key)}: unknown section [{key}]{hint} "
                f"(sections: run, data, model, and the stages "
                f"{', '.join(registries.stages)})"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{locate(key)}: '{key}' must be a table, e.g. [{key}]")
    stage_tables = [key for key in raw if key not in RESERVED]
    uses = {u for key in stage_tables for u in registries.stages.get(key).uses}
    if "model" not in raw and "model" in uses:
        users = [k for k in stage_tables if "model" in registries.stages.get(k).uses]
        raise ConfigError(
            f"{path}: missing [model] table, needed by [{users[0]}]; add [model] with "
            f'variant = "{next(iter(registries.variants), "dcgan")}"'
        )

    run = validate(RunSection, raw.get("run", {}), "run", locate)
    data = validate(DataSection, raw.get("data", {}), "data", locate)
    model = variant = variant_options = None
    if "model" in raw:
        model = validate(ModelSection, raw["model"], "model", locate)
        variant = registries.variants.get(
            model.variant, where=locate("model.variant") + ": model.variant"
        )
        _check_keys(raw["model"], ModelSection, variant.Options, "model", locate)
        variant_options = validate(variant.Options, dict(model.model_extra or {}), "model", locate)
    dataset = data_options = None
    if "data" in raw or "data" in uses:
        dataset = registries.datasets.get(
            data.dataset, where=locate("data.dataset") + ": data.dataset"
        )
        _check_keys(raw.get("data", {}), DataSection, dataset.Options, "data", locate)
        data_options = validate(dataset.Options, dict(data.model_extra or {}), "data", locate)

    stages = []
    for key, value in raw.items():
        if key in RESERVED:
            continue
        stage = registries.stages.get(key)
        stages.append(StageConfig(key, stage, validate(stage.Options, value, key, locate)))
    applied = {}
    if variant is not None:
        entry = registries.variants.entries[model.variant]
        applied = apply_train_defaults(stages, variant, entry.where)
    if not stages:
        raise ConfigError(
            f"{path}: no stages; add tables such as [train], [export], "
            f"[generate] in the order they should run"
        )
    cfg = PipelineConfig(
        path=path,
        base_dir=path.resolve().parent,
        run=run,
        data=data,
        dataset=dataset,
        data_options=data_options,
        model=model,
        variant=variant,
        variant_options=variant_options,
        stages=stages,
        locate=locate,
        train_defaults=applied,
    )
    for opts in (data_options, variant_options, *(sc.options for sc in stages)):
        if opts is None:
            continue
        if isinstance(opts, Options):  # a plugin may use a plain pydantic model
            opts._base_dir = cfg.base_dir
    for sc in stages:
        check = getattr(sc.stage, "check", None)
        if check:
            check(cfg, sc.options)
    return cfg


def apply_train_defaults(stages: list[StageConfig], variant: Any, where: str) -> dict[str, Any]:
    """Give the ``[train]`` stage the variant's recommended values
    (:attr:`ganpipe.Variant.train_defaults`) for the keys the user did not set; returns
    what was applied. A key or value the train options refuse is the variant's mistake: a
    one-line :class:`~ganpipe.errors.PluginError` naming its plugin."""
    from pydantic import ValidationError

    from ganpipe.errors import PluginError

    recommended = dict(variant.train_defaults)
    for i, sc in enumerate(stages):
        if sc.name != "train" or not recommended:
            continue
        opts = sc.options
        fields = type(opts).model_fields
        unknown = sorted(k for k in recommended if k not in fields)
        if unknown:
            raise PluginError(
                f"{where}: variant {variant.name!r} recommends train_defaults "
                f"{unknown[0]!r}, which is not a [train] key; fix its train_defaults "
                f"(keys: {', '.join(fields)})"
            )
        unset = {k: v for k, v in recommended.items() if k not in opts.model_fields_set}
        if not unset:
            return {}
        try:
            merged = type(opts).model_validate(
                {**unset, **opts.model_dump(include=opts.model_fields_set)}
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err.get("loc", ()))
            raise PluginError(
                f"{where}: variant {variant.name!r} recommends train_defaults {key} = "
                f"{unset.get(key)!r}, which [train] refuses ({err.get('msg')}); fix its "
                f"train_defaults"
            ) from None
        stages[i] = StageConfig(sc.name, sc.stage, merged)
        return unset
    return {}
