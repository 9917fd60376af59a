"""Image formats by content, never by file name (PNG, JPEG, WebP, TIFF, BMP, GIF: see
:mod:`ganpipe.imaging.formats`), and the listing of a folder's images.

A folder's files are taken **by name** (an image suffix, any case: ``.png``, ``.JPG``...)
or, with ``all_files``, **by content** (every file's first bytes are read; the names do
not matter). Every other entry is listed as ignored, with the reason: not an image (by name,
or by content), hidden (``.name``: files and folders), or a sub-folder that is not
searched without ``recursive``. Sorted by relative path (``recursive`` walks the
sub-folders). Folders that cannot be read are reported, not fatal (except the top folder
itself).
"""

from __future__ import annotations

import os
from pathlib import Path

from ganpipe.data.imageio import IMAGE_SUFFIXES
from ganpipe.imaging.formats import sniff_format

__all__ = ["INPUT_SUFFIXES", "list_images", "scan_images", "sniff_file", "sniff_format"]

#: file name suffixes taken as images (without ``all_files``); a file so named whose content
#: is not an image is then reported as failed rather than silently ignored
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


#: why an entry of the input folder is not an input (see the module docstring)
NOT_IMAGE_BY_NAME = "not an image by name (--all-files reads every file's content)"
NOT_IMAGE = "not an image (by content)"
HIDDEN = "hidden"
SUB_FOLDER = "sub-folder, not searched (add --recursive)"
NOT_A_FILE = "not a regular file"
#: the reasons that count as "non-image files" in summaries
NON_IMAGE = (NOT_IMAGE_BY_NAME, NOT_IMAGE)


def scan_images(
    root: Path,
    recursive: bool,
    errors: list[tuple[Path, str]] | None = None,
    *,
    all_files: bool = False,
) -> tuple[list[tuple[Path, str | None]], list[tuple[Path, str]]]:
    """The inputs under ``root`` (see the module docstring), sorted by relative path, each
    with its format by content (None: not a known format); and the entries ignored, each
    with the reason. Sub-folders that cannot be read are appended to ``errors`` as
    ``(folder, reason)`` (and skipped); ``root`` itself raises ``OSError``."""
    found: list[tuple[Path, str | None]] = []
    ignored: list[tuple[Path, str]] = []
    unreadable: list[tuple[Path, str]] = []
    if recursive:
        os.listdir(root)  # the top folder must be readable: raises OSError otherwise

        def onerror(exc: OSError) -> None:
            unreadable.append((Path(exc.filename or root), f"cannot read folder: {_reason(exc)}"))

        walk = os.walk(root, onerror=onerror)
    else:
        names = os.listdir(root)
        subdirs = [n for n in names if (root / n).is_dir()]
        walk = iter([(root, subdirs, [n for n in names if n not in set(subdirs)])])
    for folder, subdirs, files in walk:
        for name in subdirs:
            if name.startswith("."):
                ignored.append((Path(folder) / name, HIDDEN))
            elif not recursive:
                ignored.append((Path(folder) / name, SUB_FOLDER))
        subdirs[:] = [s for s in subdirs if not s.startswith(".")]  # prunes os.walk
        for name in files:
            path = Path(folder) / name
            if name.startswith("."):
                ignored.append((path, HIDDEN))
            elif not path.is_file():
                ignored.append((path, NOT_A_FILE))
            elif all_files:
                fmt = sniff_file(path)
                if fmt is None:
                    ignored.append((path, NOT_IMAGE))
                else:
                    found.append((path, fmt))
            elif path.suffix.lower() in INPUT_SUFFIXES:
                found.append((path, sniff_file(path)))
            else:
                ignored.append((path, NOT_IMAGE_BY_NAME))
    found.sort(key=lambda item: item[0].relative_to(root).as_posix())
    ignored.sort(key=lambda item: item[0].relative_to(root).as_posix())
    if errors is not None:
        errors.extend(sorted(unreadable, key=lambda item: str(item[0])))
    return found, ignored


def list_images(
    root: Path,
    recursive: bool,
    errors: list[tuple[Path, str]] | None = None,
    *,
    all_files: bool = False,
) -> tuple[list[tuple[Path, str | None]], int]:
    """:func:`scan_images`'s inputs, and the number of non-image files ignored."""
    found, ignored = scan_images(root, recursive, errors, all_files=all_files)
    return found, sum(reason in NON_IMAGE for _, reason in ignored)
