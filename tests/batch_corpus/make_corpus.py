"""Build the batch corpus: ``python tests/batch_corpus/make_corpus.py`` (re)writes
``tests/batch_corpus/files/`` and ``expected.json`` deterministically (tens of KB).

One folder as users have them: odd modes, odd names, colliding names, malformed metadata,
truncated files, non-images with and without image names, a TIFF that makes libtiff print
to stderr and a PNG that makes Pillow warn. ``expected.json`` says, per entry, the outcome
of ``ganpipe upscale`` without and with ``--all-files``, and why the file is there.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"


def rgb(h: int = 12, w: int = 16, seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (h, w, channels), np.uint8)


def save(name: str, arr_or_im, **kw) -> None:
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(arr_or_im)
    im.save(FILES / name, **kw)


def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_with_chunks(*chunks: bytes, seed: int = 0) -> bytes:
    """A small RGB PNG with ``chunks`` inserted before its image data."""
    buf = io.BytesIO()
    Image.fromarray(rgb(8, 8, seed)).save(buf, "PNG")
    data = buf.getvalue()
    at = data.index(b"IDAT") - 4
    return data[:at] + b"".join(chunks) + data[at:]


def exif_with_string_resolution(orientation: int | None = None) -> bytes:
    """EXIF whose XResolution (a rational) holds a string: Pillow cannot rewrite it."""
    exif = Image.Exif()
    exif[0x9999] = "abc"
    exif[0x0128] = 2  # ResolutionUnit
    if orientation is not None:
        exif[0x0112] = orientation
    raw = exif.tobytes()
    return raw.replace(b"\x99\x99\x00\x02", b"\x01\x1a\x00\x02")


def deflate_tiff(seed: int = 0) -> tuple[bytes, int]:
    """A deflate-compressed RGB TIFF (libtiff decodes it in Pillow), and where its strip
    starts."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb(32, 32, seed), compression="zlib", photometric="rgb")
    data = buf.getvalue()
    with tifffile.TiffFile(io.BytesIO(data)) as tf:
        offset = tf.pages[0].dataoffsets[0]
    return data, offset


# name -> (outcome by name, outcome with --all-files, why it is here)
EXPECTED: dict[str, tuple[str, str, str]] = {}


def entry(name: str, by_name: str, all_files: str, why: str) -> str:
    EXPECTED[name] = (by_name, all_files, why)
    return name


def build() -> None:
    if FILES.exists():
        shutil.rmtree(FILES)
    FILES.mkdir(parents=True)
    w = "written"
    # modes
    save(entry("palette.png", w, w, "P mode"), Image.fromarray(rgb()).quantize(16))
    la = np.dstack([rgb(channels=1)[:, :, 0], np.linspace(0, 255, 16 * 12).reshape(12, 16)])
    save(entry("gray_alpha.png", w, w, "LA mode"), Image.fromarray(la.astype(np.uint8), "LA"))
    i16 = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300).astype(np.uint16)
    save(entry("gray16.png", w, w, "I;16"), Image.fromarray(i16))
    save(entry("cmyk.jpg", w, w, "CMYK JPEG"), Image.fromarray(rgb()).convert("CMYK"))
    save(entry("bilevel.png", w, w, "1-bit"), Image.fromarray(rgb()[:, :, 0] > 127))
    save(entry("bilevel.tif", w, w, "1-bit TIFF"), Image.fromarray(rgb(seed=1)[:, :, 0] > 127))
    arr48 = (rgb(seed=2).astype(np.uint16) * 257).astype(np.uint16)
    (FILES / entry("rgb48.png", w, w, "16-bit RGB PNG")).write_bytes(imagecodecs.png_encode(arr48))
    tifffile.imwrite(FILES / entry("rgb48.tif", w, w, "16-bit RGB TIFF"), arr48)
    save(entry("rgba.webp", w, w, "WebP with alpha"), rgb(channels=4), lossless=True)
    frames = [Image.fromarray(rgb(seed=s)).quantize(8) for s in range(2)]
    frames[0].save(
        FILES / entry("anim.gif", w, w, "animated GIF"), save_all=True, append_images=frames[1:]
    )
    # names
    save(entry("with space.png", w, w, "spaces"), rgb(seed=3))
    save(entry("ünïcødé 写真.png", w, w, "unicode"), rgb(seed=4))
    save(entry("UPPER.JPG", w, w, "uppercase extension"), rgb(seed=5), format="JPEG")
    save(entry("noext", "ignored", w, "PNG without extension"), rgb(seed=6), format="PNG")
    save(entry("png_named.jpg", w, w, "PNG named .jpg"), rgb(seed=7), format="PNG")
    # colliding names: x.png keeps its name, x.gif -> x.gif.png, x.bmp -> x.bmp.png
    for ext, fmt in (("gif", "GIF"), ("bmp", "BMP"), ("png", "PNG")):
        save(entry(f"x.{ext}", w, w, "colliding output names"), rgb(seed=8), format=fmt)
    # metadata
    save(
        entry("exif_string_res.jpg", w, w, "EXIF XResolution is a string"),
        rgb(seed=9),
        exif=exif_with_string_resolution(),
    )
    save(
        entry("exif_turned.jpg", w, w, "malformed EXIF with an orientation"),
        rgb(seed=10),
        exif=exif_with_string_resolution(orientation=6),
    )
    exif = Image.Exif()
    exif[0x0128] = 2  # a resolution unit, no X/Y resolution
    exif[0x010F] = "camera"
    save(entry("exif_no_xres.jpg", w, w, "EXIF without XResolution"), rgb(seed=11), exif=exif)
    rng = np.random.RandomState(12)
    save(
        entry("icc_garbage.png", w, w, "ICC profile of random bytes"),
        rgb(seed=12),
        icc_profile=rng.bytes(300),
    )
    icc = bytearray(rng.bytes(300))
    icc[16:20] = b"RGB "
    save(
        entry("icc_broken.jpg", w, w, "ICC header says RGB, the rest garbage"),
        rgb(seed=13),
        icc_profile=bytes(icc),
    )
    big_text = b"Comment\0\0" + zlib.compress(b"x" * (3 << 20), 9)
    (FILES / entry("huge_text.png", w, w, "3 MB zTXt chunk (over Pillow's limit)")).write_bytes(
        png_with_chunks(chunk(b"zTXt", big_text), seed=14)
    )
    (
        FILES / entry("bad_exif_chunk.png", w, w, "corrupt eXIf chunk: Pillow UserWarning")
    ).write_bytes(png_with_chunks(chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\x05garbage"), seed=15))
    # truncated and broken files
    f = "failed"
    buf = io.BytesIO()
    Image.fromarray(rgb(32, 32, 16)).save(buf, "PNG")
    (FILES / entry("truncated.png", f, f, "half a PNG")).write_bytes(buf.getvalue()[:300])
    buf = io.BytesIO()
    Image.fromarray(rgb(32, 32, 17)).save(buf, "JPEG", quality=90)
    (FILES / entry("truncated.jpg", f, f, "a JPEG cut after its header")).write_bytes(
        buf.getvalue()[:400]
    )
    data, offset = deflate_tiff(18)
    (FILES / entry("libtiff_truncated.tif", f, f, "libtiff prints TIFFFillStrip")).write_bytes(
        data[: offset + 200]
    )
    bad = bytearray(data)
    bad[offset + 10 :] = bytes(range(256)) * ((len(bad) - offset - 10) // 256) + bytes(
        (len(bad) - offset - 10) % 256
    )
    (FILES / entry("libtiff_garbage.tif", f, f, "libtiff prints ZIPDecode")).write_bytes(bytes(bad))
    # not images
    (FILES / entry("text.png", f, "ignored", "text named .png")).write_text("not an image\n")
    (FILES / entry("empty.jpg", f, "ignored", "0 bytes")).write_bytes(b"")
    (FILES / entry("layers.psd", "ignored", "ignored", "Photoshop")).write_bytes(
        b"8BPS\0\x01" + bytes(40)
    )
    (FILES / entry("notes.txt", "ignored", "ignored", "text")).write_text("notes\n")
    (FILES / entry("README", "ignored", "ignored", "text, no extension")).write_text("readme\n")
    (FILES / entry("page.pdf", "ignored", "ignored", "PDF")).write_bytes(b"%PDF-1.4\n%\n")
    save(entry(".hidden.png", "ignored", "ignored", "hidden"), rgb(seed=19))
    (FILES / entry("sub", "ignored", "ignored", "sub-folder (no --recursive)")).mkdir()
    save("sub/inner.png", rgb(seed=20))
    (HERE / "expected.json").write_text(
        json.dumps(
            {k: {"by_name": a, "all_files": b, "why": c} for k, (a, b, c) in EXPECTED.items()},
            indent=1,
            ensure_ascii=False,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    build()
    total = sum(p.stat().st_size for p in FILES.rglob("*") if p.is_file())
    print(f"{len(EXPECTED)} entries, {total} bytes in {FILES}")
