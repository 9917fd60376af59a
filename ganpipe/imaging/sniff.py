"""Image formats by content, never by file name (PNG, JPEG, WebP, TIFF, BMP, GIF), and the
listing of a folder's images: files that are images by content or by name, hidden files
and folders skipped, sorted by relative path (``recursive`` walks the sub-folders)."""

from __future__ import annotations

import os
from pathlib import Path

from ganpipe.data.imageio import IMAGE_SUFFIXES

#: file name suffixes taken as images even when their content is not recognised (they are
#: then reported as unreadable rather than silently ignored)
INPUT_SUFFIXES = IMAGE_SUFFIXES | {".jpe", ".jfif", ".gif"}


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file (never from its name)."""
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


def sniff_file(path: Path) -> str | None:
    """The format of the file at ``path`` by its first bytes; None when unknown or
    unreadable."""
    try:
        with open(path, "rb") as fh:
            return sniff_format(fh.read(16))
    except OSError:
        return None


def list_images(root: Path, recursive: bool) -> tuple[list[tuple[Path, str | None]], int]:
    """Files under ``root`` that are images by content or by name (hidden files and
    folders skipped), sorted by relative path, each with its format by content; and the
    number of other files ignored."""
    found, ignored = [], 0
    walk = os.walk(root) if recursive else iter([(root, [], os.listdir(root))])
    for folder, subdirs, files in walk:
        subdirs[:] = [s for s in subdirs if not s.startswith(".")]  # prunes os.walk
        for name in files:
            path = Path(folder) / name
            if name.startswith(".") or not path.is_file():
                continue
            fmt = sniff_file(path)
            if fmt is None and path.suffix.lower() not in INPUT_SUFFIXES:
                ignored += 1
                continue
            found.append((path, fmt))
    found.sort(key=lambda item: item[0].relative_to(root).as_posix())
    return found, ignored
