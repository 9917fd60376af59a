"""Running a batch: decode -> upscale -> encode, overlapped, one failed file at a time.

A file that cannot be read, upscaled or written is reported (``failures``) and the batch
goes on; so is an input over ``max_megapixels`` (refused from its header, before it is
decoded), which bounds the memory one file may take. Temporary files that killed runs
left in the output folders are removed first (:func:`ganpipe.fsutil.remove_stale`).
Decoding runs in a thread pool ahead of inference and encoding in another behind it, both
bounded (in files and in bytes), so the accelerator is not idle while files are read and
written, and memory does not grow over a long batch. The work on each file is
:mod:`ganpipe.upscale.worker`'s, and ends in a :class:`~ganpipe.upscale.report.FileRecord`.
Videos are done after the pictures, one at a time, each in its own decode -> model ->
encode pipeline (:func:`ganpipe.video.job.process_video`); the Ray engine does not take
them yet (they fail with a reason saying to use the local engine).

Every entry of the input is accounted for: written, skipped (its output exists), failed
(with the reason) or ignored (not an image, hidden, a sub-folder without ``recursive``);
``report`` writes one record per entry (:mod:`ganpipe.upscale.report`), and its journal
lets the same command resume an interrupted batch (:mod:`ganpipe.upscale.journal`; without
a report, ``skip_existing`` does). A report that cannot be written (a full disk) never
stops the batch: the summary says so (:mod:`ganpipe.upscale.summary`). What decoders and
libraries warn or print about a file is captured for it, never printed raw
(:mod:`ganpipe.imaging.capture`): the summary counts the files with warnings.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ganpipe.cpus import limits, workers_for
from ganpipe.fsutil import ensure_writable_dir, remove_stale, shown
from ganpipe.imaging.capture import quiet_decoder_warnings, stderr_lock, try_stderr_lock
from ganpipe.signals import Interrupted
from ganpipe.upscale import worker
from ganpipe.upscale.ensemble import combine
from ganpipe.upscale.journal import batch_key, carried_over
from ganpipe.upscale.model import open_models_of
from ganpipe.upscale.options import UpscaleOptions, with_overrides
from ganpipe.upscale.plan import Job, Plan, plan_jobs
from ganpipe.upscale.report import FileRecord, ReportWriter
from ganpipe.upscale.summary import UpscaleSummary
from ganpipe.upscale.tiling import Upscaler
from ganpipe.upscale.worker import describe_error, write_dropping_metadata
from ganpipe.video.select import VIDEO

__all__ = [
    "UpscaleSummary",
    "describe_error",
    "plan_records",
    "run_jobs",
    "upscale_path",
    "write_dropping_metadata",
]

#: decoded images waiting for the model, and upscaled images waiting to be written
MAX_PENDING_BYTES = 2 << 30
#: why a video fails with --engine ray (for now)
RAY_VIDEO = "videos are upscaled by the local engine only for now; run them with --engine local"


class _Count:
    """What :class:`_Progress` keeps when no bar is shown: the count (no tqdm)."""

    n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def set_postfix_str(self, *_: Any, **__: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _Progress:
    """tqdm bar with images/s and input megapixels/s; thread-safe updates. While another
    thread captures fd 2 (a TIFF decoding), the bar counts without drawing, so that its
    text is not taken for a file's messages."""

    def __init__(self, total: int, enabled: bool | None):
        from ganpipe import progress

        self.bar: Any = _Count()
        if progress.drawn(enabled):
            self.bar = progress.bar(total, "upscale", "img", enabled=enabled, smoothing=0.1)
        self.lock = threading.Lock()
        self.start = time.perf_counter()
        self.megapixels = 0.0

    def done(self, megapixels: float) -> None:
        with self.lock:
            self.megapixels += megapixels
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{self.megapixels / elapsed:.2f} MP/s", refresh=False)
            self._advance()

    def failed(self) -> None:
        with self.lock:
            self._advance()

    def _advance(self) -> None:
        if try_stderr_lock():
            try:
                self.bar.update(1)
            finally:
                stderr_lock().release()
        else:
            self.bar.n += 1  # drawn at the next update

    def close(self) -> None:
        with stderr_lock():
            self.bar.close()


def run_jobs(
    upscaler: Upscaler,
    jobs: list[Job],
    options: UpscaleOptions | None = None,
    *,
    progress: bool | None = None,
    warnings: list[tuple[Path, str]] | None = None,
    on_record: Callable[[FileRecord], Any] | None = None,
    **overrides: Any,
) -> tuple[list[Path], list[tuple[Path, str]], float]:
    """Decode (thread pool, ahead) -> upscale (this thread) -> encode (thread pool,
    behind), with the ``quality``, ``png_compression`` and ``workers`` of ``options`` (and
    keyword ``overrides`` of them); ``progress``: a bar (None: when stderr is a terminal).
    Returns the written paths, the failures and the input megapixels; each file's
    warnings are appended to ``warnings``, and its record is handed to ``on_record`` (from
    any thread, one call at a time) as soon as it is finished."""
    opts = with_overrides(options, overrides)
    workers = workers_for(opts.workers)  # the enclosing cpus.limits' share (a Ray actor's)
    videos = [job for job in jobs if job.fmt == VIDEO]  # after the images, one at a time
    jobs = [job for job in jobs if job.fmt != VIDEO]
    written: list[Path] = []
    failures: list[tuple[Path, str]] = []
    bar = _Progress(len(jobs) + len(videos), progress)
    lock = threading.Lock()

    def finish(record: FileRecord) -> None:
        with lock:
            if record.outcome == "written":
                written.append(Path(record.output or ""))
            else:
                failures.append((Path(record.path), record.reason))
            if warnings is not None:
                warnings.extend((Path(record.path), note) for note in record.warnings)
            if on_record is not None:
                on_record(record)
        if record.outcome == "written":
            bar.done(record.megapixels or 0.0)
        else:
            bar.failed()

    def encode(work: worker.Work) -> None:
        finish(worker.encode(work, opts))

    decoders = ThreadPoolExecutor(workers, thread_name_prefix="ganpipe-decode")
    encoders = ThreadPoolExecutor(workers, thread_name_prefix="ganpipe-encode")
    ahead: deque[Future] = deque()
    behind: deque[tuple[Future, int]] = deque()
    pending = iter(jobs)
    try:

        def refill() -> None:
            while len(ahead) < workers + 1:
                job = next(pending, None)
                if job is None:
                    return
                ahead.append(decoders.submit(worker.decode, job, opts))

        refill()
        while ahead:
            fut = ahead.popleft()
            refill()
            work = worker.upscale(upscaler, fut.result())
            if work.record is not None:
                finish(work.record)
                continue
            size = work.nbytes
            while behind and (
                len(behind) >= workers or sum(b for _, b in behind) + size > MAX_PENDING_BYTES
            ):
                behind.popleft()[0].result()
            behind.append((encoders.submit(encode, work), size))
            del work
        while behind:
            behind.popleft()[0].result()
        if videos:
            from ganpipe.video.job import process_video  # its own pipeline, frames bar

            for job in videos:
                finish(process_video(upscaler, job, opts, progress))
    finally:
        decoders.shutdown(wait=True, cancel_futures=True)
        encoders.shutdown(wait=True, cancel_futures=True)  # started writes finish
        bar.close()
    return written, failures, bar.megapixels


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def plan_records(plan: Plan) -> list[FileRecord]:
    """The records of the entries the plan settled before any file is read: ignored,
    failed in planning (collisions, names too long, unreadable folders) and skipped."""
    records = [FileRecord(str(p), "ignored", reason) for p, reason in plan.ignored_files]
    records += [FileRecord(str(p), "failed", reason) for p, reason in plan.failures]
    records += [
        FileRecord(
            str(job.src),
            "skipped",
            "output exists (--skip-existing)",
            str(job.dst),
            _size(job.src),
            output_bytes=_size(job.dst),
        )
        for job in plan.skipped_jobs
    ]
    return records


def _protected(plan: Plan, src: Path) -> list[Path]:
    """Files a report must never replace: every entry of the input."""
    paths = [src] if src.is_file() else []
    paths += [j.src for j in plan.jobs] + plan.skipped + [p for p, _ in plan.failures]
    return paths + [p for p, _ in plan.ignored_files]


def _open_report(
    src: Path, plan: Plan, opts: UpscaleOptions, say: Callable[[str], Any]
) -> tuple[ReportWriter | None, dict[str, FileRecord]]:
    """The report's writer (``--report``; None without) and the files an interrupted run
    of this batch finished, by input path (from the report's journal; they are not done
    again)."""
    if not opts.report:
        return None, {}
    key = batch_key(src, plan.out_dir, opts)
    report = ReportWriter(opts.report, _protected(plan, src), batch=key, log=say)
    try:
        carried = carried_over(report.previous, plan.jobs)
        if carried:
            say(f"resuming from {shown(report.part)}: {len(carried)} file(s) done before kept")
        report.start(carried.values())
    except BaseException:
        report.abandon()  # lets go of the lock
        raise
    return report, carried


def _resume_hint(opts: UpscaleOptions, report: ReportWriter | None) -> str | None:
    """How to resume an interrupted batch, where the same command alone would not."""
    if report is not None:
        return f"run the same command to resume from the journal {shown(report.part)}"
    if opts.skip_existing:
        return None
    return "add --skip-existing to the same command to resume (written outputs are complete)"


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
    """Upscale an image or video file, or a folder of them, with a ``super_resolve`` (or
    ``translate``) model, as ``options`` say (:class:`UpscaleOptions`; keyword
    ``overrides`` of its fields are validated through it, e.g. ``tile=256``).

    ``model`` (default: ``options.model``) may be a list: the models' outputs are averaged
    (:class:`~ganpipe.upscale.ensemble.Ensemble`); ``tta`` averages each over the 8 flips
    / rotations of its input. Problems with the options, the input or the model raise
    :class:`~ganpipe.errors.ConfigError` before anything is written. Files that cannot be
    read, upscaled or written, or that are over ``max_megapixels``, are listed in
    ``failures`` and the others are still done. What decoders warn or print about a file
    is captured for it (``warnings``), never printed
    (:func:`~ganpipe.imaging.capture.quiet_decoder_warnings`); ``report`` writes one
    record per entry (:class:`~ganpipe.upscale.report.ReportWriter`).
    """
    if model is not None:
        overrides["model"] = list(model) if isinstance(model, list | tuple) else [model]
    opts = with_overrides(options, overrides)
    quiet_decoder_warnings()  # captured per file, counted, printed with --verbose

    def say(message: str) -> None:  # not while a file's fd 2 is being captured
        if log is not None:
            with stderr_lock():
                log(message)

    plan = plan_jobs(input, output, opts)
    if opts.engine == "ray":
        from ganpipe.upscale.ray_engine import check_ray

        check_ray()  # before anything is written: says how to install it
        # opened here only to check the model(s) and learn the scale; the actors run them
        probe = opts.model_copy(update={"device": "cpu", "runtime": "onnxruntime"})
        sr = combine(open_models_of(probe, say), opts.tta)
        upscaler = None
    else:
        with limits(opts.threads):  # the sessions' thread pools (0: the run's, or automatic)
            sr = combine(open_models_of(opts, say), opts.tta)
        upscaler = Upscaler(sr, opts, log=say)
    if any(job.fmt == VIDEO for job in plan.jobs):  # before anything is written
        from ganpipe.video.encoding import check_options

        check_options(opts.video_codec, opts.pix_fmt)
    ensure_writable_dir(plan.out_dir)
    report, carried = _open_report(Path(input), plan, opts, say)
    jobs = [job for job in plan.jobs if str(job.src) not in carried]
    folders = {plan.out_dir, *(job.dst.parent for job in plan.jobs)}
    stale = remove_stale(sorted(folders), recursive=False)  # left by killed runs
    if stale:
        say(f"removed {len(stale)} temporary file(s) left by an interrupted run")
    t0 = time.perf_counter()
    records = plan_records(plan)
    done: list[FileRecord] = []

    def on_record(record: FileRecord) -> None:
        done.append(record)
        if report is not None:
            report.add(record)

    try:
        if report is not None:
            report.extend(records)
        if upscaler is None:
            from ganpipe.upscale.ray_engine import run_on_ray

            for job in [job for job in jobs if job.fmt == VIDEO]:
                on_record(FileRecord(str(job.src), "failed", RAY_VIDEO))
            jobs = [job for job in jobs if job.fmt != VIDEO]
            ran = run_on_ray(
                jobs, opts, address=opts.ray_address, actors=opts.actors, on_record=on_record
            )
            providers, tile = ran.providers or sr.providers, ran.tile
            megapixels = sum(r.megapixels or 0.0 for r in done if r.outcome == "written")
        else:
            *_, megapixels = run_jobs(upscaler, jobs, opts, progress=progress, on_record=on_record)
            providers, tile = sr.providers, upscaler.tile
    except BaseException as exc:
        if report is not None:
            report.abandon()  # FILE.part: what was done
        if isinstance(exc, Interrupted):  # the CLI's last line says how to resume
            exc.resume = _resume_hint(opts, report)
        raise
    order = {str(job.src): i for i, job in enumerate(plan.jobs)}
    done.sort(key=lambda r: order.get(r.path, -1))
    records = sorted(records + list(carried.values()) + done, key=lambda r: r.path)
    written = report.close() if report is not None else None
    return UpscaleSummary(
        plan.out_dir,
        [Path(r.output or "") for r in done if r.outcome == "written"],
        plan.skipped,
        plan.failures + [(Path(r.path), r.reason) for r in done if r.outcome == "failed"],
        plan.ignored,
        providers,
        opts.outscale or sr.scale,
        time.perf_counter() - t0,
        megapixels,
        tile,
        [(Path(r.path), n) for r in records for n in r.warnings],
        plan.ignored_files,
        records,
        written,
        len(carried),
        report.problems if report is not None else [],
    )
