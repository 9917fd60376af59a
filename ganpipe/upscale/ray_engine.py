"""The Ray Data engine for batch upscaling: ``ganpipe upscale ... --engine ray``.

The planned jobs (:func:`ganpipe.upscale.plan.plan_jobs`: the same file list, output names,
collision renaming, ``--skip-existing`` and ``--shard`` as the local engine) become a Ray
dataset; ``map_batches`` runs them on a pool of ``actors`` actors, each of which opens the
model once (one ONNX Runtime session per actor; with ``num_gpus`` = 1 per actor on CUDA
machines, so Ray gives each actor its own GPU) and runs each batch of files through the
local engine's own pipeline (:func:`ganpipe.upscale.batch.run_jobs`: decode ahead, encode
behind, atomic writes, never over an input, one failed file at a time). So the outputs are
the same bytes as the local engine's, and a failed file is a line of the report, not a
failed Ray task.

The driver collects one record per file as batches finish and hands them to ``on_record``
(the run's report/manifest, :mod:`ganpipe.upscale.report`), so a killed run leaves a
manifest of what is done and a rerun with ``--skip-existing`` does the rest.

Ray is optional (``pip install 'ganpipe[ray]'``). ``address``: a running cluster
(``ray://host:10001`` or ``host:6379``; ``auto`` for the one this machine belongs to);
without one, a local Ray instance is started for the run and stopped after it. On a
cluster every node needs ganpipe installed and the input and output folders mounted at the
same paths (a shared file system), as for ``--shard``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganpipe.cpus import limits
from ganpipe.errors import ConfigError
from ganpipe.upscale.options import UpscaleOptions
from ganpipe.upscale.plan import Job
from ganpipe.upscale.report import FileRecord

INSTALL = "pip install 'ganpipe[ray]'"
#: files per ``map_batches`` call: large enough for the decode/encode overlap inside an
#: actor, small enough that the report advances often and a lost actor redoes little
BATCH_FILES = 4


@dataclass(frozen=True)
class RayResult:
    """What the actors did: one :class:`~ganpipe.upscale.report.FileRecord` per file (the
    same record as the local engine's report), in the order the batches finished."""

    records: list[FileRecord]
    providers: list[str]
    tile: int


def check_ray():
    """The ``ray`` module; a one-line :class:`ConfigError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray without its Data library cannot run this
    except ImportError:
        raise ConfigError(
            f"--engine ray: Ray (with Ray Data) is not installed; {INSTALL}, or use --engine local"
        ) from None
    return ray


class UpscaleActor:
    """One model session per actor; ``__call__`` runs a batch of jobs with the local
    engine's pipeline and returns one record (as JSON) per file."""

    #: the run's options, set on a subclass made per run (so the actors need no
    #: constructor arguments in Ray's object store)
    options_json: str = ""
    #: actors sharing one machine's CPUs: each sizes its thread pools (model session,
    #: decode and encode) for its share (:func:`ganpipe.cpus.threads_for`)
    share: int = 1

    def __init__(self):
        from ganpipe.imaging.capture import quiet_decoder_warnings
        from ganpipe.upscale.ensemble import combine
        from ganpipe.upscale.model import open_models_of
        from ganpipe.upscale.tiling import Upscaler

        quiet_decoder_warnings()
        self.opts = UpscaleOptions.model_validate_json(self.options_json)
        with limits(self.opts.threads, self.share):
            sr = combine(open_models_of(self.opts), self.opts.tta)
        self.upscaler = Upscaler(sr, self.opts)
        self.provider = sr.providers[0] if sr.providers else "?"

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from ganpipe.upscale.batch import run_jobs

        jobs = [
            Job(Path(s), Path(d), f)
            for s, d, f in zip(batch["src"], batch["dst"], batch["fmt"], strict=True)
        ]
        records: list[FileRecord] = []
        with limits(share=self.share):  # decode and encode threads: this actor's share
            run_jobs(self.upscaler, jobs, self.opts, progress=False, on_record=records.append)
        return {
            "record": [r.to_json() for r in records],
            "provider": [self.provider] * len(records),
            "tile": [self.upscaler.tile] * len(records),
        }


def _quiet_ray(ray) -> None:
    """Ray Data's progress bars and INFO/WARNING lines would drown ganpipe's own output
    (errors still come through)."""
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False


def run_on_ray(
    jobs: list[Job],
    opts: UpscaleOptions,
    *,
    address: str | None = None,
    actors: int = 2,
    gpus_per_actor: float | None = None,
    on_record: Callable[[FileRecord], Any] | None = None,
) -> RayResult:
    """Run ``jobs`` on ``actors`` Ray actors (see the module docstring); ``on_record`` is
    called on the driver with each file's record as its batch finishes."""
    ray = check_ray()
    if actors < 1:
        raise ConfigError(f"--actors {actors}: expected at least 1")
    if not jobs:  # everything skipped or failed in planning: no cluster to start
        return RayResult([], [], opts.tile)
    _quiet_ray(ray)
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.ERROR,
            "configure_logging": True,
        }
        if address:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ConfigError(
                f"--ray-address {address}: cannot connect to Ray ({first}); start the "
                f"cluster (ray start --head) or leave --ray-address out for a local one"
            ) from None
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if opts.device.startswith(("cuda", "tensorrt")) else 0.0
    records: list[FileRecord] = []
    providers: set[str] = set()
    tile = opts.tile
    try:
        ds = ray.data.from_items(
            [{"src": str(j.src), "dst": str(j.dst), "fmt": j.fmt} for j in jobs],
            override_num_blocks=max(1, min(len(jobs), actors * 4)),
        )
        with warnings.catch_warnings():  # Ray's own deprecation notes about its internals
            warnings.simplefilter("ignore", DeprecationWarning)
            mapped = _map(ds, ray, opts, actors, gpus_per_actor)
        for row in mapped.iter_rows():
            record = FileRecord.from_json(row["record"])
            records.append(record)
            providers.add(str(row["provider"]))
            if int(row["tile"]) and (not tile or int(row["tile"]) < tile):
                tile = int(row["tile"])  # an actor halved it after running out of memory
            if on_record is not None:
                on_record(record)
    finally:
        if started:
            ray.shutdown()
    return RayResult(records, sorted(providers), tile)


def actors_per_node(ray, actors: int) -> int:
    """How many of the ``actors`` share one machine's CPUs: all of them on a local Ray
    instance, else spread evenly over the cluster's live nodes (as Ray places actors
    reserving one CPU each)."""
    try:
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    except Exception:  # noqa: BLE001 - no answer from the cluster: assume one machine
        nodes = 1
    return max(1, -(-actors // max(1, nodes)))


def _map(ds, ray, opts: UpscaleOptions, actors: int, gpus_per_actor: float):
    fields = {"options_json": opts.model_dump_json(), "share": actors_per_node(ray, actors)}
    actor = type("UpscaleActor", (UpscaleActor,), fields)
    return ds.map_batches(
        actor,
        batch_size=BATCH_FILES,
        batch_format="default",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
        num_gpus=gpus_per_actor,
        # a lost actor fails the run instead of restarting: the report keeps what was done
        # and a rerun with --skip-existing does the rest
        max_restarts=0,
    )
