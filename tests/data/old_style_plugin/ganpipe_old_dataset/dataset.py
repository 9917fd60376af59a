"""The old-dataset dataset source: images listed in a UTF-8 text file, one per line::

    # comments and blank lines are skipped
    photos/cat-01.jpg, cats
    photos/dog-01.png, dogs
    more/unlabelled.webp

Paths are relative to the list file; the optional text after a comma is the image's
class (lines without one are in the class ``_root``). Images are decoded with Pillow,
its decompression-bomb limit kept; files that cannot be read are skipped and listed in
``ImageSet.skipped``. Each image is centre-cropped to a square and resized.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import ganpipe
import numpy as np
from PIL import Image, ImageOps
from pydantic import Field

UNLABELLED = "_root"
#: what a file that is not a usable image raises
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class OldDatasetOptions(ganpipe.Options):
    """The keys of ``[data]`` (besides dataset, image_size, channels, holdout)."""

    path: Path = Field(description="the list file, relative to the pipeline.toml")


def read_list(path: Path) -> list[tuple[Path, str]]:
    """(image file, class) per line of the list file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ganpipe.DataError(
            f"data.path: cannot read the list file {path} ({exc}); set data.path to a "
            f"UTF-8 text file with one image path per line"
        ) from None
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        file, _, label = line.partition(",")
        entries.append((path.parent / file.strip(), label.strip() or UNLABELLED))
    if not entries:
        raise ganpipe.DataError(f"data.path: {path} lists no images; add one path per line")
    return entries


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 HWC, ``size`` x ``size``, 1 or 3 channels."""
    with ganpipe.open_image(path) as im:  # PNG/JPEG/WebP/TIFF/BMP/GIF only, by content
        im = ImageOps.exif_transpose(im)
        im = im.convert("L" if channels == 1 else "RGB")
        im = ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


class OldDataset(ganpipe.DatasetSource):
    name = "old-dataset"
    description = "images listed in a text file, one per line (ganpipe-old-dataset)"
    Options = OldDatasetOptions

    def class_names(self, opts: OldDatasetOptions, base_dir: Path) -> list[str]:
        return sorted({label for _, label in read_list(self._list(opts, base_dir))})

    def fingerprint(self, opts: OldDatasetOptions, base_dir: Path) -> str:
        """The list's text and each listed file's size and mtime (nothing decoded)."""
        path = self._list(opts, base_dir)
        h = hashlib.sha256(path.read_bytes())
        for file, _ in read_list(path):
            try:
                st = file.stat()
                h.update(f"{file}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{file}\0missing\n".encode())
        return h.hexdigest()

    def load(
        self, opts: OldDatasetOptions, image_size: int, channels: int, base_dir: Path
    ) -> ganpipe.ImageSet:
        entries = read_list(self._list(opts, base_dir))
        names = sorted({label for _, label in entries})
        images, labels, skipped = [], [], []
        for file, label in entries:
            try:
                images.append(decode(file, image_size, channels))
            except DECODE_ERRORS as exc:
                skipped.append((str(file), f"{type(exc).__name__}: {exc}"))
                continue
            labels.append(names.index(label))
        if not images:
            raise ganpipe.DataError(
                f"data.path: none of the {len(entries)} listed images could be read "
                f"(first: {skipped[0][0]}: {skipped[0][1]})"
            )
        return ganpipe.ImageSet(np.stack(images), np.array(labels), names, skipped)

    @staticmethod
    def _list(opts: OldDatasetOptions, base_dir: Path) -> Path:
        return opts.path if opts.path.is_absolute() else Path(base_dir) / opts.path
