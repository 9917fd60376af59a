"""Where upscaled frames go: the output container, set up with the upscaled video stream
(time base, rotation, aspect ratio, colour tags, encoder options) and a copy of every other
stream, tags and chapters (:mod:`ganpipe.video.streams`); or, with ``--frames``, a folder
of PNG files. Both are written under a temporary name next to the destination and renamed
when complete (:func:`ganpipe.fsutil.atomic_path`), so a killed run never leaves a
half-written output under the real name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ganpipe.fsutil import atomic_path, temp_sibling
from ganpipe.upscale.options import UpscaleOptions
from ganpipe.video.encoding import Encoding
from ganpipe.video.probe import VideoInfo
from ganpipe.video.streams import add_copied_streams, container_tags, kept_chapters, stream_tags

__all__ = ["MUXERS", "Destination", "open_output", "write_pngs"]

#: output suffix -> FFmpeg muxer (the temporary name has no telling suffix)
MUXERS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".ts": "mpegts",
    ".m2ts": "mpegts",
}


def open_output(
    path: Path,
    muxer: str,
    container: Any,
    info: VideoInfo,
    enc: Encoding,
    size: tuple[int, int],
    opts: UpscaleOptions,
) -> tuple[Any, Any, dict[int, Any], list[str]]:
    """The output container at ``path`` with its upscaled stream and the copied ones, its
    header written; where the muxer refuses a data stream, again without data streams."""
    import av

    try:
        return _try_output(path, muxer, container, info, enc, size, opts, True)
    except av.FFmpegError:
        if not any(s.type == "data" for s in container.streams):
            raise
    return _try_output(path, muxer, container, info, enc, size, opts, False)


def _try_output(
    path: Path,
    muxer: str,
    container: Any,
    info: VideoInfo,
    enc: Encoding,
    size: tuple[int, int],
    opts: UpscaleOptions,
    data: bool,
) -> tuple[Any, Any, dict[int, Any], list[str]]:
    import av

    output = av.open(str(path), "w", format=muxer)
    try:
        source = container.streams.video[0]
        ostream = output.add_stream(enc.codec, rate=info.rate or 25)
        ostream.width, ostream.height = size
        ostream.pix_fmt = enc.pix_fmt
        ostream.time_base = info.time_base
        ctx = ostream.codec_context
        ctx.time_base = info.time_base
        ctx.thread_type = "AUTO"
        if info.color_range:
            ctx.color_range = info.color_range
        ctx.colorspace, ctx.color_primaries, ctx.color_trc = (
            info.colorspace,
            info.color_primaries,
            info.color_trc,
        )
        if info.sample_aspect_ratio:
            ctx.sample_aspect_ratio = info.sample_aspect_ratio
        ostream.options = dict(enc.options)
        if info.rotation:
            ostream.set_display_rotation(info.rotation)
        ostream.metadata.update(stream_tags(dict(source.metadata), opts.metadata))
        copied, notes = add_copied_streams(container, output, source.index, opts.metadata, data)
        tags, tag_notes = container_tags(dict(container.metadata), opts.metadata)
        output.metadata.update(tags)
        chapters = kept_chapters(info.chapters, opts.metadata)
        if chapters:
            output.set_chapters(chapters)
        output.start_encoding()  # the header: here a refused stream can still be left out
    except BaseException:
        output.close()
        raise
    return output, ostream, copied, notes + tag_notes


class Destination:
    """A temporary file (or folder, for frames) next to ``dst``, renamed to ``dst`` when
    the block ends without an error, removed otherwise."""

    def __init__(self, dst: Path, folder: bool):
        self.dst, self.folder = dst, folder

    def __enter__(self) -> Path:
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        if not self.folder:
            self.ctx = atomic_path(self.dst, "video")
            return self.ctx.__enter__()
        self.tmp = temp_sibling(self.dst, directory=True)
        return self.tmp

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if not self.folder:
            return bool(self.ctx.__exit__(kind, exc, tb))
        if kind is None:
            if self.dst.is_dir() and not self.dst.is_symlink():
                shutil.rmtree(self.dst)
            os.replace(self.tmp, self.dst)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def write_pngs(folder: Path, pipe: Any, opts: UpscaleOptions) -> None:
    """The muxer thread's work with ``--frames``: each upscaled frame as a PNG file
    ``000000.png``, ``000001.png``... (in presentation order) in ``folder``."""
    from ganpipe.imaging.encode import encode_image
    from ganpipe.imaging.picture import Picture

    index = 0
    while True:
        kind, _, item = pipe.get()
        if kind == "end":
            return
        if kind == "frame":
            bits = 16 if item.dtype == np.uint16 else 8
            path = folder / f"{index:06d}.png"
            encode_image(Picture(item, bits=bits), path, "PNG", opts.quality, opts.png_compression)
            index += 1
