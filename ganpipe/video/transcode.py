"""Upscaling one video: demux -> decode -> model -> encode -> mux, in a pipeline, into a
video with the same timestamps and every other stream copied (or, with ``--frames``, a
folder of PNG frames).

Three threads overlap: a decoder thread demuxes the source, decodes the video stream
(FFmpeg's own codec threads: ``thread_type = "AUTO"``) and converts frames to RGB arrays;
the calling thread runs the model on batches of frames
(:func:`~ganpipe.video.convert.upscale_frames`); a muxer thread encodes the upscaled
frames and writes them with the other streams' packets. Bounded queues between them keep
memory flat however long the video is.

**What is kept.** Each frame keeps its pts (and duration) in the source stream's time
base, so frame rate, variable frame rate and duration are the source's; the display
rotation, sample aspect ratio and colour range / matrix / primaries / transfer tags are
set on the new stream; every audio, subtitle, data and attachment stream is copied packet
for packet (re-stamped to the output stream's time base), with its tags and disposition;
container tags and chapters under the metadata policy (:mod:`ganpipe.video.streams`).
The output is written under a temporary name next to it and renamed when complete.

**Damaged files.** A packet that does not decode is skipped, and a demuxer error (a
truncated file) ends the input there; what decoded is upscaled and written, and the
result's ``missing`` says what was lost, so the batch reports the file as failed (one
line) and goes on.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganpipe.upscale.options import UpscaleOptions
from ganpipe.upscale.tiling import Upscaler
from ganpipe.video.convert import batch_size, from_array, to_array, upscale_frames
from ganpipe.video.encoding import Encoding, choose_encoding
from ganpipe.video.output import MUXERS, Destination, open_output, write_pngs
from ganpipe.video.probe import VideoInfo, probe_video

__all__ = ["VideoResult", "transcode"]

#: items waiting in each queue (frames decoded ahead, upscaled frames behind), at most
QUEUE = 8
#: bytes of upscaled frames waiting to be encoded, at most (at least 2 frames wait)
QUEUE_BYTES = 512 << 20


@dataclass
class VideoResult:
    """What :func:`transcode` did."""

    frames: int  # frames upscaled and written
    expected: int  # frames the container announced (0: unknown)
    seconds: float
    codec: str  # the encoder; "png" for --frames
    width: int  # output, as encoded
    height: int
    warnings: list[str] = field(default_factory=list)
    #: what could not be decoded (a damaged or truncated file); None: nothing lost
    missing: str | None = None


class _Stopped(Exception):
    """Another stage of the pipeline failed or the run was interrupted."""


class _Pipe:
    """A bounded queue whose waits give up once ``stop`` is set."""

    def __init__(self, stop: threading.Event, size: int = QUEUE):
        self.q: queue.Queue = queue.Queue(size)
        self.stop = stop

    def put(self, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return self.q.get(timeout=0.1)
            except queue.Empty:
                continue


_END = ("end", None, None)


def _decoder(
    container: Any, info: VideoInfo, copied: set[int], pipe: _Pipe, lost: list[str]
) -> None:
    """Demux ``container``: decoded video frames as ``("frame", (pts, duration), rgb)``
    and the packets of ``copied`` streams as ``("packet", None, packet)``, then the end."""
    import av

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    bits = 8 if info.bits <= 8 else 16
    last: list[int] = []  # first pts, last pts, last end (pts + duration)

    def send(frames: Any) -> None:
        for frame in frames:
            pts = frame.pts if frame.pts is not None else frame.best_effort_timestamp
            if pts is None or (last and pts <= last[1]):
                pts = last[1] + 1 if last else 0  # encoders need increasing pts
            last[:] = [last[0] if last else pts, pts, pts + (frame.duration or 0)]
            pipe.put(("frame", (pts, frame.duration), to_array(frame, bits)))

    bad = 0
    try:
        for packet in container.demux():
            index = packet.stream.index
            if index == stream.index:
                if not packet.size:  # the demuxer's end marker: flushed below
                    continue
                try:
                    send(packet.decode())
                except av.FFmpegError:
                    bad += 1
            elif index in copied and packet.size:
                pipe.put(("packet", None, packet))
    except av.FFmpegError as exc:
        lost.append(f"the file ends early or is damaged ({exc.strerror or exc})")
    try:
        send(stream.decode(None))
    except av.EOFError:
        pass
    except av.FFmpegError:
        bad += 1
    if bad:
        lost.append(f"{bad} packet(s) of the video stream could not be decoded")
    if last and not lost:
        short = _short(info, float((last[2] - last[0]) * info.time_base))
        if short:
            lost.append(short)
    pipe.put(_END)


def _short(info: VideoInfo, covered: float) -> str | None:
    """What is missing where the decoded frames cover ``covered`` seconds of a video
    stream that says it is longer (by more than two frames): a file cut short without a
    demuxer error (Matroska)."""
    expected = info.video_duration
    step = float(1 / info.rate) if info.rate else 0.1
    if expected is None or covered >= expected - 2 * step - 0.05:
        return None
    return f"the file ends early: {covered:.2f} s of its {expected:.2f} s decoded"


def _muxer(
    output: Any,
    ostream: Any,
    copied: dict[int, Any],
    enc: Encoding,
    info: VideoInfo,
    pipe: _Pipe,
    size: tuple[int, int],
) -> None:
    """Encode the upscaled frames of ``pipe`` into ``ostream`` and mux them with the
    copied packets, then flush the encoder."""
    while True:
        kind, meta, item = pipe.get()
        if kind == "end":
            break
        if kind == "packet":
            item.stream = copied[item.stream.index]
            output.mux(item)
            continue
        frame = from_array(item, enc.pix_fmt, info.colorspace, info.color_range, size)
        frame.pts, frame.time_base = meta[0], info.time_base
        if meta[1]:
            frame.duration = meta[1]
        output.mux(ostream.encode(frame))
    output.mux(ostream.encode(None))


def _run(upscaler: Upscaler, pipe_in: _Pipe, emit: Any, progress: Any, bits: int) -> int:
    """The model's part: batches of frames from ``pipe_in`` upscaled and handed to
    ``emit`` in order (packets passed through), as integers of ``bits`` (the encoder's:
    16 for formats deeper than 8 bits, so a 10-bit output keeps the model's precision
    even from an 8-bit source); returns the frames done."""
    done, batch, held = 0, [], []
    providers = list(getattr(upscaler.model, "providers", None) or ())
    limit = 1

    def flush() -> None:
        nonlocal done
        if not batch:
            return
        for (meta, _), up in zip(
            batch, upscale_frames(upscaler, [a for _, a in batch], bits), strict=True
        ):
            emit(("frame", meta, up))
        done += len(batch)
        progress(len(batch))
        batch.clear()
        for item in held:
            emit(item)
        held.clear()

    while True:
        item = pipe_in.get()
        kind, meta, value = item
        if kind == "frame":
            h, w = value.shape[:2]
            limit = batch_size(w, h, providers)
            batch.append((meta, value))
            if len(batch) >= limit:
                flush()
        elif kind == "packet":
            held.append(item)
        else:
            flush()
            for extra in held:
                emit(extra)
            emit(_END)
            return done


def transcode(
    upscaler: Upscaler,
    src: str | Path,
    dst: str | Path,
    opts: UpscaleOptions,
    *,
    info: VideoInfo | None = None,
    progress: Any = None,
) -> VideoResult:
    """Upscale the video ``src`` into ``dst`` (a video; with ``opts.frames``: a folder of
    PNG frames), as the module docstring says. ``progress(k)`` is called as frames are
    done. Raises :class:`~ganpipe.video.probe.VideoError` for a file that is not a video
    and :class:`~ganpipe.errors.ConfigError` for encoding options that cannot be used."""
    import av

    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    info = info or probe_video(src)
    tick = progress or (lambda k: None)
    scale_w, scale_h = _output_size(upscaler, info)
    stop = threading.Event()
    frame_bytes = scale_w * scale_h * 3 * (1 if info.bits <= 8 else 2)
    decoded = _Pipe(stop)
    upscaled = _Pipe(stop, max(2, min(QUEUE, QUEUE_BYTES // max(frame_bytes, 1))))
    errors: list[BaseException] = []
    lost: list[str] = []
    warnings: list[str] = []

    def guarded(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised by the model's thread
            errors.append(exc)
            stop.set()

    container = av.open(str(src))
    try:
        if opts.frames is not None:
            enc = None
            size = (scale_w, scale_h)
            copied_in: set[int] = set()
        else:
            enc = choose_encoding(
                info.codec,
                info.bits,
                dst.suffix,
                codec=opts.video_codec,
                crf=opts.crf,
                preset=opts.preset,
                pix_fmt=opts.pix_fmt,
            )
            size = enc.padded(scale_w, scale_h)
            warnings += enc.notes
            if size != (scale_w, scale_h):
                warnings.append(
                    f"output padded from {scale_w}x{scale_h} to {size[0]}x{size[1]}: {enc.pix_fmt} needs even sides"
                )
        with Destination(dst, opts.frames is not None) as tmp:
            if enc is not None:
                output, ostream, copied, notes = open_output(
                    tmp,
                    MUXERS.get(dst.suffix.lower(), "matroska"),
                    container,
                    info,
                    enc,
                    size,
                    opts,
                )
                warnings += notes
                copied_in = set(copied)
                sink = (_muxer, output, ostream, copied, enc, info, upscaled, size)
            else:
                sink = (write_pngs, tmp, upscaled, opts)
            threads = [
                threading.Thread(
                    target=guarded,
                    args=(_decoder, container, info, copied_in, decoded, lost),
                    name="ganpipe-video-decode",
                    daemon=True,
                ),
                threading.Thread(
                    target=guarded, args=sink, name="ganpipe-video-encode", daemon=True
                ),
            ]
            for thread in threads:
                thread.start()
            try:
                bits = enc.bits if enc is not None else 8 if info.bits <= 8 else 16
                frames = _run(upscaler, decoded, upscaled.put, tick, bits)
            except _Stopped:
                frames = 0
            except BaseException:
                stop.set()
                raise
            finally:
                if stop.is_set() or errors:
                    stop.set()
                for thread in threads:
                    thread.join()
                if enc is not None:
                    output.close()
            if errors:
                raise errors[0]
            if frames == 0:
                raise av.InvalidDataError(0, "no video frame could be decoded")
    finally:
        container.close()
    missing = None
    if lost:
        announced = f" of {info.frames} announced" if info.frames > frames else ""
        missing = f"{frames} frame(s) decoded{announced}; " + "; ".join(lost)
    return VideoResult(
        frames,
        info.frames,
        time.perf_counter() - t0,
        enc.codec if enc else "png",
        size[0],
        size[1],
        warnings,
        missing,
    )


def _output_size(upscaler: Upscaler, info: VideoInfo) -> tuple[int, int]:
    """The upscaled size of ``info``'s frames (the model's scale, or ``outscale``)."""
    from ganpipe.upscale.outscale import apply_outscale  # noqa: F401 - same rounding

    if upscaler.outscale:
        return round(info.width * upscaler.outscale), round(info.height * upscaler.outscale)
    return info.width * upscaler.scale, info.height * upscaler.scale
