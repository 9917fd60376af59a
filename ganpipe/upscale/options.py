"""The options of upscaling, defined once: :class:`UpscaleOptions` holds each option's type,
bounds, default and description. ``ganpipe upscale`` derives its flags from it
(:func:`ganpipe.cli.schema.options_from`), the ``[upscale]`` stage's table is a subclass of
it (adding the input and output folders), and the library
(:func:`ganpipe.upscale.upscale_path`) takes it as its argument.

Light (pydantic only, no numpy), so ``ganpipe upscale --help`` and the stage registry stay
fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from ganpipe.devices import INFERENCE_KINDS, Device, grammar, inference_device
from ganpipe.errors import ConfigError
from ganpipe.options import Options, format_validation_error

#: Smallest tile side in input pixels: smaller ``tile`` values are refused, and halving the
#: tile after an out-of-memory error stops here.
MIN_TILE = 16
#: output format aliases -> the names of :attr:`UpscaleOptions.format`
_FORMAT_ALIASES = {"jpeg": "jpg", "tif": "tiff"}


def _problem(text: str) -> PydanticCustomError:
    """A validation error whose one-line message is ``text`` (the caller adds the key)."""
    return PydanticCustomError("value_error", "{reason}", {"reason": text})


def _split_shard(spec: Any) -> tuple[int, int]:
    """``"i/N"`` or ``(i, N)`` -> ``(i, N)`` with 0 <= i < N; ValueError (no key) if not."""
    if isinstance(spec, tuple | list) and len(spec) == 2:
        i, n = (int(v) for v in spec)
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
        if not m:
            raise ValueError("expected I/N, e.g. 0/4 for the first of 4 workers")
        i, n = int(m.group(1)), int(m.group(2))
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"I/N needs N >= 1 and 0 <= I < N, e.g. 0/{max(n, 2)}")
    return i, n


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/N"`` (or ``(i, N)``) -> ``(i, N)`` with 0 <= i < N; None for no shard."""
    if spec is None or spec == "":
        return None
    try:
        return _split_shard(spec)
    except ValueError as exc:
        raise ConfigError(f"shard {spec!r}: {exc}") from None


class UpscaleOptions(Options):
    """How to upscale (every default is stated here only). The input and output are the
    caller's: arguments of :func:`~ganpipe.upscale.upscale_path`, ``-i`` / ``-o`` of the
    command, ``input`` / ``output`` of the stage."""

    model: list[Path] = Field(
        default_factory=list,
        description="super-resolution model(s): .onnx files of task super_resolve (or "
        "translate: CycleGAN, scale 1), or released weights (.pth / .safetensors), "
        "converted to ONNX once and cached; several: an ensemble (outputs averaged)",
    )
    denoise: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="denoise strength S, with two weight files of one net (-m A -m B, e.g. "
        "realesr-general-x4v3 and its -wdn- twin): one model of weights S * A + (1 - S) * B "
        "(Real-ESRGAN's dni), not an ensemble",
    )
    device: Device = Field(
        Device("auto"), description=f"where the model runs: {grammar(INFERENCE_KINDS)}"
    )
    runtime: Literal["auto", "onnxruntime", "openvino", "ncnn"] = Field(
        "onnxruntime",
        description="what runs the .onnx: onnxruntime; openvino (CPUs, the openvino "
        "extra); ncnn (CPUs and Vulkan GPUs, the ncnn extra; converted once with pnnx and "
        "checked against ONNX Runtime); auto: the fastest exact one for the device "
        "(docs/runtimes.md)",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="compute precision; bf16 / fp16 with --runtime openvino where the "
        "CPU has the units (refused where it does not); fp16 (storage) with --runtime ncnn",
    )
    outscale: float | None = Field(
        None,
        gt=0,
        le=16,
        description="final scale of the output (e.g. 3.5 with an x4 model): the model's "
        "output resized with a Lanczos filter, alpha and 16 bits kept; default: the "
        "model's scale",
    )
    tile: int = Field(
        512,
        ge=0,
        description="tile grid in input pixels (each tile also reads the overlap with its "
        f"neighbours); 0: the whole image at once; else at least {MIN_TILE}",
    )
    overlap: int = Field(
        32, ge=0, description="overlap of neighbouring tiles in input pixels, blended"
    )
    format: Literal["png", "jpg", "webp", "tiff"] | None = Field(
        None, description="output format; default: the input's (BMP and GIF become PNG)"
    )
    metadata: Literal["keep", "no-gps", "strip"] = Field(
        "no-gps",
        description="metadata of the outputs: keep (ICC and all EXIF); no-gps (ICC and EXIF "
        "without its GPS location tags); strip (only the ICC profile). Videos: keep (every "
        "container tag), no-gps (without location tags), strip (only the title)",
    )
    suffix: str = Field("", description="added to output file names, e.g. _x4")
    recursive: bool = Field(False, description="include sub-folders; the output keeps the tree")
    all_files: bool = Field(
        False,
        description="take every file of the folder whose content is an image (PNG, JPEG, "
        "WebP, TIFF, BMP, GIF), whatever its name; default: files with an image suffix",
    )
    skip_existing: bool = Field(
        False,
        description="skip files whose output exists: resumes an interrupted batch (outputs "
        "are written atomically, so an existing one is complete)",
    )
    on_collision: Literal["rename", "refuse"] = Field(
        "rename",
        description="inputs whose outputs would have the same name (photo.gif, photo.bmp "
        "and photo.png all make photo.png): rename: the PNG source (else the first in "
        "sorted order) keeps the name, the others keep their extension too "
        "(photo.gif.png, photo.bmp.png); refuse: those others fail",
    )
    verbose: bool = Field(
        False,
        description="print each file's warnings (metadata dropped, decoder and library "
        "messages), one line each, prefixed with the file; the summary counts the files "
        "with warnings",
    )
    report: Path | None = Field(
        None,
        description="write one record per input (outcome, reason, output, sizes, seconds, "
        "warnings) to this .jsonl or .json file",
    )
    shard: str | None = Field(
        None,
        description="only the files whose index in the sorted list is I modulo N (worker I of N)",
    )
    engine: Literal["local", "ray"] = Field(
        "local",
        description="local: this process (decode, model and encode overlapped); ray: a Ray "
        "Data actor pool, one model session per actor (the ray extra); same outputs",
    )
    ray_address: str | None = Field(
        None,
        description="with --engine ray: the cluster to join (host:6379, ray://host:10001, "
        "auto); default: a local Ray instance for this run",
    )
    actors: int = Field(
        2, ge=1, description="with --engine ray: model sessions (actors); one GPU each on CUDA"
    )
    quality: int = Field(95, ge=1, le=100, description="JPEG and WebP quality")
    # zlib level 4: on photos upscaled x4 it writes files 3-4 % larger than Pillow's
    # default 6 in less than half the time (1: 4x faster, 15-20 % larger)
    png_compression: int = Field(
        4, ge=0, le=9, description="zlib level of PNG outputs: 0 none, 1 fastest, 9 smallest"
    )
    tta: bool = Field(
        False,
        description="self-ensemble: average over the 8 flips/rotations (8x slower, usually "
        "a little cleaner)",
    )
    alpha: Literal["model", "bicubic"] = Field(
        "model",
        description="how the alpha channel is enlarged: by the model (sharp edges) or "
        "bicubic (faster)",
    )
    timeout: float | None = Field(
        None,
        gt=0,
        description="seconds one file may take in the model (all its tiles): a file that "
        "takes longer is stopped and fails with the reason, the batch goes on; default: no "
        "limit (SIGTERM and Ctrl-C stop a run at any time)",
    )
    workers: int = Field(
        0,
        ge=0,
        description="decode and encode threads each; 0: min(4, the CPUs this process may use)",
    )
    threads: int = Field(
        0,
        ge=0,
        description="threads of each model session (ONNX Runtime, OpenVINO, ncnn); 0: [run] "
        "threads in a pipeline, else the cores this process may use (CPU affinity and "
        "container quota), split among the Ray actors of one machine",
    )
    # 64 MP: a 9000x7000 photo; x4 at 8 bits its output alone is about 3 GiB
    max_megapixels: float = Field(
        64.0,
        ge=0,
        description="largest input, in megapixels (width x height / 1e6, read from the "
        "header before decoding); larger files are refused, the others still done; 0: no "
        "limit but Pillow's decompression-bomb one",
    )

    video_codec: str | None = Field(
        None,
        description="encoder of upscaled videos: h264, hevc, vp9, av1, ffv1 (lossless), "
        "prores, or an FFmpeg encoder name; default: the source's codec where an encoder "
        "exists, else h264 (vp9 in .webm)",
    )
    crf: int | None = Field(
        None,
        ge=0,
        le=63,
        description="quality of upscaled videos (lower is better; 0 lossless with h264 / "
        "hevc); default: the encoder's (h264 23, hevc 28, vp9 32, av1 35)",
    )
    preset: str | None = Field(
        None,
        description="the video encoder's speed preset: ultrafast ... veryslow (h264, "
        "hevc), 0 ... 13 (av1), cpu-used 0 ... 8 (vp9); default: the encoder's",
    )
    pix_fmt: str | None = Field(
        None,
        description="pixel format of upscaled videos, e.g. yuv420p, yuv444p, yuv420p10le; "
        "default: 4:2:0 at the source's depth (10-bit kept where the encoder takes it)",
    )
    frames: Path | None = Field(
        None,
        description="write each video's upscaled frames as PNG files (000000.png, ...) in "
        "DIR/<video name>/ instead of a video",
    )

    @field_validator("model", mode="before")
    @classmethod
    def _model_list(cls, value: Any) -> Any:
        """One model (a path) is a list of one; None is no model."""
        if value is None:
            return []
        return [value] if isinstance(value, str | Path) else value

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: Any) -> Any:
        return inference_device(value) if isinstance(value, str | Device) else value

    @field_validator("tile")
    @classmethod
    def _tile(cls, value: int) -> int:
        if 0 < value < MIN_TILE:
            raise _problem(f"tile size must be 0 (whole image) or at least {MIN_TILE}")
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        """``PNG``, ``.png``, ``jpeg``, ``tif``: the same formats as ``png``, ``jpg``..."""
        if isinstance(value, str):
            value = value.strip().lower().lstrip(".")
            return _FORMAT_ALIASES.get(value, value)
        return value

    @field_validator("report")
    @classmethod
    def _report(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in (".jsonl", ".json"):
            raise _problem("use a .jsonl (JSON lines) or .json (one array) file name")
        return value

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, value: str) -> str:
        if any(sep in value for sep in ("/", "\\", "\0")):
            raise _problem("must not contain a path separator")
        return value

    @field_validator("shard", mode="before")
    @classmethod
    def _shard(cls, value: Any) -> Any:
        """``"1/4"`` or ``(1, 4)`` -> ``"1/4"``; ``""`` is no shard."""
        if value is None or value == "":
            return None
        try:
            i, n = _split_shard(value)
        except (TypeError, ValueError) as exc:
            raise _problem(str(exc)) from None
        return f"{i}/{n}"

    @property
    def shard_pair(self) -> tuple[int, int] | None:
        """:attr:`shard` as ``(i, N)``."""
        return parse_shard(self.shard)


def with_overrides(options: UpscaleOptions | None, overrides: dict[str, Any]) -> UpscaleOptions:
    """``options`` (None: every default) with keyword ``overrides``, validated: an unknown
    name or a bad value is a one-line :class:`ConfigError` naming the option."""
    if not overrides:
        return options if options is not None else UpscaleOptions()
    data = {} if options is None else options.model_dump(include=set(UpscaleOptions.model_fields))
    try:
        return UpscaleOptions.model_validate({**data, **overrides})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, UpscaleOptions, "")) from None
