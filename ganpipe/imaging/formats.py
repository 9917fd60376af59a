"""The formats ganpipe reads, and the only way it opens an image with Pillow.

Images are decoded only through an allow-list: PNG, JPEG (Pillow's JPEG plugin also
reads MPO, JPEG with several pictures), WebP, TIFF, BMP and GIF, which are also all that
the 16-bit decoders (libpng through imagecodecs for PNG, :mod:`~ganpipe.imaging.tiff16`
for TIFF: see :mod:`~ganpipe.imaging.decode`) take. The format is decided by the file's
first bytes (:func:`sniff_format`), never by its name, and Pillow is then told to try
that format only (``Image.open(..., formats=[...])``). Anything else -
PostScript and EPS (which Pillow hands to Ghostscript), PDF, SVG, ICO, PSD... - is
refused with one line, :class:`UnsupportedFormat`, before Pillow sees it: no external
program is ever started to read an image.

Also here: :func:`check_megapixels`, the per-file size budget checked on the header,
before any pixel is decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from PIL import Image

#: Pillow format names that may be decoded (the sniffed format decides which one is tried)
ALLOWED = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
#: what the user is told ganpipe reads
READABLE = "PNG, JPEG, WebP, TIFF, BMP and GIF"
#: how much of a file :func:`sniff_format` looks at
HEAD_BYTES = 64

#: formats that are refused, by their first bytes, only to name them in the message
_REFUSED = (
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "DOS EPS (PostScript)"),
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"\xd7\xcd\xc6\x9a", "WMF"),
    (b"gimp xcf", "GIMP XCF"),
    (b"PK\x03\x04", "ZIP archive"),
)


class UnsupportedFormat(ValueError):
    """The file is not one of the :data:`ALLOWED` formats (by content)."""


class TooLarge(ValueError):
    """The image has more pixels than the caller's budget (checked on the header)."""


def quiet_decoder_warnings() -> None:
    """What decoders say about damaged or unusual files (Pillow's UserWarnings, tifffile's
    log records, libtiff's messages on fd 2) is captured per file, never printed: see
    :func:`ganpipe.imaging.capture.quiet_decoder_warnings`. Called by the commands and
    loaders that decode batches."""
    from ganpipe.imaging.capture import quiet_decoder_warnings as quiet

    quiet()


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file (never from its name): ``PNG``,
    ``JPEG``, ``WEBP``, ``TIFF``, ``GIF``, ``BMP``; None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    return None


def describe_head(head: bytes) -> str:
    """A one-line reason for a file :func:`sniff_format` refuses."""
    if not head:
        return "empty file (0 bytes)"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    for magic, name in _REFUSED:
        if stripped.startswith(magic) or head.startswith(magic):
            return f"unsupported format ({name}); ganpipe reads {READABLE} only"
    if b"<svg" in head.lower():
        return f"unsupported format (SVG); ganpipe reads {READABLE} only"
    return f"unsupported format (not {READABLE} by content)"


def read_head(path: str | Path, size: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def check_format(head: bytes) -> str:
    """The allowed format of a file starting with ``head``; :class:`UnsupportedFormat`
    (one line) otherwise."""
    fmt = sniff_format(head)
    if fmt is None:
        raise UnsupportedFormat(describe_head(head))
    return fmt


def open_image(path: str | Path | BinaryIO, head: bytes | None = None) -> Image.Image:
    """``Image.open`` restricted to the format the file's content says (one of
    :data:`ALLOWED`); :class:`UnsupportedFormat` for anything else. Lazy, as
    ``Image.open``: only the header is read."""
    fmt = check_format(read_head(path) if head is None else head)
    try:
        return Image.open(path, formats=[fmt])
    except Image.UnidentifiedImageError:
        raise ValueError(f"{fmt} file is corrupt (its header cannot be read)") from None


def check_megapixels(width: int, height: int, max_pixels: float | None) -> None:
    """:class:`TooLarge` when ``width`` x ``height`` exceeds ``max_pixels`` (None or 0:
    no limit): the file is refused before its pixels are decoded."""
    if max_pixels and width * height > max_pixels:
        raise TooLarge(
            f"{width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:g} (--max-megapixels, or max_megapixels in [upscale]); "
            f"raise it to process this file"
        )
