"""Image formats by content, never by file name (PNG, JPEG, WebP, TIFF, BMP, GIF: see
:mod:`ganpipe.imaging.formats`), and the listing of a folder's images: files that are
images by content or by name, hidden files and folders skipped, sorted by relative path
(``recursive`` walks the sub-folders). Folders that cannot be read are reported, not
fatal (except the top folder itself)."""

from __future__ import annotations

import os
from pathlib import Path

from ganpipe.data.imageio import IMAGE_SUFFIXES
from ganpipe.imaging.formats import sniff_format

__all__ = ["INPUT_SUFFIXES", "list_images", "sniff_file", "sniff_format"]

#: file name suffixes taken as images even when their content is not recognised (they are
#: then reported as unreadable rather than silently ignored)
INPUT_SUFFIXES = IMAGE_SUFFIXES | {".jpe", ".jfif", ".gif"}


def sniff_file(path: Path) -> str | None:
    """The format of the file at ``path`` by its first bytes; None when unknown or
    unreadable."""
    try:
        with open(path, "rb") as fh:
            return sniff_format(fh.read(16))
    except OSError:
        return None


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def list_images(
    root: Path, recursive: bool, errors: list[tuple[Path, str]] | None = None
) -> tuple[list[tuple[Path, str | None]], int]:
    """Files under ``root`` that are images by content or by name (hidden files and
    folders skipped), sorted by relative path, each with its format by content; and the
    number of other files ignored. Sub-folders that cannot be read are appended to
    ``errors`` as ``(folder, reason)`` (and skipped); ``root`` itself raises ``OSError``."""
    found, ignored = [], 0
    unreadable: list[tuple[Path, str]] = []
    if recursive:
        os.listdir(root)  # the top folder must be readable: raises OSError otherwise

        def onerror(exc: OSError) -> None:
            unreadable.append((Path(exc.filename or root), f"cannot read folder: {_reason(exc)}"))

        walk = os.walk(root, onerror=onerror)
    else:
        walk = iter([(root, [], os.listdir(root))])
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
    if errors is not None:
        errors.extend(sorted(unreadable, key=lambda item: str(item[0])))
    return found, ignored
