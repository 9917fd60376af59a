"""Small, real test data for plugin tests: in-memory image sets and image folders on disk
(torch-free; numpy and Pillow only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ganpipe.data.base import ImageSet

#: (suffix, Pillow format) cycled through by :func:`make_image_folder`
FORMATS = (("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"), ("bmp", "BMP"))


def smooth_images(n: int, size: int, channels: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 NHWC images of random colour blobs (not white noise: every image has
    structure at several scales, so down-scaling and crops stay informative)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / max(1, size - 1)
    out = np.empty((n, size, size, channels), np.uint8)
    for i in range(n):
        img = np.zeros((size, size, channels))
        for _ in range(3):
            cy, cx = rng.uniform(0, 1, 2)
            r = rng.uniform(0.15, 0.5)
            blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
            img += blob[..., None] * rng.uniform(-1, 1, channels)
        img += rng.normal(0, 0.05, img.shape)
        out[i] = np.clip((img * 0.5 + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def make_image_set(
    n: int = 16,
    image_size: int = 16,
    channels: int = 3,
    class_names: Sequence[str] = (),
    seed: int = 0,
) -> ImageSet:
    """An :class:`ganpipe.ImageSet` of ``n`` images; labels cycle through ``class_names``
    (none: one unnamed class, as an unlabelled folder gives)."""
    names = list(class_names) or ["_root"]
    labels = np.arange(n) % len(names)
    return ImageSet(smooth_images(n, image_size, channels, seed), labels, names)


def make_image_folder(
    root: str | Path,
    classes: Sequence[str] = ("a", "b"),
    per_class: int = 4,
    size: tuple[int, int] = (24, 20),
    seed: int = 0,
) -> Path:
    """A folder of real image files (PNG, JPEG, WebP, BMP), one subfolder per class (no
    classes: the images lie in ``root`` itself). ``size`` is (width, height) of the first
    image; later ones grow by a pixel each, so that sources must resize. Returns ``root``."""
    from PIL import Image

    root = Path(root)
    w, h = size
    folders = [root / c for c in classes] or [root]
    k = 0
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix, fmt = FORMATS[k % len(FORMATS)]
            side = max(w, h) + i
            arr = smooth_images(1, side, 3, seed * 7919 + k)[0][: h + i, : w + i]
            Image.fromarray(arr).save(folder / f"{i:03d}.{suffix}", format=fmt)
            k += 1
    return root
