"""Transparency: the colour and the alpha channel of an image are upscaled separately.

Before that, the colour of fully transparent pixels (which is arbitrary, often black) is
replaced by the colour of the nearest visible pixels (push-pull fill,
:func:`fill_transparent`), so the model never mixes it into the edges: no dark fringes.
The alpha channel goes through the model as a gray image (``alpha = "model"``, sharp
edges) or is resized bicubically (``alpha = "bicubic"``, faster); a constant alpha is just
enlarged, and at scale 1 (``translate`` models) the alpha channel is kept as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from ganpipe.imaging.picture import as_unit, store


def fill_transparent(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour of fully transparent pixels from their visible neighbours (push-pull: an
    alpha-weighted image pyramid, then the coarser levels fill the holes of the finer
    ones). Visible pixels keep their colour. Returns float32 in [0, 1], or ``color``
    unchanged when no pixel (or every pixel) is fully transparent."""
    known = alpha > 0
    if known.all() or not known.any():
        return color
    color = as_unit(color)
    levels = []
    c = color * known[:, :, None]
    w = known.astype(np.float32)
    while not (w > 0).all():
        levels.append((c, w))
        ph, pw = w.shape[0] % 2, w.shape[1] % 2
        if ph or pw:
            c = np.pad(c, ((0, ph), (0, pw), (0, 0)))
            w = np.pad(w, ((0, ph), (0, pw)))
        h2, w2 = w.shape[0] // 2, w.shape[1] // 2
        c = c.reshape(h2, 2, w2, 2, -1).sum(axis=(1, 3))
        w = w.reshape(h2, 2, w2, 2).sum(axis=(1, 3))
    fill = c / w[:, :, None]
    for c_l, w_l in reversed(levels):
        up = np.repeat(np.repeat(fill, 2, axis=0), 2, axis=1)[: w_l.shape[0], : w_l.shape[1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            fill = np.where((w_l > 0)[:, :, None], c_l / w_l[:, :, None], up)
    return np.where(known[:, :, None], color, fill).astype(np.float32)


def enlarge_alpha(
    alpha: np.ndarray,
    size: tuple[int, int],
    dtype: type | np.dtype,
    how: str,
    plane: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The alpha plane (H x W, uint8 / uint16 / float32) at ``size`` (output height,
    width) as ``dtype``: unchanged at the same size, filled when constant, else resized
    bicubically (``how = "bicubic"``) or upscaled by ``plane`` (an HWC plane -> the
    upscaled HWC plane in ``dtype``)."""
    h, w = size
    if alpha.shape == (h, w):  # scale 1: the alpha channel stays as it is
        out = np.empty((h, w), dtype)
        store(out, as_unit(alpha).copy())
        return out
    if alpha.min() == alpha.max():
        value = as_unit(alpha.reshape(-1)[:1]).astype(np.float32, copy=True)
        out = np.empty((h, w), dtype)
        store(out[:1, :1], value.reshape(1, 1))
        out.fill(out[0, 0])
        return out
    if how == "bicubic":
        big = Image.fromarray(as_unit(alpha), "F").resize((w, h), Image.Resampling.BICUBIC)
        out = np.empty((h, w), dtype)
        store(out, np.clip(np.array(big, dtype=np.float32), 0.0, 1.0))
        return out
    out = plane(alpha[:, :, None])[:, :, 0]
    if np.dtype(dtype).kind == "f":
        np.clip(out, 0.0, 1.0, out=out)
    return out
