"""Runs the stages of a pipeline.toml in order inside a run folder.

``runs/<name>/manifest.json`` records, per stage, a fingerprint of its config and inputs
and the outputs it produced. A re-run skips stages whose fingerprint is unchanged and whose
outputs still exist; ``force`` redoes all of them, ``from_stage`` that stage and the ones
after it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganpipe.config import PipelineConfig, load_config
from ganpipe.errors import ConfigError
from ganpipe.fsutil import ensure_writable_dir, remove_stale, write_bytes, write_json
from ganpipe.signals import Interrupted
from ganpipe.stage import StageContext

MANIFEST = "manifest.json"
#: the copy of the pipeline.toml kept in the run folder
PIPELINE_COPY = "pipeline.toml"


@dataclass
class Manifest:
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
    cfg: PipelineConfig, *, force: bool = False, from_stage: str | None = None, log=print
) -> Manifest:
    names = [sc.name for sc in cfg.stages]
    if from_stage is not None and from_stage not in names:
        raise ConfigError(
            f"--from {from_stage}: no such stage in {cfg.path} (stages: {', '.join(names)})"
        )
    fps = stage_fingerprints(cfg)  # before creating the run folder: may raise DataError
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
            continue
        log(f"[{sc.name}] running: {sc.stage.description}")
        ctx.force = redo
        if manifest.stages.pop(sc.name, None) is not None:
            manifest.save()  # a stage that fails half-way must not look done
        t0 = time.perf_counter()
        try:
            result = sc.stage.run(ctx, sc.options)
        except BaseException as exc:  # recorded for the report, then raised as it was
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            manifest.stages[sc.name] = {
                "status": exc.status if isinstance(exc, Interrupted) else status,
                "error": " ".join(str(exc).split())[:500] or type(exc).__name__,
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


def _report(run_dir: Path, log) -> None:
    """Write ``report.html`` (ganpipe.report); a problem with it never fails the run."""
    try:
        from ganpipe.report import write_report

        log(f"report: {write_report(run_dir)}")
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more
        log(f"report: not written ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")


def run_file(
    path: str | Path,
    *,
    force: bool = False,
    from_stage: str | None = None,
    entry_points: bool = True,
    log=print,
) -> Manifest:
    from ganpipe.registry import load_registry

    registries = load_registry(entry_points=entry_points)
    cfg = load_config(path, registries)
    return run_pipeline(cfg, force=force, from_stage=from_stage, log=log)
