"""Data-parallel training: what each process does, under torchrun or ``devices = N``
(how they are started: :mod:`ganpipe.training.launch`).

One process per device: ``cuda:LOCAL_RANK`` on GPU machines (NCCL), or CPU processes
(Gloo; for CPU clusters, and how the tests run it). Each process:

* builds the nets from the run's seed, so every process starts from the same weights;
* takes its slice (``batch_size / world`` images) of each global batch, which depends
  only on (seed, step) as in a one-process run, and draws its own noise (seeded by seed
  and rank);
* averages the gradients across processes after every backward pass, before the
  optimizer steps: one flat ``all_reduce`` per update, in :meth:`StepContext.update`
  (:func:`average_gradients`, the stylegan2-ada approach). All processes therefore keep
  identical weights and EMA (checked at the end);
* logs the losses averaged across processes.

Why not one ``DistributedDataParallel`` per net (StudioGAN, BasicSR)? Measured with
``bench/ddp_overlap.py`` (bench/results/ddp-overlap-2026-12-03.md): DCGAN 64 px G/D
(6.4 M parameters), 2 CPU processes, Gloo. The flat all-reduce exposes about 2% of a
step; DDP, meant to hide its all-reduce in the backward, hid none of it on CPU cores
(Gloo's threads compete with the backward) and was slower in 6 of 6 paired rounds
(+0.47 s on a 4.3 s step). A GAN step also fights DDP's reducer: D runs on real and
fake images before one backward, the generator's loss back-propagates through D (D's
hooks would all-reduce gradients nobody uses, unless the pass runs under
``D.no_sync()``), heads used only in some phases need ``find_unused_parameters``, R1 /
path-length penalties need ``create_graph`` backwards, and every variant's
``train_step`` would have to call the wrapped nets while checkpoints keep the plain
ones. The flat all-reduce has none of these constraints: it averages whatever
gradients a variant's ``update`` produced. Keep it; revisit with DDP when a measured
multi-GPU run (NCCL, where overlap is real) shows communication dominating the step.

Process 0 writes the checkpoints (with every process's RNG state, so a resume with the
same number of processes continues exactly; with another number the weights,
optimizers, EMA, step and batches are exact and the noise streams restart), the metrics
log, the sample grids and the progress bar. Batch norm statistics are per process (as
with DDP without SyncBatchNorm).

A :class:`~ganpipe.errors.GanpipeError` in a process (a non-finite loss, say) comes back
to the pipeline as the same one-line error; a crash of one process stops the others
(the launcher stops them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ganpipe import signals
from ganpipe.devices import Device
from ganpipe.errors import ConfigError, GanpipeError, TrainingError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a data-parallel run."""

    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    """A TCP port free on this machine now (single-machine process groups, tests)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def reseed(seed: int, step: int, rank: int) -> None:
    """Fresh noise streams for a resume with another number of processes (the saved
    ones belong to other ranks): deterministic in (seed, step, rank)."""
    torch.manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729 + 1) % 2**63)


def odd_one_out(value: Any) -> tuple[int, Any, Any] | None:
    """``(rank, its value, process 0's)`` of the first process whose ``value`` differs
    from process 0's (None: all agree); every process gets the same answer."""
    values = gather_objects(value)
    return next(((r, v, values[0]) for r, v in enumerate(values) if v != values[0]), None)


def same_start(step: int, ckpt_dir) -> None:
    """Every process resumes from the same step, or all stop with one line: a process
    that sees another (or no) checkpoint is on a node without the shared run folder."""
    odd = odd_one_out(step)
    if odd is not None:
        raise TrainingError(
            f"process {odd[0]} would start at step {odd[1]} but process 0 at step "
            f"{odd[2]} ({ckpt_dir}): put the run folder (run.out_dir) on a file system "
            f"every node shares"
        )


def check_devices(devices: int, device: Device, batch_size: int) -> None:
    """Configuration checks for ``devices`` > 1 and for runs under torchrun (one line
    each, what and how to fix); ``device`` is ``run.device`` as the config parsed it."""
    from ganpipe.training.launch import from_env

    env = from_env()
    if env is not None:
        if devices > 1:
            raise ConfigError(
                f"train.devices = {devices} starts processes itself, but torchrun started "
                f"{env.world} already; leave train.devices at 1 under torchrun "
                f"(--nproc-per-node sets the processes per node)"
            )
        check_share(env.world, batch_size, "the processes torchrun started")
        local, what = env.local_world, f"torchrun --nproc-per-node {env.local_world}"
    elif devices <= 1:
        return
    else:
        check_share(devices, batch_size)
        local, what = devices, f"train.devices = {devices}"
    if device.kind == "cpu":
        return
    if env is not None and device.kind == "auto" and not torch.cuda.is_available():
        return  # torchrun with "auto" and no GPU here: CPU processes
    if device.kind not in ("auto", "cuda") or device.index is not None:
        raise ConfigError(
            f"{what} uses cuda:0..cuda:{local - 1}; set run.device to "
            f'"auto" or "cuda" (or "cpu" for CPU processes), not {str(device)!r}'
        )
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available < local:
        raise ConfigError(
            f"{what} but {available} CUDA GPU(s) are usable here; use fewer processes, "
            f'or set run.device = "cpu" to train in {local} CPU processes'
        )


def check_share(world: int, batch_size: int, who: str = "train.devices") -> None:
    """Each of ``world`` processes takes an equal share of a batch."""
    if world > 1 and batch_size % world:
        raise ConfigError(
            f"train.batch_size = {batch_size} must be a multiple of {who} = {world} "
            f"(each process takes an equal share)"
        )


def train_process(job: dict) -> tuple[Any, str]:
    """What every process of a data-parallel run does, started by torchrun or by
    ``devices = N`` (:mod:`ganpipe.training.launch`): join the process group from the
    environment (unless ``ganpipe run`` joined it already), train with the others, leave
    together. Returns ``(TrainResult, device type)``; raises what the loop raises
    (GanpipeError, :class:`~ganpipe.signals.Interrupted` after the same step everywhere)."""
    from ganpipe.training.launch import from_env, init_group, uses_cuda
    from ganpipe.training.loop import Trainer

    env = from_env()
    if env is None:
        raise TrainingError("a data-parallel process was started without RANK / WORLD_SIZE")
    cuda = uses_cuda(job["device"])
    if not cuda:  # share this machine's usable CPUs instead of each process taking all
        from ganpipe.training.threads import set_process_threads

        set_process_threads(job.get("threads") or None, share=env.local_world)
    joined = not dist.is_initialized()
    if joined:
        init_group(cuda, env)
    elif cuda:
        torch.cuda.set_device(env.local_rank)
    try:
        # process 0 has cleared the folder (--force) before any process reads it
        dist.barrier()
        odd = odd_one_out(job["fingerprint"])
        if odd is not None:
            raise TrainingError(
                f"process {odd[0]} sees another configuration or other data than process 0 "
                f"(the training fingerprints differ); give every node the same "
                f"pipeline.toml and the same data"
            )
        trainer = Trainer(
            job["variant"],
            job["variant_opts"],
            job["opts"],
            job["data"],
            job["out_dir"],
            seed=job["seed"],
            device=Device("cuda", env.local_rank) if cuda else Device("cpu"),
            fingerprint=job["fingerprint"],
            log=job.get("log", print) if env.main else (lambda *_: None),
            dist_info=DistInfo(env.rank, env.world),
        )
        try:
            result = trainer.run()
        except signals.Interrupted:  # every process, after the same step
            _leave_together()
            raise
        _leave_together()
        return result, trainer.device.type
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()


def _leave_together() -> None:
    # a process tearing down its connections while another still uses them can abort
    # Gloo ("terminate called without an active exception")
    dist.barrier()


def elastic_worker(job: dict) -> None:
    """The entry point of a ``devices = N`` worker: :func:`train_process`, its outcome
    handed to the parent (:func:`ganpipe.training.launch.report`)."""
    from ganpipe.training.launch import from_env, report

    rank = from_env().rank
    # signals are recorded from now on (the loop stops on them after a step)
    with signals.deferred():
        try:
            result, device = train_process(job)
            record = {
                "checkpoint": str(result.checkpoint),
                "steps": result.steps,
                "resumed_from": result.resumed_from,
                "images_per_second": result.images_per_second,
                "device": device,
            }
        except signals.Interrupted as exc:
            record = {"interrupted": exc.signum, "step": exc.step}
            record["checkpoint"] = str(exc.checkpoint) if exc.checkpoint else None
        except GanpipeError as exc:
            # Mostly raised by every process at once (the loss check and the end check
            # use values shared by all); the parent reports this message.
            report(job, rank, {"error": type(exc).__name__, "message": str(exc)})
            return
        finally:
            signals.consume()  # this process's stop, if any, is reported: drop late ones
        if rank == 0:
            report(job, rank, record)
    if "interrupted" in record:  # exit as a signalled process does (143, 130): a launcher
        # that sent the signal does not read return values, and would wait for them
        raise SystemExit(128 + record["interrupted"])
