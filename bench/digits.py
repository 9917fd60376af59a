"""sklearn's handwritten digits as a class-folder image set, for the quality bench and the
floors test (``bench/variant_quality.py``, ``tests/test_variant_floors.py``).

``sklearn.datasets.load_digits`` ships 1,797 images of 8x8 pixels in 17 levels (0-16)
inside the scikit-learn wheel, so nothing is downloaded. :func:`build_digits_folder`
writes them as ``SIZE`` px grayscale PNGs, white ink on black (as MNIST), one subfolder
per digit (``0/`` ... ``9/``), upsampled with bicubic interpolation on float values, so
the strokes are smooth rather than blocky. The output is the same bytes on every call.

Usage: ``python bench/digits.py OUT_DIR [--size 32]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python bench/digits.py`` without an install
    sys.path.insert(0, str(ROOT))

from ganpipe.fsutil import temp_sibling  # noqa: E402

#: written into a finished folder; a folder without it (a killed build) is rebuilt
MARKER = ".digits-complete"


def digits_arrays(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [1797, size, size], labels [1797]): the sklearn digits upsampled
    from 8x8 with bicubic interpolation on float values, 16 -> 255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = []
    for small in digits.images.astype(np.float32) * (255.0 / 16.0):
        big = Image.fromarray(small, mode="F").resize((size, size), Image.Resampling.BICUBIC)
        out.append(np.clip(np.rint(np.asarray(big)), 0, 255).astype(np.uint8))
    return np.stack(out), digits.target.astype(np.int64)


def build_digits_folder(folder: str | os.PathLike, size: int = 32) -> Path:
    """``folder/<digit>/<index>.png`` for every sklearn digit at ``size`` px; returns
    ``folder``. An existing complete folder of that size is kept; the folder appears
    whole or not at all (built next to it, then renamed)."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.is_file() and marker.read_text().strip() == f"size {size}":
        return folder
    images, labels = digits_arrays(size)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(folder, directory=True)
    try:
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            sub = tmp / str(label)
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img, mode="L").save(sub / f"{i:04d}.png")
        (tmp / MARKER).write_text(f"size {size}\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (class subfolders 0..9)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    args = parser.parse_args(argv)
    path = build_digits_folder(args.out, args.size)
    print(f"wrote {path}: 1797 digits of {args.size} px in 10 class folders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
