"""The upscale stage: a folder of images through a super-resolution ``.onnx`` (ONNX
Runtime, no torch).

Its table is :class:`~ganpipe.upscale.options.UpscaleOptions` (the options of ``ganpipe
upscale``, with the same defaults) plus ``input`` and ``output``. The model is ``model``
(a path, or a list of paths for an ensemble, relative to the pipeline.toml) or, without
it, the export stage's output. Files that cannot be read or written are logged and listed
in the manifest (``info.failed``); the others are written and the stage counts as done:
re-run it with ``ganpipe run --from upscale`` after fixing them. ``report = "FILE.jsonl"``
(relative to the pipeline.toml) writes one record per input, as ``ganpipe upscale
--report`` does.

The stage's fingerprint covers its options, the export stage, the ``model`` file (size and
mtime) and the input: the relative path, size and mtime of each image file the stage would
read (as listed by the upscaler, ``recursive`` included; no pixel data is read). Adding,
removing, replacing or touching an input image re-runs the stage on the next ``ganpipe
run`` (``skip_existing = true`` then redoes only the new images). It is taken before any
stage runs: an input that an earlier stage of the same pipeline writes is seen as it was
then, and the next run catches up.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import Field

from ganpipe.errors import ConfigError
from ganpipe.fsutil import shown
from ganpipe.options import resolve_from
from ganpipe.outputs import ExportOutput, UpscaleOutput
from ganpipe.signals import Interrupted
from ganpipe.stage import Stage, StageContext, StageResult
from ganpipe.upscale.options import UpscaleOptions


def _file_line(path: Path, name: str) -> str:
    try:
        st = path.stat()
    except OSError as exc:  # gone or unreadable: the run reports it; hash the fact
        return f"{name}\0{type(exc).__name__}\n"
    return f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n"


def input_fingerprint(src: Path, recursive: bool, all_files: bool = False) -> str:
    """Hash of the image and video files the stage would read from ``src`` (a file or a
    folder): the relative path, size and mtime of each, from the upscaler's own listing,
    so the files it ignores do not re-run the stage. Never raises: a missing or unreadable input gets a
    hash of its own, and the stage's run reports the problem."""
    from ganpipe.imaging.sniff import scan_images
    from ganpipe.video.select import split_videos

    tag = f"{recursive} all-files" if all_files else f"{recursive}"
    h = hashlib.sha256(f"upscale-input-v1 {tag}\n".encode())
    if src.is_dir():
        try:
            found, ignored = scan_images(src, recursive, all_files=all_files)
            images, _, videos = split_videos(found, ignored)  # videos are inputs too
            listed = sorted(
                [path for path, _ in images] + videos,
                key=lambda p: p.relative_to(src).as_posix(),
            )
        except OSError as exc:
            h.update(f"unlistable\0{type(exc).__name__}\n".encode())
            listed = []
        for path in listed:
            h.update(_file_line(path, path.relative_to(src).as_posix()).encode())
    else:  # a single file (any name), or nothing there yet
        h.update(f"file\0{_file_line(src, src.name)}".encode())
    return h.hexdigest()


class UpscaleStageOptions(UpscaleOptions):
    """The ``[upscale]`` table: the upscale options, ``model`` paths relative to the
    pipeline.toml (none: the export stage's model), and where the images are."""

    input: str = Field(description="image folder (or file), relative to the pipeline.toml")
    output: str | None = Field(
        None, description="output folder, relative to the toml; default: upscale/ in the run folder"
    )


class UpscaleStage(Stage):
    name = "upscale"
    description = "upscale a folder of images with a super-resolution ONNX model"
    Options = UpscaleStageOptions
    requires = ()
    optional = ("export",)

    def check(self, config, opts: UpscaleStageOptions) -> None:
        if not opts.model and config.stage("export") is None:
            raise ConfigError(
                f"{config.path}: [upscale] needs a model: set model = "
                f'"path/to/model.onnx" or add an [export] stage before it'
            )

    def fingerprint(self, config, opts: UpscaleStageOptions) -> str:
        """The input images and an explicit ``model`` file: the pipeline's fingerprint of
        the options alone would skip the stage after images were added or replaced. (The
        export stage's model is covered by that stage's fingerprint.)"""
        src = resolve_from(config.base_dir, opts.input)
        text = input_fingerprint(src, opts.recursive, opts.all_files)
        for model in opts.model:
            text += " " + _file_line(resolve_from(config.base_dir, model), "model").strip()
        return text

    def run(self, ctx: StageContext, opts: UpscaleStageOptions) -> StageResult:
        from ganpipe.upscale.batch import upscale_path

        def resolve(p: str | Path) -> Path:
            return resolve_from(ctx.config.base_dir, p)

        def say(message: str) -> None:  # names that are not UTF-8 escaped, never a crash
            ctx.log(shown(message))

        models = [resolve(m) for m in opts.model] or [
            ctx.output_of(ExportOutput, needed_by=self.name).model
        ]
        out = resolve(opts.output) if opts.output else ctx.stage_dir(self.name)
        extra = {"report": resolve(opts.report)} if opts.report else {}
        if opts.frames is not None:  # video frames: relative to the pipeline.toml too
            extra["frames"] = resolve(opts.frames)
        try:
            summary = upscale_path(resolve(opts.input), out, models, opts, log=say, **extra)
        except Interrupted as exc:
            if not opts.report and not opts.skip_existing:  # the options are the toml's here
                exc.resume = (
                    f"set skip_existing = true in [{self.name}] and run the same command "
                    f"to resume (written outputs are complete)"
                )
            raise
        if opts.verbose:
            for path, note in summary.warnings:
                say(f"[{self.name}] warning: {path}: {note}")
        for path, reason in summary.failures:
            say(f"[{self.name}] failed: {path}: {reason}")
        text = shown(summary.line())
        if summary.failures:
            text += f"; re-run with --from {self.name} after fixing the failed files"
        record = UpscaleOutput(
            images=out.resolve(),  # relative in the manifest when inside the run folder
            written=len(summary.written),
            skipped=len(summary.skipped),
            ignored=len(summary.ignored_files),
            with_warnings=len({p for p, _ in summary.warnings}),
            failed=[(str(p), r) for p, r in summary.failures[:100]],
            report=str(summary.report) if summary.report else None,
            not_written=summary.problems or None,
            scale=summary.scale,
            seconds=round(summary.seconds, 2),
        )
        return ctx.result(record, text)
