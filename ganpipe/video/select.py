"""Which inputs of a batch are videos, and the names of their outputs (for
:func:`ganpipe.upscale.plan.plan_jobs`).

A file is taken as a video by name (a video suffix: ``.mp4``, ``.mkv``, ``.webm``,
``.mov``...; one that FFmpeg cannot read then fails with the reason, like a damaged image)
or by content: a file named as an image whose content is not an image but a video (an
MP4 saved as ``clip.png``), and with ``--all-files`` any file FFmpeg reads as a video.
Only those candidates are opened with FFmpeg, so a folder of pictures never loads it.

A video's output keeps its container: ``OUT/<name><suffix>.<ext>`` with the source's own
extension where it names the container, else the container's usual one (``clip.png``
holding an MP4 becomes ``clip.mp4``); with ``--frames DIR``: the folder
``DIR/<name><suffix>/`` of PNG frames.
"""

from __future__ import annotations

from pathlib import Path

from ganpipe.imaging.sniff import NOT_IMAGE, NOT_IMAGE_BY_NAME
from ganpipe.video.probe import VIDEO_SUFFIXES, container_suffix, is_video

__all__ = ["VIDEO", "is_video_input", "is_video_output", "split_videos", "video_output"]

#: the ``fmt`` of a video's :class:`~ganpipe.upscale.plan.Job`
VIDEO = "VIDEO"


def split_videos(
    listed: list[tuple[Path, str | None]], ignored: list[tuple[Path, str]]
) -> tuple[list[tuple[Path, str | None]], list[tuple[Path, str]], list[Path]]:
    """``(images, still_ignored, videos)`` from a folder's scan (see the module
    docstring): the listed files that are videos by content, and the ignored ones that are
    videos by name or (ignored as not an image by content: ``--all-files``) by content."""
    images, videos = [], []
    for path, fmt in listed:
        if fmt is None and is_video(path):
            videos.append(path)
        else:
            images.append((path, fmt))
    rest = []
    for path, reason in ignored:
        by_name = reason == NOT_IMAGE_BY_NAME and path.suffix.lower() in VIDEO_SUFFIXES
        if by_name or (reason == NOT_IMAGE and is_video(path)):
            videos.append(path)
        else:
            rest.append((path, reason))
    return images, rest, videos


def is_video_input(path: Path, sniffed: str | None) -> bool:
    """Whether the single input file ``path`` (its image format by content: ``sniffed``)
    is a video: by name, or by content where it is no image."""
    if sniffed is not None:
        return False
    return path.suffix.lower() in VIDEO_SUFFIXES or is_video(path)


def is_video_output(out: Path) -> bool:
    """Whether ``-o`` names an output video file (a video suffix, not a folder)."""
    return out.suffix.lower() in VIDEO_SUFFIXES and not out.is_dir()


def video_output(src: Path, rel: Path, out: Path, suffix: str, frames: Path | None) -> Path:
    """The output of the video ``src`` (``rel``: its path under the input folder)."""
    if frames is not None:
        return frames / rel.parent / f"{rel.stem}{suffix}"
    ext = src.suffix if src.suffix.lower() in VIDEO_SUFFIXES else None
    if ext is None:
        try:
            import av

            with av.open(str(src)) as container:
                ext = container_suffix(container.format.name, src)
        except Exception:  # noqa: BLE001 - unreadable: it fails later, with the reason
            ext = ".mkv"
    return out / rel.parent / f"{rel.stem}{suffix}{ext}"
