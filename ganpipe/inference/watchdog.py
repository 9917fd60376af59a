"""Bounded model runs: SIGTERM, Ctrl-C and a time limit stop an inference in flight.

``session.run`` keeps its thread inside ONNX Runtime until the graph is done, and Python
runs signal handlers only when the main thread is back in the interpreter: a graph that
never ends (an endless ``Loop``) would ignore SIGTERM and Ctrl-C and could only be killed.
So :func:`bounded` runs the call on a helper thread while the calling thread waits, which
a signal interrupts (the handler of :func:`ganpipe.signals.raising` raises
:class:`~ganpipe.signals.Interrupted`; Python's own raises ``KeyboardInterrupt``), as
does the deadline of :func:`deadline`. Then the run is told to stop - ONNX Runtime's
``RunOptions.terminate``, which it checks between nodes, inside ``Loop`` bodies too; an
OpenVINO request's ``cancel`` - and the helper gets :data:`GRACE` seconds to return
before the exception goes on: the signal's (the command exits 143 / 130), or
:class:`RunTimeout`, one file's or one batch's failure (the batch goes on).

Off the main thread, without a deadline, the call runs where it is: no signal reaches
such a thread, so there is nothing to watch for.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: seconds a stopped run may take to return before its exception goes on without it
GRACE = 10.0

_local = threading.local()


class RunTimeout(Exception):
    """A run went past the :func:`deadline` of its file or batch and was stopped. Not a
    :class:`~ganpipe.errors.GanpipeError`: it fails that file or batch, not the run."""

    def __init__(self, seconds: float, stopped: bool = True):
        self.seconds = seconds
        end = "stopped" if stopped else "it did not stop, and goes on in the background"
        super().__init__(f"the model took longer than --timeout {seconds:g}s; {end}")


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Model runs of this thread inside the block stop once ``seconds`` have passed since
    it began, all runs together (a file's tiles share its time); ``None``: no limit. An
    enclosing deadline that ends sooner still holds."""
    previous = getattr(_local, "deadline", None)
    if seconds is not None:
        end = time.monotonic() + seconds
        if previous is None or end < previous[0]:
            _local.deadline = (end, seconds)
    try:
        yield
    finally:
        _local.deadline = previous


def bounded(call: Callable[[], T], stop: Callable[[], Any]) -> T:
    """``call()`` (a model run), stopped with ``stop()`` when the thread's :func:`deadline`
    passes (then :class:`RunTimeout`) or a signal handler raises while it waits (then
    that exception); see the module docstring."""
    limit = getattr(_local, "deadline", None)
    if limit is None and threading.current_thread() is not threading.main_thread():
        return call()
    remaining = None
    if limit is not None:
        remaining = limit[0] - time.monotonic()
        if remaining <= 0:
            raise RunTimeout(limit[1])
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="ganpipe-model-run", daemon=True).start()
    try:
        finished = done.wait(remaining)
    except BaseException:  # a signal: stop the run, then let the exception go on
        _stop(stop, done)
        raise
    if not finished:
        returned = _stop(stop, done)
        if "value" in box:  # it finished just as the time ran out
            return box["value"]
        raise RunTimeout(limit[1], stopped=returned) from None  # type: ignore[index]
    if "error" in box:
        raise box.pop("error")
    return box["value"]


def _stop(stop: Callable[[], Any], done: threading.Event) -> bool:
    """Ask the run to stop and give it :data:`GRACE` seconds; True when it returned."""
    with contextlib.suppress(Exception):
        stop()
    return done.wait(GRACE)


def _is_ort(session: Any) -> bool:
    """True for an ONNX Runtime session; one exists only where onnxruntime was imported,
    so that another runtime's run (ncnn's) does not import it (25 ms) to be told apart."""
    ort = sys.modules.get("onnxruntime")
    return ort is not None and isinstance(session, ort.InferenceSession)


def run_session(session: Any, names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
    """``session.run(names, feeds)``, bounded: an ONNX Runtime session with its own
    :func:`~ganpipe.inference.ortlog.run_options` (quiet, terminable), or a session with
    a ``cancel()`` (:class:`~ganpipe.inference.runtimes.OpenVINOSession`); any other
    object with that ``run`` (a wrapper) is waited for the same way but cannot be told to
    stop: after :data:`GRACE` seconds the exception goes on without it."""
    cancel = getattr(session, "cancel", None)
    if cancel is not None:
        return bounded(lambda: session.run(names, feeds), cancel)
    if not _is_ort(session):
        return bounded(lambda: session.run(names, feeds), lambda: None)
    from ganpipe.inference.ortlog import run_options

    options = run_options()
    return bounded(
        lambda: session.run(names, feeds, options),
        lambda: setattr(options, "terminate", True),
    )


def run_binding(session: Any, binding: Any) -> None:
    """``session.run_with_iobinding(binding)``, bounded as :func:`run_session`."""
    from ganpipe.inference.ortlog import run_options

    options = run_options()
    bounded(
        lambda: session.run_with_iobinding(binding, options),
        lambda: setattr(options, "terminate", True),
    )
