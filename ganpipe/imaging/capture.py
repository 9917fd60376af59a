"""What decoders and encoders say about a file, captured for that file instead of printed.

Three channels reach the terminal while a batch reads and writes images:

* **Python warnings** (Pillow's ``UserWarning``: corrupt EXIF, truncated reads, huge text
  chunks; ``DecompressionBombWarning``). ``warnings.catch_warnings`` swaps process-wide
  state and is not thread-safe, so :func:`install` replaces ``warnings.showwarning`` once
  with a router: in a thread inside :func:`collecting`, a warning becomes a note of that
  thread's file; elsewhere it goes where it went before (dropped, for decoder warnings,
  after :func:`quiet_decoder_warnings`).
* **Log records** of ``tifffile`` and ``imagecodecs`` (WARNING and above): a logger filter
  routes them the same way, so they are not printed inside :func:`collecting`, and reach
  the handlers an application configured outside it.
* **C libraries** writing to file descriptor 2 (libtiff's ``TIFFFillStrip: Read error...``
  through Pillow's TIFF decoder). :func:`native_stderr` points fd 2 at a temporary file
  around such a call, under one process-wide lock, so one file's messages are never
  attributed to another: only TIFF decoding and encoding (the calls that reach libtiff)
  are serialised this way; the other formats decode in parallel. ganpipe's own lines
  written meanwhile wait for the lock (:func:`stderr_lock`) so they are not captured.
  ONNX Runtime's log lines (coloured, with a time stamp and a source location) are
  captured the same way where a model is loaded (:mod:`ganpipe.inference.ortlog`).

Notes are one line each, deduplicated per file, at most :data:`MAX_NOTES` per file. Terminal
colour codes are removed, and ONNX Runtime's prefix (time, severity, source file) becomes
``onnxruntime:`` (:func:`plain`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator

__all__ = [
    "collecting",
    "install",
    "native_stderr",
    "note",
    "plain",
    "quiet_decoder_warnings",
    "stderr_lock",
    "try_stderr_lock",
]

#: notes kept per file (a damaged file can make a decoder repeat itself)
MAX_NOTES = 20
#: characters kept per note
MAX_NOTE = 300
#: loggers whose records are captured
LOGGERS = ("tifffile", "imagecodecs", "PIL")

_local = threading.local()
_install_lock = threading.Lock()
#: held while fd 2 points elsewhere; ganpipe's own stderr lines take it too
_FD2 = threading.RLock()
_state = {"original": None, "quiet": False}


def _current() -> list[str] | None:
    return getattr(_local, "notes", None)


#: terminal control sequences (colours) that C libraries put around their lines
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
#: ONNX Runtime's log prefix: "2026-01-02 10:11:12.345 [E:onnxruntime:, file.cc:677 Func] "
_ORT_PREFIX = re.compile(r"^\S+ \S+ \[[VIWEF]:onnxruntime:[^\]]*\]\s*")


def plain(text: str) -> str:
    """``text`` as one plain line: colour codes removed, whitespace collapsed, ONNX
    Runtime's time stamp and source location replaced by ``onnxruntime:``."""
    line = " ".join(_ANSI.sub("", str(text)).split())
    return _ORT_PREFIX.sub("onnxruntime: ", line)


def note(text: str, notes: list[str] | None = None) -> None:
    """Add one line to ``notes`` (default: the current thread's file, if any)."""
    notes = _current() if notes is None else notes
    if notes is None:
        return
    line = plain(text)[:MAX_NOTE]
    if line and line not in notes and len(notes) < MAX_NOTES:
        notes.append(line)


def _is_decoder(category: type[Warning], filename: str) -> bool:
    """A warning a decoder raises about a damaged or unusual file."""
    from PIL import Image

    if issubclass(category, Image.DecompressionBombWarning):
        return True
    parts = filename.replace("\\", "/").split("/")
    return issubclass(category, UserWarning) and ("PIL" in parts or "tifffile" in parts)


def _showwarning(message, category, filename, lineno, file=None, line=None):
    notes = _current()
    if notes is not None:
        note(f"{category.__name__}: {message}", notes)
        return
    if _state["quiet"] and _is_decoder(category, str(filename)):
        return
    original = _state["original"] or warnings._showwarning_orig  # type: ignore[attr-defined]
    original(message, category, filename, lineno, file, line)


class _Route(logging.Filter):
    """Inside :func:`collecting`: the record becomes a note and goes no further."""

    def filter(self, record: logging.LogRecord) -> bool:
        notes = _current()
        if notes is None or record.levelno < logging.WARNING:
            return True
        note(f"{record.name}: {record.getMessage()}", notes)
        return False


_ROUTE = _Route()


def install() -> None:
    """Route warnings and log records to the collecting thread's file (idempotent; again
    after a ``catch_warnings`` block restored ``warnings.showwarning``)."""
    if warnings.showwarning is _showwarning:
        return
    with _install_lock:
        if warnings.showwarning is not _showwarning:
            _state["original"] = warnings.showwarning
            warnings.showwarning = _showwarning
        for name in LOGGERS:
            log = logging.getLogger(name)
            if _ROUTE not in log.filters:
                log.addFilter(_ROUTE)
            if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
                log.addHandler(logging.NullHandler())  # no "last resort" printing


def quiet_decoder_warnings() -> None:
    """What batch commands call once: every file's decoder warnings are captured for it
    (``always``, so the second file with the same problem is told too), and outside
    :func:`collecting` decoder warnings are dropped rather than printed."""
    from PIL import Image

    install()
    _state["quiet"] = True
    for module in (r"PIL\.", r"tifffile"):
        warnings.filterwarnings("always", category=UserWarning, module=module)
    warnings.filterwarnings("always", category=Image.DecompressionBombWarning)


@contextlib.contextmanager
def collecting(notes: list[str] | None = None) -> Iterator[list[str]]:
    """Collect this thread's warnings, log records and (inside :func:`native_stderr`) C
    messages into ``notes`` (a new list by default), which is yielded."""
    install()
    notes = [] if notes is None else notes
    previous = _current()
    _local.notes = notes
    try:
        yield notes
    finally:
        _local.notes = previous


def stderr_lock() -> contextlib.AbstractContextManager:
    """Hold while writing ganpipe's own lines to stderr during a batch, so that they are
    not captured as a file's messages."""
    return _FD2


def try_stderr_lock() -> bool:
    """Take :func:`stderr_lock` without waiting; True when taken (then release it:
    ``stderr_lock().release()``)."""
    return _FD2.acquire(blocking=False)


@contextlib.contextmanager
def native_stderr(enabled: bool = True) -> Iterator[None]:
    """Around a call into a C library that prints to fd 2: inside :func:`collecting`, what
    it prints becomes notes of this thread's file (one lock for the process while fd 2 is
    redirected); elsewhere, or with ``enabled`` False, nothing changes."""
    notes = _current()
    if not enabled or notes is None:
        yield
        return
    with _FD2:
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 (a service without a console): nothing to capture
            yield
            return
        tmp = tempfile.TemporaryFile()
        try:
            os.dup2(tmp.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read(1 << 16).decode("utf-8", "replace")
            tmp.close()
            for line in text.splitlines():
                note(line, notes)
