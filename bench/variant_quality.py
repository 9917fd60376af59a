"""Quality per CPU budget of every generative variant: a judged accuracy (conditional) or
class spread (unconditional), the share of recognisable images, and FID.

Run:  python bench/variant_quality.py [--budgets 1,3,10] [--datasets digits,shapes]
                                      [--variants gan,dcgan,...] [--out FILE.md]
                                      [--set model.d_width=16 --set train.ema_decay=0.99]

For each data set (``digits``: sklearn's 1,797 handwritten digits as 32 px grayscale class
folders, built by ``bench/digits.py``; ``shapes``: the bundled procedural shapes of
``examples/quickstart.toml``, 4 classes, 1024 images, 32 px RGB), each variant and each
budget in CPU-minutes, the script:

1. **probes** the variant's cost: two train-only runs of ``--probe-steps`` (20 and 60)
   steps, the longer one made 4x longer until it costs ``PROBE_SPREAD_S`` CPU seconds
   more than the shorter one; the difference in CPU time over the difference in steps is
   the CPU cost of a step, the rest the fixed cost (start-up, data, nets, checkpoint);
2. **trains** ``steps = (budget - fixed) / cost per step`` with ``ganpipe run`` in a fresh
   subprocess, on a ``pipeline.toml`` with only ``[model] variant`` and ``[train] steps``
   chosen (``bench/quality.py: pipeline_toml``; every other value is the library's
   default, scaled to the data and device as a user gets it; ``--set TABLE.KEY=VALUE``
   adds keys to ``[model]`` or ``[train]`` or sets ``run.seed``, to compare a recipe with
   the defaults over seeds: such rows name what was set). Budgets run in increasing
   order, and each run's measured cost per step sets the next budget's steps;
3. **exports** the run to ONNX (the same pipeline with ``[export]`` added: ``ganpipe run``
   skips the finished train stage) and **generates** ``--samples`` images from the
   ``.onnx`` with ONNX Runtime (``ganpipe.inference``), every class in turn for a
   conditional model;
4. **judges** them (``bench/quality.py``): an SVM trained on the real images, plus a "not
   a class" class, gives accuracy, confident share and class entropy; FID uses the offline
   ``RandomFeatures`` against the real training images.

**CPU time** is the train subprocess's own user + system time (``os.wait4``), start-up
included, so other jobs on a shared machine do not count; wall time is given as well. The
subprocesses run with ``--threads`` (default 1) intra-op threads (``OMP_NUM_THREADS``):
with one thread a CPU-second is a CPU-second of work, where two threads on a busy machine
burn several times the CPU in spin-waits for the same steps.

The table is rewritten after every row (``--out``), so an interrupted run keeps what it
measured. Nothing here asserts; ``tests/test_variant_floors.py`` holds the floors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import quality as q  # noqa: E402
from ganpipe.fsutil import write_bytes  # noqa: E402

TODAY = datetime.date.today().isoformat()


# -- one ganpipe run ----------------------------------------------------------------------
def ganpipe_run(toml: Path, threads: int, timeout: float) -> dict[str, Any]:
    """``python -m ganpipe run toml`` in ``toml``'s folder: exit status, wall and CPU
    seconds of the subprocess, its log (``run.log`` next to the file)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = toml.with_suffix(".log")
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ganpipe", "run", str(toml)],
            cwd=toml.parent,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage
    finally:
        timer.cancel()
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    cpu = usage.ru_utime + usage.ru_stime
    return {"rc": rc, "wall": wall, "cpu": cpu, "log": log}


def failure(run: dict[str, Any]) -> str:
    lines = [x for x in run["log"].read_text(errors="replace").splitlines() if x.strip()]
    return f"exit {run['rc']}: {lines[-1] if lines else 'no output'}"


def train(folder: Path, variant: str, steps: int, data: q.DataSet, args) -> dict[str, Any]:
    """A train-only run of ``steps`` in ``folder`` (a fresh one)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    toml = folder / "pipeline.toml"
    toml.write_text(
        q.pipeline_toml("run", variant, steps, data.table, export=False, overrides=args.overrides)
    )
    return ganpipe_run(toml, args.threads, args.timeout)


#: the long probe must cost this many CPU seconds more than the short one, or it is
#: lengthened (x4): for a cheap variant (the VAE, ~30 ms a step) 30 steps are lost in the
#: start-up's noise, and a budget's steps from such a probe overshoot it several times
PROBE_SPREAD_S = 8.0
PROBE_MAX_STEPS = 20000


def probe(variant: str, data: q.DataSet, work: Path, args) -> tuple[float, float]:
    """(CPU s per step, fixed CPU s) from two short train-only runs, the longer one
    lengthened until it costs ``PROBE_SPREAD_S`` more than the shorter one."""
    lo, hi = args.probe_steps

    def cpu(steps: int) -> float:
        run = train(work / f"probe-{steps}", variant, steps, data, args)
        if run["rc"] != 0:
            raise RuntimeError(f"probe of {steps} steps: {failure(run)}")
        return run["cpu"]

    cpu_lo, cpu_hi = cpu(lo), cpu(hi)
    while cpu_hi - cpu_lo < PROBE_SPREAD_S and hi * 4 <= PROBE_MAX_STEPS:
        hi *= 4
        cpu_hi = cpu(hi)
    per_step = max((cpu_hi - cpu_lo) / (hi - lo), 1e-4)
    return per_step, max(0.0, cpu_lo - lo * per_step)


def measure(
    variant: str, data: q.DataSet, budget: float, steps: int, work: Path, tools, args
) -> dict[str, Any]:
    """Train ``steps``, export, generate and judge: one row of the table."""
    folder = work / f"budget-{budget:g}"
    run = train(folder, variant, steps, data, args)
    row: dict[str, Any] = {"steps": steps, "wall": run["wall"], "cpu": run["cpu"]}
    if run["rc"] != 0:
        return row | {"error": failure(run)}
    toml = folder / "pipeline.toml"
    toml.write_text(
        q.pipeline_toml("run", variant, steps, data.table, export=True, overrides=args.overrides)
    )
    export = ganpipe_run(toml, args.threads, args.timeout)
    if export["rc"] != 0:
        return row | {"error": "export " + failure(export)}
    run_dir = folder / "runs" / "run"
    info = q.train_info(run_dir)
    row["scaled"] = info["info"].get("scaled_defaults", {})
    images, asked = q.generate(q.exported_model(run_dir), args.samples)
    judge, fid = tools
    row |= q.judge_scores(judge, images, asked)
    row["fid"] = fid(images)
    if args.grids:
        q.save_grid(images, args.grids / f"{data.name}-{variant}-{budget:g}min.png")
    return row


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


# -- the table ------------------------------------------------------------------------------
def cell(row: dict[str, Any], key: str, fmt: str = "{:.2f}") -> str:
    value = row.get(key)
    return "-" if value is None else fmt.format(value)


def scaled(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in row.get("scaled", {}).items()) or "-"


def table(rows: list[dict[str, Any]], head: list[str]) -> str:
    lines = [
        *head,
        "",
        "| data | variant | budget CPU-min | steps | train wall s | train CPU s | "
        "accuracy | confident | entropy | FID | defaults scaled to |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['data']} | {r['variant']} | {r['budget']:g} | {cell(r, 'steps', '{}')} | "
                f"{cell(r, 'wall', '{:.0f}')} | {cell(r, 'cpu', '{:.0f}')} | "
                f"FAILED: {r['error'].replace('|', '/')[:160]} | | | | |"
            )
            continue
        mark = (" *" if r.get("carried_from") else "") + (f" ({r['set']})" if r.get("set") else "")
        lines.append(
            f"| {r['data']} | {r['variant']}{mark} | {r['budget']:g} | {r['steps']} | "
            f"{r['wall']:.0f} | {r['cpu']:.0f} | {cell(r, 'accuracy')} | "
            f"{cell(r, 'confident')} | {cell(r, 'entropy')} | {cell(r, 'fid', '{:.3g}')} | "
            f"{scaled(r)} |"
        )
    return "\n".join(lines) + "\n"


def header(args, judges: dict[str, q.Judge], refs: dict[str, float], rows) -> list[str]:
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=q.ROOT
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=q.ROOT,
    ).stdout.strip()
    import torch

    lines = [
        f"# Variant quality per CPU budget ({TODAY})",
        "",
        "Written by `python bench/variant_quality.py "
        + " ".join(sys.argv[1:])
        + "`; the method is in `bench/README.md`.",
        "",
        f"* tree: {rev or '?'}{' with uncommitted changes' if dirty else ''}; torch "
        f"{torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{args.threads} thread(s) per run; load average at start {args.load_start}, "
        f"at this writing {load()}",
        f"* {args.samples} generated images per row (conditional: every class in turn); "
        f"confident = judged a real class with p > {q.CONFIDENT}",
    ]
    for name, judge in judges.items():
        lines.append(
            f"* judge of {name}: {judge.real_accuracy:.1%} of held-out real images right, "
            f"{judge.junk_rejected:.1%} of held-out junk rejected; FID of real vs real "
            f"(half of the real images vs the other half): {refs[name]:.3g}"
        )
    lines.append(
        "* accuracy: conditional models only (share judged as the class asked for); "
        "entropy: spread of the confident images' classes (1 = even)"
    )
    carried = sorted({r["carried_from"] for r in rows if r.get("carried_from")})
    if carried:
        lines.append(
            f"* rows marked * were measured by the run of {', '.join(carried)} (same method, "
            "same recipe) and kept in this file's JSON; the others by this run"
        )
    return lines


def save(args, rows: list[dict[str, Any]], judges: dict[str, q.Judge], refs: dict[str, float]):
    """The table (``--out``) and its rows as JSON next to it (read by ``--resume``)."""
    write_bytes(args.out, table(rows, header(args, judges, refs, rows)).encode())
    write_bytes(args.out.with_suffix(".json"), json.dumps(rows, indent=1).encode())


def resumed(args) -> list[dict[str, Any]]:
    """Rows of an earlier run of the same ``--out`` (``--resume``), failures dropped."""
    path = args.out.with_suffix(".json")
    if not args.resume or not path.is_file():
        return []
    return [r for r in json.loads(path.read_text()) if "error" not in r]


def run_dataset(name: str, variants, budgets, rows, judges, refs, work: Path, args) -> None:
    data = q.load_dataset(name, work)
    judges[name] = q.train_judge(data)
    fid = q.FID(data.images)
    half = np.random.default_rng(0).permutation(len(data.images))
    refs[name] = q.FID(data.images[half[::2]])(data.images[half[1::2]])
    print(f"{name}: judge {judges[name].real_accuracy:.1%} right on held-out real", flush=True)
    done = {
        (r["data"], r["variant"], r["budget"]) for r in rows if r.get("set", "") == args.set_text
    }
    for variant in variants:
        todo = [b for b in budgets if (name, variant, b) not in done]
        if not todo:
            continue
        vwork = work / "runs" / name / variant
        try:
            per_step, fixed = probe(variant, data, vwork, args)
        except RuntimeError as exc:
            rows.extend(
                {"data": name, "variant": variant, "budget": b, "error": str(exc)} for b in todo
            )
            save(args, rows, judges, refs)
            continue
        for budget in todo:
            steps = max(args.probe_steps[0], round((60 * budget - fixed) / per_step))
            row = measure(variant, data, budget, steps, vwork, (judges[name], fid), args)
            rows.append({"data": name, "variant": variant, "budget": budget} | row)
            if args.set_text:
                rows[-1]["set"] = args.set_text
            if "error" not in row and row["cpu"] > fixed:
                per_step = (row["cpu"] - fixed) / steps  # sets the next budget's steps
            print(table(rows[-1:], []).splitlines()[-1], flush=True)
            save(args, rows, judges, refs)


def overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["model.d_width=16", "train.diffaugment=['color']"]`` -> ``{"model": {"d_width":
    16}, "train": {...}}``; a value that is not TOML is taken as a string. ``run.seed``
    is the one ``[run]`` key (the others place the bench's files)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        table, dot, name = key.strip().partition(".")
        allowed = table in ("model", "train") or (table, name) == ("run", "seed")
        if not sep or not dot or not name or not allowed:
            raise ValueError(
                f"--set {item!r}: write model.KEY=VALUE, train.KEY=VALUE or run.seed=N"
            )
        try:
            parsed = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value.strip()
        out.setdefault(table, {})[name] = parsed
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="1,3,10", help="CPU-minutes, comma-separated")
    parser.add_argument("--datasets", default=",".join(q.DATASETS))
    parser.add_argument("--variants", help="comma-separated (default: every generative one)")
    parser.add_argument("--out", type=Path, default=Path(f"variant-quality-{TODAY}.md"))
    parser.add_argument("--resume", action="store_true", help="keep the rows --out has")
    parser.add_argument("--samples", type=int, default=1000, help="images judged per row")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs")
    parser.add_argument("--probe-steps", default="20,60", help="the two probe lengths")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per ganpipe run")
    parser.add_argument("--work", type=Path, help="work folder (default: temporary, removed)")
    parser.add_argument("--grids", type=Path, help="write a PNG of each row's images here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="also set this [model] or [train] key, or run.seed (a TOML value; repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        args.overrides = overrides(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    args.set_text = ", ".join(args.set)
    variants = args.variants.split(",") if args.variants else q.generative_variants()
    budgets = sorted(float(b) for b in args.budgets.split(","))
    args.probe_steps = tuple(int(s) for s in args.probe_steps.split(","))
    args.load_start = load()
    work = args.work or Path(tempfile.mkdtemp(prefix="variant-quality-"))
    rows = resumed(args)
    judges: dict[str, q.Judge] = {}
    refs: dict[str, float] = {}
    try:
        for name in args.datasets.split(","):
            run_dataset(name, variants, budgets, rows, judges, refs, work, args)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    order = {
        (d, v): i for i, (d, v) in enumerate((d, v) for d in q.DATASETS for v in sorted(variants))
    }
    rows.sort(key=lambda r: (order.get((r["data"], r["variant"]), len(order)), r["budget"]))
    save(args, rows, judges, refs)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
