"""Write the corpus of malformed images that ``tests/test_hardening_corpus.py`` replays
through upscale's decoder and the dataset loader: every file must either decode or fail
with a one-line reason, never a traceback or a hang.

    python tests/corpus/make_corpus.py            # rewrites tests/corpus/files/
    python tests/corpus/make_corpus.py OUT_DIR

Deterministic (seeded). Kinds, by name prefix: ``ok_`` valid files of every format read
(the controls), ``trunc_`` cut short, ``flip_`` a few flipped bytes, ``magic_`` a wrong or
half-right signature, ``huge_`` headers declaring enormous sizes over almost no data,
``bad_`` other structural damage (loops, offsets past the end, bad filters), ``hostile_``
formats that must never be decoded (PostScript, PDF, SVG) under image names. A few KB in
all: images are 8x8.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from ganpipe.imaging.tiff16 import encode_tiff16

HERE = Path(__file__).resolve().parent
RNG = np.random.default_rng(11)
RGB = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (8, 8, 3), dtype=np.uint16)


def pil(fmt: str, mode: str = "RGB", **params) -> bytes:
    im = Image.fromarray(RGB).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return struct.pack(">I", len(body)) + kind + body + crc


def png_declaring(width: int, height: int, depth: int = 8, ctype: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def flipped(data: bytes, count: int, start: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for pos in rng.integers(start, len(out), count):
        out[pos] ^= 0xFF
    return bytes(out)


def tiff_ifd(
    entries: list[tuple[int, int, int, int]], next_ifd: int = 0, tail: bytes = b""
) -> bytes:
    """A little-endian TIFF with one IFD at offset 8: (tag, type, count, value)."""
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in sorted(entries):
        ifd += struct.pack("<HHII", tag, typ, count, value)
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", next_ifd) + tail


def corpus() -> dict[str, bytes]:
    ok = {
        "ok_rgb.png": pil("PNG"),
        "ok_palette.png": pil("PNG", "P"),
        "ok_rgb.jpg": pil("JPEG", quality=80),
        "ok_rgb.webp": pil("WEBP", quality=80),
        "ok_rgb.tif": pil("TIFF"),
        "ok_rgb.bmp": pil("BMP"),
        "ok_rgb.gif": pil("GIF"),
        "ok_rgb48.png": imagecodecs.png_encode(RGB16),  # libpng
        "ok_rgb48.tif": encode_tiff16(RGB16),
    }
    files = dict(ok)
    for name, data in ok.items():
        kind, ext = name[3:].rsplit(".", 1)
        files[f"trunc_half_{kind}.{ext}"] = data[: len(data) // 2]
        files[f"trunc_head_{kind}.{ext}"] = data[:40]
        files[f"flip_{kind}.{ext}"] = flipped(data, 6, 16, seed=len(name))
    jpeg = ok["ok_rgb.jpg"]
    files |= {
        "magic_png_sig_jpeg_body.png": b"\x89PNG\r\n\x1a\n" + jpeg[8:],
        "magic_jpeg_then_noise.jpg": b"\xff\xd8\xff" + RNG.bytes(200),
        "magic_gif_then_noise.gif": b"GIF89a" + RNG.bytes(200),
        "magic_bmp_then_noise.bmp": b"BM" + RNG.bytes(200),
        "magic_tiff_then_noise.tif": b"II*\0" + RNG.bytes(200),
        "magic_webp_then_noise.webp": b"RIFF\x00\x01\x00\x00WEBP" + RNG.bytes(200),
        "magic_noise_named.png": RNG.bytes(300),
        "magic_empty.png": b"",
        "magic_one_byte.jpg": b"\xff",
    }
    # enormous declared sizes over almost no data (decompression bombs, or just under)
    bmp = bytearray(ok["ok_rgb.bmp"][:54])
    bmp[18:26] = struct.pack("<ii", 50000, -50000)
    gif = bytearray(ok["ok_rgb.gif"])
    gif[6:10] = struct.pack("<HH", 65535, 65535)
    sof = jpeg.find(b"\xff\xc0")
    big_jpeg = bytearray(jpeg)
    big_jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 65500, 65500)
    files |= {
        "huge_bomb.png": png_declaring(100_000, 100_000),
        "huge_under_pillow_limit.png": png_declaring(9000, 9000),
        "huge_rgb48.png": png_declaring(30_000, 30_000, depth=16),
        "huge_zero_width.png": png_declaring(0, 8),
        "huge_bmp.bmp": bytes(bmp),
        "huge_gif_screen.gif": bytes(gif),
        "huge_sof.jpg": bytes(big_jpeg),
        "huge_webp_canvas.webp": b"RIFF\x1e\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00"
        + (16383).to_bytes(3, "little") * 2,
        # 16-bit RGB TIFF: 100000 x 100000, one strip of 6 bytes
        "huge_tiff16.tif": tiff_ifd(
            [
                (256, 4, 1, 100_000),
                (257, 4, 1, 100_000),
                (258, 3, 1, 16),
                (262, 3, 1, 2),
                (273, 4, 1, 8),
                (277, 3, 1, 3),
                (279, 4, 1, 6),
            ]
        ),
    }
    raw = b"\x05" + b"\0" * 48  # filter type 5 does not exist
    bad_filter = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 1, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    strip_past_end = [
        (256, 3, 1, 8),
        (257, 3, 1, 8),
        (258, 3, 1, 8),
        (262, 3, 1, 1),
        (273, 4, 1, 1 << 30),
        (277, 3, 1, 1),
        (279, 4, 1, 64),
    ]
    files |= {
        "bad_png16_filter.png": bad_filter,
        "bad_png_no_plte.png": b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 3, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 72))
        + chunk(b"IEND", b""),
        "bad_tiff_ifd_loop.tif": tiff_ifd([(256, 3, 1, 8), (257, 3, 1, 8)], next_ifd=8),
        "bad_tiff_strip_past_end.tif": tiff_ifd(strip_past_end),
        "bad_tiff_no_tags.tif": tiff_ifd([]),
        "bad_gif_no_frames.gif": ok["ok_rgb.gif"][:13] + b";",
    }
    ps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"
    dos = struct.pack("<IIIIIIIH", 0xC6D3D0C5, 30, len(ps), 0, 0, 0, 0, 0xFFFF) + ps
    files |= {
        "hostile_eps.png": ps,
        "hostile_dos_eps.jpg": dos,
        "hostile_pdf.png": b"%PDF-1.4\n%%EOF\n",
        "hostile_svg.png": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
    }
    return files


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file():
            old.unlink()
    files = corpus()
    for name, data in sorted(files.items()):
        (out / name).write_bytes(data)
    total = sum(len(d) for d in files.values())
    print(f"wrote {len(files)} files ({total / 1024:.1f} KB) to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "files")
