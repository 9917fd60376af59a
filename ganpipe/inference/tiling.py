"""Tiled super-resolution without seams: overlapping tiles, feathered linear blending.

Only tiles go through the model; the output buffer is the only array at output size.

Blending: tile starts are spread evenly over each axis so that neighbours overlap by at
least ``overlap`` input pixels. Inside an overlap of width ``o`` (in output pixels), the
outer quarter next to each tile's edge gets weight 0 (convolutions see zero padding
there, so those pixels differ from a whole-image run) and the middle half cross-fades
linearly from one tile to the other. The weights are separable (a 1-D weight per row of
tiles times a 1-D weight per column of tiles) and each 1-D set is normalised to sum to 1,
so the 2-D weights sum to 1 everywhere: no full-size weight buffer is needed.
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


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread starts of tiles of ``tile`` pixels covering ``length`` pixels, with
    neighbours overlapping by at least ``overlap`` pixels (``overlap < tile``)."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [int(round(v)) for v in np.linspace(0, length - tile, n)]


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
        total[s * scale:s * scale + size] += w
    return [(w / total[s * scale:s * scale + size]).astype(np.float32)
            for s, w in zip(starts, raw, strict=True)]


def as_unit(a: np.ndarray) -> np.ndarray:
    """uint8 or uint16 -> float32 in [0, 1]; float arrays pass as float32."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32, copy=False)


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


def upscale_plane(run: Callable[[np.ndarray], np.ndarray], image: np.ndarray, scale: int,
                  tile: int, overlap: int) -> np.ndarray:
    """Upscale an HWC image (C = 1 or 3; uint8, uint16, or float32 in [0, 1]) with ``run``
    (float32 NCHW -> NCHW x ``scale``) into a float32 HWC output buffer.

    ``tile`` 0, or an image no larger than a tile, runs the whole image at once; otherwise
    ``tile`` x ``tile`` pieces overlapping by ``overlap`` (< tile / 2) pixels go through
    ``run`` one at a time and are blended into the output buffer.
    """
    h, w, c = image.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return np.ascontiguousarray(_run_hwc(run, image), dtype=np.float32)
    th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    wy, wx = axis_weights(ys, th, h, scale), axis_weights(xs, tw, w, scale)
    out = np.zeros((h * scale, w * scale, c), np.float32)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            pred = _run_hwc(run, image[y:y + th, x:x + tw])
            pred *= wy[i][:, None, None]
            pred *= wx[j][None, :, None]
            out[y * scale:(y + th) * scale, x * scale:(x + tw) * scale] += pred
    return out
