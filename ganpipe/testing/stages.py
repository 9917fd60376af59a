"""The stage contract, checked on one stage object by running it in a real pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ganpipe.conformance import stage_problems
from ganpipe.testing._checker import (
    Checker,
    CheckReport,
    check_conformance,
    check_options,
    scratch,
)

#: [data] of the test pipeline unless the caller gives one: 16 procedural 16 px images
DATA = {"dataset": "shapes", "image_size": 16, "count": 16, "classes": 2}
#: [model] of the test pipeline unless the caller gives one: a tiny DCGAN
MODEL = {"variant": "dcgan", "latent_dim": 8, "g_width": 4, "d_width": 4}
#: tables of the built-in stages a stage may require, sized to run in a second or two
UPSTREAM = {
    "augment": {"copies": 1},
    "train": {
        "steps": 2,
        "batch_size": 8,
        "log_every": 1,
        "sample_every": 0,
        "checkpoint_every": 0,
        "num_samples": 4,
        "progress": False,
    },
    "export": {},
    "generate": {"count": 2, "device": "cpu"},
}


def toml_value(value: Any) -> str:
    """``value`` as TOML (str, bool, int, float, Path, lists and tables of these)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def pipeline_toml(tables: dict[str, dict[str, Any]]) -> str:
    """A pipeline.toml with ``tables`` in order (``{"train": {"steps": 2}, ...}``)."""
    out = []
    for name, keys in tables.items():
        out.append(f"[{name}]")
        out += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in keys.items()]
        out.append("")
    return "\n".join(out)


def _upstream(reg, stage) -> dict[str, dict[str, Any]]:
    """The tables of the stages ``stage`` requires, theirs first."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name == stage.name:
            return
        if name in reg.stages:
            for up in reg.stages.get(name).requires:
                visit(up)
        order.append(name)

    for name in stage.requires:
        visit(name)
    return {name: dict(UPSTREAM.get(name, {})) for name in order}


def check_stage(
    stage: Any,
    *,
    tmp_path: str | Path | None = None,
    options: dict[str, Any] | None = None,
    upstream: dict[str, dict[str, Any]] | None = None,
    data: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    run: bool = True,
) -> CheckReport:
    """Check the contract of stage ``stage`` (an object, not a name); raise
    :class:`~ganpipe.testing.ContractError` naming the stage and the step that broke.

    Checked without running: the structure (:func:`ganpipe.conformance.stage_problems`),
    the options ``options`` (valid, round-trip, unknown keys refused; default: tiny
    settings for the built-in stages, none otherwise), ``requires`` and
    ``optional`` not naming the stage itself. With ``run`` (the default) the stage then
    runs, as ``ganpipe run`` would run it, in a pipeline written to ``tmp_path``:
    ``[run]`` on the CPU, ``[data]`` (``data``, default 16 procedural images), ``[model]``
    when given or used by a stage (``model``, default a tiny DCGAN), the tables of ``upstream`` (default: the stages it
    ``requires``, with tiny built-in settings) and ``[<name>]`` with ``options``. It must
    finish, report outputs that exist inside the run folder, be skipped by a second run
    with nothing changed (its fingerprint is stable), and run again with ``--from`` over
    its own earlier outputs. The object under test replaces any stage of its name that
    is installed. Options paths are relative to ``tmp_path`` (or absolute).
    """
    c = Checker("stage", stage)
    check_conformance(c, stage_problems(stage))
    given = dict(UPSTREAM.get(c.report.name, {}) if options is None else options)
    check_options(c, stage.Options, given)
    with c.step("requires"):
        for attr in ("requires", "optional"):
            c.expect(stage.name not in getattr(stage, attr), f"{attr} names the stage itself")
    if not run:
        return c.report
    with scratch(tmp_path, "stage") as tmp:
        _check_run(c, stage, tmp, given, upstream, data, model)
    return c.report


def _registries(stage):
    from ganpipe.registry import Entry, load_registry

    reg = load_registry(entry_points=True)
    reg.stages.entries[stage.name] = Entry(
        stage.name, "stages", "ganpipe.testing", "the stage under test", obj=stage
    )
    return reg


def _check_run(c: Checker, stage, tmp: Path, given, upstream, data, model) -> None:
    from ganpipe.config import load_config
    from ganpipe.pipeline import run_pipeline

    name = stage.name
    with c.step("pipeline"):
        reg = _registries(stage)
        ups = _upstream(reg, stage) if upstream is None else upstream
        tables = {
            "run": {"name": "contract", "out_dir": "runs", "seed": 0, "device": "cpu"},
            "data": dict(DATA if data is None else data),
        }
        users = [stage, *(reg.stages.get(up) for up in ups if up in reg.stages)]
        if model is not None or any("model" in getattr(s, "uses", ()) for s in users):
            tables["model"] = dict(MODEL if model is None else model)
        tables.update({**ups, name: given})
        path = tmp / "pipeline.toml"
        path.write_text(pipeline_toml(tables), encoding="utf-8")
        cfg = load_config(path, reg)
        fp = (
            stage.fingerprint(cfg, cfg.stage(name).options)
            if hasattr(stage, "fingerprint")
            else None
        )
        c.expect(fp is None or isinstance(fp, str), f"fingerprint returned {fp!r}")
    logs: list[str] = []
    with c.step("run"):
        manifest = run_pipeline(cfg, log=lambda *a: logs.append(" ".join(map(str, a))))
        entry = manifest.stages.get(name)
        c.expect(entry is not None, f"the manifest of {cfg.run_dir} has no [{name}]")
        outputs = entry["outputs"]
        c.expect(
            isinstance(outputs, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in outputs.items()),
            f"StageResult.outputs must be {{key: path relative to the run folder}}, "
            f"got {outputs!r}",
        )
        run_dir = cfg.run_dir.resolve()
        for key, rel in outputs.items():
            target = (run_dir / rel).resolve()
            c.expect(
                not Path(rel).is_absolute() and target.is_relative_to(run_dir),
                f"output {key!r} = {rel!r} is not a path inside the run folder",
            )
            c.expect(target.exists(), f"output {key!r} = {rel!r} does not exist")
        json.dumps(entry.get("info", {}))  # the manifest is JSON: info must be too
    with c.step("rerun skips"):
        logs.clear()
        run_pipeline(load_config(path, reg), log=lambda *a: logs.append(" ".join(map(str, a))))
        c.expect(
            any(line.startswith(f"[{name}] up to date") for line in logs),
            f"a second run with nothing changed ran [{name}] again (its fingerprint or "
            f"outputs changed): {[line for line in logs if line.startswith(f'[{name}]')]}",
        )
    with c.step("rerun --from"):
        again = run_pipeline(load_config(path, reg), from_stage=name, log=lambda *a: None)
        keys = set(again.stages[name]["outputs"])
        c.expect(keys == set(outputs), f"a forced re-run gave outputs {keys}, not {set(outputs)}")
