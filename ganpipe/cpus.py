"""How many CPUs this process may use, and how many threads a pool should get.

``os.cpu_count()`` counts the machine's CPUs: it ignores the CPU affinity a process was
started with (``taskset``, a cpuset, Kubernetes' static CPU manager) and the cgroup CPU
quota of a container (``docker --cpus 2``, a Kubernetes CPU limit), so on a 64-core host a
container limited to 2 CPUs started 64 torch and 64 ONNX Runtime threads, throttled by
the quota. :func:`usable_cpus` is the smaller of the affinity set and the quota (cgroup v2
``cpu.max`` or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, the smallest limit on the
way from this process's cgroup up to the root), rounded up.

:func:`threads_for` sizes one pool from it:

* ``requested`` (``--threads N``, ``[run] threads``) wins;
* else the usable CPUs, counted as cores (hyper-threads of one core count once, as torch
  and ONNX Runtime count by default), divided among ``share`` processes of this host that
  split them (torchrun's ``LOCAL_WORLD_SIZE``, Ray actors per node, ``train.devices``).

The count never follows the load of the machine: torch's results on the CPU differ in the
last bits between thread counts, and ganpipe's runs are reproducible bit for bit (a resumed
run equals one never stopped). What the load decides is how OpenMP's idle threads wait
(:func:`spin_less_when_busy`): on 2 cores beside 4 busy processes, torch training with 2
threads ran at 7-32 images/s spinning at its barriers (OpenMP's default) and at 116-140
sleeping there (``OMP_WAIT_POLICY=PASSIVE``), with the same results
(``bench/results/threads-2026-12-08.md``). On a machine that is not busy, OpenMP's
spinning (it saves waking a sleeping thread at every barrier) is kept.

A block of code may set the request and the share for everything it opens
(:func:`limits`): ``ganpipe upscale --threads 2`` opens its ONNX Runtime sessions inside
``limits(2)``, a Ray actor inside ``limits(share=actors per node)``, and
:func:`threads_for` without arguments answers the block's values.

Standard library only: the ONNX paths and ``ganpipe --help`` import it.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import statistics
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

#: where /proc and /sys are; tests pass a folder holding their own copies
ROOT = Path("/")
#: samples of the run queue taken by :func:`busy_cpus`, and the pause between them
LOAD_SAMPLES = 5
LOAD_PAUSE_S = 0.002


@dataclass(frozen=True)
class Limits:
    """What the enclosing :func:`limits` block asked for: ``requested`` threads (None:
    automatic) and ``share``, the processes of this host splitting its CPUs."""

    requested: int | None = None
    share: int = 1


#: outside every block: automatic, a share of 1
AUTOMATIC = Limits()
_LIMITS: contextvars.ContextVar[Limits] = contextvars.ContextVar("ganpipe_cpus")


def current() -> Limits:
    """The enclosing :func:`limits` block's values (no block: automatic, a share of 1)."""
    return _LIMITS.get(AUTOMATIC)


@contextlib.contextmanager
def limits(requested: int | None = None, share: int | None = None) -> Iterator[Limits]:
    """Inside the block (this thread's context), :func:`threads_for` without arguments,
    ONNX Runtime sessions and OpenVINO models use ``requested`` threads and ``share``;
    ``None`` or 0 keeps the enclosing block's value (so ``[upscale] threads = 0`` inside a
    run with ``[run] threads = 2`` gets 2)."""
    outer = _LIMITS.get(AUTOMATIC)
    _check(requested, share)
    inner = Limits(requested or outer.requested, share or outer.share)
    token = _LIMITS.set(inner)
    try:
        yield inner
    finally:
        _LIMITS.reset(token)


def _check(requested: int | None, share: int | None) -> None:
    if requested is not None and requested < 0:
        raise ValueError(f"threads = {requested}: expected 0 (automatic) or a positive count")
    if share is not None and share < 0:
        raise ValueError(f"share = {share}: expected a positive number of processes")


def affinity_cpus() -> set[int] | None:
    """The CPUs the scheduler may run this process on (None where the platform cannot
    say: macOS, Windows)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def cgroup_cpu_limit(root: str | os.PathLike[str] = ROOT) -> float | None:
    """The cgroup CPU quota of this process in CPUs (quota / period; 1.5 = one and a half
    CPUs' time per period), the smallest on the way from its cgroup to the root of each
    hierarchy (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None
    without one (no cgroups, ``max``, -1, unreadable or malformed files). ``root``: where
    ``proc`` and ``sys`` are (tests pass a folder of their own files)."""
    root = Path(root)
    found: list[float] = []
    for directory, version in _cgroup_dirs(root):
        for folder in _up_to_mount(directory):
            quota = _read_v2(folder) if version == 2 else _read_v1(folder)
            if quota is not None:
                found.append(quota)
    return min(found) if found else None


def usable_cpus(root: str | os.PathLike[str] = ROOT) -> int:
    """CPUs this process may use: its affinity set, at most the cgroup quota rounded up;
    at least 1. ``os.cpu_count()`` where the platform tells neither."""
    cpus = affinity_cpus()
    count = len(cpus) if cpus else (os.cpu_count() or 1)
    quota = cgroup_cpu_limit(root)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def usable_cores(root: str | os.PathLike[str] = ROOT) -> int:
    """:func:`usable_cpus` counting the hyper-threads of one core once (torch's and ONNX
    Runtime's own default is one thread per core): at most the cores the affinity set
    touches, read from ``/sys/devices/system/cpu/cpuN/topology``; the CPUs where that is
    not there."""
    usable = usable_cpus(root)
    cpus = affinity_cpus()
    if not cpus:
        return usable
    cores: set[str] = set()
    for cpu in cpus:
        topo = Path(root) / f"sys/devices/system/cpu/cpu{cpu}/topology"
        siblings = _read(topo / "core_cpus_list") or _read(topo / "thread_siblings_list")
        if siblings is None:
            return usable
        cores.add(siblings)
    return max(1, min(usable, len(cores)))


def busy_cpus(root: str | os.PathLike[str] = ROOT) -> float:
    """CPUs other processes keep busy right now: the tasks running or waiting to run on
    this machine (``procs_running`` of ``/proc/stat``), less this process's own running
    threads, the median of :data:`LOAD_SAMPLES` samples a few ms apart. The one-minute
    load average trails a load by a minute (and counts our own previous run), so it is
    only the fallback where ``/proc/stat`` is not there."""
    root = Path(root)
    samples: list[int] = []
    for i in range(LOAD_SAMPLES):
        if i:
            time.sleep(LOAD_PAUSE_S)
        running = _procs_running(root)
        if running is None:
            break
        samples.append(max(0, running - _own_running(root)))
    if samples:
        return float(statistics.median(samples))
    try:
        return max(0.0, os.getloadavg()[0] - 1)
    except (AttributeError, OSError):
        return 0.0


def threads_for(
    requested: int | None = None,
    share: int | None = None,
    *,
    root: str | os.PathLike[str] = ROOT,
) -> int:
    """Threads for one pool of this process: ``requested`` when given (> 0), else the
    usable cores (:func:`usable_cores`) divided among ``share`` processes of this host.
    ``None`` (or 0): the enclosing :func:`limits` block's value, else automatic and a
    share of 1. Always at least 1; the same on every call in the same environment (never
    from the load: see the module docstring)."""
    _check(requested, share)
    block = _LIMITS.get(AUTOMATIC)
    requested = requested or block.requested
    if requested:
        return requested
    share = share or block.share
    return max(1, usable_cores(root) // share)


def machine_busy(
    threads: int | None = None, share: int = 1, root: str | os.PathLike[str] = ROOT
) -> bool:
    """Whether other processes leave fewer idle CPUs on this machine than the ``share``
    processes of this job, ``threads`` each (default: :func:`threads_for`), would use;
    the ``share - 1`` other processes of the job (torchrun ranks starting beside this one)
    are not counted as others. False for one thread."""
    threads = threads or threads_for(share=share, root=root)
    others = max(0.0, busy_cpus(root) - (share - 1))
    return threads > 1 and (os.cpu_count() or threads) - others < threads * share


def spin_less_when_busy(
    environ: MutableMapping[str, str] | None = None, root: str | os.PathLike[str] = ROOT
) -> bool:
    """When :func:`machine_busy`, OpenMP's idle threads sleep at barriers instead of
    spinning (``OMP_WAIT_POLICY=PASSIVE`` in ``environ``, default ``os.environ``): a
    spinning thread takes the CPU that the thread it waits for needs. Read when an OpenMP
    runtime loads, so call it before torch is imported (``ganpipe run`` does; processes it
    starts inherit it); the same work split, so the same results. Keeps a policy the user
    set (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``). Under torchrun the ranks of this node
    (``LOCAL_WORLD_SIZE``) are one job. Returns whether it set the policy."""
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return False
    try:
        share = max(1, int(environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        share = 1
    if not machine_busy(share=share, root=root):
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def workers_for(requested: int | None = None, cap: int = 4, share: int | None = None) -> int:
    """Threads of a decode or encode pool (Pillow, I/O): ``requested`` when given (> 0),
    else the usable CPUs divided among ``share`` processes, at most ``cap``."""
    _check(requested, share)
    if requested:
        return requested
    share = share or _LIMITS.get(AUTOMATIC).share
    return max(1, min(cap, usable_cpus() // share))


# -- cgroup files ---------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _mounts(root: Path) -> list[tuple[str, str, str, str]]:
    """``(fstype, mount point, mounted cgroup path, super options)`` of the cgroup
    mounts in ``/proc/self/mountinfo``."""
    text = _read(root / "proc/self/mountinfo") or ""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or not tail[0].startswith("cgroup"):
            continue
        mounts.append((tail[0], fields[4], fields[3], tail[2]))
    return mounts


def _cgroup_dirs(root: Path) -> list[tuple[Path, int]]:
    """This process's cgroup folders that hold CPU limits: ``(folder, 2)`` for the v2
    hierarchy, ``(folder, 1)`` for a v1 hierarchy with the ``cpu`` controller. The mount
    points come from mountinfo (a container's mounts show only its own part of the
    tree); without it, the usual places under ``sys/fs/cgroup``."""
    text = _read(root / "proc/self/cgroup")
    if not text:
        return []
    mounts = _mounts(root)
    found: list[tuple[Path, int]] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            places = [(p, r) for t, p, r, _ in mounts if t == "cgroup2"]
            places = places or [("/sys/fs/cgroup/unified", "/"), ("/sys/fs/cgroup", "/")]
            version = 2
        elif "cpu" in controllers.split(","):
            places = [
                (p, r) for t, p, r, o in mounts if t == "cgroup" and "cpu" in o.split(",")
            ] or [(f"/sys/fs/cgroup/{n}", "/") for n in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
            version = 1
        else:
            continue
        for point, mounted in places:
            base = root / point.lstrip("/")
            if not base.is_dir() or (version == 2 and not (base / "cgroup.controllers").exists()):
                continue
            rel = os.path.relpath(path, mounted) if path.startswith(mounted) else "."
            folder = base / rel if not rel.startswith("..") else base
            # a cgroup path from another namespace: the deepest part of it that exists
            while folder != base and not folder.is_dir():
                folder = folder.parent
            found.append((folder, version))
            break
    return found


def _up_to_mount(folder: Path) -> Iterator[Path]:
    """``folder`` and its parents up to the mount point of its hierarchy (the first
    folder whose parent is no cgroup: its parent has no ``cgroup.procs``)."""
    while True:
        yield folder
        if folder.parent == folder or not (folder.parent / "cgroup.procs").exists():
            return
        folder = folder.parent


def _read_v2(folder: Path) -> float | None:
    """``cpu.max``: ``"150000 100000"`` -> 1.5; ``"max 100000"`` -> None."""
    fields = (_read(folder / "cpu.max") or "").split()
    try:
        quota, period = float(fields[0]), float(fields[1]) if len(fields) > 1 else 100000.0
    except (IndexError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read_v1(folder: Path) -> float | None:
    """``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; -1 is no quota."""
    try:
        quota = float(_read(folder / "cpu.cfs_quota_us") or "")
        period = float(_read(folder / "cpu.cfs_period_us") or "")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _procs_running(root: Path) -> int | None:
    for line in (_read(root / "proc/stat") or "").splitlines():
        if line.startswith("procs_running "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def _own_running(root: Path) -> int:
    """This process's threads that are running now (state R in ``/proc/self/task``);
    at least the calling one."""
    count = 0
    try:
        tasks = list((root / "proc/self/task").iterdir())
    except OSError:
        return 1
    for task in tasks:
        stat = _read(task / "stat") or ""
        state = stat.rpartition(")")[2].split()[:1]  # the name may hold spaces and ")"
        count += state == ["R"]
    return max(1, count)
