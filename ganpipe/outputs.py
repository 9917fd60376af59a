"""Typed records of what the built-in stages produce, read and written in place of raw
manifest keys (``manifest.stages["train"]["info"]["data"]``).

A stage's entry in ``manifest.json`` has ``outputs`` (paths relative to the run folder)
and ``info`` (JSON values). A :class:`StageOutput` subclass names both: fields annotated
with :class:`Output` are paths (absolute in the record, relative to the run folder in the
manifest), the others are ``info`` values. A stage returns ``ctx.result(TrainOutput(...),
summary)``; a later one reads ``ctx.output_of(TrainOutput, needed_by=...)``; the report
reads ``record.stage_output(TrainOutput)``. A plugin stage may define records of its own
the same way, or keep returning a :class:`~ganpipe.StageResult` of dicts.

The JSON is the one ganpipe wrote before these types existed, and reading takes the
entries of earlier versions (a key they lack takes its default; keys this version does not
know are ignored): run folders made before skip and resume as they did. Torch-free.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Output:
    """Marks a field of a :class:`StageOutput` as one of the stage's output paths;
    ``key``: its key in the manifest's ``outputs`` when that is not the field's name."""

    key: str | None = None


class StageOutput(BaseModel):
    """Base of the typed stage records: :attr:`stage` is the stage (table) that writes it."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=False)

    #: the name of the stage whose entry this is
    stage: ClassVar[str] = ""

    @classmethod
    @functools.cache
    def output_keys(cls) -> dict[str, str]:
        """Field name -> key in ``outputs``, for the fields marked :class:`Output`."""
        keys = {}
        for name, info in cls.model_fields.items():
            mark = next((m for m in info.metadata if isinstance(m, Output)), None)
            if mark is not None:
                keys[name] = mark.key or name
        return keys

    def to_dict(self, run_dir: Path) -> dict[str, dict[str, Any]]:
        """``{"outputs": {key: path relative to run_dir}, "info": {...}}`` as the manifest
        holds them; an optional field left at None is left out."""
        keys = self.output_keys()
        absent = {
            name
            for name, info in type(self).model_fields.items()
            if getattr(self, name) is None and info.default is None
        }
        outputs = {
            key: relative(getattr(self, name), run_dir)
            for name, key in keys.items()
            if name not in absent
        }
        info = self.model_dump(mode="json", exclude={*keys, *absent})
        return {"outputs": outputs, "info": info}

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], run_dir: Path) -> Self:
        """The record of a manifest entry (``outputs`` and ``info``), its paths under
        ``run_dir``; a :class:`ValueError` (pydantic's) when the entry does not fit."""
        outputs = entry.get("outputs") or {}
        info = entry.get("info") or {}
        if not isinstance(outputs, Mapping) or not isinstance(info, Mapping):
            raise ValueError(f"[{cls.stage}]'s entry has no outputs/info tables")
        keys = cls.output_keys()
        values = {n: info[n] for n in cls.model_fields if n not in keys and n in info}
        for name, key in keys.items():
            if isinstance(outputs.get(key), str):
                values[name] = run_dir / outputs[key]
        return cls.model_validate(values)

    def paths(self) -> dict[str, Path]:
        """``outputs`` key -> path, for the outputs this record has."""
        return {
            key: getattr(self, name)
            for name, key in self.output_keys().items()
            if getattr(self, name) is not None
        }


def relative(path: Path | str, run_dir: Path) -> str:
    """``path`` as the manifest records it: relative to ``run_dir`` (POSIX separators)
    when it is inside it, else absolute."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    for p, base in ((path, run_dir), (path.resolve(), run_dir.resolve())):
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(path.resolve())


class AugmentOutput(StageOutput):
    """``[augment]``: the augmented training set and a preview grid of it."""

    stage: ClassVar[str] = "augment"
    dataset: Annotated[Path, Output()]
    preview: Annotated[Path, Output()]
    images: int = 0
    source_images: int = 0
    skipped: int = 0


class TrainData(BaseModel):
    """What the model was trained on: the export builds its nets for it."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    image_size: int
    channels: int
    class_names: tuple[str, ...] = ()


class TrainOutput(StageOutput):
    """``[train]``: the last checkpoint, the metrics log and the latest sample grid."""

    stage: ClassVar[str] = "train"
    checkpoint: Annotated[Path, Output()]
    metrics: Annotated[Path | None, Output()] = None
    samples: Annotated[Path | None, Output()] = None
    steps: int = 0
    #: where it ran, as printed: ``cpu``, ``cuda``, ``2x cuda``
    device: str = ""
    data: TrainData
    images_per_s: float = 0.0
    #: the model options training used (defaults scaled); None in runs made before 0.2
    model_options: dict[str, Any] | None = None
    scaled_defaults: dict[str, Any] = Field(default_factory=dict)


class ExportOutput(StageOutput):
    """``[export]``: the ``.onnx`` and how close it came to the torch generator."""

    stage: ClassVar[str] = "export"
    model: Annotated[Path, Output()]
    max_abs_diff: float | None = None
    ema: bool = False


class GenerateOutput(StageOutput):
    """``[generate]``: the folder of images and their grid."""

    stage: ClassVar[str] = "generate"
    images: Annotated[Path, Output()]
    grid: Annotated[Path | None, Output()] = None
    count: int = 0


class EvaluateOutput(StageOutput):
    """``[evaluate]``: ``metrics.json``, and the headline scores (FID and KID of
    generators and translators, PSNR of super-resolution)."""

    stage: ClassVar[str] = "evaluate"
    metrics: Annotated[Path, Output()]
    fid: float | None = None
    kid: float | None = None
    psnr: float | None = None
    #: PSNR above bicubic, dB
    psnr_gain: float | None = None


class UpscaleOutput(StageOutput):
    """``[upscale]``: the output folder and what happened to each input."""

    stage: ClassVar[str] = "upscale"
    images: Annotated[Path, Output()]
    written: int = 0
    skipped: int = 0
    ignored: int = 0
    with_warnings: int = 0
    #: ``[path, reason]`` of the first 100 files that failed
    failed: list[tuple[str, str]] = Field(default_factory=list)
    report: str | None = None
    #: what could not be written (a full disk...), when something could not
    not_written: list[str] | None = None
    scale: float | None = None
    seconds: float = 0.0


class TuneOutput(StageOutput):
    """``[tune]``: the best values (JSON, and TOML tables to paste) and every trial."""

    stage: ClassVar[str] = "tune"
    best_file: Annotated[Path, Output("best")]
    best_toml: Annotated[Path, Output()]
    trials: Annotated[Path, Output()]
    metric: str = ""
    #: the best trial's score
    best: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)


#: the records of the built-in stages, by stage name
BUILTIN: dict[str, type[StageOutput]] = {
    cls.stage: cls
    for cls in (
        AugmentOutput,
        TrainOutput,
        ExportOutput,
        GenerateOutput,
        EvaluateOutput,
        UpscaleOutput,
        TuneOutput,
    )
}
