"""What an archive holds, from its central directory only (nothing decompressed): the
image members per class and the members skipped, with why. Shared by the ``zip-info``
command and the report section."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ganpipe_zip.source import ZipOptions, open_archive, scan


@dataclass(frozen=True)
class ArchiveSummary:
    path: Path
    size_bytes: int
    classes: dict[str, int]  # class -> image members, sorted by class
    skipped: list[tuple[str, str]]  # (member, reason)

    @property
    def images(self) -> int:
        return sum(self.classes.values())

    def line(self) -> str:
        skipped = f", {len(self.skipped)} member(s) skipped" if self.skipped else ""
        return f"{self.path}: {self.images} image(s) in {len(self.classes)} class(es){skipped}"

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "images": self.images,
            "classes": self.classes,
            "skipped": [{"member": m, "reason": r} for m, r in self.skipped],
        }


def summarize(path: Path, opts: ZipOptions) -> ArchiveSummary:
    """The summary of the archive at ``path`` read as ``opts`` say (a one-line
    :class:`ganpipe.DataError` when it is not a readable archive)."""
    with open_archive(path) as zf:
        members, skipped = scan(zf, opts, path)
    counts = Counter(m.label for m in members)
    return ArchiveSummary(path, path.stat().st_size, dict(sorted(counts.items())), skipped)
