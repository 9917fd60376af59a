"""ONNX Runtime's own log kept off the terminal: its messages become ganpipe's one-line
notes and reasons, never raw coloured lines.

ONNX Runtime writes its log straight to file descriptor 2 (time-stamped, coloured, with
C++ source locations), out of reach of Python's logging. Two moments matter:

* **Loading** a model (``InferenceSession``): errors are logged at severity ERROR (a
  provider library that cannot be loaded, say, before ONNX Runtime falls back to the
  CPU). :func:`captured` points fd 2 at a temporary file around the load
  (:func:`ganpipe.imaging.capture.native_stderr`), and each line becomes a plain note
  (:func:`ganpipe.imaging.capture.plain`) that the commands print as their own
  ``ganpipe:`` lines (:attr:`ganpipe.inference.session.OnnxModel.notes`).
* **Running** it: a failing node logs the very message its exception carries, so runs
  log at FATAL only (:data:`RUN_SEVERITY`) and the exception, made one line by
  :func:`describe`, is the file's failure reason or the model's one-line error. fd 2 is
  not redirected around runs: that takes a process-wide lock, which would serialise
  image decoding with inference for the whole batch.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from ganpipe.imaging.capture import collecting, native_stderr, plain

#: ONNX Runtime's severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal
LOAD_SEVERITY = 3
RUN_SEVERITY = 4
#: characters kept of a reason
MAX_REASON = 300

_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_NODE = re.compile(
    r"Non-zero status code returned while running (\S+) node\. Name:'([^']*)' Status Message: "
)
_SOURCE = re.compile(r"/onnxruntime_src/\S+:\d+ ")
_SIGNATURE = re.compile(r"^[\w:~<>,\[\] ]+\([^)]*\)\s*(const\s*)?")


def session_options() -> Any:
    """``SessionOptions`` whose log keeps errors only (captured at load, see the module
    docstring); the process's default logger is set the same way. Its intra-op pool has
    :func:`ganpipe.cpus.threads_for` threads (the CPUs this process may use, or
    ``--threads``; ONNX Runtime's own default counts the machine's cores, ignoring
    affinity and container quotas), its inter-op pool one (ganpipe runs sessions
    sequentially, where ONNX Runtime uses no inter-op pool)."""
    import onnxruntime as ort

    from ganpipe.cpus import threads_for

    ort.set_default_logger_severity(LOAD_SEVERITY)
    opts = ort.SessionOptions()
    opts.log_severity_level = LOAD_SEVERITY
    opts.intra_op_num_threads = threads_for()
    opts.inter_op_num_threads = 1
    return opts


def run_options() -> Any:
    """Fresh ``RunOptions`` for one run: fatal messages only (the error comes back as the
    exception), and a ``terminate`` flag a watchdog may set (one per run: a set flag
    stays set)."""
    import onnxruntime as ort

    run = ort.RunOptions()
    run.log_severity_level = RUN_SEVERITY
    return run


@contextlib.contextmanager
def captured(notes: list[str]) -> Iterator[list[str]]:
    """What ONNX Runtime (or any C library) prints to fd 2 inside the block becomes
    plain lines appended to ``notes``."""
    with collecting(notes), native_stderr():
        yield notes


def is_ort_error(exc: BaseException) -> bool:
    """True for an exception ONNX Runtime raised from a run (its status text)."""
    return bool(_STATUS.match(str(exc).lstrip()))


def describe(exc: BaseException) -> str:
    """One line for an exception from a run: ONNX Runtime's status code, the "Non-zero
    status code returned while running" preamble and its C++ source location dropped,
    the node kept: ``onnxruntime: Reshape node: The input tensor cannot be reshaped...``.
    Other exceptions: their type and text, on one line."""
    text = plain(str(exc))  # its lines joined: ONNX Runtime spreads a message over several
    if not _STATUS.match(text):
        return f"{type(exc).__name__}: {text}"[:MAX_REASON] if text else type(exc).__name__
    text = _STATUS.sub("", text)
    node = _NODE.search(text)
    where = ""
    if node:
        where = f"{node.group(1)} node" + (f" {node.group(2)!r}" if node.group(2) else "") + ": "
        text = text[node.end() :]
    source = _SOURCE.search(text)
    if source:
        rest = text[source.end() :]
        if " was false. " in rest:  # ORT_ENFORCE: signature, condition, then the message
            rest = rest.split(" was false. ", 1)[1]
        else:
            rest = _SIGNATURE.sub("", rest)
        text = text[: source.start()] + rest
    return f"onnxruntime: {where}{text.strip()}"[:MAX_REASON]
