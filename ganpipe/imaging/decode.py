"""Decoding an image file into a :class:`~ganpipe.imaging.picture.Picture`.

* **By content**, not by file name, and only the allow-listed formats (PNG, JPEG, WebP,
  TIFF, BMP, GIF: :mod:`ganpipe.imaging.formats`; PostScript, PDF, SVG... are refused
  before Pillow sees them), with Pillow's decompression-bomb limit kept and an optional
  pixel budget (``max_pixels``) checked on the header, before anything is decoded; the
  EXIF orientation is applied, and the ICC profile (and the EXIF data, orientation tag
  removed, for PNG/JPEG/WebP) is kept for the output.
* **Gray** images (L, I;16...) stay gray: one channel (the upscaler runs them through the
  model as three equal channels and keeps the mean of the three outputs).
* **Alpha** (RGBA, LA, PA, palette or colour-key transparency) is a plane of its own;
  palette images become RGB or RGBA.
* **16 bits** per channel stay 16 bits: every 16-bit PNG (gray, gray+alpha, RGB, RGBA;
  interlaced or not; a ``tRNS`` colour key becomes an alpha plane) is decoded by libpng
  through ``imagecodecs`` (:func:`decode_png16`), which checks every chunk's CRC; Pillow
  still reads its header, ICC profile and EXIF, and the size limits are checked on that
  header before. 48/64-bit RGB(A) and gray+alpha TIFFs go through
  :mod:`ganpipe.imaging.tiff16` (tifffile, with imagecodecs' LZW, JPEG... codecs), 16-bit
  gray TIFFs through Pillow. ``imagecodecs`` is imported on the first 16-bit PNG only.

What decoders print or warn about a file is captured for it (:mod:`ganpipe.imaging.capture`)
when the caller collects; libtiff's messages on fd 2 included.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ganpipe.data.imageio import DECODE_ERRORS, check_pixels
from ganpipe.imaging.capture import native_stderr
from ganpipe.imaging.formats import HEAD_BYTES, check_format, check_megapixels, open_image
from ganpipe.imaging.picture import Picture

_PNG = b"\x89PNG\r\n\x1a\n"
#: EXIF orientation -> the transform that shows the pixels upright (HWC arrays)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _oriented(arr: np.ndarray, orientation: int) -> np.ndarray:
    return _ORIENT.get(orientation, lambda a: a)(arr)


def _icc_for(icc: bytes | None, gray: bool) -> bytes | None:
    """The profile when its colour space matches the output (GRAY or RGB), else None."""
    if not icc or len(icc) < 20:
        return None
    return icc if icc[16:20] == (b"GRAY" if gray else b"RGB ") else None


def _from_pil(im: Image.Image) -> Picture:
    mode = im.mode
    if mode.startswith("I;16"):
        return Picture(np.asarray(im).astype(np.uint16)[:, :, None], bits=16)
    if mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        top = float(arr.max()) if arr.size else 0.0
        hi = 1.0 if mode == "F" and top <= 1.0 else 255.0 if top <= 255 else 65535.0
        return Picture(np.clip(arr / hi, 0, 1)[:, :, None], bits=8 if hi == 255.0 else 16)
    transparent = "transparency" in im.info
    if mode in ("1", "L", "LA", "La") and (mode in ("LA", "La") or transparent):
        target = "LA"
    elif mode in ("1", "L"):
        target = "L"
    elif mode in ("RGBA", "RGBa", "PA") or transparent:
        target = "RGBA"
    else:
        target = "RGB"  # RGB, P, CMYK, YCbCr, LAB, HSV, RGBX
    arr = np.asarray(im.convert(target) if target != mode else im, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if target in ("LA", "RGBA"):
        return Picture(np.ascontiguousarray(arr[:, :, :-1]), np.ascontiguousarray(arr[:, :, -1]))
    return Picture(arr)


def _split(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """HxWxC (C = 1..4) -> (colour: 1 or 3 channels, alpha or None), contiguous."""
    n = 3 if arr.shape[2] >= 3 else 1
    alpha = np.ascontiguousarray(arr[:, :, n]) if arr.shape[2] > n else None
    return np.ascontiguousarray(arr[:, :, :n]), alpha


def png_depth(head: bytes) -> int:
    """The bit depth that a PNG's header declares (``head``: at least the file's first 26
    bytes); 0 for anything else."""
    if len(head) < 26 or not head.startswith(_PNG) or head[12:16] != b"IHDR":
        return 0
    return head[24]


class _Benign(logging.Filter):
    """Drops libpng's remark that it turned Adam7 handling on by itself (imagecodecs calls
    ``png_read_image`` without asking for it first): it says nothing about the file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Interlace handling should be turned on" not in record.getMessage()


_BENIGN = _Benign()


def decode_png16(data: bytes) -> np.ndarray:
    """The pixels of a 16-bit PNG file's bytes, decoded by libpng (``imagecodecs``): uint16
    HxWxC, C = 1..4, Adam7 interlacing undone, a ``tRNS`` colour key made an alpha channel.
    ``ValueError`` (one line) on a CRC error, a bad filter, truncated or corrupt data. The
    caller checks the size limits on the header first: this decodes the whole image."""
    import imagecodecs  # only 16-bit PNGs need it: not imported by `ganpipe --help`

    log = logging.getLogger("imagecodecs")
    if _BENIGN not in log.filters:
        log.filters.insert(0, _BENIGN)  # ahead of ganpipe.imaging.capture's router
    try:
        arr = imagecodecs.png_decode(data)
    except imagecodecs.PngError as exc:
        why = str(exc).strip() or type(exc).__name__
        if "too small" in why:  # libpng asked for bytes past the end of the file
            raise ValueError("PNG file is truncated") from None
        raise ValueError(f"PNG file is corrupt ({why})") from None
    if arr.dtype != np.uint16:  # the header said 16 bits: the data must agree
        raise ValueError(f"PNG file is corrupt (decoded as {arr.dtype}, not 16 bits)")
    return arr[:, :, None] if arr.ndim == 2 else arr


def _decode_tiff16(path: Path) -> Picture:
    """A 48/64-bit RGB(A) or 16-bit gray+alpha TIFF, which Pillow would reduce or refuse."""
    from ganpipe.imaging import tiff16

    arr, info = tiff16.read_tiff16(path)
    color, alpha = _split(_oriented(arr, info.orientation))
    return Picture(
        color, alpha, bits=16, icc=_icc_for(info.icc, color.shape[2] == 1), format="TIFF"
    )


def decode_image(path: str | Path, max_pixels: float | None = None) -> Picture:
    """Read an image by content, oriented; raises one of
    :data:`~ganpipe.data.imageio.DECODE_ERRORS` (one-line messages) on anything that is
    not a usable image, and :class:`~ganpipe.imaging.formats.TooLarge` for an image of
    more than ``max_pixels`` pixels (None: no limit but Pillow's)."""
    try:
        return _decode(Path(path), max_pixels)
    except DECODE_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow plugins fail in many ways on bad files
        raise ValueError(f"corrupt image ({type(exc).__name__}: {exc})") from None


def _decode(path: Path, max_pixels: float | None) -> Picture:
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    tiff = check_format(head) == "TIFF"
    with native_stderr(tiff):  # libtiff prints its errors to fd 2: captured for this file
        return _decode_as(path, head, tiff, max_pixels)


def _decode_as(path: Path, head: bytes, tiff: bool, max_pixels: float | None) -> Picture:
    if tiff:
        from ganpipe.imaging import tiff16  # tifffile: only for TIFF inputs

        size = tiff16.tiff16_size(path)
        if size is not None:
            check_megapixels(*size, max_pixels)
            try:
                return _decode_tiff16(path)
            except tiff16.MissingCodec:
                pass  # a compression with no codec in tifffile: Pillow may read it
    try:
        return _decode_pil(path, head, max_pixels, path)
    except ValueError as exc:  # a text chunk over Pillow's limit: the image is still good
        if not (head.startswith(_PNG) and "MAX_TEXT_CHUNK" in str(exc)):
            raise
    pic = _decode_pil(path, head, max_pixels, io.BytesIO(_without_text(path.read_bytes())))
    note = "PNG text chunk dropped: larger than Pillow's limit (PngImagePlugin.MAX_TEXT_CHUNK)"
    return replace(pic, warnings=(*pic.warnings, note))


def _without_text(data: bytes) -> bytes:
    """A PNG file's bytes without its text chunks (tEXt, zTXt, iTXt), which outputs never
    carry anyway."""
    out, pos = [data[:8]], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length
        if data[pos + 4 : pos + 8] not in (b"tEXt", b"zTXt", b"iTXt"):
            out.append(data[pos:end])
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def _png_chunk(data: bytes, kind: bytes) -> bytes | None:
    """The body of the first ``kind`` chunk of a PNG file's bytes (None: none before IEND
    or the end)."""
    pos = 8
    while pos + 8 <= len(data):
        length, found = struct.unpack(">I4s", data[pos : pos + 8])
        if found == kind:
            return data[pos + 8 : pos + 8 + length]
        if found == b"IEND":
            return None
        pos += 12 + length
    return None


def _png_exif(im: Image.Image, data: bytes) -> Image.Exif:
    """The EXIF of a PNG without Pillow decoding its pixels (``PngImageFile.getexif`` loads
    the whole image to look for an ``eXIf`` chunk after the pixel data): ``data`` is the
    file's bytes, searched for that chunk."""
    if "exif" not in im.info:
        late = _png_chunk(data, b"eXIf")
        if late:  # what Pillow's load would have found
            im.info["exif"] = b"Exif\0\0" + late
    return Image.Image.getexif(im)  # the base class's: from im.info, nothing decoded


def _decode_pil(
    path: Path, head: bytes, max_pixels: float | None, source: Path | io.BytesIO
) -> Picture:
    with open_image(source, head) as im:
        check_pixels(im.width, im.height)
        check_megapixels(im.width, im.height, max_pixels)
        fmt = im.format
        icc = im.info.get("icc_profile")
        png16 = None  # a 16-bit PNG's bytes: Pillow keeps 8 bits of RGB(A)/LA, drops tRNS
        if png_depth(head) == 16:
            png16 = source.getvalue() if isinstance(source, io.BytesIO) else path.read_bytes()
        exif = im.getexif() if png16 is None else _png_exif(im, png16)
        orientation = exif.get(0x0112, 1)
        if png16 is not None:
            color, alpha = _split(_oriented(decode_png16(png16), orientation))
            pic = Picture(color, alpha, bits=16)
        else:
            im.load()
            pic = _upright(im, orientation)
    keep_exif, warnings = None, list(pic.warnings)
    if fmt in ("PNG", "JPEG", "WEBP", "MPO") and len(exif):
        exif.pop(0x0112, None)
        try:
            data = exif.tobytes()
        except Exception as exc:  # noqa: BLE001 - malformed EXIF: the image is still good
            data = b""
            warnings.append(f"EXIF dropped: it cannot be rewritten ({_why(exc)})")
        keep_exif = data if 0 < len(data) < 60000 else None
    kept = _icc_for(icc, pic.gray)
    if icc and kept is None:
        warnings.append(_icc_note(icc, pic.gray))
    return replace(pic, icc=kept, exif=keep_exif, format=fmt, warnings=tuple(warnings))


def _icc_note(icc: bytes, gray: bool) -> str:
    """Why a profile is not carried over."""
    space = icc[16:20].decode("ascii", "replace").strip() if len(icc) >= 20 else ""
    want = "GRAY" if gray else "RGB"
    if space.isalnum() and space.isascii():
        return f"ICC profile dropped: a {space} profile, the output is {want}"
    return f"ICC profile dropped: not a valid profile ({len(icc)} bytes)"


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _upright(im: Image.Image, orientation: int) -> Picture:
    """``im`` turned upright by Pillow, or (when its EXIF is too malformed for Pillow to
    rewrite) by turning the decoded planes."""
    if orientation == 1:
        return _from_pil(im)
    try:
        return _from_pil(ImageOps.exif_transpose(im))
    except Exception as exc:  # noqa: BLE001 - malformed EXIF: orient the planes ourselves
        pic = _from_pil(im)
        alpha = None if pic.alpha is None else _oriented(pic.alpha, orientation)
        color = np.ascontiguousarray(_oriented(pic.color, orientation))
        alpha = None if alpha is None else np.ascontiguousarray(alpha)
        note = f"EXIF malformed ({_why(exc)}); orientation applied, the rest dropped"
        return replace(pic, color=color, alpha=alpha, warnings=(note,))
