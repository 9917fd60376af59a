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
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganpipe.errors import ConfigError
from ganpipe.upscale.options import UpscaleOptions
from ganpipe.upscale.plan import Job

INSTALL = "pip install 'ganpipe[ray]'"
#: files per ``map_batches`` call: large enough for the decode/encode overlap inside an
#: actor, small enough that the report advances often and a lost actor redoes little
BATCH_FILES = 4


@dataclass(frozen=True)
class RayResult:
    """What the actors did: per file ``(src, outcome, reason, dst, megapixels, seconds,
    warnings)``, in the order the batches finished."""

    rows: list[dict[str, Any]]
    providers: list[str]
    scale: int
    tile: int


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--engine ray: Ray is not installed; {INSTALL}") from None
    return ray


class UpscaleActor:
    """One model session per actor; ``__call__`` runs a batch of jobs with the local
    engine's pipeline and returns one row per file."""

    #: the run's options, set on a subclass made per run (so the actors need no
    #: constructor arguments in Ray's object store)
    options_json: str = ""

    def __init__(self):
        from ganpipe.imaging.formats import quiet_decoder_warnings
        from ganpipe.upscale.ensemble import combine
        from ganpipe.upscale.model import open_model_of
        from ganpipe.upscale.tiling import Upscaler

        quiet_decoder_warnings()
        self.opts = UpscaleOptions.model_validate_json(self.options_json)
        sr = combine([open_model_of(p, self.opts) for p in self.opts.model], self.opts.tta)
        self.upscaler = Upscaler(sr, self.opts)
        self.providers, self.scale = sr.providers, sr.scale

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from ganpipe.upscale.batch import run_jobs

        jobs = [
            Job(Path(s), Path(d), f)
            for s, d, f in zip(batch["src"], batch["dst"], batch["fmt"], strict=True)
        ]
        t0 = time.perf_counter()
        notes: list[tuple[Path, str]] = []
        written, failures, megapixels = run_jobs(
            self.upscaler, jobs, self.opts, progress=False, warnings=notes
        )
        seconds = (time.perf_counter() - t0) / max(1, len(jobs))
        reasons = dict(failures)
        done = set(written)
        out: dict[str, list] = {k: [] for k in ("src", "dst", "outcome", "reason", "warnings")}
        for job in jobs:
            out["src"].append(str(job.src))
            out["dst"].append(str(job.dst))
            ok = job.dst in done
            out["outcome"].append("written" if ok else "failed")
            out["reason"].append("" if ok else reasons.get(job.src, "not written"))
            out["warnings"].append([n for p, n in notes if p == job.src])
        out["seconds"] = [seconds] * len(jobs)
        out["provider"] = [self.providers[0] if self.providers else "?"] * len(jobs)
        out["tile"] = [self.upscaler.tile] * len(jobs)
        out["scale"] = [self.scale] * len(jobs)
        return out


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
    on_row: Callable[[dict[str, Any]], Any] | None = None,
) -> RayResult:
    """Run ``jobs`` on ``actors`` Ray actors (see the module docstring); ``on_row`` is
    called on the driver for each file as its batch finishes."""
    ray = _import_ray()
    if actors < 1:
        raise ConfigError(f"--actors {actors}: expected at least 1")
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
    rows: list[dict[str, Any]] = []
    try:
        ds = ray.data.from_items(
            [{"src": str(j.src), "dst": str(j.dst), "fmt": j.fmt} for j in jobs],
            override_num_blocks=max(1, min(len(jobs), actors * 4)),
        )
        with warnings.catch_warnings():  # Ray's own deprecation notes about its internals
            warnings.simplefilter("ignore", DeprecationWarning)
            mapped = _map(ds, ray, opts, actors, gpus_per_actor)
        for row in _rows(mapped):
            rows.append(row)
            if on_row is not None:
                on_row(row)
    finally:
        if started:
            ray.shutdown()
    first = rows[0] if rows else {}
    return RayResult(
        rows,
        [first.get("provider", "?")],
        int(first.get("scale", 0)),
        int(min((r["tile"] for r in rows), default=opts.tile)),
    )


def _map(ds, ray, opts: UpscaleOptions, actors: int, gpus_per_actor: float):
    actor = type("UpscaleActor", (UpscaleActor,), {"options_json": opts.model_dump_json()})
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


def _rows(mapped) -> Iterator[dict[str, Any]]:
    for row in mapped.iter_rows():
        row = dict(row)
        row["warnings"] = [str(w) for w in (row.get("warnings") or [])]
        yield row
