"""What a video file is, read by content with PyAV (FFmpeg's libraries, in-process): whether
a file is a video at all, and what of it an upscaled copy must keep.

A file is a video when FFmpeg opens it, it has a video stream, and its format is not one of
FFmpeg's image demuxers (``image2``, ``png_pipe``, ``gif``...: pictures are
:mod:`ganpipe.imaging`'s). The name does not matter: an MP4 saved as ``clip.png`` is a
video. :func:`probe_video` also decodes the first frame, because FFmpeg gives a video's
rotation (its display matrix) only on decoded frames; it falls back to the legacy
``rotate`` tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ganpipe.errors import GanpipeError

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoInfo",
    "is_image_format",
    "is_video",
    "probe_video",
]

#: names taken as videos in a folder (by name; any file is checked by content first)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".wmv"}
)
#: FFmpeg demuxers of single pictures or animations ganpipe reads as images
_IMAGE_DEMUXERS = frozenset({"image2", "gif", "apng", "webp", "ico", "tiff", "bmp", "jpegls"})


class VideoError(GanpipeError):
    """A file that cannot be read as a video (one line: which and why)."""


#: what to do where PyAV is missing
INSTALL_AV = "videos need PyAV (FFmpeg's libraries for Python): pip install av"


def import_av() -> Any:
    """The ``av`` module; :class:`VideoError` saying how to install it where it is missing
    (a picture-only install: the batch's videos fail, its pictures are done)."""
    try:
        import av
    except ImportError:
        raise VideoError(INSTALL_AV) from None
    return av


def is_image_format(name: str) -> bool:
    """Whether the FFmpeg demuxer ``name`` (``container.format.name``) reads pictures."""
    parts = set(name.split(","))
    return bool(parts & _IMAGE_DEMUXERS) or any(p.endswith("_pipe") for p in parts)


@dataclass
class VideoInfo:
    """What a video says about itself (its first video stream and the container)."""

    path: Path
    format: str  # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # the video codec, e.g. "h264"
    width: int  # as stored (before rotation)
    height: int
    pix_fmt: str
    bits: int  # bits per colour component: 8, 10, 12...
    time_base: Fraction
    rate: Fraction | None  # average frame rate, where known
    frames: int  # frames the container announces; 0: unknown
    duration: float | None  # seconds, of the container
    #: seconds of the video stream (its own duration or Matroska's DURATION tag), else None
    video_duration: float | None = None
    rotation: int = 0  # counter-clockwise degrees to display it upright
    sample_aspect_ratio: Fraction | None = None
    color_range: int = 0
    colorspace: int = 2  # 2: unspecified
    color_primaries: int = 2
    color_trc: int = 2
    #: other streams: (index, type, codec name)
    others: list[tuple[int, str, str]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    chapters: list[dict[str, Any]] = field(default_factory=list)


def container_suffix(fmt: str, path: Path) -> str:
    """A suffix for a file of the container ``fmt`` (FFmpeg's demuxer name) found at
    ``path``: the file's own where it is a video suffix (it is written with the muxer that
    suffix names), else the container's usual one (``.mkv`` where there is none)."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return path.suffix
    if "matroska" in fmt:
        return ".mkv"
    if "mp4" in fmt or "mov" in fmt:
        return ".mp4"
    return {"avi": ".avi", "mpegts": ".ts", "asf": ".wmv"}.get(fmt.split(",")[0], ".mkv")


def _bits(pix_fmt: str) -> int:
    """Bits per component of ``pix_fmt``: 10 for yuv420p10le, 8 for yuv420p."""
    import av

    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, TypeError):
        return 8
    return max((c.bits for c in fmt.components), default=8)


def is_video(path: str | Path) -> bool:
    """Whether FFmpeg reads ``path`` as a video (see the module docstring); never raises."""
    try:
        import av

        with av.open(str(path)) as container:
            return bool(container.streams.video) and not is_image_format(container.format.name)
    except Exception:  # noqa: BLE001 - anything FFmpeg cannot open is not a video
        return False


def _stream_seconds(stream: Any) -> float | None:
    """The video stream's own duration in seconds, where the container says it."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = next((v for k, v in stream.metadata.items() if k.upper() == "DURATION"), None)
    try:
        h, m, sec = str(tag).split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def _rotate_tag(metadata: dict[str, str]) -> int:
    try:
        return int(float(metadata.get("rotate", "0"))) % 360
    except ValueError:
        return 0


def probe_video(path: str | Path) -> VideoInfo:
    """The :class:`VideoInfo` of ``path``; :class:`VideoError` (one line) when FFmpeg
    cannot open it, it has no video stream, or it is a picture (or PyAV is missing)."""
    av = import_av()

    path = Path(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: not a video FFmpeg can read ({exc.strerror or exc})") from None
    with container:
        if not container.streams.video or is_image_format(container.format.name):
            raise VideoError(f"{path}: not a video (no video stream)")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        info = VideoInfo(
            path=path,
            format=container.format.name,
            codec=ctx.name,
            width=ctx.width,
            height=ctx.height,
            pix_fmt=ctx.pix_fmt or "yuv420p",
            bits=_bits(ctx.pix_fmt or "yuv420p"),
            time_base=stream.time_base or Fraction(1, 1000),
            rate=stream.average_rate or stream.guessed_rate,
            frames=stream.frames or 0,
            duration=container.duration / 1e6 if container.duration else None,
            video_duration=_stream_seconds(stream),
            rotation=_rotate_tag(dict(stream.metadata)),
            sample_aspect_ratio=stream.sample_aspect_ratio,
            color_range=int(ctx.color_range or 0),
            colorspace=int(ctx.colorspace or 2),
            color_primaries=int(ctx.color_primaries or 2),
            color_trc=int(ctx.color_trc or 2),
            others=[
                (s.index, s.type, s.codec_context.name if s.codec_context else "")
                for s in container.streams
                if s.index != stream.index
            ],
            metadata=dict(container.metadata),
            chapters=list(container.chapters()),
        )
        try:  # the display matrix is on decoded frames only
            first = next(container.decode(stream), None)
        except av.FFmpegError:
            first = None
        if first is not None:
            info.rotation = int(first.rotation or 0) % 360 or info.rotation
            info.width, info.height = first.width, first.height
            info.pix_fmt = first.format.name
            info.bits = _bits(info.pix_fmt)
    return info
