"""The ``zip`` dataset source: training images read from a .zip archive, never extracted.

Layout of the archive, as for ``dataset = "folder"``: images in top-level folders get the
folder's name as their class (``cats/001.png`` is a cat; ``cats/tabby/002.png`` too, with
``recursive``); images at the top level are in the class ``_root``.

Safety, since archives come from anywhere:

* nothing is written to disk: members are read into memory one at a time and decoded
  from there; their names are only ever split into labels, never joined to a path.
  Names that would be unsafe as paths anywhere (absolute, ``..``, backslashes, drive
  letters, NUL) are skipped and reported; macOS metadata (``__MACOSX/``) and hidden
  files are ignored, as are members that are not images by their suffix;
* a member larger than ``max_member_mb`` (uncompressed, by its header, and again while
  reading) is skipped; an archive with more than ``max_members`` entries is refused;
* Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is kept, and its
  warning threshold counts as an error;
* corrupt, encrypted or undecodable members are skipped, counted and listed in
  ``ImageSet.skipped`` (a warning names how many and the first); no image at all is a
  :class:`ganpipe.DataError`.

The fingerprint is the archive's central directory (names, CRCs, sizes): no member is
decompressed, and a copy of the same archive does not re-run a finished pipeline.
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import ganpipe
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import Field

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
ROOT_CLASS = "_root"
MIB = 1 << 20
#: a member that is not a usable image (or cannot be read from the archive)
MEMBER_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,  # a compression method zipfile lacks
    RuntimeError,  # zipfile: "File ... is encrypted, password required"
)


class ZipOptions(ganpipe.Options):
    """The keys of ``[data]`` besides dataset, image_size, channels and holdout."""

    path: Path = Field(description="the .zip archive, relative to the pipeline.toml")
    recursive: bool = Field(True, description="also images in sub-folders of class folders")
    resize: Literal["crop", "stretch"] = Field(
        "crop", description="crop: centre square, aspect kept; stretch: whole image"
    )
    max_member_mb: float = Field(
        64.0, gt=0, le=4096, description="members larger than this (uncompressed) are skipped"
    )
    max_members: int = Field(
        200_000, ge=1, description="archives with more entries than this are refused"
    )


@dataclass(frozen=True)
class Member:
    info: zipfile.ZipInfo
    label: str


def archive_path(opts: ZipOptions, base_dir: Path) -> Path:
    path = opts.path.expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def open_archive(path: Path) -> zipfile.ZipFile:
    """The archive, or a one-line :class:`ganpipe.DataError` saying what is wrong."""
    if not path.exists():
        raise ganpipe.DataError(
            f"data.path: {path} does not exist; set data.path to a .zip archive of images"
        )
    if path.is_dir():
        raise ganpipe.DataError(
            f'data.path: {path} is a folder; use dataset = "folder" for folders of images'
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ganpipe.DataError(
            f"data.path: {path} is not a readable zip archive ({type(exc).__name__}: {exc})"
        ) from None


def _unsafe(name: str) -> bool:
    parts = name.split("/")
    return (
        name.startswith("/")
        or "\\" in name
        or "\0" in name
        or ".." in parts
        or "" in parts[:-1]
        or (len(parts[0]) >= 2 and parts[0][1] == ":")  # C:...
    )


def scan(
    zf: zipfile.ZipFile, opts: ZipOptions, where: Path
) -> tuple[list[Member], list[tuple[str, str]]]:
    """The image members (by name) and the skipped ones with reasons, from the central
    directory only."""
    infos = zf.infolist()
    if len(infos) > opts.max_members:
        raise ganpipe.DataError(
            f"data.path: {where} has {len(infos)} entries, more than data.max_members = "
            f"{opts.max_members}; raise it if the archive is trusted"
        )
    cap = int(opts.max_member_mb * MIB)
    members, skipped = [], []
    for info in infos:
        name = info.filename
        if info.is_dir():
            continue
        parts = name.split("/")
        if PurePosixPath(parts[-1]).suffix.lower() not in SUFFIXES:
            continue
        if _unsafe(name):
            skipped.append((name, "unsafe member name (absolute, '..' or backslashes): not read"))
            continue
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue  # hidden files, macOS resource forks: not images
        if len(parts) > 2 and not opts.recursive:
            continue
        if info.flag_bits & 0x1:
            skipped.append((name, "encrypted member: not read"))
            continue
        if info.file_size > cap:
            skipped.append(
                (
                    name,
                    f"{info.file_size} bytes uncompressed, over max_member_mb = {opts.max_member_mb}",
                )
            )
            continue
        members.append(Member(info, parts[0] if len(parts) > 1 else ROOT_CLASS))
    members.sort(key=lambda m: m.info.filename)
    return members, skipped


def read_member(zf: zipfile.ZipFile, member: Member, cap: int) -> bytes:
    """The member's bytes, at most ``cap`` of them whatever its header says."""
    with zf.open(member.info) as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"more than {cap} bytes when decompressed; skipped")
    return data


def decode(data: bytes, image_size: int, channels: int, resize: str) -> np.ndarray:
    """One image as uint8 HWC at ``image_size`` with ``channels`` (1 or 3)."""
    with Image.open(io.BytesIO(data)) as im:
        limit = Image.MAX_IMAGE_PIXELS
        if limit and im.width * im.height > limit:
            raise Image.DecompressionBombError(
                f"{im.width}x{im.height} pixels exceed PIL.Image.MAX_IMAGE_PIXELS ({limit})"
            )
        im.load()
        im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")  # transparent pixels on white, as ganpipe's folders
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):  # 16-bit / float: to 8 bits
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    im = im.convert("L" if channels == 1 else "RGB")
    if resize == "stretch":
        im = im.resize((image_size, image_size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    else:
        im = ImageOps.fit(im, (image_size, image_size), Image.Resampling.BICUBIC)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


class ZipSource(ganpipe.DatasetSource):
    name = "zip"
    description = "images in a .zip archive (never extracted); top-level folders are labels"
    Options = ZipOptions

    def class_names(self, opts: ZipOptions, base_dir: Path) -> list[str]:
        """The labels :meth:`load` gives, from the central directory (nothing decoded)."""
        path = archive_path(opts, base_dir)
        with open_archive(path) as zf:
            members, _ = scan(zf, opts, path)
        return sorted({m.label for m in members})

    def fingerprint(self, opts: ZipOptions, base_dir: Path) -> str:
        path = archive_path(opts, base_dir)
        h = hashlib.sha256(f"zip-v1 {opts.model_dump_json()}\n".encode())
        with open_archive(path) as zf:
            members, skipped = scan(zf, opts, path)
        for m in members:
            i = m.info
            h.update(f"{i.filename}\0{i.CRC}\0{i.file_size}\0{i.compress_size}\n".encode())
        for name, _ in skipped:
            h.update(f"skipped\0{name}\n".encode())
        return h.hexdigest()

    def load(
        self, opts: ZipOptions, image_size: int, channels: int, base_dir: Path
    ) -> ganpipe.ImageSet:
        path = archive_path(opts, base_dir)
        cap = int(opts.max_member_mb * MIB)
        images, labels = [], []
        with open_archive(path) as zf:
            members, skipped = scan(zf, opts, path)
            names = sorted({m.label for m in members})
            index = {n: i for i, n in enumerate(names)}
            for m in members:
                try:
                    data = read_member(zf, m, cap)
                    images.append(decode(data, image_size, channels, opts.resize))
                except MEMBER_ERRORS as exc:
                    skipped.append((m.info.filename, f"{type(exc).__name__}: {exc}"))
                    continue
                labels.append(index[m.label])
        if skipped:
            print(
                f"warning: skipped {len(skipped)} member(s) of {path} (first: "
                f"{skipped[0][0]}: {skipped[0][1]})",
                file=sys.stderr,
            )
        if not images:
            first = f" (first problem: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
            raise ganpipe.DataError(
                f"data.path: {path} has no usable images ({len(members)} image members, "
                f"suffixes {', '.join(sorted(SUFFIXES))}){first}"
            )
        return ganpipe.ImageSet(np.stack(images), np.array(labels), names, skipped)
