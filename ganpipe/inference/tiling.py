"""Tiled super-resolution without seams: overlapping tiles, feathered linear blending.

Only tiles go through the model, and the output is produced band by band: a float32
buffer one row of tiles high collects the blended tiles, and rows that no later tile
touches are converted right away into the output array (float32, or uint8 / uint16 when
the caller asks for integers). So the only full-size array is the output itself, and with
integer output that is a quarter (uint8) of a float buffer.

Geometry: as in Real-ESRGAN, ``tile`` sets the grid: a side of ``L`` pixels gets
``n = ceil(L / tile)`` windows. Where Real-ESRGAN pads each tile with context and pastes
its centre, here the ``n`` windows are spread evenly and made just large enough
(``ceil((L + (n - 1) * overlap) / n)``, about ``tile + overlap``) that neighbours share
``overlap`` pixels, which are blended: a 256 px side in 128 px tiles with overlap 32 gets
two 144 px windows.

Blending: inside an overlap of width ``o`` (in output pixels), the outer quarter next to
each tile's edge gets weight 0 (convolutions see zero padding there, so those pixels
differ from a whole-image run) and the middle half cross-fades linearly from one tile to
the other. The weights are separable (a 1-D weight per row of tiles times a 1-D weight per
column of tiles) and each 1-D set is normalised to sum to 1, so the 2-D weights sum to 1
everywhere: no full-size weight buffer is needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Tiles never shrink below this many input pixels when halving after out-of-memory.
MIN_TILE = 16


def is_oom(exc: BaseException) -> bool:
    """True when ``exc`` looks like an accelerator (or host) out-of-memory error: ONNX
    Runtime says "Failed to allocate memory", CUDA "out of memory", others "OOM"."""
    text = str(exc)
    lower = text.lower()
    return "OOM" in text or "failed to allocate" in lower or "out of memory" in lower


def _spread(length: int, size: int, n: int) -> list[int]:
    return [int(round(v)) for v in np.linspace(0, length - size, n)]


def tile_windows(length: int, tile: int, overlap: int, multiple: int = 1) -> tuple[int, list[int]]:
    """``(size, starts)``: ``ceil(length / tile)`` windows (the grid Real-ESRGAN's
    ``--tile`` makes) of one ``size``, the smallest (rounded up to a multiple of
    ``multiple``) with which they cover ``length`` pixels evenly spread and neighbours
    overlap by at least ``overlap`` pixels: about ``tile`` plus the overlap, never more
    than ``length``."""
    if length <= tile:
        return length, [0]
    n = math.ceil(length / tile)
    size = math.ceil((length + (n - 1) * overlap) / n)
    size = min(length, math.ceil(size / multiple) * multiple)
    while True:  # rounding the starts can cost a pixel of overlap: grow until it holds
        starts = _spread(length, size, n)
        if size >= length or all(
            size - (b - a) >= overlap for a, b in zip(starts, starts[1:], strict=False)
        ):
            return size, starts
        size = min(length, size + multiple)


def axis_weights(starts: list[int], tile: int, length: int, scale: int) -> list[np.ndarray]:
    """1-D blending weights at output resolution, one array of ``tile * scale`` per tile;
    at every output position the weights of the tiles covering it sum to 1."""
    size = tile * scale
    if len(starts) == 1:
        return [np.ones(size, np.float32)]
    t = np.arange(size, dtype=np.float64)

    def rise(o: int) -> np.ndarray:  # weight near a tile's leading edge, overlap o (output px)
        margin = o // 4
        ramp = max(o - 2 * margin, 1)
        return np.clip((t - margin + 0.5) / ramp, 0.0, 1.0)

    raw = []
    for k, s in enumerate(starts):
        w = np.ones(size)
        if k > 0:
            w = np.minimum(w, rise((starts[k - 1] + tile - s) * scale))
        if k < len(starts) - 1:
            w = np.minimum(w, rise((s + tile - starts[k + 1]) * scale)[::-1])
        raw.append(np.maximum(w, 1e-9))
    total = np.zeros(length * scale)
    for s, w in zip(starts, raw, strict=True):
        total[s * scale : s * scale + size] += w
    return [
        (w / total[s * scale : s * scale + size]).astype(np.float32)
        for s, w in zip(starts, raw, strict=True)
    ]


def as_unit(a: np.ndarray) -> np.ndarray:
    """uint8 or uint16 -> float32 in [0, 1]; float arrays pass as float32."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32, copy=False)


def store(dst: np.ndarray, src: np.ndarray) -> None:
    """Write float ``src`` (values in [0, 1]) into ``dst``: copied for a float ``dst``,
    rounded and clipped to the full range for uint8 / uint16. ``src`` is scaled in place
    (it is consumed)."""
    if dst.dtype.kind == "f":
        dst[...] = src
        return
    top = float(np.iinfo(dst.dtype).max)
    src *= top
    src += 0.5
    np.clip(src, 0, top, out=src)
    dst[...] = src  # truncation of x + 0.5: rounding


def _run_hwc(run: Callable[[np.ndarray], np.ndarray], tile: np.ndarray) -> np.ndarray:
    """HWC tile (C = 1 or 3; uint8, uint16 or float) -> float32 HWC model output; gray goes
    through as 3 equal channels."""
    x = np.ascontiguousarray(as_unit(tile).transpose(2, 0, 1)[None])
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    y = run(x)[0]
    if tile.shape[2] == 1:
        y = y.mean(axis=0, keepdims=True)
    return y.transpose(1, 2, 0)


def upscale_plane(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    scale: int,
    tile: int,
    overlap: int,
    *,
    multiple: int = 1,
    dtype: type | np.dtype = np.float32,
) -> np.ndarray:
    """Upscale an HWC image (C = 1 or 3; uint8, uint16, or float32 in [0, 1]) with ``run``
    (float32 NCHW -> NCHW x ``scale``) into an HWC output of ``dtype``: float32 in
    [0, 1], or uint8 / uint16 over their full range (rounded).

    ``tile`` 0, or an image no larger than a tile, runs the whole image at once; otherwise
    a ``ceil(h / tile)`` x ``ceil(w / tile)`` grid of windows (about ``tile + overlap``
    pixels a side, a multiple of ``multiple``) overlapping by ``overlap`` (< tile / 2)
    pixels go through ``run`` one at a time and are blended, one row of tiles at a time.
    """
    h, w, c = image.shape
    out = np.empty((h * scale, w * scale, c), dtype)
    if tile <= 0 or (h <= tile and w <= tile):
        store(out, _run_hwc(run, image))
        return out
    th, ys = tile_windows(h, tile, overlap, multiple)
    tw, xs = tile_windows(w, tile, overlap, multiple)
    wy, wx = axis_weights(ys, th, h, scale), axis_weights(xs, tw, w, scale)
    band = np.zeros((th * scale, w * scale, c), np.float32)  # rows y*s .. (y+th)*s
    for i, y in enumerate(ys):
        if i:  # rows above this tile row are final: store them, move the overlap up
            done = (y - ys[i - 1]) * scale
            store(out[ys[i - 1] * scale : y * scale], band[:done])
            band[: th * scale - done] = band[done:].copy()  # the overlap rows only
            band[th * scale - done :] = 0.0
        for j, x in enumerate(xs):
            pred = _run_hwc(run, image[y : y + th, x : x + tw])
            pred *= wy[i][:, None, None]
            pred *= wx[j][None, :, None]
            band[:, x * scale : (x + tw) * scale] += pred
    store(out[ys[-1] * scale :], band)
    return out
