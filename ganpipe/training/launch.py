"""How the processes of a data-parallel run are started and find each other.

Two ways in, one code path (:func:`ganpipe.training.distributed.train_process`):

* **torchrun** (one node or several, under a cluster scheduler):
  ``torchrun --nnodes N --nproc-per-node G -m ganpipe run pipeline.toml``. Every process
  runs ``ganpipe run``; :func:`from_env` reads its place from what torchrun sets
  (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` ...).
  Process 0 runs the whole pipeline and is the only one that writes (manifest, pipeline
  copy, checkpoints, samples, metrics, later stages, report). The others skip every stage
  except those that train in every process (the train stage, ``all_ranks = True``): at
  each of those they wait for process 0's word (:class:`Coordinator`: run it, or skip it
  because it is up to date), train with it, and exit 0 after the last one. The run
  folder must be on a file system every node sees (checkpoints are read by all of them
  on a resume; the loop checks that they all start from the same step).
* **devices = N** (one machine): the train stage starts N processes with PyTorch's own
  launcher (``torch.distributed.launcher.api.elastic_launch``, standalone c10d
  rendezvous on a free port, no restarts) and waits for them
  (:func:`launch_devices`); the parent runs the pipeline, the workers only train.

Signals: the launcher (torchrun, or the agent inside ``devices = N``) passes SIGTERM /
SIGINT on to the workers; they finish the step, write one checkpoint together and stop
(:mod:`ganpipe.training.preemption`). torchrun itself then exits 1 (its own
``SignalException``); every ganpipe process exits 143 / 130, and so does the parent of a
``devices = N`` run. Elastic restarts (``torchrun --max-restarts``) start every process
again: the pipeline skips the stages that are done and training resumes from the last
checkpoint.

Torch-free at import (``ganpipe.pipeline`` asks :func:`from_env` on every run).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ganpipe import errors, signals
from ganpipe.devices import Device
from ganpipe.errors import TrainingError

#: collectives of training give up after this long (a process stuck, not dead: dead ones
#: are seen by the launcher, which stops the others)
TIMEOUT = timedelta(minutes=30)
#: how long the other processes wait for process 0 to reach a training stage (it may
#: run augment or tune first)
WAIT = timedelta(days=7)
#: how long a ``devices = N`` parent gives its workers to checkpoint after a signal
SHUTDOWN_S = 300


@dataclass(frozen=True)
class Launched:
    """This process's place in a run started by torchrun (or its launcher API)."""

    rank: int
    world: int
    local_rank: int
    local_world: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> Launched | None:
    """This process's place when a launcher started it with two or more processes
    (``WORLD_SIZE`` > 1), else None: a plain run."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    except (KeyError, ValueError):
        raise errors.ConfigError(
            "WORLD_SIZE is set but RANK / LOCAL_RANK are missing or not numbers; start "
            "ganpipe with torchrun (or set RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, "
            "MASTER_PORT for every process)"
        ) from None
    return Launched(rank, world, local_rank, local_world)


def uses_cuda(device: Device) -> bool:
    """Whether processes with ``run.device = device`` train on CUDA (NCCL) or on the
    CPU (Gloo); ``device`` is ``run.device`` as the config parsed it (auto, cuda or cpu,
    :func:`~ganpipe.training.distributed.check_devices`)."""
    import torch

    return device.kind == "cuda" or (device.kind == "auto" and torch.cuda.is_available())


def init_group(cuda: bool, env: Launched) -> None:
    """Join the default process group from the environment (``env://``): NCCL for CUDA
    tensors (and Gloo for CPU ones), Gloo alone on the CPU."""
    import torch
    import torch.distributed as dist

    if cuda:
        torch.cuda.set_device(env.local_rank)
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend, timeout=TIMEOUT)
        return
    # torchrun lends its own store to the workers and keeps it across elastic restarts:
    # a restarted process would read the addresses of the dead ones (pytorch#135712), so
    # each attempt gets keys of its own
    store = dist.PrefixStore(
        f"ganpipe/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}",
        dist.TCPStore(
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            is_master=False,
            timeout=TIMEOUT,
        ),
    )
    dist.init_process_group(
        backend, store=store, rank=env.rank, world_size=env.world, timeout=TIMEOUT
    )


class Coordinator:
    """Process 0's word to the others at each stage that trains in every process
    (``stages``: their names, in order).

    Every process joins when ``ganpipe run`` starts (:meth:`join`), so nobody waits in a
    rendezvous while process 0 runs the stages before training. At each of ``stages``
    process 0 :meth:`decide` s (run it, or skip it as up to date) and the others
    :meth:`hear` it; when process 0 stops before one of them it says so
    (:meth:`abort`). The word travels in a Gloo group of its own with a long timeout;
    the wait polls, so SIGTERM / SIGINT still stop a waiting process.
    """

    def __init__(self, env: Launched, stages: list[str]):
        self.env, self.pending, self.group = env, list(stages), None
        self.inside = False  # process 0 runs one of the stages (the others run it too)

    def join(self, device: Device) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            init_group(uses_cuda(device), self.env)
        self.group = dist.new_group(backend="gloo", timeout=WAIT)

    def leave(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        self.group = None

    def decide(self, stage: str, run: bool, **word: Any) -> None:
        """Process 0: whether every process runs ``stage`` now (no-op for other stages)."""
        self.inside = False
        if self.pending and self.pending[0] == stage:
            self.pending.pop(0)
            self._tell({"run": run, **word})
            self.inside = run

    def abort(self, exc: BaseException) -> None:
        """Process 0 stops: the others, if they wait for a later stage, stop too."""
        if self.pending and not self.inside:
            signum = exc.signum if isinstance(exc, signals.Interrupted) else None
            self.pending = []
            with contextlib.suppress(Exception):  # one of them gone: the launcher stops them
                self._tell(
                    {
                        "abort": errors.one_line(exc) or type(exc).__name__,
                        "signal": signum,
                    }
                )

    def _tell(self, message: dict[str, Any]) -> None:
        import torch
        import torch.distributed as dist

        data = torch.frombuffer(bytearray(json.dumps(message).encode()), dtype=torch.uint8)
        dist.broadcast(torch.tensor([data.numel()]), src=0, group=self.group)
        dist.broadcast(data, src=0, group=self.group)

    def hear(self) -> dict[str, Any]:
        """The others: process 0's word on the next of ``stages``; raises what stopped
        process 0 when it stopped before."""
        import torch
        import torch.distributed as dist

        size = torch.zeros(1, dtype=torch.int64)
        work = dist.broadcast(size, src=0, group=self.group, async_op=True)
        while not work.is_completed():  # signal handlers run between the polls
            time.sleep(0.05)
        work.wait()
        data = torch.empty(int(size.item()), dtype=torch.uint8)
        dist.broadcast(data, src=0, group=self.group)
        word = json.loads(data.numpy().tobytes())
        if "abort" in word:
            if word.get("signal"):
                raise signals.Interrupted(int(word["signal"]))
            raise TrainingError(f"process 0 stopped before training: {word['abort']}")
        return word


# -- devices = N ---------------------------------------------------------------------------
def _report_path(job: dict, rank: int) -> Path:
    """Where a worker hands its outcome to the parent: a small JSON file in the train
    folder (the launcher's own return values are lost when the parent is signalled)."""
    return Path(job["out_dir"]) / f".devices-{job['token']}-{rank}.json"


@contextlib.contextmanager
def _launcher_handlers():
    """The launcher installs signal handlers of its own (they raise ``SignalException``);
    the previous ones come back afterwards. Its log lines stay out of ganpipe's output."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    names = [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]
    loggers = [logging.getLogger(n) for n in ["torch.distributed", *names]]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        for s, h in saved.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def launch_devices(job: dict, devices: int) -> tuple[Any, str]:
    """Run :func:`~ganpipe.training.distributed.train_process` in ``devices`` processes on
    this machine; returns process 0's ``(TrainResult, device type)``. A signal stops them
    after a step with a checkpoint and raises :class:`~ganpipe.signals.Interrupted`."""
    import multiprocessing
    import uuid

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from ganpipe.training.distributed import elastic_worker
    from ganpipe.training.loop import TrainResult

    job = {**job, "token": secrets.token_hex(4)}
    Path(job["out_dir"]).mkdir(parents=True, exist_ok=True)
    reports = [_report_path(job, r) for r in range(devices)]

    def read(rank: int) -> dict | None:
        try:
            return json.loads(reports[rank].read_text())
        except (OSError, ValueError):
            return None

    def raise_reported() -> None:
        for rank in range(devices):
            record = read(rank)
            if record and "error" in record:
                raise getattr(errors, record["error"], TrainingError)(record["message"])

    try:
        with tempfile.TemporaryDirectory(prefix="ganpipe-launch-") as logs:
            config = LaunchConfig(
                min_nodes=1,
                max_nodes=1,
                nproc_per_node=devices,
                run_id=str(uuid.uuid4()),
                rdzv_backend="c10d",
                rdzv_endpoint="localhost:0",
                max_restarts=0,
                monitor_interval=0.1,
                start_method="spawn",
                logs_specs=DefaultLogsSpecs(log_dir=logs),
                shutdown_timeout=SHUTDOWN_S,
            )
            signum = failed = None
            try:
                with _launcher_handlers():
                    elastic_launch(config, elastic_worker)(job)
            except SignalException as exc:  # the launcher sent it on to the workers
                signum = int(exc.sigval)
                with signals.deferred():  # a worker it gave up on (a second signal)
                    for proc in multiprocessing.active_children():
                        proc.join(SHUTDOWN_S)
            except ChildFailedError as exc:
                failed = exc.get_first_failure()
        raise_reported()
        record = read(0)
        if record is not None and "interrupted" in record:  # all stopped after this step
            raise signals.Interrupted(
                record["interrupted"], step=record["step"], checkpoint=record["checkpoint"]
            )
        if signum is not None:  # stopped before training started: nothing new to save
            raise signals.Interrupted(signum)
        if failed is not None and (record is None or "checkpoint" not in record):
            # (else process 0 reported after the last collective: one died leaving)
            rank, failure = failed
            why = f"exit code {failure.exitcode}"
            if failure.message and failure.message != "<N/A>":
                why = str(failure.message).strip().splitlines()[-1]
            raise TrainingError(
                f"training process {rank} of {devices} failed ({why}); see its output above"
            )
        if record is None:
            raise TrainingError(f"training process 0 of {devices} ended without a result")
    finally:
        for path in reports:
            path.unlink(missing_ok=True)
    result = TrainResult(
        Path(record["checkpoint"]),
        record["steps"],
        record["resumed_from"],
        record["images_per_second"],
    )
    return result, record["device"]


def report(job: dict, rank: int, record: dict) -> None:
    """A worker's outcome for :func:`launch_devices` (``devices = N`` only)."""
    from ganpipe.fsutil import write_bytes

    write_bytes(_report_path(job, rank), json.dumps(record).encode())
