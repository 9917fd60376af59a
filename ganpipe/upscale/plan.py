"""Planning a batch: which files to upscale to which outputs.

The input is a file or a folder (``recursive`` keeps the sub-folder tree; files are taken
by name, or by content with ``all_files``: :func:`ganpipe.imaging.sniff.scan_images`, which
also says why each other entry is ignored); outputs get the
input's format (BMP and GIF become PNG) or ``format``, and the input's name plus
``suffix``. An output never overwrites an input, a folder's output folder must not be
inside it, and ``skip_existing`` makes an interrupted batch resumable (outputs are written
atomically, so an existing one is complete). ``shard = "i/n"`` processes the files whose
index in the sorted list is ``i`` modulo ``n``: ``n`` workers split a folder between them.

**Name collisions** (``photo.gif``, ``photo.bmp`` and ``photo.png`` all make ``photo.png``)
are resolved deterministically with ``on_collision = "rename"`` (the default): the source
whose own extension the output has (here ``photo.png``; else the first in sorted order)
keeps the name, and the others keep their source extension too: ``photo.bmp.png``,
``photo.gif.png`` (with ``suffix``: ``photo.gif_x4.png``). ``"refuse"``: those others fail.
A renamed output that still collides, or that is an input, fails: never an overwrite.

**Videos** (by name, or an image name holding a video; any file FFmpeg reads as a video
with ``all_files``) are jobs of format ``"VIDEO"`` whose output keeps the container:
``OUT/<name><suffix>.<ext>``, or a folder of PNG frames with ``frames``
(:mod:`ganpipe.video.select`); the batch hands them to :mod:`ganpipe.video`.

Sub-folders that cannot be read and outputs whose name cannot be made (longer than the
file system's limit) are failures of their own, one line each; the batch goes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganpipe.errors import ConfigError
from ganpipe.fsutil import name_max
from ganpipe.imaging.encode import FORMATS, SUFFIXES
from ganpipe.imaging.sniff import NON_IMAGE, scan_images, sniff_file
from ganpipe.upscale.options import UpscaleOptions, parse_shard, with_overrides
from ganpipe.video.select import (
    VIDEO,
    is_video_input,
    is_video_output,
    split_videos,
    video_output,
)

__all__ = ["Job", "Plan", "output_format", "output_name", "parse_shard", "plan_jobs"]


@dataclass
class Job:
    src: Path
    dst: Path
    fmt: str  # Pillow's format name: PNG, JPEG, WEBP, TIFF


@dataclass
class Plan:
    out_dir: Path
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    skipped_jobs: list[Job] = field(default_factory=list)  # the skipped, with their outputs
    failures: list[tuple[Path, str]] = field(default_factory=list)
    ignored: int = 0  # non-image files among ignored_files
    #: entries of the input folder that are not inputs, with the reason (not an image by
    #: name or by content, hidden, a sub-folder without ``recursive``)
    ignored_files: list[tuple[Path, str]] = field(default_factory=list)


def output_format(src_fmt: str | None, explicit: str | None) -> str:
    """The output's format: ``explicit``, else the source's where it can be written, else
    PNG (BMP, GIF, unknown)."""
    if explicit:
        return explicit
    return src_fmt if src_fmt in SUFFIXES else "PNG"


def output_name(src: Path, fmt: str, suffix: str) -> str:
    """``src``'s name plus ``suffix``, with its own extension where it fits ``fmt``."""
    ext = src.suffix if src.suffix.lower() in SUFFIXES[fmt] else SUFFIXES[fmt][0]
    return f"{src.stem}{suffix}{ext}"


def _rename_collisions(entries: list[tuple[Path, Path, str]], suffix: str) -> None:
    """Give the outputs that share a name (see the module's docstring) the source's
    extension too, in place; the one whose source extension the output has (else the
    first in ``entries``' sorted order) keeps the name."""
    groups: dict[str, list[int]] = {}
    for i, (_, dst, _) in enumerate(entries):
        groups.setdefault(os.path.normcase(str(dst.resolve())), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        own = [
            i for i in members if entries[i][0].suffix.lower() in SUFFIXES.get(entries[i][2], ())
        ]
        keeper = own[0] if own else members[0]
        for i in members:
            if i != keeper:
                path, dst, fmt = entries[i]
                entries[i] = (path, dst.with_name(f"{path.name}{suffix}{dst.suffix}"), fmt)


def _name_limit(out: Path) -> int:
    """The file-name limit (bytes) where the outputs go: of ``out``'s nearest existing
    ancestor (the output folder may not exist yet)."""
    for folder in (out, *out.parents):
        if folder.is_dir():
            return name_max(folder)
    return 255


def plan_jobs(
    src: str | Path, out: str | Path, options: UpscaleOptions | None = None, **overrides: Any
) -> Plan:
    """Which files to upscale to which outputs, with the ``format``, ``suffix``,
    ``recursive``, ``skip_existing`` and ``shard`` of ``options`` (and keyword
    ``overrides`` of them). A file input may have an output file (``out`` with an image
    suffix that is not a folder) or an output folder."""
    opts = with_overrides(options, overrides)
    src, out = Path(src), Path(out)
    explicit = FORMATS[opts.format] if opts.format else None
    suffix, shard = opts.suffix, opts.shard_pair
    if not src.exists():
        raise ConfigError(f"input {src} does not exist; pass an image file or a folder")
    entries: list[tuple[Path, Path, str]] = []
    unreadable: list[tuple[Path, str]] = []
    if src.is_file():
        by_name = next((f for f, sx in SUFFIXES.items() if out.suffix.lower() in sx), None)
        sniffed = sniff_file(src)
        if is_video_input(src, sniffed):  # a video (ganpipe.video.select)
            own = is_video_output(out) and opts.frames is None  # -o clip_x2.mp4
            dst = out if own else video_output(src, Path(src.name), out, suffix, opts.frames)
            entries.append((src, dst, VIDEO))
            out_dir = dst.parent
        elif by_name and not out.is_dir():  # -o photo_x4.png: an output file
            entries.append((src, out, explicit or by_name))
            out_dir = out.parent
        else:
            fmt = output_format(sniffed, explicit)
            entries.append((src, out / output_name(src, fmt, suffix), fmt))
            out_dir = out
        ignored_files = []
        inputs = {src.resolve()}
    elif src.is_dir():
        rin, rout = src.resolve(), out.resolve()
        if rout == rin or rin in rout.parents:
            raise ConfigError(
                f"output folder {out} is inside the input folder {src}; choose "
                f"a folder outside it (outputs would be read as inputs next "
                f"time)"
            )
        try:
            listed, ignored_files = scan_images(
                src, opts.recursive, unreadable, all_files=opts.all_files
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot read input folder {src} ({exc.strerror or type(exc).__name__}); "
                f"fix its permissions or choose another folder"
            ) from None
        listed, ignored_files, videos = split_videos(listed, ignored_files)
        if not listed and not videos and not unreadable:
            where = " or its sub-folders" if opts.recursive else ""
            hint = "" if opts.recursive else " (add --recursive for sub-folders)"
            how = "" if opts.all_files else " by name (--all-files: by content)"
            raise ConfigError(
                f"no images in {src}{where}{hint}; looked for PNG, JPEG, WebP, "
                f"TIFF, BMP and GIF files and videos{how}"
            )
        for path, sniffed in listed:
            fmt = output_format(sniffed, explicit)
            rel = path.relative_to(src)
            entries.append((path, out / rel.parent / output_name(rel, fmt, suffix), fmt))
        for path in videos:
            rel = path.relative_to(src)
            entries.append((path, video_output(path, rel, out, suffix, opts.frames), VIDEO))
        entries.sort(key=lambda entry: entry[0].relative_to(src).as_posix())
        out_dir = out
        inputs = {p.resolve() for p, _ in listed} | {p.resolve() for p in videos}
    else:
        raise ConfigError(f"input {src} is neither a file nor a folder")

    if opts.on_collision == "rename":
        _rename_collisions(entries, suffix)
    plan = Plan(out_dir)
    if shard is None or shard[0] == 0:  # said once, not by every worker
        plan.failures.extend(unreadable)
        plan.ignored_files = ignored_files
        plan.ignored = sum(reason in NON_IMAGE for _, reason in ignored_files)
    claimed: dict[str, Path] = {}
    limit = _name_limit(out_dir)
    for index, (path, dst, fmt) in enumerate(entries):
        key = os.path.normcase(str(dst.resolve()))
        reason = None
        size = len(os.fsencode(dst.name))
        if size > limit:
            reason = (
                f"output name {dst.name[:40]}... is {size} bytes, longer than the file "
                f"system allows ({limit}); use a shorter --suffix or rename the input"
            )
        elif dst.resolve() in inputs:
            reason = (
                f"output {dst} would overwrite an input file; use --suffix, --format "
                f"or another output folder"
            )
        elif key in claimed:
            reason = f"output {dst} is also the output of {claimed[key]}; rename one of them"
        else:
            claimed[key] = path
        if shard and index % shard[1] != shard[0]:
            continue
        if reason:
            plan.failures.append((path, reason))
        elif opts.skip_existing and dst.exists():
            plan.skipped.append(path)
            plan.skipped_jobs.append(Job(path, dst, fmt))
        else:
            plan.jobs.append(Job(path, dst, fmt))
    return plan
