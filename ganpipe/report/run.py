"""What the run report reads from a run folder: the manifest, the pipeline.toml the run
recorded, each stage's state, the training log and sample grids, the evaluation scores.

Nothing here imports torch; a missing or unreadable piece is left out of the report (and
said so there), except a folder that is not a run at all (:class:`RunFolderError`).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ganpipe.errors import GanpipeError
from ganpipe.outputs import StageOutput

MANIFEST = "manifest.json"
#: the copy of the pipeline.toml a run keeps in its folder
PIPELINE_COPY = "pipeline.toml"
#: tables of a pipeline.toml that are not stages
NOT_STAGES = ("run", "data", "model")
_STEP = re.compile(r"step_(\d+)\.png$")
R = TypeVar("R", bound=StageOutput)


class RunFolderError(GanpipeError):
    """The folder given is missing or is not a ganpipe run folder."""

    exit_code = 2


@dataclass
class StageState:
    """One stage as the report shows it."""

    name: str
    status: str  # done | outputs missing | failed | interrupted | terminated | not run
    seconds: float | None = None
    finished_at: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    error: str = ""


@dataclass
class RunRecord:
    run_dir: Path
    manifest: dict[str, Any]
    pipeline_text: str | None
    pipeline: dict[str, Any]
    pipeline_source: str
    stages: list[StageState]

    def table(self, name: str) -> dict[str, Any]:
        """A table of the recorded pipeline.toml (empty when there is none)."""
        value = self.pipeline.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def name(self) -> str:
        return str(self.table("run").get("name") or self.run_dir.name)

    def stage(self, name: str) -> StageState | None:
        return next((s for s in self.stages if s.name == name), None)

    def stage_output(self, cls: type[R], stage: str | None = None) -> R | None:
        """The typed record (:mod:`ganpipe.outputs`) of a stage that finished, else None
        (also when its entry does not fit ``cls``: the report leaves that part out)."""
        st = self.stage(stage or cls.stage)
        if st is None or not st.outputs:
            return None
        try:
            return cls.from_dict({"outputs": st.outputs, "info": st.info}, self.run_dir)
        except ValueError:
            return None

    def output(self, stage: str, key: str) -> Path | None:
        """The path of a stage's output when it exists."""
        st = self.stage(stage)
        if st is None or key not in st.outputs:
            return None
        path = self.run_dir / st.outputs[key]
        return path if path.exists() else None

    @property
    def base_dir(self) -> Path:
        """The folder of the original pipeline.toml (data paths are relative to it)."""
        recorded = self.manifest.get("pipeline")
        if isinstance(recorded, dict) and recorded.get("path"):
            return Path(str(recorded["path"])).parent
        return self.run_dir


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    if not run_dir.exists():
        raise RunFolderError(
            f"run folder {run_dir} does not exist; pass the folder of a run "
            f"(runs/<name>/, with a {MANIFEST})"
        )
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder; pass a run folder (runs/<name>/)")
    path = run_dir / MANIFEST
    if not path.is_file():
        raise RunFolderError(
            f"{run_dir} is not a ganpipe run folder (no {MANIFEST}); pass runs/<name>/ of a "
            f"pipeline that `ganpipe run` has run"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunFolderError(f"{path} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
        raise RunFolderError(f"{path} is not a ganpipe manifest (no 'stages' table)")
    return data


def _pipeline_text(run_dir: Path, manifest: dict[str, Any]) -> tuple[str | None, str]:
    """The recorded pipeline.toml and where it came from."""
    copy = run_dir / PIPELINE_COPY
    if copy.is_file():
        try:
            return copy.read_text(encoding="utf-8"), PIPELINE_COPY
        except (OSError, UnicodeDecodeError):
            pass
    recorded = manifest.get("pipeline")
    if isinstance(recorded, dict):
        if isinstance(recorded.get("text"), str):
            return recorded["text"], "manifest"
        path = Path(str(recorded.get("path", "")))
        if recorded.get("path") and path.is_file():
            try:
                return path.read_text(encoding="utf-8"), f"{path} (as it is now)"
            except (OSError, UnicodeDecodeError):
                pass
    return None, ""


def _stage_state(run_dir: Path, name: str, entry: dict[str, Any] | None) -> StageState:
    if entry is None:
        return StageState(name, "not run")
    outputs = {str(k): str(v) for k, v in dict(entry.get("outputs") or {}).items()}
    missing = [k for k, rel in outputs.items() if not (run_dir / rel).exists()]
    stopped = entry.get("status") in ("interrupted", "terminated")  # Ctrl-C, SIGTERM
    failed = entry.get("status") == "failed" or (bool(entry.get("error")) and not stopped)
    status = (
        entry["status"]
        if stopped
        else "failed"
        if failed
        else ("outputs missing" if missing else "done")
    )
    seconds = entry.get("seconds")
    return StageState(
        name,
        status,
        float(seconds) if isinstance(seconds, int | float) else None,
        str(entry.get("finished_at", "")),
        outputs,
        missing,
        dict(entry.get("info") or {}),
        str(entry.get("summary", "")),
        str(entry.get("error", "")),
    )


def _finished(entry: dict[str, Any]) -> str:
    return str(entry.get("finished_at", ""))


def load_run(run_dir: str | Path) -> RunRecord:
    """Read ``run_dir``; :class:`RunFolderError` when it is not a run folder."""
    run_dir = Path(run_dir)
    manifest = _read_manifest(run_dir)
    entries: dict[str, Any] = {
        str(k): v for k, v in manifest.get("stages", {}).items() if isinstance(v, dict)
    }
    text, source = _pipeline_text(run_dir, manifest)
    pipeline: dict[str, Any] = {}
    if text is not None:
        try:
            pipeline = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            pipeline = {}
    order = [k for k, v in pipeline.items() if k not in NOT_STAGES and isinstance(v, dict)]
    order += sorted((k for k in entries if k not in order), key=lambda k: _finished(entries[k]))
    stages = [_stage_state(run_dir, name, entries.get(name)) for name in order]
    return RunRecord(run_dir, manifest, text, pipeline, source, stages)


def read_metrics(path: Path | None) -> list[dict[str, float]]:
    """The records of a ``metrics.jsonl`` (numbers only; bad lines skipped)."""
    if path is None or not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int | float):
            rows.append({k: float(v) for k, v in rec.items() if isinstance(v, int | float | bool)})
    return rows


def sample_grids(folder: Path, most: int = 24) -> list[tuple[int, Path]]:
    """``(step, path)`` of the sample grids in ``folder``, at most ``most`` of them spread
    evenly (first and last kept)."""
    found = []
    for path in folder.glob("step_*.png") if folder.is_dir() else ():
        m = _STEP.search(path.name)
        if m:
            found.append((int(m.group(1)), path))
    found.sort()
    if len(found) <= most:
        return found
    picks = {round(i * (len(found) - 1) / (most - 1)) for i in range(most)}
    return [found[i] for i in sorted(picks)]


def read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def when(text: str) -> str:
    """``2024-06-11T10:00:00+0000`` as ``2024-06-11 10:00:00``."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text
