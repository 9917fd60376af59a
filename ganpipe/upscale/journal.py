"""The journal of a report in progress (``FILE.part`` of ``--report FILE``): made safely
next to user data, kept valid on a full disk, and resumed from after an interruption.

**Format.** A header line ``{"ganpipe":"upscale-journal","version":1,"batch":KEY}``, then
one :class:`~ganpipe.upscale.report.FileRecord` per line as files finish. ``KEY``
(:func:`batch_key`) identifies the batch: the input and output folders and every option
that changes the outputs (model files by path, size and time; not ``--report``,
``--workers``, ``--skip-existing``, ``--timeout`` or the engine; options at their defaults
are left out, so an option a later version adds does not change it), so a journal is only
resumed by the command that made it.

**Never through a link, never over someone else's file.** The journal is built under a
temporary name (created exclusively, :func:`ganpipe.fsutil.temp_sibling`) and moved to
``FILE.part`` without replacing anything there (:func:`ganpipe.fsutil.rename_noreplace`),
or over a journal that this module read and recognised by its header. Anything else at
``FILE.part`` - a symbolic link, a folder, a file without the header - is refused in one
line naming it, before anything is written.

**Resuming.** A journal of the same batch left by an interrupted run lists the files it
finished: :func:`carried_over` keeps those whose output is still there, as large as
recorded, and newer than its unchanged input; the new journal starts with their records
and the run does only the rest. A journal of another batch is started over (said once).

**Full disk.** A line that cannot be written is cut off again (the journal stays a valid
prefix), journaling stops and :meth:`Journal.add` returns the one-line
:class:`~ganpipe.errors.WriteError`; the records are still kept in memory for the report.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ganpipe.errors import ConfigError, WriteError
from ganpipe.fsutil import rename_noreplace, shown, temp_sibling, write_error
from ganpipe.upscale.report import JOURNAL, json_line

if TYPE_CHECKING:
    from ganpipe.upscale.options import UpscaleOptions
    from ganpipe.upscale.plan import Job
    from ganpipe.upscale.report import FileRecord

__all__ = ["Journal", "batch_key", "carried_over", "read_journal"]

KIND, VERSION = JOURNAL, 1
#: options that do not change what a batch writes (a re-run may change them and resume)
NOT_OUTPUT = {
    *("report", "verbose", "workers", "skip_existing", "timeout"),
    *("engine", "ray_address", "actors"),
}
#: the longest header line read to recognise a journal
MAX_HEADER = 4096


def header(batch: str) -> str:
    return json_line({"ganpipe": KIND, "version": VERSION, "batch": batch})


def is_header(row: object) -> bool:
    return isinstance(row, dict) and row.get("ganpipe") == KIND


def _stat_line(path: Path) -> list:
    try:
        st = path.stat()
    except OSError as exc:
        return [os.fspath(path.absolute()), type(exc).__name__]
    return [os.fspath(path.absolute()), st.st_size, st.st_mtime_ns]


def batch_key(src: str | os.PathLike, out_dir: str | os.PathLike, opts: UpscaleOptions) -> str:
    """What identifies a batch (see the module docstring), as a hex digest."""
    data = {
        "input": os.fspath(Path(src).absolute()),
        "output": os.fspath(Path(out_dir).absolute()),
        "options": opts.model_dump(mode="json", exclude=NOT_OUTPUT, exclude_defaults=True),
        "models": [_stat_line(Path(m)) for m in opts.model],
    }
    return hashlib.sha256(json_line(data).encode()).hexdigest()


def _refuse(report: Path, part: Path, what: str) -> ConfigError:
    return ConfigError(
        f"--report {shown(report)}: {shown(part)} {what}, and ganpipe did not make it; "
        f"remove it or choose another report name"
    )


def read_journal(report: Path, part: Path) -> tuple[str, str] | None:
    """The batch key of the journal at ``part`` and the text of its records (None:
    nothing there). Opened without following a link; a one-line :class:`ConfigError`
    for anything that does not start with a journal's header."""
    try:
        fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(report, part, "is a symbolic link") from None
        raise ConfigError(
            f"--report {shown(report)}: cannot read {shown(part)} ({exc.strerror}); remove "
            f"it or choose another report name"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(report, part, "is not a regular file")
        with open(fd, "rb", closefd=False) as fh:
            first = fh.readline(MAX_HEADER)  # only ganpipe's own file is read further
            try:
                head = json.loads(first.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                head = None
            if not is_header(head):
                raise _refuse(report, part, "exists but is not a report journal")
            data = fh.read()
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(report, part, "holds lines that are not report records") from None
    return str(head.get("batch", "")), text


def _same_size(path: Path, size: int | None) -> os.stat_result | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st if size is None or st.st_size == size else None


def carried_over(previous: Iterable[FileRecord], jobs: Iterable[Job]) -> dict[str, FileRecord]:
    """The jobs an interrupted run of the same batch finished, by input path, with their
    records: written to the same output, which is still there with the size recorded and
    not older than its input, whose size is unchanged. Everything else is done again."""
    done = {r.path: r for r in previous if r.outcome == "written" and r.output}
    kept: dict[str, FileRecord] = {}
    for job in jobs:
        record = done.get(str(job.src))
        if record is None or record.output != str(job.dst):
            continue
        out = _same_size(job.dst, record.output_bytes)
        src = _same_size(job.src, record.input_bytes)
        if out is not None and src is not None and src.st_mtime_ns <= out.st_mtime_ns:
            kept[record.path] = record
    return kept


class Journal:
    """The journal file, open for appending (see the module docstring). :meth:`start`
    makes it; ``replace``: the existing journal was read by :func:`read_journal`."""

    def __init__(self, part: Path, fd: int | None, size: int):
        self.part, self._fd, self.size = part, fd, size
        self.error: WriteError | None = None
        self.lines = 0  # records in the file

    @classmethod
    def start(cls, part: Path, batch: str, lines: Iterable[str], replace: bool) -> Journal:
        """A new journal at ``part``: the header and ``lines`` (the records carried over
        from an interrupted run). :class:`WriteError` when it cannot be made at all."""
        body = "".join(line + "\n" for line in [header(batch), *lines])
        data = body.encode("utf-8")
        try:
            tmp = temp_sibling(part)
        except OSError as exc:
            raise write_error(part, exc, "report journal") from None
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise write_error(part, exc, "report journal") from None
        try:
            _write_all(fd, data)
            if replace:
                os.replace(tmp, part)  # the journal read and recognised just before
            else:
                rename_noreplace(tmp, part)
        except FileExistsError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise ConfigError(
                f"--report: {shown(part)} appeared while starting; remove it or choose "
                f"another report name"
            ) from None
        except OSError as exc:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise write_error(part, exc, "report journal") from None
        journal = cls(part, fd, len(data))
        journal.lines = body.count("\n") - 1
        return journal

    def add(self, line: str) -> WriteError | None:
        """Append ``line`` (a record's JSON); returns the error the first time a write
        fails (journaling stops then; the file keeps its whole lines)."""
        if self._fd is None or self.error is not None:
            return None
        data = (line + "\n").encode("utf-8")
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)  # drop a part-written line
            self.error = write_error(self.part, exc, "report journal")
            return self.error
        self.size += len(data)
        self.lines += 1
        return None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            self.part.unlink()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]
