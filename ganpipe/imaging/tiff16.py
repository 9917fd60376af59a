"""16-bit TIFFs that Pillow reduces to 8 bits or cannot read: RGB (48-bit), RGBA (64-bit)
and gray+alpha.

Pillow decodes 16-bit-per-sample RGB(A) TIFFs to 8 bits per channel, has no mode for
16-bit gray+alpha at all, and cannot write either, so upscaling such a file would silently
lose precision. This module reads and writes them with :mod:`tifffile` (numpy only; never
torch), whose LZW, JPEG and Deflate codecs come from ``imagecodecs`` (a dependency of
ganpipe, imported by tifffile when such a file is read):

* :func:`tiff16_needed` - whether a file is one of them (reads the first page's tags only);
* :func:`read_tiff16` - its first page as a uint16 HxWxC array (C = 1..4), with the
  ICC profile and the orientation tag. Chunky or planar layout, strips or tiles, either
  byte order; uncompressed, Deflate (Adobe and old-style), PackBits or LZMA data, with or
  without the horizontal predictor, and LZW, JPEG and the others imagecodecs decodes; a
  compression tifffile has no codec for raises ``ValueError`` naming it;
* :func:`encode_tiff16` - a Deflate-compressed 16-bit TIFF (gray, gray+alpha, RGB, RGBA)
  with the ICC profile; alpha is marked as unassociated.

Extra samples follow Pillow: unassociated or unmarked alpha is kept, associated
(premultiplied) alpha is divided out, and an extra sample marked "unspecified" is padding
and dropped.
"""

from __future__ import annotations

import enum
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ganpipe.data.imageio import check_pixels

MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
ORIENTATION_TAG = 274
ICC_TAG = 34675
#: PhotometricInterpretation -> colour samples (the rest are extra samples)
COLOR_SAMPLES = {1: 1, 2: 3}  # min-is-black, RGB
_UNSPECIFIED, _ASSOCIATED = 0, 1


class MissingCodec(ValueError):
    """tifffile has no codec for the file's compression (or predictor) here."""


@dataclass(frozen=True)
class Tiff16Info:
    """What :func:`read_tiff16` carries over besides the pixels."""

    icc: bytes | None  # the InterColorProfile tag (34675), None when absent or empty
    orientation: int  # the Orientation tag (274), 1..8; 1 when absent or invalid


def _is_16bit_color(page: tifffile.TiffPage) -> bool:
    """16-bit unsigned RGB with 0 or 1 extra sample, or gray with 1 extra sample (what
    Pillow reduces or rejects); 16-bit gray (I;16) is left to Pillow."""
    base = COLOR_SAMPLES.get(int(page.photometric))
    return (
        base is not None
        and page.bitspersample == 16
        and page.sampleformat == 1
        and page.imagedepth == 1
        and page.samplesperpixel - base in ((0, 1) if base == 3 else (1,))
    )


def tiff16_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` of the first page when ``path`` is a TIFF that
    :func:`read_tiff16` should decode (16-bit RGB, RGBA or gray+alpha), else None. Reads
    the header and the first page's tags only; a file tifffile cannot parse is left to
    Pillow (None)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) not in MAGIC:
                return None
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return (int(page.imagewidth), int(page.imagelength)) if _is_16bit_color(page) else None
    except Exception:  # noqa: BLE001 - tifffile fails in many ways on corrupt files
        return None


def tiff16_needed(path: str | Path) -> bool:
    """True when ``path`` is a TIFF whose first page :func:`read_tiff16` should decode
    (see :func:`tiff16_size`)."""
    return tiff16_size(path) is not None


def _check_decodable(page: tifffile.TiffPage, file_size: int) -> None:
    """Raise ``ValueError`` before decoding when a codec is missing or data is cut off."""
    for kind, value, codecs in (
        ("compression", page.compression, tifffile.TIFF.DECOMPRESSORS),
        ("predictor", page.predictor, tifffile.TIFF.UNPREDICTORS),
    ):
        if value in codecs:
            continue
        if not isinstance(value, enum.Enum):  # tifffile keeps unknown values as int
            raise ValueError(f"unknown TIFF {kind} {value}")
        raise MissingCodec(
            f"TIFF {kind} {value.name} is not supported (no codec for it: is the "
            f"imagecodecs package installed?); save the file uncompressed or with "
            f"Deflate (ZIP)"
        )
    offsets, counts = page.dataoffsets, page.databytecounts
    if len(offsets) != len(counts):
        raise ValueError(
            "TIFF file is corrupt (strip or tile offsets and byte counts differ in number)"
        )
    if max((o + n for o, n in zip(offsets, counts, strict=True)), default=0) > file_size:
        raise ValueError("TIFF file is truncated (image data past the end of the file)")


def _orientation(page: tifffile.TiffPage) -> int:
    value = page.tags.valueof(ORIENTATION_TAG)
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _icc(page: tifffile.TiffPage) -> bytes | None:
    value = page.tags.valueof(ICC_TAG)
    if isinstance(value, tuple | list):  # written as BYTE values instead of UNDEFINED
        value = bytes(value)
    return value if isinstance(value, bytes) and value else None


def _unpremultiply(arr: np.ndarray) -> np.ndarray:
    """Associated (premultiplied) alpha -> unassociated, rounding; colour where alpha is 0
    becomes 0."""
    alpha = arr[:, :, -1:].astype(np.uint32)
    color = arr[:, :, :-1].astype(np.uint32) * 65535 + alpha // 2
    np.floor_divide(color, alpha, out=color, where=alpha > 0)
    color[np.broadcast_to(alpha == 0, color.shape)] = 0
    np.minimum(color, 65535, out=color)
    return np.concatenate([color.astype(np.uint16), arr[:, :, -1:]], axis=2)


def read_tiff16(path: str | Path, max_pixels: float | None = None) -> tuple[np.ndarray, Tiff16Info]:
    """Decode the first page of a file accepted by :func:`tiff16_needed`:
    ``(uint16 HxWxC array, Tiff16Info)`` with C = 2 (gray+alpha), 3 (RGB) or 4 (RGBA) - 1
    or 3 where the extra sample is padding - not oriented (the caller applies
    ``info.orientation``).

    Raises ``PIL.Image.DecompressionBombError`` when the page has more than
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels, ``ValueError`` for another kind of TIFF, a
    compression that needs imagecodecs or a truncated file (all before any pixel data is
    decoded), and ``ValueError`` or ``OSError`` for a corrupt file.
    """
    try:
        return _decode(path)
    except (IndexError, np.exceptions.AxisError) as exc:  # AxisError is a ValueError too
        raise ValueError(f"TIFF file is corrupt ({type(exc).__name__}: {exc})") from None
    except (OSError, ValueError, MemoryError, Image.DecompressionBombError):
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile fails in many ways on corrupt files
        raise ValueError(f"TIFF file is corrupt ({type(exc).__name__}: {exc})") from exc


def _decode(path: str | Path) -> tuple[np.ndarray, Tiff16Info]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        if not _is_16bit_color(page):
            raise ValueError("not a 16-bit RGB, RGBA or gray+alpha TIFF")
        check_pixels(page.imagewidth, page.imagelength)
        _check_decodable(page, tif.filehandle.size)
        info = Tiff16Info(icc=_icc(page), orientation=_orientation(page))
        extra = page.extrasamples[0] if page.extrasamples else None
        # (separate samples, depth, length, width, contiguous samples)
        planes = page.asarray(maxworkers=1).reshape(page.shaped)
    arr = planes[:, 0, :, :, 0].transpose(1, 2, 0) if planes.shape[0] > 1 else planes[0, 0]
    arr = np.ascontiguousarray(arr, dtype=np.uint16)  # planar: transposed above
    if extra == _UNSPECIFIED:
        arr = np.ascontiguousarray(arr[:, :, :-1])
    elif extra == _ASSOCIATED:
        arr = _unpremultiply(arr)
    return arr, info


def encode_tiff16(arr: np.ndarray, icc: bytes | None = None) -> bytes:
    """A 16-bit TIFF of ``arr`` (uint16, HxW or HxWxC with C = 1..4): min-is-black for
    C <= 2, RGB for C >= 3, the last channel of C = 2 or 4 an unassociated alpha
    (ExtraSamples = 2); Deflate with the horizontal predictor; ``icc`` embedded."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w, c = arr.shape
    if arr.dtype != np.uint16 or c not in (1, 2, 3, 4) or h == 0 or w == 0:
        raise ValueError(f"cannot write a {w}x{h}x{c} {arr.dtype} array as a 16-bit TIFF")
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        arr if c > 1 else arr[:, :, 0],
        photometric="rgb" if c >= 3 else "minisblack",
        planarconfig="contig",
        extrasamples=("unassalpha",) if c in (2, 4) else None,
        compression="zlib",
        compressionargs={"level": 6},
        predictor=True,
        iccprofile=icc or None,
        metadata=None,
        software=False,
        maxworkers=1,
    )
    return buf.getvalue()
