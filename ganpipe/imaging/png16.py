"""16-bit PNGs that Pillow reduces to 8 bits: RGB (48-bit), RGBA (64-bit) and gray+alpha.

Pillow decodes such files to 8 bits per channel and cannot write them, so upscaling a
16-bit RGB PNG would silently lose precision. This module reads and writes them with numpy
and zlib only (no torch, no extra dependency):

* :func:`read_png16` - non-interlaced 16-bit PNGs of colour type 2, 4 or 6 (interlaced
  files fall back to Pillow's 8-bit decode in the caller);
* :func:`encode_png16` - any 16-bit PNG (gray, gray+alpha, RGB, RGBA) with Paeth filtering,
  an ``iCCP`` profile and ``eXIf`` data.

Decoding the Average and Paeth filters is sequential along a row and down a column, so it
runs as a wavefront over anti-diagonals (one vectorised step per diagonal): about a second
per 10 megapixels.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> channels
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_COLOR_TYPE = {c: t for t, c in CHANNELS.items()}


def png16_header(head: bytes) -> tuple[int, int, int] | None:
    """``(width, height, channels)`` when ``head`` (the first 33 bytes of a file) starts a
    non-interlaced 16-bit PNG of colour type 2, 4 or 6 (what Pillow cannot keep at 16
    bits); ``None`` otherwise."""
    if len(head) < 33 or not head.startswith(SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if depth != 16 or ctype not in (2, 4, 6) or interlace != 0:
        return None
    return width, height, CHANNELS[ctype]


def _chunks(data: bytes):
    pos = len(SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise ValueError("PNG file is truncated (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            raise ValueError(f"PNG file is truncated (in a {kind.decode('latin-1')} chunk)")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length


#: largest ICC profile kept (a bigger one is dropped: it would be a decompression bomb)
MAX_ICC_BYTES = 16 << 20


def _profile(data: bytes) -> bytes | None:
    """The decompressed ICC profile of an iCCP chunk; None when broken or too large."""
    inflate = zlib.decompressobj()
    try:
        icc = inflate.decompress(data, MAX_ICC_BYTES)
    except zlib.error:
        return None  # a broken profile is dropped, as Pillow does
    return None if inflate.unconsumed_tail else icc


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter(raw: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG filtering: ``raw`` (h, 1 + stride) uint8 -> (h, stride) uint8."""
    kinds, data = raw[:, 0], raw[:, 1:]
    if kinds.size and kinds.max() > 4:
        raise ValueError(f"invalid PNG filter type {int(kinds.max())}")
    h, stride = data.shape
    w = stride // bpp
    if not np.any(kinds >= 3):  # None / Sub / Up only: one vectorised step per row
        out = np.empty_like(data)
        prev = np.zeros(stride, np.uint8)
        for r in range(h):
            row = data[r]
            if kinds[r] == 1:
                row = np.cumsum(row.reshape(w, bpp), axis=0, dtype=np.uint8).reshape(-1)
            elif kinds[r] == 2:
                row = row + prev
            out[r] = row
            prev = out[r]
        return out
    # Wavefront: pixel (r, x) needs (r, x-1), (r-1, x) and (r-1, x-1), all on earlier
    # anti-diagonals r + x < k. ``pad`` has a zero row and column in front.
    src = data.reshape(h, w, bpp)
    pad = np.zeros((h + 1, w + 1, bpp), np.uint8)
    for k in range(h + w - 1):
        rr = np.arange(max(0, k - w + 1), min(h - 1, k) + 1)
        xx = k - rr
        f = src[rr, xx].astype(np.int16)
        a = pad[rr + 1, xx].astype(np.int16)
        b = pad[rr, xx + 1].astype(np.int16)
        c = pad[rr, xx].astype(np.int16)
        kind = kinds[rr][:, None]
        pred = np.select(
            [kind == 0, kind == 1, kind == 2, kind == 3], [0, a, b, (a + b) >> 1], _paeth(a, b, c)
        )
        pad[rr + 1, xx + 1] = (f + pred) & 255
    return pad[1:, 1:].reshape(h, stride)


def read_png16(path: str | Path, max_pixels: int | None = None) -> tuple[np.ndarray, bytes | None]:
    """Read a file accepted by :func:`png16_header`: ``(uint16 HxWxC array, ICC profile)``.

    Raises ``ValueError`` on a malformed or truncated file, and when the image has more
    than ``max_pixels`` pixels (decompression bombs).
    """
    data = Path(path).read_bytes()
    info = png16_header(data[:33])
    if info is None:
        raise ValueError("not a non-interlaced 16-bit RGB/RGBA/gray+alpha PNG")
    width, height, channels = info
    if max_pixels and width * height > max_pixels:
        raise ValueError(
            f"Image size ({width * height} pixels) exceeds limit of "
            f"{max_pixels} pixels, could be decompression bomb DOS attack."
        )
    if width == 0 or height == 0:
        raise ValueError("PNG has a zero width or height")
    icc, idat = None, []
    for kind, body in _chunks(data):
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"iCCP":
            icc = _profile(body[body.find(b"\0") + 2 :])
    bpp = channels * 2
    expected = height * (1 + width * bpp)
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), expected)
    except zlib.error as exc:
        raise ValueError(f"PNG image data is corrupt ({exc})") from None
    if len(raw) < expected:
        raise ValueError("PNG image data is truncated")
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * bpp)
    pixels = _unfilter(rows, bpp)
    arr = pixels.view(">u2").reshape(height, width, channels).astype(np.uint16)
    return arr, icc


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def encode_png16(
    arr: np.ndarray,
    icc: bytes | None = None,
    exif: bytes | None = None,
    level: int = 6,
    band: int = 64,
) -> bytes:
    """A 16-bit PNG of ``arr`` (uint16, HxW or HxWxC with C = 1..4), Paeth-filtered and
    compressed ``band`` rows at a time."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w, c = arr.shape
    if c not in _COLOR_TYPE or h == 0 or w == 0:
        raise ValueError(f"cannot write a {w}x{h}x{c} array as a 16-bit PNG")
    bpp, stride = 2 * c, 2 * c * w
    out = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, _COLOR_TYPE[c], 0, 0, 0))]
    if icc:
        out.append(_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc)))
    if exif:
        out.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    comp = zlib.compressobj(level)
    idat = []
    prev = np.zeros(stride, np.int16)
    for top in range(0, h, band):
        rows = np.ascontiguousarray(arr[top : top + band].astype(">u2")).view(np.uint8)
        rows = rows.reshape(-1, stride).astype(np.int16)
        up = np.vstack([prev[None], rows[:-1]])
        left = np.zeros_like(rows)
        left[:, bpp:] = rows[:, :-bpp]
        upleft = np.zeros_like(rows)
        upleft[:, bpp:] = up[:, :-bpp]
        filtered = ((rows - _paeth(left, up, upleft)) & 255).astype(np.uint8)
        block = np.empty((rows.shape[0], 1 + stride), np.uint8)
        block[:, 0] = 4
        block[:, 1:] = filtered
        idat.append(comp.compress(block.tobytes()))
        prev = rows[-1]
    idat.append(comp.flush())
    payload = b"".join(idat)
    step = 1 << 23
    out += [_chunk(b"IDAT", payload[i : i + step]) for i in range(0, len(payload), step)]
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
