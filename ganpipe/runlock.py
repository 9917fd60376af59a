"""Advisory locks that keep two ganpipe processes from writing one folder or one file.

A run folder (``ganpipe run``), a tune study and a batch's report journal are each
written by one process at a time. The lock is a small file that records who holds it
(pid, host, start time, command) and is held with ``flock(LOCK_EX | LOCK_NB)``:

* a **folder** is locked through ``<folder>/.ganpipe.lock``
  (``with runlock.hold(run_dir, what="run folder"):``);
* a **file** (a journal) through ``.<name>.lock`` next to it (``hold_file``). Lock the
  name that stays the same for the whole job (``r.jsonl``), not a temporary name; the
  journal itself is never opened by the lock.

A second process refuses at once with :class:`~ganpipe.errors.LockedError`, one line
naming the holder and saying to wait for it or stop it. Nothing waits.

The lock file is opened with ``O_NOFOLLOW`` (a planted symbolic link is refused, never
followed) and ``O_CLOEXEC`` (programs started by the holder do not inherit it), created
``0o644``. The holder deletes it when it lets go. One left behind by a killed process is
**stale**: its ``flock`` can be taken (the kernel dropped the dead holder's), so the
next process takes it over and says so once (``log``).

Where ``flock`` does not work (some network and FUSE file systems) or cannot see other
machines (NFS ``nolock``), the record decides: a holder on this host while its pid runs,
one on another host while it refreshes the file (every :data:`HEARTBEAT_S` seconds; stale
after :data:`OTHER_HOST_STALE_S`). Two processes starting at one instant may then both
get in; flock is the real guard.

Holding is re-entrant within one process (a forked child does not inherit it). Only
the process that runs a job takes its lock: under torchrun, process 0. On a full disk
the flock alone holds (the record stays empty; others are refused without a name).
Readers (``ganpipe report``) do not lock; :func:`current` tells them who holds a folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shlex
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ganpipe.errors import LockedError
from ganpipe.fsutil import _alive as _pid_alive  # a pid of this host runs (True: can't tell)
from ganpipe.fsutil import shown, write_error

#: the lock file of a locked folder
LOCK_NAME = ".ganpipe.lock"
#: suffix of the lock file next to a locked file: ``.<name>.lock``
FILE_SUFFIX = ".lock"
#: how often a holder refreshes its lock file's modification time
HEARTBEAT_S = 60.0
#: a lock file of another host not refreshed for this long is stale (only consulted where
#: flock cannot see the other host)
OTHER_HOST_STALE_S = 600.0
#: flock errors that mean "not supported here" (the record decides instead)
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}
#: how long a refused process waits for a new holder to write its record (message only)
_RECORD_WAIT_S = 1.0

HOST = socket.gethostname()

PathArg = str | os.PathLike
Log = Callable[[str], object] | None


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lock, as its lock file records it."""

    pid: int
    host: str
    started: float
    command: str

    @property
    def here(self) -> bool:
        return self.host == HOST

    def alive(self) -> bool:
        """Whether the holder runs: its pid on this host; on another host, unknown (True)."""
        return not self.here or _pid_alive(self.pid)

    def describe(self) -> str:
        """``ganpipe pid 1234 on host h since 21:03 (ganpipe run p.toml)``."""
        t = time.localtime(self.started)
        fmt = "%H:%M" if t[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M"
        doing = f" ({self.command})" if self.command else ""
        return f"ganpipe pid {self.pid} on host {self.host} since {time.strftime(fmt, t)}{doing}"

    def record(self) -> bytes:
        """The lock file's content: one JSON line (``since``: the start, readable)."""
        since = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started))
        return (json.dumps({**asdict(self), "since": since}) + "\n").encode()


@dataclass
class Lock:
    """A held lock: its file, what it guards, and this process's :class:`Holder`."""

    path: Path
    target: Path
    what: str
    holder: Holder
    #: the holder it took over from (a stale lock file), else None
    took_over: Holder | None
    _fd: int
    _count: int = 1
    _beat: tuple[threading.Event, threading.Thread] | None = None


_held: dict[Path, Lock] = {}
_held_guard = threading.Lock()


def folder_lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``."""
    return Path(os.path.abspath(folder)) / LOCK_NAME


def file_lock_path(path: str | os.PathLike) -> Path:
    """The lock file next to the file ``path``: ``.<name>.lock``, ``<name>`` shortened
    (and tagged with a hash of the whole name) where it would pass the name limit."""
    path = Path(os.path.abspath(path))
    name = path.name
    try:
        limit = int(os.pathconf(path.parent, "PC_NAME_MAX"))
    except (OSError, ValueError):
        limit = 255
    extra = 1 + len(FILE_SUFFIX)
    raw = os.fsencode(name)
    if len(raw) + extra > limit:
        tag = "~" + hashlib.sha1(raw).hexdigest()[:12]
        name = os.fsdecode(raw[: limit - extra - len(tag)]) + tag
    return path.parent / f".{name}{FILE_SUFFIX}"


@contextlib.contextmanager
def hold(folder: PathArg, what: str = "run folder", *, command=None, log: Log = None):
    """Hold the lock of ``folder`` (created if missing) for the ``with`` block;
    :class:`~ganpipe.errors.LockedError` when another process holds it. ``what`` names
    it in messages, ``command`` what the holder does (default: this process's command
    line), ``log`` hears of a stale lock taken over. Yields the :class:`Lock`."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(folder, exc, what) from None
    with _holding(folder_lock_path(folder), Path(folder), what, command, log) as lock:
        yield lock


@contextlib.contextmanager
def hold_file(path: PathArg, what: str = "report journal", *, command=None, log: Log = None):
    """Hold the lock of the file ``path`` (its folder must exist; the file need not):
    the lock file ``.<name>.lock`` next to it (:func:`file_lock_path`). As :func:`hold`."""
    with _holding(file_lock_path(path), Path(path), what, command, log) as lock:
        yield lock


def read_holder(lock_path: str | os.PathLike) -> Holder | None:
    """The holder a lock file records (None: no file, empty, or unreadable). Reads only:
    the lock may be stale; see :func:`current`."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _parse(os.pread(fd, 4096, 0))
    except OSError:
        return None
    finally:
        os.close(fd)


def current(folder: str | os.PathLike) -> Holder | None:
    """Who holds ``folder``'s lock now, as far as a reader can tell without taking it: the
    recorded holder when its pid runs (this host) or it refreshed the lock recently
    (another host); else None."""
    path = folder_lock_path(folder)
    found = read_holder(path)
    if found is None or not found.alive():
        return None
    return found if found.here or not _older(path, OTHER_HOST_STALE_S) else None


# -- holding -----------------------------------------------------------------------------
@contextlib.contextmanager
def _holding(path: Path, target: Path, what: str, command, log) -> Iterator[Lock]:
    with _held_guard:
        lock = _held.get(path)
        if lock is not None and lock.holder.pid == os.getpid():
            lock._count += 1
        else:
            lock = _acquire(path, target, what, command)
            _held[path] = lock
            if lock.took_over is not None and log is not None:
                log(
                    f"{what} {_shown(target)}: took over the lock left by "
                    f"{lock.took_over.describe()}, which no longer runs"
                )
    try:
        yield lock
    finally:
        with _held_guard:
            lock._count -= 1
            if lock._count == 0:
                _held.pop(path, None)
                _release(lock)


def _acquire(path: Path, target: Path, what: str, command: str | None) -> Lock:
    me = Holder(os.getpid(), HOST, time.time(), _command() if command is None else command)
    for _ in range(20):  # a holder deleting its file as we open it: open again
        fd = _open(path, target, what)
        try:
            flocked = _flock(fd)
            if flocked is False:  # another process holds it
                raise _refusal(path, target, what, fd)
            if not _same_file(fd, path):  # we locked a file its holder just deleted
                os.close(fd)
                continue
            before = _parse(os.pread(fd, 4096, 0))
            if before is not None and _counts(before, path, flocked):
                raise _refusal(path, target, what, fd, before)
            _write_record(fd, me)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        stale = before if before is not None and before.pid != me.pid else None
        lock = Lock(path, target, what, me, stale, fd)
        lock._beat = _heartbeat(fd)
        return lock
    raise LockedError(f"{what} {_shown(target)}: its lock file keeps changing; try again")


def _write_record(fd: int, me: Holder) -> None:
    """Say who holds the lock; on a full disk the flock alone holds it (the record stays
    empty, so a refused process cannot name the holder, but is still refused)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.record(), 0)
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)


def _open(path: Path, target: Path, what: str) -> int:
    """Open (create) the lock file without following a link; a one-line error when that
    fails (a link or something not a file planted there, an unwritable folder)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockedError(
                f"{what} {_shown(target)}: its lock file {_shown(path)} is a symbolic link; "
                f"remove it (ganpipe never follows one)"
            ) from None
        raise write_error(path, exc, f"the lock file of {what}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LockedError(
            f"{what} {_shown(target)}: its lock file {_shown(path)} is not a regular file; "
            f"remove it"
        )
    return fd


def _flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: flock unsupported here."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_FLOCK:
            return None
        raise
    return True


def _counts(before: Holder, path: Path, flocked: bool | None) -> bool:
    """Whether the recorded holder still holds the lock although we got past flock: on
    another host while its file is fresh (flock may not reach that host); on this host
    only where flock is unsupported, while its pid runs."""
    if before.pid == os.getpid() and before.here:
        return False
    if not before.here:
        return not _older(path, OTHER_HOST_STALE_S)
    return flocked is None and _pid_alive(before.pid)


def _refusal(path: Path, target: Path, what: str, fd: int, holder=None) -> LockedError:
    """The one-line error for a lock another process holds (closes ``fd``)."""
    try:
        deadline = time.monotonic() + _RECORD_WAIT_S
        while holder is None or (holder.here and not _pid_alive(holder.pid)):
            # a new holder may not have written its record yet
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            holder = _parse(os.pread(fd, 4096, 0))
    finally:
        os.close(fd)
    who = holder.describe() if holder is not None else "another ganpipe process"
    hint = "wait for it to finish or stop it"
    if holder is not None and not holder.here:
        hint += f" (if it no longer runs, delete {_shown(path)})"
    err = LockedError(f"{what} {_shown(target)} is in use by {who}; {hint}")
    err.holder = holder
    return err


def _release(lock: Lock) -> None:
    if lock._beat is not None:  # stopped before the fd closes (its number may be reused)
        lock._beat[0].set()
        lock._beat[1].join(5)
    try:
        if _same_file(lock._fd, lock.path):
            os.unlink(lock.path)  # still ours: nobody else can hold it yet
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(lock._fd)  # lets go of the flock


def _heartbeat(fd: int) -> tuple[threading.Event, threading.Thread]:
    """Refresh the lock file's modification time every :data:`HEARTBEAT_S` seconds (what
    other hosts judge a lock by where flock cannot reach them)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(fd)
            except OSError:
                return

    thread = threading.Thread(target=beat, name="ganpipe-lock-heartbeat", daemon=True)
    thread.start()
    return stop, thread


# -- small helpers -----------------------------------------------------------------------
def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` (not followed) is still the file open as ``fd``."""
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _parse(data: bytes) -> Holder | None:
    try:
        obj = json.loads(data.decode("utf-8"))
        return Holder(int(obj["pid"]), str(obj["host"]), float(obj["started"]), str(obj["command"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _older(path: Path, seconds: float) -> bool:
    with contextlib.suppress(OSError):
        return time.time() - os.stat(path, follow_symlinks=False).st_mtime > seconds
    return True


def _command() -> str:
    """This process's command line, as a user would type it, at most 200 characters and
    safe to print (names that are not UTF-8 shown escaped)."""
    argv = list(sys.argv)
    head = Path(argv[0]).name if argv else ""
    if head == "ganpipe" or (head == "__main__.py" and Path(argv[0]).parent.name == "ganpipe"):
        argv = ["ganpipe", *argv[1:]]
    text = shlex.join(argv)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 200 else text[:199] + "…"


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when inside it, else as it is; printable."""
    path = Path(os.path.abspath(path))
    with contextlib.suppress(ValueError, OSError):
        path = path.relative_to(Path.cwd())
    return shown(path)
