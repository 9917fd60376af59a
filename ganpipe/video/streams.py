"""What an upscaled video carries over from its source besides the pictures: every other
stream (audio, subtitles, data, attachments) copied packet for packet, the container's
metadata and chapters under the metadata policy, and the stream tags.

**Metadata policy** (``--metadata``, as for pictures): ``keep`` copies every container
tag; ``no-gps`` (the default) drops the location tags (``location``, ``location-eng``,
``com.apple.quicktime.location.ISO6709``, and any other tag naming a location or GPS);
``strip`` drops every container tag but the title, and every chapter title. Tags that the
muxer writes itself (``encoder``, ``major_brand``...) are left to it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["add_copied_streams", "container_tags", "kept_chapters", "stream_tags"]

#: tags of a location, in any container (QuickTime, MP4's ©xyz as "location", Matroska)
_LOCATION = re.compile(r"location|gps|iso6709|geo", re.IGNORECASE)
#: tags the muxer writes itself: copied, they would be stale or duplicated
_MUXER_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "creation_time"}
#: stream tags that describe the old encoding, not the stream
_STALE_STREAM_TAGS = {"encoder", "rotate", "duration", "bps", "number_of_frames", "number_of_bytes"}


def container_tags(metadata: dict[str, str], policy: str) -> tuple[dict[str, str], list[str]]:
    """The container tags to write under ``policy``, and a note per kind dropped."""
    kept = {k: v for k, v in metadata.items() if k.lower() not in _MUXER_TAGS}
    notes = []
    if policy == "strip":
        dropped = [k for k in kept if k.lower() != "title"]
        kept = {k: v for k, v in kept.items() if k.lower() == "title"}
        if dropped:
            notes.append(f"metadata stripped (--metadata strip): {', '.join(sorted(dropped))}")
    elif policy == "no-gps":
        dropped = [k for k in kept if _LOCATION.search(k)]
        kept = {k: v for k, v in kept.items() if k not in dropped}
        if dropped:
            notes.append(f"location tags dropped (--metadata no-gps): {', '.join(sorted(dropped))}")
    return kept, notes


def stream_tags(metadata: dict[str, str], policy: str) -> dict[str, str]:
    """A stream's tags to write: its own but the stale ones (and location tags unless
    ``keep``)."""
    out = {}
    for key, value in metadata.items():
        low = key.lower()
        if low in _STALE_STREAM_TAGS or low.startswith("_statistics") or low.startswith("bps-"):
            continue
        if low.startswith(("number_of_", "duration-")) or (
            policy != "keep" and _LOCATION.search(key)
        ):
            continue
        out[key] = value
    return out


def kept_chapters(chapters: list[dict[str, Any]], policy: str) -> list[dict[str, Any]]:
    """The chapters to write: all, without titles under ``strip``."""
    if policy != "strip":
        return chapters
    return [{**c, "metadata": {}} for c in chapters]


def _chapter_track(container: Any, stream: Any) -> bool:
    """Whether ``stream`` is an MP4 / MOV chapter track (a text track the muxer rewrites
    from the chapters)."""
    name = container.format.name
    return (
        stream.type == "data"
        and stream.codec_context is None
        and bool(container.chapters())
        and ("mp4" in name or "mov" in name)
    )


def add_copied_streams(
    container: Any, output: Any, video_index: int, policy: str, data: bool = True
) -> tuple[dict[int, Any], list[str]]:
    """Add to ``output`` a copy of every stream of ``container`` but the upscaled one (its
    codec parameters, tags, language and disposition); returns the input index -> output
    stream map and a note per stream the output container cannot hold (skipped).
    ``data`` False leaves data streams out (where the muxer refused them). MP4 chapter
    tracks are not copied: the chapters are written again."""
    copied: dict[int, Any] = {}
    notes = []
    for stream in container.streams:
        if stream.index == video_index or _chapter_track(container, stream):
            continue
        if stream.type == "data" and not data:
            notes.append(f"stream #{stream.index} (data) not copied: the muxer refused it")
            continue
        try:
            out = output.add_stream_from_template(stream)
        except Exception as exc:  # noqa: BLE001 - the container cannot hold this codec
            name = stream.codec_context.name if stream.codec_context else "?"
            notes.append(f"stream #{stream.index} ({stream.type} {name}) not copied: {exc}")
            continue
        out.metadata.update(stream_tags(dict(stream.metadata), policy))
        try:
            out.disposition = stream.disposition
        except (AttributeError, TypeError, ValueError):
            pass
        copied[stream.index] = out
    return copied, notes
