"""Small, deterministic test videos written with PyAV in-process, and independent readers.

The video tests (issue 28) need real files of the kinds people feed an upscaler: H.264 + AAC
in MP4 with metadata and a chapter, VP9 + Opus in Matroska with a subtitle stream, variable
frame rate, a rotated phone clip, 10-bit, lossless, a truncated file and a video under an
image name. Each generator writes one tiny clip (64x48, 24 frames by default; well under a
second) whose frames (``frame_rgb``) are gradients with two moving boxes, so codecs keep them and pixel checks
mean something. Every generator returns the path it wrote.

The readers (``frame_pts``, ``keyframe_pts``, ``stream_packet_hashes``,
``stream_packet_times``, ``video_info``, ``decoded_frames``) use PyAV directly, never
ganpipe, so the tests compare ganpipe's output against a reader that shares none of its
code.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: the container metadata the MP4 and MKV generators write (``location`` is what no-gps drops)
METADATA = {"title": "ganpipe test clip", "location": "+48.8584+002.2945/"}
#: the subtitle cues of ``mkv_vp9_opus_subs``: (start ms, end ms, text)
CUES = [(0, 400, "Hello"), (500, 900, "world")]
SAMPLE_RATE = 48000


def frame_rgb(index: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """Frame ``index`` of every clip: an RGB gradient with a yellow box moving right and a
    blue one moving down (HxWx3 uint8), the same for a given index and size."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = x * 255 // max(w - 1, 1)
    img[..., 1] = y * 255 // max(h - 1, 1)
    img[..., 2] = (64 + 8 * index) % 256
    bw, bh = max(w // 5, 2), max(h // 4, 2)
    bx = (index * 3) % max(w - bw, 1)
    img[h // 6 : h // 6 + bh, bx : bx + bw] = (255, 255, 0)
    by = (index * 2) % max(h - bh, 1)
    img[by : by + bh, w // 2 : w // 2 + bw] = (0, 0, 255)
    return img


def _video_stream(container, codec: str, size, fps, pix_fmt: str, options=None):
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = pix_fmt
    stream.options = dict(options or {})
    return stream


def _write_frames(container, stream, frames: int, size, pts=None) -> None:
    """Encode ``frames`` frames (``pts`` in the codec time base where given) and flush."""
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(frame_rgb(i, size), format="rgb24")
        if pts is not None:
            frame.pts = pts[i]
            frame.time_base = stream.codec_context.time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _write_sine(container, stream, seconds: float, hz: float = 440.0) -> None:
    """Encode a mono sine of ``seconds`` into an audio ``stream`` (frames of the encoder's
    size; PyAV buffers as needed) and flush."""
    total = int(round(seconds * SAMPLE_RATE))
    t = np.arange(total) / SAMPLE_RATE
    samples = (0.25 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None]
    chunk = 960
    for start in range(0, total, chunk):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples[:, start : start + chunk]), format="flt", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        frame.time_base = Fraction(1, SAMPLE_RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _chapters(frames: int, fps: int) -> list[dict]:
    """Two chapters splitting the clip at half its length (milliseconds)."""
    end = int(1000 * frames / fps)
    tb = Fraction(1, 1000)
    return [
        {"id": 1, "start": 0, "end": end // 2, "time_base": tb, "metadata": {"title": "Start"}},
        {"id": 2, "start": end // 2, "end": end, "time_base": tb, "metadata": {"title": "End"}},
    ]


def mp4_h264_aac(
    path, frames: int = 24, fps: int = 24, size=(64, 48), chapters: bool = True, gop: int = 12
) -> Path:
    """H.264 (yuv420p, keyframe every ``gop``) + AAC mono sine in MP4, container metadata
    ``METADATA`` and, with ``chapters``, two chapters. MP4 stores chapters as a text track:
    reading back, the file then has a third stream of type "data" (bin_data) besides
    ``container.chapters()``."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        out.metadata.update(METADATA)
        video = _video_stream(out, "libx264", size, fps, "yuv420p", {"g": str(gop)})
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        _write_frames(out, video, frames, size)
        _write_sine(out, audio, frames / fps)
        if chapters:
            out.set_chapters(_chapters(frames, fps))
    return path


def mkv_vp9_opus_subs(
    path, frames: int = 24, fps: int = 24, size=(64, 48), chapters: bool = True
) -> Path:
    """VP9 + Opus (48 kHz mono) + a SubRip subtitle stream (the text cues ``CUES``, language
    "eng") in Matroska, with ``METADATA`` and, with ``chapters``, two native chapters."""
    path = Path(path)
    with av.open(str(path), "w", format="matroska") as out:
        out.metadata.update(METADATA)
        video = _video_stream(
            out, "libvpx-vp9", size, fps, "yuv420p", {"deadline": "realtime", "cpu-used": "8"}
        )
        audio = out.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
        subs = out.add_mux_stream("subrip")  # packets muxed as-is, no encoder
        subs.metadata["language"] = "eng"
        subs.time_base = Fraction(1, 1000)
        out.start_encoding()
        for start, end, text in CUES:
            packet = av.Packet(text.encode())
            packet.stream = subs
            packet.pts = packet.dts = int(start / 1000 / subs.time_base)
            packet.duration = int((end - start) / 1000 / subs.time_base)
            out.mux(packet)
        _write_frames(out, video, frames, size)
        _write_sine(out, audio, frames / fps)
        if chapters:
            out.set_chapters(_chapters(frames, fps))
    return path


#: the frame durations (ms) ``vfr`` cycles through: irregular on purpose
VFR_STEPS_MS = (40, 40, 80, 20, 60, 33, 100, 17)


def vfr(path, frames: int = 24, size=(64, 48)) -> Path:
    """H.264 in MP4 with a 1/1000 time base and irregular frame times: frame i starts at the
    sum of the first i of ``VFR_STEPS_MS`` (cycled); ``frame_pts(path) == vfr_pts_ms(frames)``."""
    path = Path(path)
    with av.open(str(path), "w", options={"video_track_timescale": "1000"}) as out:
        video = _video_stream(out, "libx264", size, 25, "yuv420p", {"bf": "0"})
        video.codec_context.time_base = Fraction(1, 1000)
        video.time_base = Fraction(1, 1000)
        _write_frames(out, video, frames, size, pts=vfr_pts_ms(frames))
    return path


def vfr_pts_ms(frames: int) -> list[int]:
    """The presentation times (ms) ``vfr`` writes for ``frames`` frames."""
    pts, t = [], 0
    for i in range(frames):
        pts.append(t)
        t += VFR_STEPS_MS[i % len(VFR_STEPS_MS)]
    return pts


def rotated(path, degrees: int = 90, frames: int = 12, fps: int = 30, size=(64, 48)) -> Path:
    """A phone-style clip: H.264 + AAC in MP4, stored ``size`` (landscape) with a display
    matrix rotating it by ``degrees`` (reads back as ``video_info(path)["rotation"]``)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        video = _video_stream(out, "libx264", size, fps, "yuv420p")
        video.set_display_rotation(degrees)
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        _write_frames(out, video, frames, size)
        _write_sine(out, audio, frames / fps)
    return path


def ten_bit(path, frames: int = 12, fps: int = 24, size=(64, 48), codec: str = "libx264") -> Path:
    """10-bit video (yuv420p10le, H.264 High 10 by default; ``codec="libx265"`` for HEVC) in
    MP4 (MKV when ``path`` ends in .mkv), tagged limited range BT.709."""
    path = Path(path)
    fmt = "matroska" if path.suffix == ".mkv" else "mp4"
    with av.open(str(path), "w", format=fmt) as out:
        options = {"x265-params": "log-level=error"} if codec == "libx265" else {}
        video = _video_stream(out, codec, size, fps, "yuv420p10le", options)
        cc = video.codec_context
        cc.color_range = 1  # MPEG (limited)
        cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
        _write_frames(out, video, frames, size)
    return path


def lossless(path, frames: int = 12, fps: int = 24, size=(64, 48), pix_fmt="yuv444p") -> Path:
    """FFV1 (lossless) in Matroska: the decoded frames are exactly the encoded ones in
    ``pix_fmt``, so upscaled pixels can be checked tightly."""
    path = Path(path)
    with av.open(str(path), "w", format="matroska") as out:
        video = _video_stream(out, "ffv1", size, fps, pix_fmt)
        _write_frames(out, video, frames, size)
    return path


def truncated(path, frames: int = 24, fps: int = 24, size=(64, 48), keep: float = 0.5) -> Path:
    """An H.264 Matroska clip (keyframe every 4 frames) cut to its first ``keep`` of bytes,
    as a copy interrupted mid-file: the first frames decode, the rest are missing (Matroska
    rather than MP4, whose index sits at the end and whose cut files do not open at all)."""
    path = Path(path)
    with av.open(str(path), "w", format="matroska") as out:
        video = _video_stream(out, "libx264", size, fps, "yuv420p", {"g": "4"})
        _write_frames(out, video, frames, size)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def video_with_image_extension(path, frames: int = 12, fps: int = 24, size=(64, 48)) -> Path:
    """A real H.264 MP4 saved under ``path`` whatever its name (e.g. ``clip.png``)."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        video = _video_stream(out, "libx264", size, fps, "yuv420p")
        _write_frames(out, video, frames, size)
    return path


# -- independent readers ---------------------------------------------------------------


def frame_pts(path) -> list[int]:
    """The pts of every decodable frame of the first video stream (its time base), sorted.
    Stops quietly at a decode error (a truncated file gives what decodes)."""
    pts = []
    with av.open(str(path)) as src:
        try:
            for frame in src.decode(video=0):
                pts.append(frame.pts)
        except av.error.FFmpegError:
            pass
    return sorted(pts)


def keyframe_pts(path) -> list[int]:
    """The pts of the first video stream's keyframe packets (where a keyframe-aligned
    segment may start), sorted; the clip generators put one every ``gop`` frames."""
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        return sorted(p.pts for p in src.demux(stream) if p.is_keyframe and p.pts is not None)


def stream_packet_times(path) -> dict[str, list[tuple[int, int]]]:
    """(pts, duration) of each non-video stream's packets in file order, keyed like
    ``stream_packet_hashes``: a stream copied unchanged keeps these too (in its own time
    base, which a remux may change; compare after rescaling where it does)."""
    with av.open(str(path)) as src:
        keys, times = {}, {}
        counts: dict[str, int] = {}
        for stream in src.streams:
            if stream.type != "video":
                letter = stream.type[0]
                keys[stream.index] = f"{letter}:{counts.get(letter, 0)}"
                counts[letter] = counts.get(letter, 0) + 1
                times[stream.index] = []
        if keys:
            for packet in src.demux(*[src.streams[i] for i in keys]):
                if packet.size:
                    times[packet.stream.index].append((packet.pts, packet.duration))
    return {keys[i]: t for i, t in times.items()}


def decoded_frames(path, format: str = "rgb24") -> list[np.ndarray]:
    """Every decodable frame of the first video stream as HxWxC arrays in ``format``."""
    out = []
    with av.open(str(path)) as src:
        try:
            for frame in src.decode(video=0):
                out.append(frame.to_ndarray(format=format))
        except av.error.FFmpegError:
            pass
    return out


def stream_packet_hashes(path) -> dict[str, str]:
    """sha256 over the payload bytes of each non-video stream's packets in file order, keyed
    "<type letter>:<index among streams of that type>" like FFmpeg's specifiers ("a:0",
    "s:0", "d:0"), so a copy that reorders streams still compares. Empty packets (muxer
    flushes) are skipped."""
    with av.open(str(path)) as src:
        keys, hashes = {}, {}
        counts: dict[str, int] = {}
        for stream in src.streams:
            if stream.type == "video":
                continue
            letter = stream.type[0]
            keys[stream.index] = f"{letter}:{counts.get(letter, 0)}"
            counts[letter] = counts.get(letter, 0) + 1
            hashes[stream.index] = hashlib.sha256()
        if not keys:
            return {}
        for packet in src.demux(*[src.streams[i] for i in keys]):
            if packet.size:
                hashes[packet.stream.index].update(bytes(packet))
    return {keys[i]: h.hexdigest() for i, h in hashes.items()}


def video_info(path) -> dict:
    """What a video file says about itself, read with PyAV: width, height (stored, before
    rotation), codec, pix_fmt, time_base, average_rate, frames (decoded count), rotation
    (degrees, from the first frame's display matrix; 0 without one), colour tags
    (color_range, colorspace, color_primaries, color_trc as FFmpeg's integers), sample and
    display aspect ratio, duration (seconds), container metadata, chapters and the list of
    stream types."""
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        cc = stream.codec_context
        info = {
            "width": cc.width,
            "height": cc.height,
            "codec": cc.name,
            "pix_fmt": cc.pix_fmt,
            "time_base": stream.time_base,
            "average_rate": stream.average_rate,
            "sample_aspect_ratio": stream.sample_aspect_ratio,
            "display_aspect_ratio": stream.display_aspect_ratio,
            "duration": float(src.duration / av.time_base) if src.duration else None,
            "metadata": dict(src.metadata),
            "stream_metadata": dict(stream.metadata),
            "chapters": src.chapters(),
            "streams": [s.type for s in src.streams],
        }
        frames, first = 0, None
        try:
            for frame in src.decode(video=0):
                if first is None:
                    first = frame
                frames += 1
        except av.error.FFmpegError:
            pass
        info["frames"] = frames
        info["rotation"] = int(first.rotation) if first is not None else 0
        source = first if first is not None else cc
        for tag in ("color_range", "colorspace", "color_primaries", "color_trc"):
            info[tag] = int(getattr(source, tag))
    return info
