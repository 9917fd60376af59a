"""Encoding a :class:`~ganpipe.imaging.picture.Picture` as PNG, JPEG, WebP or TIFF, written
atomically (a temporary name, then a rename).

* **16 bits** stay 16 bits in PNG and TIFF: 16-bit PNGs (gray, gray+alpha, RGB, RGBA)
  through libpng (``imagecodecs``, imported for them only: :func:`encode_png16`, which
  adds the ``iCCP`` and ``eXIf`` chunks libpng is not given), 48/64-bit RGB(A) and
  gray+alpha TIFFs through :mod:`ganpipe.imaging.tiff16`, which Pillow cannot write;
  JPEG and WebP get 8 bits.
* **Alpha**: JPEG cannot hold it, so the image is composited on white.
* The ICC profile is kept, and the EXIF data in PNG, JPEG and WebP.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, features

from ganpipe.data.imageio import save_image
from ganpipe.fsutil import write_bytes
from ganpipe.imaging.capture import native_stderr
from ganpipe.imaging.picture import Picture, to_bits

#: output format names (``format`` option) -> Pillow format names
FORMATS = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "tiff": "TIFF",
    "tif": "TIFF",
}
#: file name suffixes per output format; the first is used for new names
SUFFIXES = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "WEBP": (".webp",),
    "TIFF": (".tif", ".tiff"),
}
#: largest width or height each format can hold
MAX_SIDE = {"JPEG": 65500, "WEBP": 16383, "PNG": 2**31 - 1, "TIFF": 2**31 - 1}


def output_bits(pic: Picture, fmt: str) -> int:
    """16 where the source has 16 bits and ``fmt`` can hold them (PNG, TIFF), else 8."""
    return 16 if pic.bits == 16 and fmt in ("PNG", "TIFF") else 8


def _on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 colour composited over white with uint8 alpha (JPEG has no alpha)."""
    a = alpha[:, :, None].astype(np.uint16)
    return ((color * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def encode_png16(
    arr: np.ndarray, icc: bytes | None = None, exif: bytes | None = None, level: int = 6
) -> bytes:
    """A 16-bit PNG of ``arr`` (uint16, HxW or HxWxC with C = 1..4: gray, gray+alpha, RGB,
    RGBA), encoded by libpng (``imagecodecs.png_encode``, zlib ``level``), with ``icc`` as
    an ``iCCP`` chunk and ``exif`` (with or without its ``Exif\\0\\0`` prefix) as an
    ``eXIf`` chunk, both right after the header."""
    import imagecodecs  # only 16-bit PNG outputs need it: not imported by `ganpipe --help`

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    shaped = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] <= 4)
    if arr.dtype != np.uint16 or not shaped or 0 in arr.shape[:2]:
        raise ValueError(f"cannot write a {arr.shape} {arr.dtype} array as a 16-bit PNG")
    data = bytes(imagecodecs.png_encode(np.ascontiguousarray(arr), level=level))
    extra = b""
    if icc:
        extra += _chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc))
    if exif:
        extra += _chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)
    if data[12:16] != b"IHDR":  # a PNG starts with its 8-byte signature and the IHDR chunk
        raise ValueError("libpng wrote no IHDR chunk first")
    return data[:33] + extra + data[33:]


def encode_image(
    pic: Picture, path: str | Path, fmt: str, quality: int, png_compression: int
) -> None:
    """Write ``pic`` atomically as ``fmt`` (PNG, JPEG, WEBP, TIFF), at 16 bits where the
    source had 16 and the format can hold them; ``quality`` for JPEG and WebP, zlib level
    ``png_compression`` for PNG. Planes are normally already integers (see
    :meth:`ganpipe.upscale.tiling.Upscaler.upscale`); float planes in [0, 1] are
    converted (and consumed)."""
    bits = output_bits(pic, fmt)
    color = to_bits(pic.color, bits)
    alpha = None if pic.alpha is None else to_bits(pic.alpha, bits)
    if alpha is not None and fmt == "JPEG":  # no alpha in JPEG: composite on white
        color, alpha = _on_white(color, alpha), None
    arr = color if alpha is None else np.concatenate([color, alpha[:, :, None]], axis=2)
    exif = pic.exif if fmt in ("PNG", "JPEG", "WEBP") else None
    if bits == 16 and fmt == "PNG":  # Pillow cannot write 16-bit RGB(A) or gray+alpha
        write_bytes(path, encode_png16(arr, icc=pic.icc, exif=exif, level=png_compression))
        return
    if bits == 16 and fmt == "TIFF" and arr.shape[2] > 1:  # nor 16-bit RGB(A) TIFFs
        from ganpipe.imaging import tiff16

        write_bytes(path, tiff16.encode_tiff16(arr, icc=pic.icc))
        return
    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)  # L, LA, RGB, RGBA, I;16
    params: dict[str, Any] = {}
    if pic.icc:
        params["icc_profile"] = pic.icc
    if exif:
        params["exif"] = exif
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = quality
    if fmt == "PNG":
        params["compress_level"] = png_compression
    if fmt == "TIFF" and features.check("libtiff"):
        params["compression"] = "tiff_adobe_deflate"
    with native_stderr(fmt == "TIFF"):  # libtiff's messages: captured for this file
        save_image(im, path, format=fmt, **params)
