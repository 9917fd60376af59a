"""torch's CPU thread pool sized for the CPUs this process may use (:mod:`ganpipe.cpus`),
for the length of a training run.

torch starts one intra-op thread per core it sees: in a container limited to 2 CPUs on a
64-core host, 64 threads that the quota throttles (on 2 cores under a one-CPU quota,
training with torch's 2 threads ran at 19-44 images/s, with one at 1500-1600:
``bench/results/threads-2026-12-08.md``). So
training on the CPU runs with :func:`ganpipe.cpus.threads_for` threads unless
``--threads`` / ``[run] threads`` asked for a count. The count does not follow the load
(results would change in the last bits with it); a busy machine changes how idle
threads wait instead (:func:`ganpipe.cpus.spin_less_when_busy`, before torch loads).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ganpipe.cpus import current, threads_for


def cpu_thread_count(requested: int | None = None, share: int | None = None) -> int:
    """torch's intra-op threads for training here: ``requested`` (or the enclosing
    :func:`ganpipe.cpus.limits` block's) when given; else
    :func:`~ganpipe.cpus.threads_for`, never above the count the process has now (a lower
    count set by the program that embeds ganpipe, or by a test, stays)."""
    asked = requested or current().requested
    count = threads_for(asked, share)
    return count if asked else min(count, torch.get_num_threads())


@contextlib.contextmanager
def cpu_threads(
    device: torch.device | str = "cpu", requested: int | None = None, share: int | None = None
) -> Iterator[int]:
    """Inside the block, torch's intra-op pool has :func:`cpu_thread_count` threads when
    ``device`` is the CPU (other devices: unchanged); the count before is restored after.
    Yields the count in use."""
    before = torch.get_num_threads()
    if torch.device(device).type != "cpu":
        yield before
        return
    count = cpu_thread_count(requested, share)
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)


def set_process_threads(requested: int | None = None, share: int | None = None) -> int:
    """For a process that trains and exits (a data-parallel worker): torch's intra-op pool
    sized by :func:`cpu_thread_count`, and its inter-op pool to the same count where torch
    still allows it (before any inter-op work). Returns the intra-op count."""
    count = cpu_thread_count(requested, share)
    torch.set_num_threads(count)
    with contextlib.suppress(RuntimeError):  # inter-op work has started: it stays
        torch.set_num_interop_threads(count)
    return count
