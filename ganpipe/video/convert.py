"""Video frames to arrays and back, and the model run over a batch of frames.

Decoded frames become RGB arrays (uint8, or uint16 for sources deeper than 8 bits),
converted from YUV with the frame's own colour matrix and range; upscaled arrays become
frames in the encoder's pixel format, converted with the source's matrix and range, so a
video keeps its colours. Frames that fit the model whole go through it in batches (one
run for several frames: what GPU providers are fast at; on CPUs a batch was slower than
single frames, 2.97 s against 2.77 s for 24 frames of 160x96 through a compact x4 net, so
there frames go one at a time); others go one at a time through
the :class:`~ganpipe.upscale.tiling.Upscaler` (tiles, out-of-memory back-off, outscale).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ganpipe.imaging.picture import Picture, as_unit, store
from ganpipe.upscale.tiling import Upscaler, is_oom

__all__ = ["batch_size", "from_array", "to_array", "upscale_frames"]

#: input pixels of one batch: frames of 256x256 go 16 at a time, 1080p ones one at a time
BATCH_PIXELS = 1 << 20
MAX_BATCH = 16
#: words in the name of a model's first provider that mean an accelerator (batches)
_ACCELERATORS = ("cuda", "tensorrt", "rocm", "migraphx", "dml", "coreml", "gpu", "vulkan")


def _colorspace(value: int) -> Any:
    """PyAV's Colorspace for an FFmpeg colour-matrix number; None: swscale's default."""
    from av.video.reformatter import Colorspace

    value = {6: 5}.get(value, value)  # SMPTE 170M is BT.601's matrix
    try:
        return Colorspace(value)
    except ValueError:
        return None


def _range(value: int) -> Any:
    from av.video.reformatter import ColorRange

    try:
        return ColorRange(value) if value else None
    except ValueError:
        return None


def to_array(frame: Any, bits: int) -> np.ndarray:
    """A decoded frame as HxWx3 RGB: uint8 where ``bits`` is 8, else uint16."""
    rgb = frame.reformat(
        format="rgb24" if bits <= 8 else "rgb48le",
        src_colorspace=_colorspace(int(frame.colorspace or 2)),
        src_color_range=_range(int(frame.color_range or 0)),
        dst_color_range=_range(2),
    )
    return rgb.to_ndarray()


def from_array(
    rgb: np.ndarray, pix_fmt: str, colorspace: int, color_range: int, size: tuple[int, int]
) -> Any:
    """An upscaled HxWx3 RGB array (uint8 or uint16) as a frame in ``pix_fmt``, converted
    with the source's colour matrix and range, padded to ``size`` (width, height) by
    repeating the last column and row."""
    import av

    w, h = size
    if rgb.shape[1] != w or rgb.shape[0] != h:
        rgb = np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(
        np.ascontiguousarray(rgb), format="rgb24" if rgb.dtype == np.uint8 else "rgb48le"
    )
    return frame.reformat(
        format=pix_fmt,
        src_color_range=_range(2),
        dst_colorspace=_colorspace(colorspace),
        dst_color_range=_range(color_range or 1) if pix_fmt.startswith("yuv") else None,
    )


def batch_size(width: int, height: int, providers: list[str] | tuple[str, ...] = ()) -> int:
    """Frames of ``width`` x ``height`` per model run (see :data:`BATCH_PIXELS`): one on
    CPUs (``providers``: the model's, e.g. ``["CPUExecutionProvider"]``)."""
    if not any(word in p.lower() for p in providers[:1] for word in _ACCELERATORS):
        return 1
    return max(1, min(MAX_BATCH, BATCH_PIXELS // max(width * height, 1)))


def _whole(upscaler: Upscaler, h: int, w: int) -> bool:
    """Whether frames of ``h`` x ``w`` go through the model whole (batchable)."""
    if upscaler.limit is not None or upscaler.outscale is not None:
        return False
    return not upscaler.tile or (h <= upscaler.tile and w <= upscaler.tile)


def upscale_frames(upscaler: Upscaler, frames: list[np.ndarray], bits: int) -> list[np.ndarray]:
    """Upscale RGB frames of one size into arrays of ``bits`` (8: uint8, else uint16):
    in one batch where they fit the model whole, else one at a time through ``upscaler``."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    h, w = frames[0].shape[:2]
    if len(frames) > 1 and _whole(upscaler, h, w):
        x = np.stack([as_unit(f).transpose(2, 0, 1) for f in frames])
        try:
            y = upscaler.model(np.ascontiguousarray(x))
        except Exception as exc:
            if not is_oom(exc):
                raise
            y = None  # one at a time below, with the upscaler's back-off
        if y is not None:
            out = []
            for item in y:
                arr = np.empty(item.shape[1:] + (item.shape[0],), dtype)
                store(arr, np.ascontiguousarray(item.transpose(1, 2, 0)))
                out.append(arr)
            return out
    return [
        upscaler.upscale(
            Picture(f, bits=16 if f.dtype == np.uint16 else 8), 8 if bits <= 8 else 16
        ).color
        for f in frames
    ]
