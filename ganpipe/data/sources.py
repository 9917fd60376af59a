"""Built-in dataset sources: image folders, a procedural "shapes" set and regions of
native-resolution images that super-resolution training draws HR patches from.

Registered through ``ganpipe_register_datasets`` like any third-party source.
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import Field

import ganpipe
from ganpipe.cpus import workers_for
from ganpipe.data.base import ImageSet
from ganpipe.data.imageio import (
    DECODE_ERRORS,
    IMAGE_SUFFIXES,
    describe,
    fit,
    load_image,
    to_array,
)
from ganpipe.errors import DataError
from ganpipe.imaging.formats import open_image
from ganpipe.options import Options

ROOT_CLASS = "_root"


class FolderOptions(Options):
    path: Path = Field(description="folder of images; subfolders are class labels")
    recursive: bool = Field(True, description="also read the images in deeper sub-folders")
    resize: Literal["crop", "stretch"] = Field(
        "crop",
        description="to the square image_size: crop (the centre, aspect kept) or stretch",
    )


def _resolve(path: Path, base_dir: Path) -> Path:
    return path if path.is_absolute() else base_dir / path


def scan_folder(
    root: Path, recursive: bool = True, errors: list[tuple[Path, str]] | None = None
) -> list[Path]:
    """Image files under ``root`` by suffix, sorted, hidden files and folders skipped.
    Sub-folders that cannot be read are skipped and appended to ``errors`` as
    ``(folder, reason)``; ``root`` itself not being readable is a :class:`DataError`."""
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; set data.path to a folder of images")
    if not root.is_dir():
        raise DataError(f"data.path {root} is not a folder; point it to a folder of images")
    try:
        os.listdir(root)
    except OSError as exc:
        raise DataError(
            f"cannot read data folder {root} ({exc.strerror or type(exc).__name__}); fix "
            f"its permissions or set data.path to another folder"
        ) from None
    files, unreadable = [], []

    def onerror(exc: OSError) -> None:
        reason = exc.strerror or type(exc).__name__
        unreadable.append((Path(exc.filename or root), f"cannot read folder: {reason}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if not recursive:
            dirnames[:] = []
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                files.append(Path(dirpath) / name)
    if errors is not None:
        errors.extend(sorted(unreadable))
    return sorted(files)


def _warn_unreadable(folders: list[tuple[Path, str]]) -> None:
    for folder, reason in folders:
        print(f"warning: skipped folder {folder}: {reason}", file=sys.stderr)


def image_files(
    path: Path, base_dir: Path, recursive: bool, errors: list[tuple[Path, str]] | None = None
) -> tuple[Path, list[Path]]:
    """(root, its image files); a clear error when there are none."""
    root = _resolve(path, base_dir)
    files = scan_folder(root, recursive, errors)
    if not files:
        raise DataError(
            f"data folder {root} has no images (looked for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); add images or fix data.path"
        )
    return root, files


def folder_fingerprint(tag: str, opts: Options, base_dir: Path) -> str:
    """Hash of the options and of every image file's name, size and mtime (no decoding)."""
    root, files = image_files(opts.path, base_dir, opts.recursive)
    h = hashlib.sha256(f"{tag} {opts.model_dump_json()}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _label(rel: Path) -> str:
    """The class of an image at ``rel`` (relative to the data folder): its first folder."""
    return rel.parts[0] if len(rel.parts) > 1 else ROOT_CLASS


class FolderDataset:
    name = "folder"
    description = "images in a folder (PNG/JPEG/WebP/TIFF/BMP); subfolder names are labels"
    Options = FolderOptions

    def fingerprint(self, opts: FolderOptions, base_dir: Path) -> str:
        return folder_fingerprint("", opts, base_dir)

    def class_names(self, opts: FolderOptions, base_dir: Path) -> list[str]:
        """The labels ``load`` gives (first-level subfolders), from the file listing."""
        root, files = image_files(opts.path, base_dir, opts.recursive)
        return sorted({_label(f.relative_to(root)) for f in files})

    def load(self, opts: FolderOptions, image_size: int, channels: int, base_dir: Path) -> ImageSet:
        unreadable: list[tuple[Path, str]] = []
        root, files = image_files(opts.path, base_dir, opts.recursive, unreadable)
        _warn_unreadable(unreadable)

        def decode(path: Path):
            try:
                return to_array(fit(load_image(path, channels), image_size, opts.resize)), None
            except DECODE_ERRORS as exc:
                return None, describe(exc)

        with ThreadPoolExecutor(max_workers=workers_for(cap=8)) as pool:
            results = list(pool.map(decode, files))
        images, label_names, skipped = [], [], []
        for path, (arr, err) in zip(files, results, strict=True):
            if err is not None:
                skipped.append((str(path), err))
                continue
            rel = path.relative_to(root)
            images.append(arr)
            label_names.append(_label(rel))
        if skipped:
            print(
                f"warning: skipped {len(skipped)} unreadable image(s) of {len(files)} in "
                f"{root} (first: {skipped[0][0]}: {skipped[0][1]})",
                file=sys.stderr,
            )
        if not images:
            raise DataError(
                f"data folder {root}: none of the {len(files)} image files could "
                f"be read (first error: {skipped[0][1]})"
            )
        class_names = sorted(set(label_names))
        index = {n: i for i, n in enumerate(class_names)}
        return ImageSet(
            np.stack(images), np.array([index[n] for n in label_names]), class_names, skipped
        )


SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring")


class ShapesOptions(Options):
    count: int = Field(512, ge=1, le=1_000_000, description="number of images")
    classes: int = Field(4, ge=1, le=len(SHAPES), description="number of shape classes")
    seed: int = Field(0, description="seed of the generator (independent of run.seed)")


def draw_shape(kind: str, size: int, rng: np.random.Generator, channels: int) -> np.ndarray:
    """One image of a coloured ``kind`` shape on a dark random background."""
    scale = 4  # draw large then downsample: anti-aliased edges
    s = size * scale
    bg = tuple(int(v) for v in rng.integers(0, 70, 3))
    fg = tuple(int(v) for v in rng.integers(120, 256, 3))
    im = Image.new("RGB", (s, s), bg)
    d = ImageDraw.Draw(im)
    r = s * rng.uniform(0.22, 0.38)
    cx, cy = (s / 2 + rng.uniform(-0.12, 0.12) * s for _ in range(2))
    box = (cx - r, cy - r, cx + r, cy + r)
    w = max(1, int(r * 0.45))
    if kind == "circle":
        d.ellipse(box, fill=fg)
    elif kind == "square":
        d.rectangle(box, fill=fg)
    elif kind == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif kind == "cross":
        d.rectangle((cx - r, cy - w / 2, cx + r, cy + w / 2), fill=fg)
        d.rectangle((cx - w / 2, cy - r, cx + w / 2, cy + r), fill=fg)
    elif kind == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fg)
    elif kind == "ring":
        d.ellipse(box, outline=fg, width=w)
    im = im.resize((size, size), Image.Resampling.LANCZOS)
    return to_array(im.convert("L" if channels == 1 else "RGB"))


class ShapesDataset:
    name = "shapes"
    description = "procedural coloured shapes, one class per shape (no download)"
    Options = ShapesOptions

    def fingerprint(self, opts: ShapesOptions, base_dir: Path) -> str:
        return hashlib.sha256(f"shapes-v1 {opts.model_dump_json()}".encode()).hexdigest()

    def class_names(self, opts: ShapesOptions, base_dir: Path) -> list[str]:
        return list(SHAPES[: opts.classes])

    def load(self, opts: ShapesOptions, image_size: int, channels: int, base_dir: Path) -> ImageSet:
        rng = np.random.default_rng(opts.seed)
        labels = np.arange(opts.count) % opts.classes
        rng.shuffle(labels)
        images = np.stack([draw_shape(SHAPES[k], image_size, rng, channels) for k in labels])
        return ImageSet(images, labels, list(SHAPES[: opts.classes]))


class PatchesOptions(Options):
    path: Path = Field(description="folder of images at native resolution (not resized)")
    recursive: bool = Field(True, description="also read the images in sub-folders")
    per_image: int = Field(
        8,
        ge=1,
        le=100_000,
        description="regions kept of each photo, at most (distinct cells of a grid over it)",
    )
    region: int = Field(
        0,
        ge=0,
        description="side (px) of the regions kept: every training step draws a new "
        "data.image_size patch from one; 0: 4 x data.image_size (BasicSR crops 128 px "
        "patches from 480 px sub-images); lowered to the smallest photo's shorter side",
    )
    seed: int = Field(0, description="seed of the regions chosen (independent of run.seed)")


def region_size(opts: PatchesOptions, image_size: int) -> int:
    """The side of the regions ``opts`` asks for (before the smallest photo lowers it)."""
    return opts.region or 4 * image_size


def grid(length: int, size: int) -> list[int]:
    """Starts of ``size`` windows along ``length`` (>= size): one every ``size`` pixels and
    the last one against the border, so that they cover it (BasicSR's sub-images)."""
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def _shorter_side(path: Path) -> int | None:
    try:
        with open_image(path) as im:
            return min(im.size)
    except Exception:  # noqa: BLE001 - said when the file is decoded
        return None


class PatchesDataset:
    """Regions of native-resolution photos, for super-resolution: training draws a new
    ``data.image_size`` HR patch of a region at every step, with flips and rotations
    (:mod:`ganpipe.training.patches`; the variant makes the LR input of each patch).

    Each photo keeps at most ``per_image`` square regions of ``region`` px, cells of a grid
    that covers it (chosen by (seed, file index) when there are more): the set takes at
    most files x per_image x region^2 x channels bytes, whatever the photos' size. Regions
    are one size, at most the shorter side of the smallest photo; photos smaller than a
    patch are skipped. Each region carries its file's index (``ImageSet.groups``), so
    ``data.holdout`` holds out whole photos."""

    name = "patches"
    description = (
        "regions of native-resolution images, a new HR patch (data.image_size) of one "
        "every step, for SR"
    )
    Options = PatchesOptions

    def fingerprint(self, opts: PatchesOptions, base_dir: Path) -> str:
        return folder_fingerprint("patches-v2", opts, base_dir)

    def class_names(self, opts: PatchesOptions, base_dir: Path) -> list[str]:
        return [ROOT_CLASS]

    def load(
        self, opts: PatchesOptions, image_size: int, channels: int, base_dir: Path
    ) -> ImageSet:
        p = image_size
        if opts.region and opts.region < p:
            raise DataError(
                f"data.region = {opts.region} is smaller than the {p} px patch "
                f"(data.image_size); set it to {p} or more, or to 0 ({4 * p})"
            )
        unreadable: list[tuple[Path, str]] = []
        root, files = image_files(opts.path, base_dir, opts.recursive, unreadable)
        _warn_unreadable(unreadable)
        workers = workers_for(cap=8)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            sides = list(pool.map(_shorter_side, files))
        usable = [(s, f) for s, f in zip(sides, files, strict=True) if s is not None and s >= p]
        want = region_size(opts, p)
        size = min([want] + [s for s, _ in usable])
        if size < want:
            side, small = min(usable, key=lambda t: t[0])
            print(
                f"warning: data.region {want} -> {size} px: the regions of all photos are "
                f"one size, at most the shorter side of the smallest photo ({small}, "
                f"{side} px); without it they would be larger",
                file=sys.stderr,
            )

        def regions(item: tuple[int, Path]):
            i, path = item
            try:
                im = load_image(path, channels)
            except DECODE_ERRORS as exc:
                return None, describe(exc)
            w, h = im.size
            if w < p or h < p:
                return None, f"{w}x{h} is smaller than the {p}x{p} patch (data.image_size)"
            if w < size or h < size:
                return None, f"{w}x{h} is smaller than the {size} px regions (data.region)"
            cells = [(y, x) for y in grid(h, size) for x in grid(w, size)]
            if len(cells) > opts.per_image:
                rng = np.random.default_rng([opts.seed, i])
                cells = [cells[k] for k in sorted(rng.choice(len(cells), opts.per_image, False))]
            return [to_array(im.crop((x, y, x + size, y + size))) for y, x in cells], None

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(regions, enumerate(files)))
        kept, groups, skipped = [], [], []
        for i, (path, (arrs, err)) in enumerate(zip(files, results, strict=True)):
            if err is not None:
                skipped.append((str(path), err))
            else:
                kept.extend(arrs)
                groups.extend([i] * len(arrs))
        if skipped:
            print(
                f"warning: skipped {len(skipped)} image(s) of {len(files)} in {root} "
                f"(first: {skipped[0][0]}: {skipped[0][1]})",
                file=sys.stderr,
            )
        if not kept:
            raise DataError(
                f"data folder {root}: no patches from the {len(files)} image "
                f"file(s) (first problem: {skipped[0][1]})"
            )
        return ImageSet(
            np.stack(kept),
            np.zeros(len(kept), dtype=np.int64),
            [ROOT_CLASS],
            skipped,
            groups=np.array(groups),
            patch_size=p,
        )


@ganpipe.hookimpl
def ganpipe_register_datasets(register):
    register(FolderDataset())
    register(ShapesDataset())
    register(PatchesDataset())
