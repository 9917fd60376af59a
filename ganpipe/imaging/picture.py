"""A decoded (or upscaled) image and what to carry over to its output, and the conversions
of its planes between integers (uint8, uint16) and float32 in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Picture:
    """A decoded or upscaled image and what to carry over. Decoded planes are uint8 or
    uint16 as in the file (a quarter or half the memory of floats while they wait in the
    queue; only tiles become float32), upscaled planes float32 in [0, 1] (or integers,
    converted band by band: see :meth:`ganpipe.upscale.tiling.Upscaler.upscale`)."""

    color: np.ndarray  # H x W x C, C = 1 (gray) or 3
    alpha: np.ndarray | None = None  # H x W
    bits: int = 8  # 16 for 16-bit sources
    icc: bytes | None = None
    exif: bytes | None = None
    format: str | None = None  # the source's format, by content
    #: metadata problems met on the way (the image is still written), one line each
    warnings: tuple[str, ...] = ()

    @property
    def gray(self) -> bool:
        return self.color.shape[2] == 1

    @property
    def megapixels(self) -> float:
        return self.color.shape[0] * self.color.shape[1] / 1e6


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


def to_bits(a: np.ndarray, bits: int) -> np.ndarray:
    """An upscaled plane (uint8, uint16, or float32 in [0, 1], consumed) at ``bits``."""
    want = np.uint16 if bits == 16 else np.uint8
    if a.dtype == want:
        return a
    if a.dtype == np.uint16:  # 16-bit result, 8-bit format: round to the nearest level
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    out = np.empty(a.shape, want)
    store(out, as_unit(a))
    return out
