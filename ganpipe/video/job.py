"""One video of a batch (:mod:`ganpipe.upscale.batch` routes them here): probed, upscaled
by :func:`~ganpipe.video.transcode.transcode` with a progress bar in frames (frames/s and
ETA), and told as a :class:`~ganpipe.upscale.report.FileRecord` with its frames and
encoder. A video's problem is its record (``failed``, with a one-line reason), never an
exception, so the batch goes on; a damaged video whose readable part was written is
``failed`` too (the reason says how many frames were decoded and what was lost), with its
``output`` set; so does an encoder this video's container cannot hold. Encoding options
that fit no video are refused before the batch starts
(:func:`~ganpipe.video.encoding.check_options`); only interruptions and running out of
memory even with the smallest tiles are raised.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ganpipe.errors import ConfigError, GanpipeError
from ganpipe.upscale.options import UpscaleOptions
from ganpipe.upscale.plan import Job
from ganpipe.upscale.report import FileRecord
from ganpipe.upscale.tiling import Upscaler

__all__ = ["process_video"]


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _bar(total: int, name: str, enabled: bool | None) -> Any:
    """A frames bar (rate and ETA where the total is known), or None when not drawn."""
    from ganpipe import progress

    if not progress.drawn(enabled):
        return None
    return progress.bar(total or None, name[:30], "frame", enabled=enabled, smoothing=0.1)


def process_video(
    upscaler: Upscaler, job: Job, opts: UpscaleOptions, progress: bool | None = None
) -> FileRecord:
    """Upscale the video ``job.src`` to ``job.dst`` (see the module docstring)."""
    from ganpipe.upscale.worker import describe_error
    from ganpipe.video.probe import probe_video
    from ganpipe.video.transcode import transcode

    t0 = time.perf_counter()
    src = str(job.src)
    size = _size(job.src)
    try:
        info = probe_video(job.src)
    except GanpipeError as exc:  # "PATH: why" -> why
        reason = str(exc).split(": ", 1)[-1] if str(exc).startswith(src) else str(exc)
        return FileRecord(src, "failed", reason, None, size)
    import av  # there: probe_video said how to install it where it is missing

    base = dict(input_bytes=size, input_width=info.width, input_height=info.height)
    bar = _bar(info.frames, job.src.name, progress)
    try:
        result = transcode(
            upscaler, job.src, job.dst, opts, info=info, progress=bar.update if bar else None
        )
    except ConfigError as exc:  # this video's container or encoder: the others go on
        return FileRecord(src, "failed", str(exc), seconds=time.perf_counter() - t0, **base)
    except GanpipeError as exc:
        if "out of memory" in str(exc):
            raise
        return FileRecord(src, "failed", str(exc), seconds=time.perf_counter() - t0, **base)
    except (av.FFmpegError, OSError, ValueError) as exc:
        reason = f"video could not be upscaled: {describe_error(exc)}"
        return FileRecord(src, "failed", reason, seconds=time.perf_counter() - t0, **base)
    finally:
        if bar is not None:
            bar.close()
    megapixels = info.width * info.height * result.frames / 1e6
    return FileRecord(
        src,
        "failed" if result.missing else "written",
        f"damaged video, the readable part written: {result.missing}" if result.missing else "",
        str(job.dst),
        size,
        info.width,
        info.height,
        output_bytes=_size(job.dst) if job.dst.is_file() else None,
        output_width=result.width,
        output_height=result.height,
        megapixels=megapixels,
        seconds=result.seconds,
        warnings=tuple(result.warnings),
        frames=result.frames,
        codec=result.codec,
    )
