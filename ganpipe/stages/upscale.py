"""The upscale stage: a folder of images through a super-resolution ``.onnx`` (ONNX
Runtime, no torch).

The model is ``model`` (a path relative to the pipeline.toml) or, without it, the export
stage's output. Files that cannot be read or written are logged and listed in the
manifest (``info.failed``); the others are written and the stage counts as done: re-run
it with ``ganpipe run --from upscale`` after fixing them. The stage's fingerprint covers
its options and the export stage, not the contents of the input folder: after adding
images, re-run with ``--from upscale`` (``skip_existing = true`` makes that cheap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ganpipe.errors import ConfigError
from ganpipe.options import Options
from ganpipe.stages.base import Stage, StageContext, StageResult


class UpscaleOptions(Options):
    input: str = Field(description="image folder (or file), relative to the pipeline.toml")
    output: str | None = Field(None, description="output folder, relative to the toml; "
                               "default: upscale/ in the run folder")
    model: str | None = Field(None, description="super-resolution .onnx, relative to the "
                              "toml; default: the export stage's model")
    tile: int = Field(512, ge=0, description="tile size in input pixels; 0 = whole image")
    overlap: int = Field(32, ge=0, description="overlap of neighbouring tiles")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|tensorrt)$")
    format: Literal["png", "jpg", "webp", "tiff"] | None = Field(
        None, description="output format; default: the input's")
    suffix: str = Field("", pattern=r"^[^/\\]*$", description="added to output file names")
    recursive: bool = False
    skip_existing: bool = False
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality")
    alpha: Literal["model", "bicubic"] = "model"


class UpscaleStage(Stage):
    name = "upscale"
    description = "upscale a folder of images with a super-resolution ONNX model"
    Options = UpscaleOptions
    requires = ()
    optional = ("export",)

    def check(self, config, opts: UpscaleOptions) -> None:
        from ganpipe.inference.upscale import check_tiling

        if opts.model is None and config.stage("export") is None:
            raise ConfigError(f"{config.path}: [upscale] needs a model: set model = "
                              f"\"path/to/model.onnx\" or add an [export] stage before it")
        try:
            check_tiling(opts.tile, opts.overlap)
        except ConfigError as exc:
            raise ConfigError(f"{config.path}: [upscale] {exc}") from None

    def run(self, ctx: StageContext, opts: UpscaleOptions) -> StageResult:
        from ganpipe.inference.upscale import upscale_path

        base = ctx.config.base_dir

        def resolve(p: str) -> Path:
            path = Path(p).expanduser()
            return path if path.is_absolute() else base / path

        model = resolve(opts.model) if opts.model else ctx.output("export", "model",
                                                                  needed_by=self.name)
        out = resolve(opts.output) if opts.output else ctx.stage_dir(self.name)
        summary = upscale_path(resolve(opts.input), out, model, device=opts.device,
                               tile=opts.tile, overlap=opts.overlap, format=opts.format,
                               suffix=opts.suffix, recursive=opts.recursive,
                               skip_existing=opts.skip_existing, log=ctx.log)
        for path, reason in summary.failures:
            ctx.log(f"[{self.name}] failed: {path}: {reason}")
        try:
            images = out.resolve().relative_to(ctx.run_dir.resolve()).as_posix()
        except ValueError:
            images = str(out.resolve())
        text = summary.line()
        if summary.failures:
            text += f"; re-run with --from {self.name} after fixing the failed files"
        return StageResult({"images": images}, text, {
            "written": len(summary.written), "skipped": len(summary.skipped),
            "failed": [[str(p), r] for p, r in summary.failures[:100]],
            "scale": summary.scale, "seconds": round(summary.seconds, 2)})
