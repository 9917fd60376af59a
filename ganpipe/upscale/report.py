"""The per-file record of a batch (``--report FILE``, and the Ray engine's manifest), defined
once: :class:`FileRecord`, written by :class:`ReportWriter` and read by :func:`load_report`.

One record per input entry: ``written``, ``skipped`` (its output exists, with
``--skip-existing``), ``failed`` (with the reason) or ``ignored`` (not an image by name, or
by content with ``--all-files``; hidden files). Sizes are bytes and pixels (width, height:
the input as decoded, upright; the output as written), ``megapixels`` the input's, and
``seconds`` the time spent on the file (decode + upscale + encode, not the waits between).

The writer journals each record as a JSON line to ``FILE.part`` (flushed per line), so a
killed run leaves a valid prefix there (:func:`load_report` reads it; a half-written last
line is dropped). At the end ``FILE`` is written atomically in input order - JSON lines
for ``.jsonl``, one JSON array for ``.json`` - and the journal is removed. A report never
replaces an input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from ganpipe.errors import ConfigError
from ganpipe.fsutil import write_bytes

__all__ = ["OUTCOMES", "FileRecord", "ReportWriter", "load_report"]

Outcome = Literal["written", "skipped", "failed", "ignored"]
OUTCOMES: tuple[str, ...] = ("written", "skipped", "failed", "ignored")
#: the report file name suffixes
SUFFIXES = (".jsonl", ".json")
#: what the journal of a report in progress is called: ``FILE`` + this
PART = ".part"


@dataclass(frozen=True)
class FileRecord:
    """What happened to one input (see the module docstring)."""

    path: str
    outcome: Outcome
    reason: str = ""
    output: str | None = None
    input_bytes: int | None = None
    input_width: int | None = None
    input_height: int | None = None
    output_bytes: int | None = None
    output_width: int | None = None
    output_height: int | None = None
    megapixels: float | None = None
    seconds: float | None = None
    warnings: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r}: expected one of {', '.join(OUTCOMES)}")
        object.__setattr__(self, "warnings", tuple(self.warnings))
        # rounded once here, so that a record read back equals the one written
        if self.seconds is not None:
            object.__setattr__(self, "seconds", round(float(self.seconds), 4))
        if self.megapixels is not None:
            object.__setattr__(self, "megapixels", round(float(self.megapixels), 6))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return out

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | dict[str, Any]) -> FileRecord:
        """A record from :meth:`to_json`'s text (or its dict); unknown keys (a newer
        writer's) are ignored, missing optional ones take their defaults."""
        obj = json.loads(data) if isinstance(data, str) else dict(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})


def part_path(path: str | os.PathLike) -> Path:
    """Where the journal of the report ``path`` is kept while the run is going."""
    path = Path(path)
    return path.with_name(path.name + PART)


def check_report_path(path: str | os.PathLike, inputs: Iterable[Path] = ()) -> Path:
    """``path`` if it can be a report: a ``.json`` / ``.jsonl`` name that is none of
    ``inputs`` (resolved); a one-line :class:`ConfigError` otherwise."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(
            f"--report {path}: use a .jsonl (JSON lines) or .json (one array) file name"
        )
    if path.is_dir():
        raise ConfigError(f"--report {path} is a folder; give a file name, e.g. report.jsonl")
    taken = {p.resolve() for p in inputs}
    for candidate in (path, part_path(path)):
        if candidate.resolve() in taken:
            raise ConfigError(
                f"--report {path}: {candidate} is an input of this run; write the report "
                f"elsewhere (e.g. next to the output folder)"
            )
    return path


class ReportWriter:
    """Journal records as they come (:meth:`add`), write the report at :meth:`close`. Use
    as a context manager: on an exception the journal is left as it is (a valid prefix)."""

    def __init__(self, path: str | os.PathLike, inputs: Iterable[Path] = ()):
        self.path = check_report_path(path, inputs)
        self.part = part_path(self.path)
        self.records: list[FileRecord] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.part, "w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"--report {self.path}: cannot write there ({exc.strerror or exc}); choose "
                f"another place"
            ) from None

    def add(self, record: FileRecord) -> None:
        self.records.append(record)
        if self._fh is not None:
            self._fh.write(record.to_json() + "\n")
            self._fh.flush()

    def extend(self, records: Iterable[FileRecord]) -> None:
        for record in records:
            self.add(record)

    def close(self) -> Path:
        """Write the report atomically, records sorted by path (the input order), and
        remove the journal."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        records = sorted(self.records, key=lambda r: r.path)
        if self.path.suffix.lower() == ".json":
            body = json.dumps([r.to_dict() for r in records], ensure_ascii=False, indent=1)
        else:
            body = "".join(r.to_json() + "\n" for r in records)
        write_bytes(self.path, (body + ("\n" if body and not body.endswith("\n") else "")).encode())
        try:
            self.part.unlink()
        except OSError:
            pass
        return self.path

    def abandon(self) -> None:
        """Stop journaling; ``FILE.part`` stays (what was done before the failure)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()


def _lines(text: str) -> Iterator[dict[str, Any]]:
    rows = text.splitlines()
    for i, row in enumerate(rows):
        if not row.strip():
            continue
        try:
            yield json.loads(row)
        except json.JSONDecodeError:
            if i == len(rows) - 1:  # the line a killed run was writing
                return
            raise


def load_report(path: str | os.PathLike) -> list[FileRecord]:
    """The records of a report (``.jsonl``, ``.json``, or the ``.part`` journal of a run
    that did not finish); a one-line :class:`ConfigError` for a file that is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read report {path} ({exc.strerror or exc})") from None
    try:
        if text.lstrip().startswith("["):
            rows: Iterable[dict[str, Any]] = json.loads(text)
        else:
            rows = list(_lines(text))
        return [FileRecord.from_json(row) for row in rows]
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path} is not a ganpipe upscale report ({exc})") from None
