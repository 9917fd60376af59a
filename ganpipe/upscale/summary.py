"""What a batch did: :class:`UpscaleSummary`, returned by
:func:`~ganpipe.upscale.batch.upscale_path`, and its one-line :meth:`~UpscaleSummary.line`
(what the CLI prints last and the stage records). It says what was not done: failed
files, and a report that could not be written (a full disk)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ganpipe.fsutil import shown
from ganpipe.imaging.sniff import HIDDEN, NON_IMAGE, SUB_FOLDER
from ganpipe.upscale.report import FileRecord

__all__ = ["UpscaleSummary"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


@dataclass
class UpscaleSummary:
    out_dir: Path
    written: list[Path]
    skipped: list[Path]
    failures: list[tuple[Path, str]]
    ignored: int  # non-image files (by name, or by content with all_files)
    providers: list[str]
    scale: float  # the final scale (--outscale, else the model's)
    seconds: float
    megapixels: float  # input megapixels upscaled
    tile: int  # tile size in use at the end (smaller after out-of-memory)
    #: what decoders, libraries and the metadata policy said about files (written or
    #: failed), one line each, in input order
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    #: every entry of the input folder that is not an input, with the reason
    ignored_files: list[tuple[Path, str]] = field(default_factory=list)
    #: one record per entry, in input order
    records: list[FileRecord] = field(default_factory=list)
    report: Path | None = None
    #: files an interrupted run of this batch finished (from the report's journal), kept
    resumed: int = 0
    #: what could not be written besides outputs (the report, on a full disk), short
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every file done (or skipped) and the report written."""
        return not self.failures and not self.problems

    def line(self) -> str:
        rate = len(self.written) / self.seconds if self.seconds > 0 else 0.0
        mps = self.megapixels / self.seconds if self.seconds > 0 else 0.0
        parts = [
            f"upscaled {_plural(len(self.written), 'image')} "
            f"(x{self.scale:g}) to {shown(self.out_dir)} in {self.seconds:.1f}s "
            f"({rate:.2f} img/s, {mps:.2f} MP/s in)"
        ]
        if self.resumed:
            parts.append(f"{self.resumed} done before the interruption (journal)")
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} existing")
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        kinds = Counter(
            "non-image" if r in NON_IMAGE else r for _, r in self.ignored_files
        ) or Counter({"non-image": self.ignored} if self.ignored else {})
        ignored = []
        if kinds["non-image"]:
            ignored.append(_plural(kinds["non-image"], "non-image file"))
        if kinds[HIDDEN]:
            ignored.append(f"{kinds[HIDDEN]} hidden")
        if kinds[SUB_FOLDER]:
            ignored.append(f"{_plural(kinds[SUB_FOLDER], 'sub-folder')} (no --recursive)")
        other = sum(kinds.values()) - kinds["non-image"] - kinds[HIDDEN] - kinds[SUB_FOLDER]
        if other:
            ignored.append(f"{other} other")
        if ignored:
            parts.append("ignored " + ", ".join(ignored))
        warned = len({path for path, _ in self.warnings})
        if warned:
            parts.append(f"{warned} with warnings")
        parts += self.problems
        provider = self.providers[0] if self.providers else "?"
        return "; ".join(parts) + f" [{provider}]"
