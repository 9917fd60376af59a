"""Data-parallel training on several devices: ``[train] devices = N``.

The train stage starts N worker processes (``torch.multiprocessing``, spawn), one per
device: ``cuda:0`` ... ``cuda:N-1`` on a GPU machine (NCCL), or N CPU processes with
``run.device = "cpu"`` (Gloo; for CPU clusters, and how the tests run it). Each process:

* builds the nets from the run's seed, so every process starts from the same weights;
* takes its slice (``batch_size / N`` images) of each global batch, which depends only on
  (seed, step) as in a one-device run, and draws its own noise (seeded by seed and rank);
* averages the gradients across processes after every backward pass, before the
  optimizer steps (one ``all_reduce`` per update). This is what
  ``DistributedDataParallel`` does, done in :meth:`StepContext.update` instead, because a
  GAN step runs D several times (real, fake, the generator's pass) per backward, which
  DDP's reducer does not allow. All processes therefore keep identical weights and EMA;
* logs the losses averaged across processes.

Process 0 writes the checkpoints (with every process's RNG state, so a resume with the
same ``devices`` continues exactly), the metrics log, the sample grids and the progress
bar. Batch norm statistics are per process (as with DDP without SyncBatchNorm).

A :class:`~ganpipe.errors.GanpipeError` in a worker (a non-finite loss, say) comes back to
the pipeline as the same one-line error; a crash of one worker stops the others.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ganpipe import errors, signals
from ganpipe.devices import Device
from ganpipe.errors import ConfigError, GanpipeError, TrainingError
from ganpipe.fsutil import write_bytes
from ganpipe.training.devices import parse_torch_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a data-parallel run."""

    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """Replace each gradient by its mean over the processes (one flat all_reduce per dtype)."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(world)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def mean_across(values: torch.Tensor) -> torch.Tensor:
    """``values`` averaged over the processes (a copy)."""
    out = values.detach().clone()
    dist.all_reduce(out)
    return out.div_(dist.get_world_size())


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def check_in_step(modules: dict[str, torch.nn.Module]) -> None:
    """Data-parallel processes must end with the same weights (gradients averaged, same
    updates); a difference means lost synchronisation, not a usable model."""
    sums = torch.stack(
        [p.detach().double().sum() for m in modules.values() for p in m.parameters()]
    ).cpu()
    if any(not torch.equal(sums, other) for other in gather_objects(sums)):
        raise TrainingError(
            "the data-parallel training processes ended with different "
            "weights; re-run with train.devices = 1, and report this"
        )


def check_devices(devices: int, device: str | Device, batch_size: int) -> None:
    """Configuration checks for ``devices`` > 1 (one line each, what and how to fix);
    ``device`` is ``run.device`` (:func:`ganpipe.devices.parse_device` grammar)."""
    if devices <= 1:
        return
    if batch_size % devices:
        raise ConfigError(
            f"train.batch_size = {batch_size} must be a multiple of "
            f"train.devices = {devices} (each device takes an equal share)"
        )
    parsed = parse_torch_device(device)
    if parsed.kind == "cpu":
        return
    if parsed.kind not in ("auto", "cuda") or parsed.index is not None:
        raise ConfigError(
            f"train.devices = {devices} uses cuda:0..cuda:{devices - 1}; set "
            f'run.device to "auto" or "cuda" (or "cpu" for CPU '
            f"processes), not {str(parsed)!r}"
        )
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available < devices:
        raise ConfigError(
            f"train.devices = {devices} but {available} CUDA GPU(s) are usable "
            f'here; lower train.devices, or set run.device = "cpu" to train '
            f"in {devices} CPU processes"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _report_path(job: dict, rank: int) -> Path:
    """Where a worker hands its outcome to the parent: a small JSON file in the train
    folder (a multiprocessing queue would leave semaphores behind when a worker has to
    exit hard)."""
    return Path(job["out_dir"]) / f".devices-{job['token']}-{rank}.json"


def _report(job: dict, rank: int, record: dict) -> None:
    write_bytes(_report_path(job, rank), json.dumps(record).encode())


def _worker(rank: int, world: int, port: int, job: dict) -> None:
    # signals are recorded from now on (the loop stops on them after a step); before,
    # this process ignored them (started so by the parent, which sends them again)
    with signals.deferred():
        try:
            _train(rank, world, port, job)
        finally:
            signals.consume()  # this process's stop, if any, is reported: drop late ones


def _train(rank: int, world: int, port: int, job: dict) -> None:
    from ganpipe.training.loop import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = parse_torch_device(job["device"]).kind != "cpu"  # checked: auto, cuda or cpu
    device = Device("cuda", rank) if cuda else Device("cpu")
    if cuda:
        torch.cuda.set_device(rank)
    else:  # share the cores instead of every process using all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(
        "nccl" if cuda else "gloo", rank=rank, world_size=world, timeout=timedelta(minutes=30)
    )
    try:
        trainer = Trainer(
            job["variant"],
            job["variant_opts"],
            job["opts"],
            job["data"],
            job["out_dir"],
            seed=job["seed"],
            device=device,
            fingerprint=job["fingerprint"],
            log=print if rank == 0 else (lambda *_: None),
            dist_info=DistInfo(rank, world),
        )
        try:
            result = trainer.run()
            record = {
                "checkpoint": str(result.checkpoint),
                "steps": result.steps,
                "resumed_from": result.resumed_from,
                "images_per_second": result.images_per_second,
                "device": trainer.device.type,
            }
        except signals.Interrupted as exc:  # every process, after the same step
            record = {"interrupted": exc.signum, "step": exc.step}
            record["checkpoint"] = str(exc.checkpoint) if exc.checkpoint else None
        if rank == 0:
            _report(job, rank, record)
        # leave together: a process tearing down its connections while another still
        # uses them can abort Gloo ("terminate called without an active exception")
        dist.barrier()
    except GanpipeError as exc:
        # Mostly raised by every process at once (the loss check and the end check use
        # values shared by all); a process left waiting in a collective gets an error
        # when this one leaves the group below, and the parent reports this message.
        _report(job, rank, {"error": type(exc).__name__, "message": str(exc)})
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _spawn(job: dict, devices: int, procs: list) -> None:
    """Start the workers (their processes appended to ``procs``) and wait for them; a
    signal the parent got is sent to them again every half second (the first may reach a
    worker before its handlers are installed, when it still ignores signals)."""
    with signals.ignored():  # inherited by the workers until their handlers are set
        context = mp.spawn(
            _worker,
            args=(devices, _free_port(), job),
            nprocs=devices,
            join=False,
            start_method="spawn",
        )
        procs.extend(context.processes)
    while not context.join(timeout=0.5):
        signum = signals.requested()
        if signum is not None:
            signals.forward_to(lambda: [p.pid for p in procs if p.is_alive()])(signum)


def train_distributed(job: dict, devices: int) -> tuple[Any, str]:
    """Run :class:`~ganpipe.training.loop.Trainer` in ``devices`` processes; returns
    process 0's ``(TrainResult, device type)`` (``"cuda"``, ``"cpu"``). ``job`` holds the
    Trainer's arguments, ``job["device"]`` the run's device (``auto``, ``cuda`` or ``cpu``:
    see :func:`check_devices`)."""
    from ganpipe.training.loop import TrainResult

    job = {**job, "token": secrets.token_hex(4)}
    out_dir = Path(job["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
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

    # a SIGTERM / SIGINT here is passed on to the workers: they stop together after a
    # step, with a checkpoint, and report it (a signal they missed is acted on at the end)
    procs: list = []
    alive = signals.forward_to(lambda: [p.pid for p in procs if p.is_alive()])
    with signals.deferred(forward=alive):
        try:
            _spawn(job, devices, procs)
            raise_reported()
            record = read(0)
            if record is None:
                raise TrainingError(f"training process 0 of {devices} ended without a result")
        except mp.ProcessExitedException as exc:
            raise_reported()
            record = read(0)
            if record is None or "checkpoint" not in record:
                raise TrainingError(
                    f"training process {exc.error_index} of {devices} stopped "
                    f"(exit code {exc.exit_code}); see its output above"
                ) from None
            # else: process 0 reported after the last collective, so every process finished
            # training and the checkpoint is written; one died while shutting down
        except mp.ProcessRaisedException as exc:
            raise_reported()
            last = [ln for ln in str(exc).strip().splitlines() if ln.strip()][-1:]
            raise TrainingError(
                f"training process {exc.error_index} of {devices} failed: {last[0] if last else exc}"
            ) from None
        finally:
            for path in reports:
                path.unlink(missing_ok=True)
        if "interrupted" in record:  # all processes stopped after this step
            raise signals.Interrupted(
                record["interrupted"], step=record["step"], checkpoint=record["checkpoint"]
            )
    result = TrainResult(
        Path(record["checkpoint"]),
        record["steps"],
        record["resumed_from"],
        record["images_per_second"],
    )
    return result, record["device"]
