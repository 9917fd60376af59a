"""Stopping on SIGTERM and SIGINT (what Slurm, Kubernetes and Ctrl-C send). Torch-free.

Two ways to handle the signals, each for the duration of a ``with`` block, the previous
handlers restored afterwards (and only in the main thread: elsewhere both are no-ops):

* :func:`raising` (the CLI, around a whole command): the first signal raises
  :class:`Interrupted` in the main thread, so the normal cleanup runs (``finally``
  blocks, the manifest records the stage as interrupted); later ones are ignored.
* :func:`deferred` (the training loop): a signal is only recorded; the loop polls
  :func:`requested` after each step, writes a checkpoint and raises :class:`Interrupted`
  itself (after :func:`consume`). A signal still pending when the block ends normally is
  handed to the previous handler then; one that comes while an :class:`Interrupted` is on
  its way out is dropped. Further signals while a checkpoint is written change nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_pending: int | None = None  # the first signal recorded and not yet consumed
_stopping = False  # an Interrupted is on its way: further signals are ignored
_depth = 0  # handler blocks open


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum``; ``step`` and ``checkpoint`` when training was
    stopped (the checkpoint written at that step). A KeyboardInterrupt, so the cleanup
    that runs for Ctrl-C runs for SIGTERM too.

    ``resume``: how to resume, where "run the same command" alone would not say it (set
    on its way out by what was stopped: an upscale batch names its journal, or
    ``--skip-existing``, without which the same command would redo every file)."""

    def __init__(
        self,
        signum: int,
        *,
        step: int | None = None,
        checkpoint: str | Path | None = None,
        resume: str | None = None,
    ):
        self.signum, self.step = int(signum), step
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.resume = resume
        super().__init__(self.message())

    def __reduce__(self):
        return (_rebuild, (self.signum, self.step, self.checkpoint, self.resume))

    def __str__(self) -> str:
        return self.message()  # ``resume`` may be set after it was raised

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """What the shell reports for a process killed by the signal: 143, 130."""
        return 128 + self.signum

    @property
    def status(self) -> str:
        """The manifest's status for the stage it stopped."""
        return "terminated" if self.signum == signal.SIGTERM else "interrupted"

    def message(self) -> str:
        by = f"stopped by {self.signal_name}"
        if self.step is None and self.resume:
            return f"{by}; finished outputs are kept; {self.resume}"
        if self.step is None:
            return (
                f"{by}; finished outputs and checkpoints are kept, run the same command to resume"
            )
        if self.checkpoint is None:
            return (
                f"{by} at step {self.step}; no checkpoint written; run the same command to resume"
            )
        return (
            f"{by} at step {self.step}; checkpoint {_shown(self.checkpoint)} written; "
            f"run the same command to resume"
        )


def _rebuild(
    signum: int, step: int | None, checkpoint: Path | None, resume: str | None = None
) -> Interrupted:
    return Interrupted(signum, step=step, checkpoint=checkpoint, resume=resume)


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def requested() -> int | None:
    """The signal recorded by :func:`deferred` and not consumed yet (None: none)."""
    return _pending


def consume() -> int | None:
    """Take the recorded signal: the caller stops now; later signals are ignored."""
    global _pending, _stopping
    signum, _pending = _pending, None
    if signum is not None:
        _stopping = True
    return signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _installed(handler) -> Iterator[bool]:
    if not _main_thread():
        yield False
        return
    global _depth, _stopping
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    _depth += 1
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        _depth -= 1
        if not _depth:  # the outermost block: the stop, if any, is over
            _stopping = False


@contextlib.contextmanager
def raising() -> Iterator[None]:
    """The first SIGTERM / SIGINT raises :class:`Interrupted`; later ones are ignored."""
    global _stopping

    def handler(signum, _frame):
        global _stopping
        if _stopping:
            return
        _stopping = True
        raise Interrupted(signum)

    stopping = _stopping
    with _installed(handler):
        try:
            yield
        finally:
            _stopping = stopping


@contextlib.contextmanager
def deferred(forward: Callable[[int], None] | None = None) -> Iterator[None]:
    """Record SIGTERM / SIGINT instead of acting on them (``forward(signum)`` is called
    too: the data-parallel parent passes them on to its workers)."""
    global _pending, _stopping

    def handler(signum, _frame):
        global _pending
        if _pending is None and not _stopping:
            _pending = signum
        if forward is not None:
            forward(signum)

    stopping, outcome = _stopping, None
    with _installed(handler) as installed:
        try:
            yield
        except BaseException as exc:
            outcome = exc
            raise
        finally:
            late, _pending = (_pending, None) if installed else (None, _pending)
            if not isinstance(outcome, Interrupted):
                _stopping = stopping
    if late is not None and not isinstance(outcome, Interrupted):
        signal.raise_signal(late)  # the previous handler acts on it now


@contextlib.contextmanager
def ignored() -> Iterator[None]:
    """Ignore SIGTERM / SIGINT while child processes start: they inherit that, until
    their own handlers are installed, so a signal in between cannot kill them (it is
    lost for them: the parent sends it again, see :func:`forward_to`)."""
    with _installed(signal.SIG_IGN):
        yield


def forward_to(pids: Callable[[], list[int]]) -> Callable[[int], None]:
    """A ``forward`` for :func:`deferred`: send the signal to each of ``pids()``."""

    def send(signum: int) -> None:
        for pid in pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    return send
