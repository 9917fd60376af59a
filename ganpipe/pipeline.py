"""Runs the stages of a pipeline.toml in order inside a run folder.

``runs/<name>/manifest.json`` records, per stage, a fingerprint of its config and inputs
and the outputs it produced. A re-run skips stages whose fingerprint is unchanged and whose
outputs still exist; ``force`` redoes all of them, ``from_stage`` that stage and the ones
after it.

Under torchrun (``WORLD_SIZE`` > 1) process 0 runs the pipeline and is the only one that
writes; the others run only the stages that train in every process (``all_ranks``) when
process 0 says so, and end after the last of them
(:mod:`ganpipe.training.launch`).

The process that writes (process 0 under torchrun) holds the run folder's lock
(:mod:`ganpipe.runlock`) from before its first write to after the report: a second
``ganpipe run`` on the same folder refuses in one line naming it and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ganpipe import cpus, runlock
from ganpipe.config import PipelineConfig, load_config
from ganpipe.errors import ConfigError, one_line
from ganpipe.fsutil import ensure_writable_dir, remove_stale, write_bytes, write_json
from ganpipe.outputs import StageOutput
from ganpipe.signals import Interrupted
from ganpipe.stage import Log, StageContext
from ganpipe.training import launch  # torch-free; torch is imported under torchrun only

MANIFEST = "manifest.json"
#: the copy of the pipeline.toml kept in the run folder
PIPELINE_COPY = "pipeline.toml"
R = TypeVar("R", bound=StageOutput)


@dataclass
class Manifest:
    """``manifest.json`` of a run folder: per stage, its fingerprint, outputs (paths
    relative to the run folder), ``info``, summary and timing, or how it failed. The
    built-in stages' entries are read typed with :meth:`record`."""

    path: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: where the run's pipeline.toml came from and its copy in the run folder (for reports)
    pipeline: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            return cls(path, dict(data.get("stages", {})), dict(data.get("pipeline", {})))
        except (OSError, ValueError, AttributeError):
            return cls(path)  # unreadable manifest: every stage runs again

    def save(self) -> None:
        write_json(self.path, {"format": 1, "pipeline": self.pipeline, "stages": self.stages})

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    def record(self, cls: type[R], stage: str | None = None) -> R | None:
        """The typed record (:mod:`ganpipe.outputs`) of ``stage`` (default: the one
        ``cls`` is for) when it finished, else None; a :class:`ValueError` when its entry
        does not fit ``cls``."""
        entry = self.stages.get(stage or cls.stage)
        if not entry or "outputs" not in entry:
            return None
        return cls.from_dict(entry, self.run_dir)

    def done(self, name: str, fingerprint: str, run_dir: Path) -> bool:
        entry = self.stages.get(name)
        return bool(
            entry
            and entry.get("fingerprint") == fingerprint
            and all((run_dir / rel).exists() for rel in entry.get("outputs", {}).values())
        )


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def stage_fingerprints(cfg: PipelineConfig) -> dict[str, str]:
    """Fingerprint of each stage: its options, the parts of the config it uses, the
    fingerprints of the stages it reads from, and its own ``fingerprint(config, opts)`` of
    the files it reads from outside the run (when it has one). ``@data`` is the data
    source's own."""
    fps: dict[str, str] = {}
    if cfg.dataset is not None:
        fps["@data"] = _hash(
            [
                cfg.data.model_dump(mode="json"),
                cfg.dataset.fingerprint(cfg.data_options, cfg.base_dir),
            ]
        )
    for sc in cfg.stages:
        stage = sc.stage
        blob: dict[str, Any] = {"stage": sc.name, "options": sc.options.model_dump(mode="json")}
        if "data" in stage.uses:
            blob["data"] = fps["@data"]
        if "model" in stage.uses:
            blob["model"] = [cfg.model.variant, cfg.variant_options.model_dump(mode="json")]
        if "seed" in stage.uses:
            blob["seed"] = cfg.run.seed
        blob["upstream"] = {
            up: fps.get(up) for up in (*stage.requires, *stage.optional) if up in fps
        }
        own = getattr(stage, "fingerprint", None)  # plugin stages need not derive from Stage
        inputs = own(cfg, sc.options) if callable(own) else None
        if inputs is not None:  # no key otherwise: existing runs' fingerprints stay valid
            blob["inputs"] = inputs
        fps[sc.name] = _hash(blob)
    return fps


def run_pipeline(
    cfg: PipelineConfig, *, force: bool = False, from_stage: str | None = None, log: Log = print
) -> Manifest:
    names = [sc.name for sc in cfg.stages]
    if from_stage is not None and from_stage not in names:
        raise ConfigError(
            f"--from {from_stage}: no such stage in {cfg.path} (stages: {', '.join(names)})"
        )
    fps = stage_fingerprints(cfg)  # before creating the run folder: may raise DataError
    env = launch.from_env()
    if env is not None and not env.main and not any(_all_ranks(sc) for sc in cfg.stages):
        return Manifest(Path(cfg.run_dir) / MANIFEST)  # nothing trains: process 0 does all
    coord = _coordinator(cfg)  # under torchrun: the other processes wait for our word
    try:
        # [run] threads: the thread pools the stages open (cpus.threads_for; 0: automatic)
        if coord is not None and not coord.env.main:
            with cpus.limits(cfg.run.threads):
                return _follow(cfg, fps, coord)
        # one writer per run folder; a second run refuses before touching anything
        with runlock.hold(cfg.run_dir, "run folder", log=log), cpus.limits(cfg.run.threads):
            return _run_stages(cfg, fps, coord, force, from_stage, log)
    except BaseException as exc:
        if coord is not None and coord.env.main:
            coord.abort(exc)
        raise
    finally:
        if coord is not None:
            coord.leave()


def _all_ranks(sc) -> bool:
    """Whether every process of a torchrun run runs this stage (the train stage)."""
    return bool(getattr(sc.stage, "all_ranks", False))


def _coordinator(cfg: PipelineConfig) -> launch.Coordinator | None:
    env = launch.from_env()
    stages = [sc.name for sc in cfg.stages if _all_ranks(sc)]
    if env is None or not stages:
        return None
    coord = launch.Coordinator(env, stages)
    coord.join(cfg.run.device)
    return coord


def _follow(cfg: PipelineConfig, fps: dict[str, str], coord: launch.Coordinator) -> Manifest:
    """A process other than 0 under torchrun: process 0's word at each ``all_ranks``
    stage; nothing written here (the manifest is process 0's, known from its word)."""
    run_dir = Path(cfg.run_dir)
    manifest = Manifest(run_dir / MANIFEST)
    ctx = StageContext(cfg, run_dir, manifest, fps, log=lambda *_: None)
    for sc in cfg.stages:
        if not _all_ranks(sc):
            continue
        word = coord.hear()
        if not word["run"]:
            continue
        if not (run_dir / PIPELINE_COPY).exists():
            raise ConfigError(
                f"process {coord.env.rank} does not see the run folder {run_dir} that "
                f"process 0 writes; put run.out_dir on a file system every node shares"
            )
        manifest.stages, ctx.force = word["stages"], word["force"]
        sc.stage.run(ctx, sc.options)
    return manifest


def _run_stages(
    cfg: PipelineConfig,
    fps: dict[str, str],
    coord: launch.Coordinator | None,
    force: bool,
    from_stage: str | None,
    log: Log,
) -> Manifest:
    decide = coord.decide if coord is not None else (lambda *_, **__: None)
    run_dir = ensure_writable_dir(cfg.run_dir, "run folder")
    manifest = Manifest.load(run_dir / MANIFEST)
    ctx = StageContext(cfg, run_dir, manifest, fps, log=log)
    log(f"run folder: {run_dir}")
    if (run_dir / PIPELINE_COPY).resolve() != Path(cfg.path).resolve():  # never the input
        write_bytes(run_dir / PIPELINE_COPY, Path(cfg.path).read_bytes())
    manifest.pipeline = {"path": str(Path(cfg.path).resolve()), "copy": PIPELINE_COPY}
    stale = remove_stale([run_dir])  # temporary files and folders of killed runs
    if stale:
        log(f"removed {len(stale)} temporary file(s) left by an interrupted run")
    redo = force
    upstream_ran: set[str] = set()
    for sc in cfg.stages:
        if sc.name == from_stage:
            redo = True
        deps = (*sc.stage.requires, *sc.stage.optional)
        if (
            not redo
            and not upstream_ran.intersection(deps)
            and manifest.done(sc.name, fps[sc.name], run_dir)
        ):
            outs = ", ".join(manifest.stages[sc.name]["outputs"].values())
            log(f"[{sc.name}] up to date, skipped ({outs})")
            decide(sc.name, False)
            continue
        log(f"[{sc.name}] running: {sc.stage.description}")
        ctx.force = redo
        decide(sc.name, True, force=redo, stages=manifest.stages)
        if manifest.stages.pop(sc.name, None) is not None:
            manifest.save()  # a stage that fails half-way must not look done
        t0 = time.perf_counter()
        try:
            result = sc.stage.run(ctx, sc.options)
        except BaseException as exc:  # recorded for the report, then raised as it was
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            manifest.stages[sc.name] = {
                "status": exc.status if isinstance(exc, Interrupted) else status,
                "error": one_line(exc, 500) or type(exc).__name__,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            if isinstance(exc, Interrupted):  # "terminated" for SIGTERM, with the signal
                manifest.stages[sc.name]["signal"] = exc.signal_name
            manifest.save()
            _report(run_dir, log)
            raise
        seconds = time.perf_counter() - t0
        manifest.stages[sc.name] = {
            "status": "done",
            "fingerprint": fps[sc.name],
            "outputs": result.outputs,
            "info": result.info,
            "summary": result.summary,
            "seconds": round(seconds, 2),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        manifest.save()
        upstream_ran.add(sc.name)
        log(f"[{sc.name}] done in {seconds:.1f}s: {result.summary}")
    _report(run_dir, log)
    return manifest


def _report(run_dir: Path, log: Log) -> None:
    """Write ``report.html`` (ganpipe.report); a problem with it never fails the run."""
    try:
        from ganpipe.report import write_report

        log(f"report: {write_report(run_dir)}")
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more
        log(f"report: not written ({type(exc).__name__}: {one_line(exc, 200)})")


def run_file(
    path: str | Path,
    *,
    force: bool = False,
    from_stage: str | None = None,
    entry_points: bool = True,
    log: Log = print,
) -> Manifest:
    from ganpipe.registry import load_registry

    registries = load_registry(entry_points=entry_points)
    cfg = load_config(path, registries)
    return run_pipeline(cfg, force=force, from_stage=from_stage, log=log)
