"""Safe image decoding and encoding with Pillow (decompression-bomb limits kept on; only
the allow-listed formats of :mod:`ganpipe.imaging.formats`, decided by content, so no
external program such as Ghostscript is ever started).

Torch-free: used by training data loading and by the ONNX inference path alike.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ganpipe.errors import one_line
from ganpipe.fsutil import atomic_path
from ganpipe.imaging.formats import TooLarge, UnsupportedFormat, check_megapixels, open_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}

#: Errors that mean "this file is not a usable image" (skipped, counted, reported).
DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    UnsupportedFormat,
    TooLarge,
    EOFError,
    MemoryError,
)


def describe(exc: BaseException) -> str:
    """One line (at most about 300 characters) saying why a file could not be used."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, MemoryError):
        return "not enough memory to decode it"
    text = one_line(text)
    if text and isinstance(exc, OSError | ValueError | SyntaxError | EOFError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_pixels(width: int, height: int) -> None:
    """Pillow's decompression-bomb limit as an error from its warning threshold on.

    Pillow warns at ``MAX_IMAGE_PIXELS`` and raises at twice that; both count as errors
    here. Checked explicitly rather than with ``warnings.catch_warnings()``, which mutates
    global state and is not thread-safe (images are decoded in thread pools)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise Image.DecompressionBombError(
            f"Image size ({width * height} pixels) exceeds limit of {limit} pixels, could "
            f"be decompression bomb DOS attack."
        )


def load_image(path: str | Path, channels: int, max_pixels: float | None = None) -> Image.Image:
    """Open (allow-listed formats only, by content), fully decode and orient an image;
    ``channels`` 1 -> "L", 3 -> "RGB"; images over ``max_pixels`` are refused from their
    header.

    Transparent pixels are composited on white. Raises one of :data:`DECODE_ERRORS`
    (a plugin's unexpected error on a malformed file becomes a ``ValueError``).
    """
    try:
        return _load(path, channels, max_pixels)
    except DECODE_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow plugins fail in many ways on bad files
        raise ValueError(f"corrupt image ({type(exc).__name__}: {exc})") from None


def _load(path: str | Path, channels: int, max_pixels: float | None) -> Image.Image:
    with open_image(path) as im:
        check_pixels(im.width, im.height)
        check_megapixels(im.width, im.height, max_pixels)
        im.load()
        im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        # I;16 is 16-bit by definition (a dark image must stay dark); I and F: guess
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return im.convert("L" if channels == 1 else "RGB")


def fit(im: Image.Image, size: int, mode: str = "crop") -> Image.Image:
    """Resize to ``size``x``size``: ``crop`` keeps aspect (centre crop), ``stretch`` does not."""
    if mode == "stretch":
        return im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)


def to_array(im: Image.Image) -> np.ndarray:
    """PIL image -> uint8 array HWC (C = 1 or 3)."""
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def from_array(arr: np.ndarray) -> Image.Image:
    """uint8 HWC (C = 1 or 3) -> PIL image."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(arr))


def to_uint8(images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Float NCHW in ``value_range`` -> uint8 NHWC."""
    lo, hi = value_range
    x = (np.asarray(images, dtype=np.float32) - lo) / (hi - lo)
    x = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return x.transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 NHWC -> one uint8 HWC grid image."""
    n, h, w, c = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    grid = np.zeros((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def save_image(arr_or_im, path: str | Path, format: str | None = None, **params) -> Path:
    """Write atomically (temporary name, then rename). Format from the suffix by default."""
    path = Path(path)
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else from_array(arr_or_im)
    fmt = format or Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt, **params)
    return path
