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

Fixed-tile models (``fixed_tile`` T in the model card: a graph exported at one T x T
shape) never see a window larger than T. A side of at most T pixels is one window (the
model pads it to T); ``tile`` 0, or a tile whose windows would not fit, becomes the
largest that fits (``T - overlap``, with a quarter of T as overlap where the asked one
leaves too little; one log line says so), and then a side gets the fewest windows of at
most T that overlap by ``overlap``, since every window costs a full T x T run. A smaller
``--tile`` is kept. Where rounding would still make a window larger than T, a side gets
one window more. Halving the tile after out-of-memory cannot help such a model (it always
runs T x T), so there the error is reported at once. An :class:`Ensemble` takes the
smallest fixed tile of its models. :func:`whole_image_runner` gives the callers that run
whole images (the evaluate stage, the SR metrics, the report) the same tiling.

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


def tile_windows(
    length: int, tile: int, overlap: int, multiple: int = 1, limit: int | None = None
) -> tuple[int, list[int]]:
    """``(size, starts)``: ``ceil(length / tile)`` windows (the grid Real-ESRGAN's
    ``--tile`` makes) of one ``size``, the smallest (rounded up to a multiple of
    ``multiple``) with which they cover ``length`` pixels evenly spread and neighbours
    overlap by at least ``overlap`` pixels: about ``tile`` plus the overlap, never more
    than ``length``. ``limit`` (a fixed-tile model's side): a side no longer is one
    window; a ``tile`` of at least ``limit - overlap`` makes the fewest windows of at most
    ``limit`` (each costs a full ``limit`` x ``limit`` run, whatever its size); and where
    rounding would make windows larger than ``limit`` there is one window more."""
    if length <= (tile if limit is None else limit):
        return length, [0]
    n = math.ceil(length / tile)
    if limit is not None and overlap < limit <= tile + overlap:
        n = math.ceil((length - overlap) / (limit - overlap))
    while True:
        size, starts = _windows(length, n, overlap, multiple)
        if limit is None or size <= limit:
            return size, starts
        if n >= length:
            raise ValueError(
                f"no windows of at most {limit} px overlapping by {overlap} cover {length} px"
            )
        n += 1


def _windows(length: int, n: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """``n`` windows over ``length`` pixels (see :func:`tile_windows`)."""
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
    limit: int | None = None,
    dtype: type | np.dtype = np.float32,
) -> np.ndarray:
    """Upscale an HWC image (C = 1 or 3; uint8, uint16, or float32 in [0, 1]) with ``run``
    (float32 NCHW -> NCHW x ``scale``) into an HWC output of ``dtype``: float32 in
    [0, 1], or uint8 / uint16 over their full range (rounded).

    ``tile`` 0, or an image no larger than a tile, runs the whole image at once; otherwise
    a ``ceil(h / tile)`` x ``ceil(w / tile)`` grid of windows (about ``tile + overlap``
    pixels a side, a multiple of ``multiple``) overlapping by ``overlap`` (< tile / 2)
    pixels go through ``run`` one at a time and are blended, one row of tiles at a time.
    ``limit``: no window is larger (a fixed-tile model's side; with ``tile`` 0 the tile
    is ``limit`` and the windows as many as it takes).
    """
    h, w, c = image.shape
    out = np.empty((h * scale, w * scale, c), dtype)
    if limit is not None and tile <= 0:
        tile = limit
    whole = tile if limit is None else limit  # the largest side that goes in one piece
    if tile <= 0 or (h <= whole and w <= whole):
        store(out, _run_hwc(run, image))
        return out
    th, ys = tile_windows(h, tile, overlap, multiple, limit)
    tw, xs = tile_windows(w, tile, overlap, multiple, limit)
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
        #: a fixed-tile model's side: no window is larger (None: any size)
        self.limit: int | None = getattr(model, "fixed_tile", None)
        tile, overlap = opts.tile, opts.overlap
        if self.limit is not None:
            tile, overlap = self._fit_fixed(self.limit, tile, overlap, m)
        self.tile = max(m, tile - tile % m) if tile else 0
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
        #: seconds one picture may take in the model (:func:`ganpipe.upscale.worker.upscale`)
        self.timeout: float | None = opts.timeout

    def _fit_fixed(self, limit: int, tile: int, overlap: int, m: int) -> tuple[int, int]:
        """``(tile, overlap)`` whose windows (about tile + overlap) fit a model that takes
        only ``limit`` x ``limit`` inputs: ``tile`` as it is where it fits, else the
        largest that does (with a quarter of ``limit`` as overlap where ``overlap`` leaves
        too little), said in one log line."""
        if tile and tile + overlap <= limit:
            return tile, overlap
        if 3 * overlap >= limit:  # a tile of limit - overlap must exceed twice the overlap
            overlap = limit // 4
        fitted = max(m, (limit - overlap) // m * m)
        asked = f"--tile {tile}" if tile else "the whole image (tile 0)"
        self.log(
            f"{self.model.path.name} takes only {limit}x{limit} inputs (fixed_tile): "
            f"images larger than that go in {fitted} px tiles with overlap {overlap} "
            f"instead of {asked}"
        )
        return fitted, overlap

    def plane(self, image: np.ndarray, dtype: type | np.dtype = np.float32) -> np.ndarray:
        """Upscale one HWC plane (C = 1 or 3) into ``dtype`` (float32 in [0, 1], uint8 or
        uint16), halving the tile after out-of-memory."""
        m = self.model.multiple
        while True:
            try:
                return upscale_plane(
                    self.model,
                    image,
                    self.scale,
                    self.tile,
                    self.overlap,
                    multiple=m,
                    limit=self.limit,
                    dtype=dtype,
                )
            except Exception as exc:
                if not is_oom(exc):
                    raise
                if self.limit is not None and _all_fixed(self.model):
                    raise GanpipeError(
                        f"out of memory running {self.model.path.name} at its fixed "
                        f"{self.limit}x{self.limit} input "
                        f"({str(exc).strip().splitlines()[0][:200]}); smaller tiles do not "
                        f"help a fixed-tile model: try --device cpu"
                    ) from None
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


def _all_fixed(model: SRModel | Ensemble) -> bool:
    """True when every net of ``model`` runs at one fixed shape (smaller tiles save
    nothing)."""
    members = model.models if isinstance(model, Ensemble) else [model]
    return all(m.fixed_tile is not None for m in members)


def whole_image_runner(
    model: SRModel | Ensemble, log: Callable[[str], Any] | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """``model`` as a runner of whole NCHW float32 images in [0, 1] of any size: the model
    itself, or for a fixed-tile model each image tiled by an :class:`Upscaler` (tile 0,
    default overlap) so that no window exceeds the model's one shape. For the callers
    that run whole images: the evaluate stage, the SR metrics, the report."""
    if getattr(model, "fixed_tile", None) is None:
        return model
    upscaler = Upscaler(model, tile=0, log=log)

    def run(x: np.ndarray) -> np.ndarray:
        planes = [upscaler.plane(np.ascontiguousarray(item.transpose(1, 2, 0))) for item in x]
        return np.stack([p.transpose(2, 0, 1) for p in planes])

    return run
