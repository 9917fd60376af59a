"""Images for the run report, inlined as ``data:`` URIs (PNG), so that ``report.html`` is
one self-contained file."""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image

#: images larger than this (either side) are shrunk before they are inlined
MAX_SIDE = 1024


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        arr = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        image = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(image: Image.Image | np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def open_picture(path: Path, max_side: int = MAX_SIDE) -> Image.Image | None:
    """``path`` as an RGB(A) picture no larger than ``max_side``; None when unreadable."""
    from ganpipe.imaging.formats import open_image

    try:
        with open_image(path) as im:  # the allow-list of formats, by content
            im.load()
            pic = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if max(pic.size) > max_side:
        pic.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return pic


def img_tag(
    image: Image.Image | np.ndarray | None,
    alt: str,
    *,
    width: int | None = None,
    css: str = "",
    attrs: str = "",
) -> str:
    """An ``<img>`` with the picture inlined; ``width``: display width in CSS pixels
    (small images are shown pixel-sharp). A missing picture is a short note instead."""
    if image is None:
        return f'<span class="missing">{escape(alt)}: not readable</span>'
    w = image.size[0] if isinstance(image, Image.Image) else image.shape[1]
    shown = width or w
    klass = f"{css} pix".strip() if shown > w else css
    klass_attr = f' class="{klass}"' if klass else ""
    return (
        f'<img src="{data_uri(image)}" alt="{escape(alt)}" width="{shown}"{klass_attr}'
        f"{' ' + attrs if attrs else ''}>"
    )


def display_width(side: int, target: int = 320, most: int = 8) -> int:
    """Width to show an image of ``side`` pixels at: an integer zoom of small images up to
    about ``target`` (pixel-sharp), large images as they are."""
    if side >= target:
        return side
    return side * max(1, min(most, round(target / max(1, side))))
