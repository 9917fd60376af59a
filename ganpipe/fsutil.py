"""Atomic file writes: data goes to a temporary name in the same folder, then is renamed
over the final name, so a crash never leaves a half-written file under a final name.

Temporary names are hidden, recognisable and carry the writer's process id and a tag of
its host: ``.<name>.ganpipe-<pid>-<host>-<random>.tmp`` (:func:`temp_sibling`), with
``<name>`` shortened so that the whole name fits the file system's limit (255 bytes on
most), so a 255-byte final name works. :func:`remove_stale` deletes the ones a killed
process left behind (a pid of this host that no longer runs; another host's after
:data:`STALE_OTHER_HOST` seconds, since its pid cannot be checked from here - shards of
one batch on several machines may share an output folder), and never anything else.

Next to user data nothing is created through a link or over a file ganpipe did not make:
temporary files and folders are created exclusively (``O_EXCL | O_NOFOLLOW``, ``mkdir``)
and set up through their descriptor, and :func:`set_aside` / :func:`rename_noreplace`
never rename onto an existing name. A failed write is a one-line
:class:`~ganpipe.errors.WriteError` naming the file and what to free
(:func:`write_error`), appended logs included (:func:`append_line`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ganpipe.errors import GanpipeError, WriteError

#: the marker of ganpipe's temporary names (before the pid)
MARK = "ganpipe"
#: this host, in 4 hex digits (temporary names of other hosts are judged by age)
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]
_TEMP = re.compile(rf"^\..*\.{MARK}-(\d+)-([0-9a-f]{{4}})-[a-z0-9_]{{8}}\.tmp$", re.DOTALL)
#: names of earlier ganpipe versions: checkpoint folders (with a pid), and files made by
#: ``mkstemp(prefix=".<name>.", suffix=".tmp")`` (no pid: removed when old)
_OLD_CHECKPOINT = re.compile(r"^\.tmp-step_\d{8}-(\d+)$")
_OLD_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$", re.DOTALL)
#: age after which a temporary file without a pid counts as abandoned
STALE_SECONDS = 600
#: age after which another host's temporary file counts as abandoned
STALE_OTHER_HOST = 6 * 3600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name (in bytes) the file system of ``folder`` takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _shorten(name: str, budget: int) -> str:
    """The longest start of ``name`` of at most ``budget`` bytes (never half a character)."""
    out, used = [], 0
    for ch in name:
        size = len(os.fsencode(ch))
        if used + size > budget:
            break
        out.append(ch)
        used += size
    return "".join(out)


def _fixed(pid: int) -> int:
    """Bytes of a temporary name besides the final name: dots, marker, pid, random part
    (8 characters) and suffix."""
    return len(f"..{MARK}-{pid}-{HOST}-") + 8 + len(".tmp")


def temp_sibling(final: str | os.PathLike, directory: bool = False) -> Path:
    """Create (exclusively) and return a temporary file, or folder, next to ``final``:
    ``.<name>.ganpipe-<pid>-<host>-<random>.tmp``, ``<name>`` shortened to fit the file
    system's name limit. Its permissions follow the umask, like the final file's."""
    final = Path(final)
    folder = final.parent
    pid = os.getpid()
    prefix = f".{_shorten(final.name, name_max(folder) - _fixed(pid))}.{MARK}-{pid}-{HOST}-"
    # mkstemp and mkdtemp create exclusively (O_EXCL, mkdir): never through a link; the
    # permissions are set through the descriptor, never through a name swapped meanwhile
    if directory:
        made = tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=folder)
        fd = os.open(made, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        mode = 0o777
    else:
        fd, made = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
        mode = 0o666  # mkstemp makes 0600
    try:
        os.fchmod(fd, mode & ~_umask())
    finally:
        os.close(fd)
    return Path(made)


_AT_FDCWD, _RENAME_NOREPLACE = -100, 1  # Linux's values


@functools.cache
def _renameat2() -> Any:
    """libc's ``renameat2`` (Linux; looked up on first use), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return func


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` to ``dst`` unless something (a link included) is at ``dst``:
    :class:`FileExistsError` then. Atomic where the kernel and file system offer it
    (``renameat2(RENAME_NOREPLACE)``); elsewhere checked just before the rename."""
    func = _renameat2()
    if func is not None:
        import ctypes

        if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE):
            code = ctypes.get_errno()
            if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
                raise OSError(code, os.strerror(code), os.fspath(src), None, os.fspath(dst))
        else:
            return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
    os.rename(src, dst)


def set_aside(path: str | os.PathLike) -> Path | None:
    """Rename ``path`` (a file or folder) to a temporary name next to it, atomically, and
    return that name; None when nothing is there. A folder set aside and not yet deleted
    when the process is killed is removed later by :func:`remove_stale`."""
    path = Path(path)
    pid = os.getpid()
    prefix = f".{_shorten(path.name, name_max(path.parent) - _fixed(pid))}.{MARK}-{pid}-{HOST}-"
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    while True:
        aside = path.parent / (prefix + "".join(secrets.choice(alphabet) for _ in range(8)))
        aside = aside.with_name(aside.name + ".tmp")
        try:
            rename_noreplace(path, aside)  # never over a file someone put at that name
        except FileExistsError:
            continue
        except FileNotFoundError:
            return None
        return aside


def discard(path: str | os.PathLike) -> None:
    """Delete a file or folder crash-safely: renamed to a temporary name first
    (:func:`set_aside`), so a kill half-way never leaves a half-deleted folder under its
    real name. Nothing there: nothing done."""
    aside = set_aside(path)
    if aside is None:
        return
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def is_temp_name(name: str) -> bool:
    """True for a name :func:`temp_sibling` makes (or an earlier ganpipe made)."""
    return bool(_TEMP.match(name) or _OLD_CHECKPOINT.match(name) or _OLD_FILE.match(name))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # someone else's process (or cannot tell): keep its files
    return True


def _older(path: Path, now: float, seconds: float) -> bool:
    try:
        return now - path.lstat().st_mtime > seconds
    except OSError:
        return False


def _abandoned(path: Path, now: float) -> bool:
    m = _TEMP.match(path.name)
    if m and m.group(2) != HOST:
        return _older(path, now, STALE_OTHER_HOST)
    m = m or _OLD_CHECKPOINT.match(path.name)
    if m:
        return not _alive(int(m.group(1)))
    if _OLD_FILE.match(path.name) and path.is_file() and not path.is_symlink():
        return _older(path, now, STALE_SECONDS)
    return False


def remove_stale(folders: Iterable[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Delete the temporary files and folders of ganpipe processes that are no longer
    running (killed mid-write) in ``folders`` (and their sub-folders): names made by
    :func:`temp_sibling` whose pid is not alive, checkpoint folders of earlier versions
    (``.tmp-step_N-PID``) likewise, and pid-less ``.<name>.XXXXXXXX.tmp`` files older
    than :data:`STALE_SECONDS`. Finished files never match. Returns what was removed;
    errors (a folder that cannot be read, a file that cannot be deleted) are ignored."""
    now, removed = time.time(), []
    pending = [Path(f) for f in folders]
    seen: set[Path] = set()
    while pending:
        folder = pending.pop()
        if folder in seen:
            continue
        seen.add(folder)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_temp_name(entry.name) and _abandoned(path, now):
                try:
                    shutil.rmtree(path) if is_dir else path.unlink()
                    removed.append(path)
                except OSError:
                    pass
            elif is_dir and recursive:
                pending.append(path)
    return sorted(removed)


#: what to do, by errno, when a write fails
_ADVICE = {
    errno.ENOSPC: "the disk is full; free space on it or choose another folder",
    errno.EDQUOT: "the disk quota is used up; free space or choose another folder",
    errno.EFBIG: "the file is larger than this file system or a limit allows; choose another "
    "folder",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.EACCES: "permission denied; fix the permissions or choose another folder",
    errno.EPERM: "not permitted; fix the permissions or choose another folder",
    errno.ENAMETOOLONG: "the name is too long for this file system; use a shorter name",
    errno.EIO: "an input/output error (a failing disk or lost network mount); check the disk",
}


def shown(path: str | os.PathLike) -> str:
    """``path`` as text safe to print or put in JSON: bytes that are not valid UTF-8 (kept
    as surrogate escapes by Python) are written as ``\\xNN``."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_error(path: str | os.PathLike, exc: OSError, what: str = "") -> WriteError:
    """A one-line :class:`~ganpipe.errors.WriteError` for ``exc`` raised while writing
    ``path``: what failed, where, and what to free or change. ``what`` names the file's
    role ("checkpoint", "report journal")."""
    from ganpipe.errors import WriteError

    if isinstance(exc, WriteError):
        return exc
    where = exc.filename if exc.filename is not None else path
    reason = exc.strerror or str(exc) or type(exc).__name__
    advice = _ADVICE.get(exc.errno, "")
    label = f"{what} " if what else ""
    message = f"cannot write {label}{shown(where)}: {reason}"
    if advice:
        message += f" ({advice})"
    return WriteError(message, exc.errno, shown(where))


def environment_error(exc: OSError) -> GanpipeError | None:
    """A one-line error for an :class:`OSError` that the machine caused (disk full,
    quota, read-only, permissions, I/O) and that no caller turned into one; None for
    others (those are ganpipe's bugs and keep their traceback). The CLI's last resort."""
    from ganpipe.errors import GanpipeError

    if isinstance(exc, GanpipeError):
        return exc
    if exc.errno not in _ADVICE:
        return None
    where = f"{shown(exc.filename)}: " if exc.filename is not None else ""
    return GanpipeError(f"{where}{exc.strerror or exc} ({_ADVICE[exc.errno]})")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, what: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success it is renamed to ``final``. An
    :class:`OSError` while writing (the caller's or the rename's) becomes a one-line
    :class:`~ganpipe.errors.WriteError` naming ``final``; the temporary file is removed
    and ``final`` is left as it was."""
    final = Path(final)
    try:
        tmp_path = temp_sibling(final)
    except OSError as exc:
        raise write_error(final, exc, what) from None
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    except OSError as exc:
        raise write_error(final, exc, what) from None
    finally:
        with contextlib.suppress(OSError):
            if os.path.lexists(tmp_path):
                tmp_path.unlink()


def write_bytes(final: str | os.PathLike, data: bytes, what: str = "") -> None:
    with atomic_path(final, what) as tmp:
        tmp.write_bytes(data)


def write_json(final: str | os.PathLike, obj: Any, what: str = "") -> None:
    write_bytes(final, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), what)


def open_append(path: str | os.PathLike, what: str = "") -> IO[str]:
    """``path`` opened to append lines of text (UTF-8); a one-line
    :class:`~ganpipe.errors.WriteError` when it cannot be."""
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as exc:
        raise write_error(path, exc, what) from None


def append_line(fh: IO[str], line: str, what: str = "") -> None:
    """Write ``line`` and a newline to ``fh`` (from :func:`open_append`) and flush it. A
    failed write (disk full...) closes ``fh``, dropping what it still buffered, and is a
    one-line :class:`~ganpipe.errors.WriteError` naming the file."""
    try:
        fh.write(line + "\n")
        fh.flush()
    except OSError as exc:
        with contextlib.suppress(OSError):
            fh.close()
        raise write_error(fh.name, exc, what) from None


def ensure_writable_dir(
    path: str | os.PathLike,
    what: str = "output folder",
    fix: str = "choose another folder or fix its permissions",
) -> Path:
    """Create ``path`` if needed and check a file can be written there; one-line error
    (``<what> <path> is not writable (<reason>); <fix>``) if not."""
    from ganpipe.errors import GanpipeError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ganpipe-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise GanpipeError(f"{what} {shown(path)} is not writable ({reason}); {fix}") from None
    return path
