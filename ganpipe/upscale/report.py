"""The per-file record of a batch (``--report FILE``, and the Ray engine's manifest), defined
once: :class:`FileRecord`, written by :class:`ReportWriter` and read by :func:`load_report`.

One record per input entry: ``written``, ``skipped`` (its output exists, with
``--skip-existing``), ``failed`` (with the reason) or ``ignored`` (not an image by name, or
by content with ``--all-files``; hidden files). Sizes are bytes and pixels (width, height:
the input as decoded, upright; the output as written), ``megapixels`` the input's, and
``seconds`` the time spent on the file (decode + upscale + encode, not the waits between).

**Names that are not UTF-8.** Paths are Python ``str``; a byte of a file name that is not
valid UTF-8 is kept as Python's surrogate escape (byte 0xNN as U+DCNN) and written as the
JSON escape ``\\udcNN`` (:func:`json_line`), so reports are valid UTF-8,
:func:`load_report` gives back the same ``str``, and ``os.fsencode(record.path)`` the
original bytes (``caf\\udce9.png`` for the Latin-1 ``caf\\xe9.png``).

The writer journals each record as a JSON line to ``FILE.part`` after a header line
(:mod:`ganpipe.upscale.journal`: made without following links, never over a file ganpipe
did not make, cut back to whole lines on a full disk, resumed by the same command after an
interruption), so a killed run leaves a valid prefix there (:func:`load_report` reads it;
a half-written last line is dropped). At the end ``FILE`` is written atomically in input
order - JSON lines for ``.jsonl``, one JSON array for ``.json`` - and the journal is
removed. The journal is locked while a batch writes it (:func:`ganpipe.runlock.hold_file`:
a second batch with the same report refuses, naming the first). A report never replaces
an input, a link, or a file that is not a ganpipe report; one that cannot be written (a
full disk) is said in one line and the batch's outputs stand.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ganpipe.errors import ConfigError, WriteError
from ganpipe.fsutil import shown, write_bytes, write_error

if TYPE_CHECKING:
    from ganpipe.upscale.journal import Journal

__all__ = ["OUTCOMES", "FileRecord", "ReportWriter", "load_report"]

Outcome = Literal["written", "skipped", "failed", "ignored"]
OUTCOMES: tuple[str, ...] = ("written", "skipped", "failed", "ignored")
#: the report file name suffixes
SUFFIXES = (".jsonl", ".json")
#: what the journal of a report in progress is called: ``FILE`` + this
PART = ".part"
#: the ``"ganpipe"`` value of a journal's header line
JOURNAL = "upscale-journal"


def json_line(obj: Any, indent: int | None = None) -> str:
    """``obj`` as JSON text, non-ASCII characters as they are (UTF-8 when encoded), except
    the surrogate escapes by which Python keeps the bytes of a name that are not UTF-8
    (byte 0xNN as U+DCNN): those are written as the JSON escape ``\\udcNN``, so the text
    is valid UTF-8, ``json.loads`` gives back the same ``str`` and ``os.fsencode`` of it
    the original bytes. One line unless ``indent``."""
    text = json.dumps(
        obj, ensure_ascii=False, indent=indent, separators=_SEPARATORS[indent is None]
    )
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_SURROGATE = re.compile("[\ud800-\udfff]")
_SEPARATORS = {True: (",", ":"), False: (",", ": ")}


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
    #: videos only: frames written, and the encoder ("png" with --frames)
    frames: int | None = None
    codec: str | None = None

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
        return json_line(self.to_dict())

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


def _is_report(path: Path) -> bool:
    """Whether the existing file ``path`` is a report ganpipe wrote (read without following
    a link; only the start of a large one): empty, an empty array, or starting with a
    record."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        with open(fd, "rb", closefd=False) as fh:
            start = fh.read(1 << 20)
    finally:
        os.close(fd)
    try:
        text = start.decode("utf-8", "ignore").lstrip()
        if text.startswith("["):
            text = text[1:].lstrip()
            if text.startswith("]"):
                return True
            first, _ = json.JSONDecoder().raw_decode(text)
        elif text:
            first = json.loads(text.split("\n", 1)[0])
        else:
            return True
        FileRecord.from_json(first)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def check_report_path(path: str | os.PathLike, inputs: Iterable[Path] = ()) -> Path:
    """``path`` if it can be a report: a ``.json`` / ``.jsonl`` name that is none of
    ``inputs`` (resolved), and, where something is there already, a report ganpipe wrote
    (never a link); a one-line :class:`ConfigError` otherwise."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(
            f"--report {shown(path)}: use a .jsonl (JSON lines) or .json (one array) file name"
        )
    if path.is_dir():
        raise ConfigError(
            f"--report {shown(path)} is a folder; give a file name, e.g. report.jsonl"
        )
    taken = {p.resolve() for p in inputs}
    for candidate in (path, part_path(path)):
        if candidate.resolve() in taken:
            raise ConfigError(
                f"--report {shown(path)}: {shown(candidate)} is an input of this run; write "
                f"the report elsewhere (e.g. next to the output folder)"
            )
    if path.is_symlink():
        raise ConfigError(
            f"--report {shown(path)} is a symbolic link; ganpipe does not replace one: give "
            f"the report's own file name"
        )
    if os.path.lexists(path) and not _is_report(path):
        raise ConfigError(
            f"--report {shown(path)} exists and is not a ganpipe report; choose another "
            f"name or move that file away"
        )
    return path


class ReportWriter:
    """Journal records as they come (:meth:`add`), write the report at :meth:`close`. Use
    as a context manager: on an exception the journal is left as it is (a valid prefix).

    ``batch`` (:func:`~ganpipe.upscale.journal.batch_key`) names the batch: a journal of
    the same batch left by an interrupted run is read into :attr:`previous` and the caller
    hands what it keeps of it to :meth:`start` (else the first :meth:`add` starts an empty
    journal). Write failures never raise: the first is said through ``log`` and kept in
    :attr:`problems` (for the summary); records are kept in memory for the report."""

    def __init__(
        self,
        path: str | os.PathLike,
        inputs: Iterable[Path] = (),
        *,
        batch: str = "",
        log: Callable[[str], Any] | None = None,
    ):
        from ganpipe import runlock
        from ganpipe.upscale.journal import read_journal

        self.path = check_report_path(path, inputs)
        self.part = part_path(self.path)
        self.batch, self.log = batch, log or (lambda _m: None)
        self.records: list[FileRecord] = []
        #: the records of this batch's interrupted run (its journal), if one was left
        self.previous: list[FileRecord] = []
        #: what could not be written, for the summary line
        self.problems: list[str] = []
        self._journal: Journal | None = None
        self._lock = contextlib.ExitStack()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"--report {shown(self.path)}: cannot write there ({exc.strerror or exc}); "
                f"choose another place"
            ) from None
        try:
            self._lock.enter_context(runlock.hold_file(self.path, "report", log=self.log))
        except OSError as exc:  # a full disk may refuse even the lock: the batch goes on
            self.log(f"{write_error(self.path, exc, 'the lock of report')}; going on unlocked")
        try:
            found = read_journal(self.path, self.part)
            self._replace = found is not None
            if found is not None and found[0] == batch and batch:
                self.previous = parse_records(found[1])
            elif found is not None:
                self.log(
                    f"{shown(self.part)}: the journal of an interrupted run of another batch "
                    f"(other input, output or options); starting it over"
                )
        except BaseException:
            self._lock.close()
            raise

    def start(self, carried: Iterable[FileRecord] = ()) -> None:
        """Make the journal, starting with ``carried`` (records of :attr:`previous` the
        batch keeps); they count as records of this report. A journal that cannot be
        made is a problem like a line that cannot be written."""
        from ganpipe.upscale.journal import Journal

        if self._journal is not None:
            return
        carried = list(carried)
        self.records.extend(carried)
        try:
            self._journal = Journal.start(
                self.part, self.batch, [r.to_json() for r in carried], self._replace
            )
        except WriteError as exc:
            self._journal = Journal(self.part, None, 0)  # nothing journaled
            self._journal.error = exc
            self._said(exc)

    def _said(self, exc: WriteError) -> None:
        self.log(f"{exc}; the batch goes on, the report is tried again at the end")

    def add(self, record: FileRecord) -> None:
        if self._journal is None:
            self.start()
        self.records.append(record)
        assert self._journal is not None
        failed = self._journal.add(record.to_json())
        if failed is not None:
            self._said(failed)

    def extend(self, records: Iterable[FileRecord]) -> None:
        for record in records:
            self.add(record)

    def close(self) -> Path | None:
        """Write the report atomically, records sorted by path (the input order), and
        remove the journal; the report's path, or None when it could not be written (said
        in one line through ``log``, kept in :attr:`problems`; the journal stays)."""
        if self._journal is None:
            self.start()
        assert self._journal is not None
        self._journal.close()
        records = sorted(self.records, key=lambda r: r.path)
        if self.path.suffix.lower() == ".json":
            body = json_line([r.to_dict() for r in records], indent=1)
        else:
            body = "".join(r.to_json() + "\n" for r in records)
        if body and not body.endswith("\n"):
            body += "\n"
        try:
            write_bytes(self.path, body.encode(), "report")
        except WriteError as exc:
            kept = self._journal.lines
            where = f"; {shown(self.part)} keeps {kept} of them" if kept else ""
            self.log(f"{exc}; its {len(records)} records are not written{where}")
            reason = os.strerror(exc.errno) if exc.errno else "cannot write it"
            self.problems.append(f"report not written ({reason})")
            self._lock.close()
            return None
        self._journal.remove()
        self._lock.close()
        return self.path

    def abandon(self) -> None:
        """Stop journaling; ``FILE.part`` stays (what was done before the failure)."""
        if self._journal is not None:
            self._journal.close()
        self._lock.close()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()


def _lines(text: str) -> Iterator[dict[str, Any]]:
    # split at "\n" only: str.splitlines would also cut at U+2028, U+0085... which JSON
    # keeps raw inside a name
    rows = text.split("\n")
    last = max((i for i, row in enumerate(rows) if row.strip()), default=-1)
    for i, row in enumerate(rows):
        if not row.strip():
            continue
        try:
            obj = json.loads(row)
        except json.JSONDecodeError:
            if i == last:  # the line a killed run was writing
                return
            raise
        if i == 0 and isinstance(obj, dict) and obj.get("ganpipe") == JOURNAL:
            continue  # a journal's header
        yield obj


def parse_records(text: str) -> list[FileRecord]:
    """The records of a report's text (JSON lines, a journal's included, or one array);
    ``ValueError`` / ``TypeError`` for text that is not one."""
    if text.lstrip().startswith("["):
        rows: Iterable[dict[str, Any]] = json.loads(text)
    else:
        rows = list(_lines(text))
    return [FileRecord.from_json(row) for row in rows]


def load_report(path: str | os.PathLike) -> list[FileRecord]:
    """The records of a report (``.jsonl``, ``.json``, or the ``.part`` journal of a run
    that did not finish); a one-line :class:`ConfigError` for a file that is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read report {shown(path)} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown(path)} is not a ganpipe upscale report (not UTF-8)") from None
    try:
        return parse_records(text)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{shown(path)} is not a ganpipe upscale report ({exc})") from None
