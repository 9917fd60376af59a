"""PSNR and SSIM of up-scaled images as BasicSR computes them by default (and as SR papers
report them), so ganpipe's numbers can be set beside published ones. Torch-free (numpy).

* Images are uint8 (a model's output is rounded to uint8 first, as it is when saved),
  scored in float64 on the [0, 255] scale.
* ``space = "y"`` (default): the Y channel of ITU-R BT.601 YCbCr as MATLAB's ``rgb2ycbcr``
  gives it, ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1] (Y in
  [16, 235]). Single-channel images are scored as they are (BasicSR does the same).
  ``space = "rgb"``: all channels (one MSE over them for PSNR, SSIM averaged over them).
* ``crop_border`` pixels are shaved off each side first (``scale`` is the convention).
* SSIM (Wang et al. 2004): an 11 x 11 Gaussian window with sigma 1.5, C1 = (0.01 * 255)^2,
  C2 = (0.03 * 255)^2, population (not sample) variances, averaged over the valid region
  (windows wholly inside the image). Images smaller than the window get the largest odd
  window that fits (same sigma, renormalised): :func:`ssim_window` tells which, and
  :func:`label` says so next to the numbers.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

MetricSpace = Literal["y", "rgb"]

#: MATLAB rgb2ycbcr's Y row, for R, G, B in [0, 1]
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
Y_OFFSET = 16.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def to_y(image: np.ndarray) -> np.ndarray:
    """The BT.601 Y channel (float64, [16, 235]) of an RGB image in [0, 255] (HWC)."""
    x = np.asarray(image, dtype=np.float64)
    return x[..., :3] @ (Y_WEIGHTS / 255.0) + Y_OFFSET


def prepare(image: np.ndarray, space: MetricSpace = "y", crop_border: int = 0) -> np.ndarray:
    """``image`` (HW or HWC, values in [0, 255]) as the float64 HWC planes that are scored:
    Y or RGB, ``crop_border`` pixels shaved off each side."""
    x = np.asarray(image)
    x = x[:, :, None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HW or HWC image with 1, 3 or 4 channels; got {x.shape}")
    x = x.astype(np.float64)[:, :, :3] if x.shape[2] != 1 else x.astype(np.float64)
    if space == "y" and x.shape[2] == 3:
        x = to_y(x)[:, :, None]
    elif space not in ("y", "rgb"):
        raise ValueError(f"space must be 'y' or 'rgb'; got {space!r}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0; got {crop_border}")
    h, w = x.shape[:2]
    if h <= 2 * crop_border or w <= 2 * crop_border:
        raise ValueError(
            f"crop_border {crop_border} leaves no pixels of a {w}x{h} image; "
            f"use a smaller crop_border (0 keeps the whole image)"
        )
    return x[crop_border : h - crop_border, crop_border : w - crop_border] if crop_border else x


def psnr(a: np.ndarray, b: np.ndarray, space: MetricSpace = "y", crop_border: int = 0) -> float:
    """PSNR in dB of ``a`` against ``b`` (same shape, [0, 255]); ``inf`` when equal."""
    x, y = prepare(a, space, crop_border), prepare(b, space, crop_border)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim_window(height: int, width: int) -> int:
    """The SSIM window used on a ``height`` x ``width`` plane: 11, or the largest odd
    size that fits a smaller plane."""
    side = min(SSIM_WINDOW, height, width)
    return max(1, side if side % 2 else side - 1)


def _gaussian(size: int) -> np.ndarray:
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(t**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation of the HW plane ``x`` with ``g`` x ``g``, valid region only."""
    n = len(g)
    h, w = x.shape[0] - n + 1, x.shape[1] - n + 1
    rows = sum(g[i] * x[i : i + h] for i in range(n))
    return sum(g[j] * rows[:, j : j + w] for j in range(n))


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian(ssim_window(*x.shape))
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    vx = _filter_valid(x * x, g) - mx * mx
    vy = _filter_valid(y * y, g) - my * my
    cov = _filter_valid(x * y, g) - mx * my
    num = (2 * mx * my + c1) * (2 * cov + c2)
    den = (mx * mx + my * my + c1) * (vx + vy + c2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray, space: MetricSpace = "y", crop_border: int = 0) -> float:
    """SSIM of ``a`` against ``b`` (same shape, [0, 255]), averaged over channels."""
    x, y = prepare(a, space, crop_border), prepare(b, space, crop_border)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    return float(np.mean([_ssim_plane(x[:, :, c], y[:, :, c]) for c in range(x.shape[2])]))


def label(space: str | None, crop_border: int | None, window: int | None = None) -> str:
    """How the numbers were computed, e.g. ``"Y, border 4"``; records written before these
    keys existed were RGB with no border crop."""
    if space is None:
        return "RGB, no border crop"
    text = f"{'Y' if space == 'y' else 'RGB'}, border {int(crop_border or 0)}"
    if window is not None and window != SSIM_WINDOW:
        text += f", SSIM window {window}"
    return text
