"""``--outscale F``: any final scale from a fixed-scale model (Real-ESRGAN's ``--outscale``).

The model upscales by its own scale; the result is then resized to ``round(W * F)`` x
``round(H * F)`` with a Lanczos filter (Pillow's, on float32 planes one channel at a time,
so 16-bit images keep their precision; values are clipped to the range and rounded back
into the planes' own type). Alpha is resized the same way. ``F`` equal to the model's
scale does nothing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from ganpipe.imaging.picture import Picture, as_unit, store


def final_size(width: int, height: int, outscale: float) -> tuple[int, int]:
    """The output's ``(width, height)`` for an input of ``width`` x ``height``."""
    return max(1, int(round(width * outscale))), max(1, int(round(height * outscale)))


def resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An H x W (x C) plane (float32 in [0, 1], uint8 or uint16) resized to ``size``
    (width, height) with Lanczos, in the plane's own type."""
    squeeze = plane.ndim == 2
    channels = plane[..., None] if squeeze else plane
    out = np.empty((size[1], size[0], channels.shape[2]), dtype=plane.dtype)
    for c in range(channels.shape[2]):
        band = Image.fromarray(np.ascontiguousarray(as_unit(channels[..., c])), mode="F")
        resized = np.asarray(band.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
        resized = np.clip(resized, 0.0, 1.0)
        store(out[..., c], resized.copy())
    return out[..., 0] if squeeze else out


def apply_outscale(source_size: tuple[int, int], up: Picture, outscale: float | None) -> Picture:
    """``up`` (the model's output for a source of ``source_size`` = (width, height))
    resized to the ``outscale`` size; unchanged when that is its size already."""
    if outscale is None:
        return up
    size = final_size(*source_size, outscale)
    if (up.color.shape[1], up.color.shape[0]) == size:
        return up
    alpha = None if up.alpha is None else resize_plane(up.alpha, size)
    return replace(up, color=resize_plane(up.color, size), alpha=alpha)
