"""Tiled super-resolution without seams: overlapping tiles, feathered linear blending, and
the :class:`Upscaler` around a model (tiles, out-of-memory back-off, alpha).

Only tiles go through the model; on an out-of-memory error the tile size is halved and the
image redone, and the smaller tile is kept for the following images (never below
:data:`~ganpipe.upscale.options.MIN_TILE`). An ``overlap`` too large for the tile (at least
half of it) becomes a quarter of the tile, with a note: ``--tile 64`` works with the
default overlap.

The output is produced band by band: a float32
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
from dataclasses import replace
from typing import Any

import numpy as np

from ganpipe.errors import GanpipeError
from ganpipe.imaging.picture import Picture, as_unit, store
from ganpipe.upscale.alpha import enlarge_alpha, fill_transparent
from ganpipe.upscale.ensemble import Ensemble
from ganpipe.upscale.model import SRModel
from ganpipe.upscale.options import MIN_TILE, UpscaleOptions, with_overrides
from ganpipe.upscale.outscale import apply_outscale


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


class Upscaler:
    """Tiles, out-of-memory back-off and alpha around an :class:`SRModel` (or an
    :class:`Ensemble`), with the ``tile``, ``overlap`` and ``alpha`` of ``options`` (and
    keyword ``overrides`` of them)."""

    def __init__(
        self,
        model: SRModel | Ensemble,
        options: UpscaleOptions | None = None,
        *,
        log: Callable[[str], Any] | None = None,
        **overrides: Any,
    ):
        opts = with_overrides(options, overrides)
        self.model = model
        self.scale = model.scale
        self.log = log or (lambda msg: None)
        m = model.multiple
        self.tile = max(m, opts.tile - opts.tile % m) if opts.tile else 0
        overlap = opts.overlap
        if self.tile and 2 * overlap >= self.tile:
            fitted = self.tile // 4
            self.log(
                f"tile overlap {overlap} is too large for {self.tile}x{self.tile} "
                f"tiles; using {fitted}"
            )
            overlap = fitted
        self.overlap = overlap
        self.alpha = opts.alpha
        self.outscale = opts.outscale

    def plane(self, image: np.ndarray, dtype: type | np.dtype = np.float32) -> np.ndarray:
        """Upscale one HWC plane (C = 1 or 3) into ``dtype`` (float32 in [0, 1], uint8 or
        uint16), halving the tile after out-of-memory."""
        m = self.model.multiple
        while True:
            try:
                return upscale_plane(
                    self.model, image, self.scale, self.tile, self.overlap, multiple=m, dtype=dtype
                )
            except Exception as exc:
                if not is_oom(exc):
                    raise
                current = min(self.tile or max(image.shape[:2]), max(image.shape[:2]))
                smaller = max(m, (current // 2) - (current // 2) % m)
                if smaller < MIN_TILE or smaller >= current:
                    raise GanpipeError(
                        f"out of memory even with {current}x{current} tiles "
                        f"({str(exc).strip().splitlines()[0][:200]}); try "
                        f"--device cpu or a smaller model"
                    ) from None
                self.tile = smaller
                self.overlap = min(self.overlap, smaller // 4)
                self.log(
                    f"out of memory with {current}x{current} tiles; retrying with "
                    f"{smaller}x{smaller} tiles (overlap {self.overlap})"
                )

    def upscale(self, pic: Picture, bits: int | None = None) -> Picture:
        """The upscaled picture: planes float32 in [0, 1], or with ``bits`` 8 or 16
        integers, converted band by band so no float copy of the output is ever held."""
        dtype = np.float32 if bits is None else np.uint16 if bits == 16 else np.uint8
        color = pic.color if pic.alpha is None else fill_transparent(pic.color, pic.alpha)
        up = self.plane(color, dtype)
        alpha = None
        if pic.alpha is not None:
            alpha = enlarge_alpha(
                pic.alpha, up.shape[:2], dtype, self.alpha, lambda a: self.plane(a, dtype)
            )
        out = replace(pic, color=up, alpha=alpha, bits=pic.bits if bits is None else bits)
        h, w = pic.color.shape[:2]
        return apply_outscale((w, h), out, self.outscale)
