"""Running a batch: decode -> upscale -> encode, overlapped, one failed file at a time.

A file that cannot be read, upscaled or written is reported (``failures``) and the batch
goes on; so is an input over ``max_megapixels`` (refused from its header, before it is
decoded), which bounds the memory one file may take. Temporary files that killed runs
left in the output folders are removed first (:func:`ganpipe.fsutil.remove_stale`). Decoding runs in a thread pool ahead of inference and encoding in another behind
it, both bounded (in files and in bytes), so the accelerator is not idle while files are
read and written, and memory does not grow over a long batch.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from ganpipe.errors import GanpipeError
from ganpipe.fsutil import ensure_writable_dir, remove_stale
from ganpipe.imaging.decode import decode_image
from ganpipe.imaging.encode import MAX_SIDE, encode_image, output_bits
from ganpipe.imaging.formats import quiet_decoder_warnings
from ganpipe.imaging.metadata import apply_policy
from ganpipe.imaging.picture import Picture
from ganpipe.upscale.ensemble import combine
from ganpipe.upscale.model import open_model_of
from ganpipe.upscale.options import UpscaleOptions, with_overrides
from ganpipe.upscale.plan import Job, plan_jobs
from ganpipe.upscale.tiling import Upscaler

#: decoded images waiting for the model, and upscaled images waiting to be written
MAX_PENDING_BYTES = 2 << 30


@dataclass
class UpscaleSummary:
    out_dir: Path
    written: list[Path]
    skipped: list[Path]
    failures: list[tuple[Path, str]]
    ignored: int
    providers: list[str]
    scale: float  # the final scale (--outscale, else the model's)
    seconds: float
    megapixels: float  # input megapixels upscaled
    tile: int  # tile size in use at the end (smaller after out-of-memory)
    #: metadata problems of written files (the file is written without the bad part)
    warnings: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        rate = len(self.written) / self.seconds if self.seconds > 0 else 0.0
        mps = self.megapixels / self.seconds if self.seconds > 0 else 0.0
        parts = [
            f"upscaled {len(self.written)} image{'s' * (len(self.written) != 1)} "
            f"(x{self.scale:g}) to {self.out_dir} in {self.seconds:.1f}s "
            f"({rate:.2f} img/s, {mps:.2f} MP/s in)"
        ]
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} existing")
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        if self.ignored:
            parts.append(f"ignored {self.ignored} non-image file{'s' * (self.ignored != 1)}")
        warned = len({path for path, _ in self.warnings})
        if warned:
            parts.append(f"{warned} with warnings")
        provider = self.providers[0] if self.providers else "?"
        return "; ".join(parts) + f" [{provider}]"


def describe_error(exc: BaseException) -> str:
    """One line for a file that failed; the exception type only where it says more."""
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
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


class _Progress:
    """tqdm bar with images/s and input megapixels/s; thread-safe updates."""

    def __init__(self, total: int, enabled: bool | None):
        from ganpipe import progress

        self.bar = progress.bar(total, "upscale", "img", enabled=enabled, smoothing=0.1)
        self.lock = threading.Lock()
        self.start = time.perf_counter()
        self.megapixels = 0.0

    def done(self, megapixels: float) -> None:
        with self.lock:
            self.megapixels += megapixels
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{self.megapixels / elapsed:.2f} MP/s", refresh=False)
            self.bar.update(1)

    def failed(self) -> None:
        with self.lock:
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_jobs(
    upscaler: Upscaler,
    jobs: list[Job],
    options: UpscaleOptions | None = None,
    *,
    progress: bool | None = None,
    warnings: list[tuple[Path, str]] | None = None,
    **overrides: Any,
) -> tuple[list[Path], list[tuple[Path, str]], float]:
    """Decode (thread pool, ahead) -> upscale (this thread) -> encode (thread pool,
    behind), with the ``quality``, ``png_compression`` and ``workers`` of ``options`` (and
    keyword ``overrides`` of them); ``progress``: a bar (None: when stderr is a terminal).
    Returns the written paths, the failures and the input megapixels; metadata problems
    of written files are appended to ``warnings``."""
    opts = with_overrides(options, overrides)
    workers = opts.workers or min(4, os.cpu_count() or 2)
    max_pixels = opts.max_megapixels * 1e6 or None
    written: list[Path] = []
    failures: list[tuple[Path, str]] = []
    bar = _Progress(len(jobs), progress)
    lock = threading.Lock()

    def encode(job: Job, pic: Picture, megapixels: float) -> None:
        try:
            job.dst.parent.mkdir(parents=True, exist_ok=True)
            notes = write_dropping_metadata(pic, job, opts)
        except Exception as exc:  # noqa: BLE001 - one file's problem, reported
            fail(job, f"cannot write {job.dst}: {describe_error(exc)}")
            return
        with lock:
            written.append(job.dst)
            if warnings is not None:
                warnings.extend((job.src, note) for note in notes)
        bar.done(megapixels)

    def fail(job: Job, reason: str) -> None:
        with lock:
            failures.append((job.src, reason))
        bar.failed()

    decoders = ThreadPoolExecutor(workers, thread_name_prefix="ganpipe-decode")
    encoders = ThreadPoolExecutor(workers, thread_name_prefix="ganpipe-encode")
    ahead: deque[tuple[Job, Future]] = deque()
    behind: deque[tuple[Future, int]] = deque()
    pending = iter(jobs)
    try:

        def refill() -> None:
            while len(ahead) < workers + 1:
                job = next(pending, None)
                if job is None:
                    return
                ahead.append((job, decoders.submit(decode_image, job.src, max_pixels)))

        refill()
        while ahead:
            job, fut = ahead.popleft()
            refill()
            try:
                pic = fut.result()
            except Exception as exc:  # noqa: BLE001 - one file's problem, reported
                fail(job, describe_error(exc))
                continue
            h, w = pic.color.shape[:2]
            s = upscaler.scale
            if max(h, w) * s > MAX_SIDE[job.fmt]:
                fail(
                    job,
                    f"the output ({w * s}x{h * s}) is too large for {job.fmt} (at "
                    f"most {MAX_SIDE[job.fmt]} pixels a side); use --format png",
                )
                continue
            try:
                result = upscaler.upscale(pic, output_bits(pic, job.fmt))
            except GanpipeError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the model rejects this size
                fail(job, f"upscaling failed: {describe_error(exc)}")
                continue
            size = result.color.nbytes + (result.alpha.nbytes if result.alpha is not None else 0)
            while behind and (
                len(behind) >= workers or sum(b for _, b in behind) + size > MAX_PENDING_BYTES
            ):
                behind.popleft()[0].result()
            behind.append((encoders.submit(encode, job, result, pic.megapixels), size))
            del pic, result
        while behind:
            behind.popleft()[0].result()
    finally:
        decoders.shutdown(wait=True, cancel_futures=True)
        encoders.shutdown(wait=True, cancel_futures=True)  # started writes finish
        bar.close()
    return written, failures, bar.megapixels


def upscale_path(
    input: str | Path,
    output: str | Path,
    model: str | Path | Sequence[str | Path] | None = None,
    options: UpscaleOptions | None = None,
    *,
    log: Callable[[str], Any] | None = None,
    progress: bool | None = None,
    **overrides: Any,
) -> UpscaleSummary:
    """Upscale an image file or a folder of images with a ``super_resolve`` (or
    ``translate``) model, as ``options`` say (:class:`UpscaleOptions`; keyword
    ``overrides`` of its fields are validated through it, e.g. ``tile=256``).

    ``model`` (default: ``options.model``) may be a list: the models' outputs are averaged
    (:class:`~ganpipe.upscale.ensemble.Ensemble`); ``tta`` averages each over the 8 flips
    / rotations of its input. Problems with the options, the input or the model raise
    :class:`~ganpipe.errors.ConfigError` before anything is written. Files that cannot be
    read, upscaled or written, or that are over ``max_megapixels``, are listed in
    ``failures`` and the others are still done. Decoders' warnings about damaged files
    are silenced for the process (:func:`~ganpipe.imaging.formats.quiet_decoder_warnings`).
    """
    if model is not None:
        overrides["model"] = list(model) if isinstance(model, list | tuple) else [model]
    opts = with_overrides(options, overrides)
    quiet_decoder_warnings()  # damaged files are failures of their own, one line each
    plan = plan_jobs(input, output, opts)
    sr = combine([open_model_of(p, opts, log) for p in opts.model], opts.tta)
    upscaler = Upscaler(sr, opts, log=log)
    ensure_writable_dir(plan.out_dir)
    folders = {plan.out_dir, *(job.dst.parent for job in plan.jobs)}
    stale = remove_stale(sorted(folders), recursive=False)  # left by killed runs
    if stale and log is not None:
        log(f"removed {len(stale)} temporary file(s) left by an interrupted run")
    t0 = time.perf_counter()
    warnings: list[tuple[Path, str]] = []
    written, failures, megapixels = run_jobs(
        upscaler, plan.jobs, opts, progress=progress, warnings=warnings
    )
    order = {job.src: i for i, job in enumerate(plan.jobs)}
    failures = plan.failures + sorted(failures, key=lambda f: order.get(f[0], -1))
    return UpscaleSummary(
        plan.out_dir,
        written,
        plan.skipped,
        failures,
        plan.ignored,
        sr.providers,
        opts.outscale or sr.scale,
        time.perf_counter() - t0,
        megapixels,
        upscaler.tile,
        sorted(warnings, key=lambda w: order.get(w[0], -1)),
    )
