"""The work on one file - decode -> upscale -> encode - ending in a
:class:`~ganpipe.upscale.report.FileRecord`, callable by any engine.

:func:`process` does the three steps in a row (given an opened
:class:`~ganpipe.upscale.tiling.Upscaler` and a :class:`~ganpipe.upscale.plan.Job`); the
local engine (:func:`ganpipe.upscale.batch.run_jobs`) overlaps them instead, calling
:func:`decode` on a thread pool ahead of the model, :func:`upscale` on its own thread and
:func:`encode` on a thread pool behind it. A file's problem is its record (``failed``, with
the reason), never an exception; only :class:`~ganpipe.errors.GanpipeError` from the
model (a problem of the whole run) is raised.

What the decoders, the model and the encoders warn or print about the file is collected for
it (:mod:`ganpipe.imaging.capture`) and lands in the record's ``warnings``, with the
metadata that had to be dropped: metadata never fails an image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from ganpipe.errors import GanpipeError, WriteError
from ganpipe.imaging.capture import collecting
from ganpipe.imaging.decode import decode_image
from ganpipe.imaging.encode import MAX_SIDE, encode_image, output_bits
from ganpipe.imaging.metadata import apply_policy
from ganpipe.imaging.picture import Picture
from ganpipe.inference.ortlog import describe as ort_describe
from ganpipe.inference.ortlog import is_ort_error
from ganpipe.inference.watchdog import RunTimeout, deadline
from ganpipe.upscale.options import UpscaleOptions
from ganpipe.upscale.plan import Job
from ganpipe.upscale.report import FileRecord
from ganpipe.upscale.tiling import Upscaler

__all__ = ["Work", "decode", "describe_error", "encode", "process", "upscale"]


def describe_error(exc: BaseException) -> str:
    """One line for a file that failed; the exception type only where it says more."""
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
    if isinstance(exc, WriteError):  # names the file and what to free already
        return str(exc)
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    if text and isinstance(exc, OSError | ValueError | SyntaxError | Image.DecompressionBombError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def write_dropping_metadata(pic: Picture, job: Job, opts: UpscaleOptions) -> list[str]:
    """Encode ``pic`` to ``job.dst``; where that fails and the file has metadata, try
    again without its EXIF, then also without its ICC profile: metadata never fails an
    image. Returns the warnings (decoding's and the parts dropped here); raises the first
    error when the image cannot be written even without metadata."""
    pic, notes = apply_policy(pic, opts.metadata)
    notes = list(pic.warnings) + notes
    first: Exception | None = None
    attempts = [pic]
    if pic.exif:
        attempts.append(replace(pic, exif=None))
    if pic.icc:
        attempts.append(replace(attempts[-1], icc=None))
    for i, attempt in enumerate(attempts):
        try:
            encode_image(attempt, job.dst, job.fmt, opts.quality, opts.png_compression)
        except Exception as exc:  # noqa: BLE001 - perhaps the metadata: try without
            first = first or exc
            continue
        if i:
            dropped = " and ICC profile" if attempt.icc is None and pic.icc else ""
            part = "EXIF" + dropped if pic.exif else "ICC profile"
            notes.append(f"{part} dropped: cannot be written ({describe_error(first)})")
        return notes
    assert first is not None
    raise first


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


@dataclass
class Work:
    """One file on its way: the decoded (then upscaled) picture, or its finished record."""

    job: Job
    pic: Picture | None = None
    record: FileRecord | None = None  # set once the file has failed
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    input_bytes: int | None = None
    input_wh: tuple[int, int] | None = None
    megapixels: float | None = None

    def failed(self, reason: str) -> Work:
        self.pic = None
        self.record = FileRecord(
            str(self.job.src),
            "failed",
            reason,
            None,
            self.input_bytes,
            *(self.input_wh or (None, None)),
            megapixels=self.megapixels,
            seconds=self.seconds,
            warnings=tuple(self.notes),
        )
        return self

    @property
    def nbytes(self) -> int:
        """Memory of the picture's planes."""
        if self.pic is None:
            return 0
        alpha = self.pic.alpha.nbytes if self.pic.alpha is not None else 0
        return self.pic.color.nbytes + alpha


def decode(job: Job, opts: UpscaleOptions) -> Work:
    """Read ``job.src`` (thread-safe); a file that cannot be used is a failed :class:`Work`."""
    work = Work(job, input_bytes=_size(job.src))
    t0 = time.perf_counter()
    with collecting(work.notes):
        try:
            pic = decode_image(job.src, opts.max_megapixels * 1e6 or None)
        except Exception as exc:  # noqa: BLE001 - one file's problem, reported
            work.seconds = time.perf_counter() - t0
            reason = describe_error(exc)
            if "decoder error" in reason and work.notes:  # libtiff said what it was
                reason += f" ({work.notes.pop(0)})"
            return work.failed(reason)
    work.seconds = time.perf_counter() - t0
    h, w = pic.color.shape[:2]
    work.pic, work.input_wh, work.megapixels = pic, (w, h), pic.megapixels
    return work


def upscale(upscaler: Upscaler, work: Work) -> Work:
    """Run the model on a decoded :class:`Work` (the model's thread), within the
    upscaler's ``timeout`` (:func:`ganpipe.inference.watchdog.deadline`: a file over it
    fails, stopped). Raises only :class:`~ganpipe.errors.GanpipeError` (the run cannot go
    on) and the signals' :class:`~ganpipe.signals.Interrupted`."""
    if work.record is not None or work.pic is None:
        return work
    job, pic = work.job, work.pic
    h, w = pic.color.shape[:2]
    s = upscaler.scale
    if max(h, w) * s > MAX_SIDE[job.fmt]:
        return work.failed(
            f"the output ({w * s}x{h * s}) is too large for {job.fmt} (at most "
            f"{MAX_SIDE[job.fmt]} pixels a side); use --format png"
        )
    t0 = time.perf_counter()
    with collecting(work.notes), deadline(getattr(upscaler, "timeout", None)):
        try:
            work.pic = upscaler.upscale(pic, output_bits(pic, job.fmt))
        except GanpipeError:
            raise
        except RunTimeout as exc:  # stopped: this file fails, the batch goes on
            work.seconds += time.perf_counter() - t0
            return work.failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - e.g. the model rejects this size
            work.seconds += time.perf_counter() - t0
            reason = ort_describe(exc) if is_ort_error(exc) else describe_error(exc)
            return work.failed(f"upscaling failed: {reason}")
    work.seconds += time.perf_counter() - t0
    return work


def encode(work: Work, opts: UpscaleOptions) -> FileRecord:
    """Write an upscaled :class:`Work` atomically (thread-safe) and say how it went."""
    if work.record is not None or work.pic is None:
        return work.record or work.failed("not decoded").record  # type: ignore[return-value]
    job, pic = work.job, work.pic
    t0 = time.perf_counter()
    with collecting(work.notes):
        try:
            job.dst.parent.mkdir(parents=True, exist_ok=True)
            notes = write_dropping_metadata(pic, job, opts)
        except Exception as exc:  # noqa: BLE001 - one file's problem, reported
            work.seconds += time.perf_counter() - t0
            reason = describe_error(exc)
            if not isinstance(exc, WriteError):
                reason = f"cannot write {job.dst}: {reason}"
            return work.failed(reason).record  # type: ignore[return-value]
    work.seconds += time.perf_counter() - t0
    warnings = list(dict.fromkeys([*notes, *work.notes]))  # the picture's own first
    h, w = pic.color.shape[:2]
    work.pic = None
    return FileRecord(
        str(job.src),
        "written",
        "",
        str(job.dst),
        work.input_bytes,
        *(work.input_wh or (None, None)),
        output_bytes=_size(job.dst),
        output_width=w,
        output_height=h,
        megapixels=work.megapixels,
        seconds=work.seconds,
        warnings=tuple(warnings),
    )


def process(upscaler: Upscaler, job: Job, opts: UpscaleOptions) -> FileRecord:
    """Decode, upscale and encode one file in a row (for engines that parallelise over
    files rather than over steps)."""
    return encode(upscale(upscaler, decode(job, opts)), opts)
