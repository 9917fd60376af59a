"""The GPU check (issue 13): set up, run the CUDA tests and the GPU benchmarks inside one
time budget, write the figures to ``bench/results/``. Start it with ``bench/gpu_check.sh``.

Run:  bash bench/gpu_check.sh              # on a GPU machine (the device tool), 8 min
      bash bench/gpu_check.sh --dry-run    # anywhere: no installs, no GPU, tiny CPU runs

Parts, each a subprocess killed at its own budget (seconds) and at the overall deadline
(``--budget``, 480): ``setup`` 60 (carried wheels: ``bench/gpu_wheels.py``; ``pip install
-e .`` offline, the repo on PYTHONPATH as well), ``info`` 30, ``tests`` 120
(``tests/test_cuda.py``), ``train`` 90, ``generate`` 45, ``upscale`` 150, ``upscale-trt`` 40
(only where ONNX Runtime lists TensorRT). ``upscale-prepare`` (images, the ``.pth`` files
and their ``--fp16`` imports: RRDBNet's export takes a minute or more) starts before the
tests and runs beside them on the CPU, for at most 300 s; the upscale part waits for it.

The GPU machine reaches no package registry and its image already holds a CUDA build of
PyTorch, so nothing is downloaded there and torch is never replaced. A dry run
(``--dry-run`` or ``GANPIPE_GPU_DRY_RUN=1``) skips the setup, runs the tests (which skip
without a GPU) and every benchmark with ``--device cpu --tiny``, and writes
``bench/results/gpu-dryrun-cpu-<date>.md``; a GPU run writes ``gpu-<date>.md``. The
results file, its JSON, the log and the JUnit XML are also copied to ``$OUT`` when set
(what the device tool brings back). Exit status 1 when a test fails or a part fails or
runs out of time.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_report import INFO_SCRIPT, junit_tests, render

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = {"setup": 60, "info": 30, "tests": 120, "train": 90, "generate": 45}
BUDGETS |= {"upscale-prepare": 300, "upscale": 150, "upscale-trt": 40}
RESERVE = 10  # seconds kept for writing the results


class Check:
    """The deadline, the parts' records, the environment and the log of one check."""

    def __init__(self, budget: int, work: Path):
        self.work = work
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget
        self.parts: list[dict] = []
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        self.log = (work / "gpu-check-log.txt").open("a", encoding="utf-8")

    def left(self) -> float:
        return self.deadline - RESERVE - time.monotonic()

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        shown = [c if len(c) < 200 else "<script>" for c in cmd]
        self.say(f"== {name}: {' '.join(shown)}")
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills it whole
        )

    def finish(self, name: str, proc: subprocess.Popen, budget: float, t0: float) -> str:
        try:
            rc = proc.wait(max(1.0, min(budget - (time.monotonic() - t0), self.left())))
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"timed out ({time.monotonic() - t0:.0f} s)"
        self.record(name, budget, time.monotonic() - t0, status)
        if status != "ok":  # its last lines (the log has everything)
            tail = (self.work / "gpu-check-log.txt").read_text(errors="replace").splitlines()
            print("\n".join(f"   | {line}" for line in tail[-15:]), flush=True)
        return status

    def run(self, name: str, cmd: list[str], budget: float | None = None) -> str:
        budget = budget or BUDGETS[name]
        if self.left() < 5:
            self.record(name, budget, 0.0, "not run: out of time")
            return "not run"
        return self.finish(name, self.start(name, cmd), budget, time.monotonic())

    def record(self, name: str, budget: float, took: float, status: str) -> None:
        self.parts.append({"part": name, "budget_s": budget, "took_s": took, "status": status})
        self.say(f"== {name}: {status} in {took:.0f} s")


# -- setup (GPU machine) ------------------------------------------------------------------
#: where the onnxruntime-gpu parts may be: carried, or copied out of the repo by the
#: calls that carried the earlier parts (``bench/gpu_wheels.py`` prints those calls)
ORT_PART_DIRS = (ROOT / "build" / "gpu-ort", Path("/tmp/gpu-ort"))


def join_ort_parts(work: Path) -> tuple[Path | None, str]:
    """The onnxruntime-gpu wheel joined from its parts (``bench/gpu_wheels.py --ort-gpu``)."""
    sums = [p for d in ORT_PART_DIRS for p in d.glob("part-0/*.sha256")]
    if not sums:
        return None, "no onnxruntime-gpu parts carried (bench/gpu_wheels.py --ort-gpu)"
    digest, count = sums[0].read_text().split()
    name = sums[0].name.removesuffix(".sha256")
    found = {p.name: p for d in ORT_PART_DIRS for p in d.glob(f"part-*/{name}.*")}
    parts = [found.get(f"{name}.{i}") for i in range(int(count))]
    if None in parts:
        have = int(count) - parts.count(None)
        return None, f"onnxruntime-gpu: {have} of {count} parts here; not installed"
    wheel = work / name
    with wheel.open("wb") as out:
        for p in parts:
            out.write(p.read_bytes())
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != digest:
        return None, "onnxruntime-gpu: the joined parts do not match their SHA-256"
    return wheel, f"onnxruntime-gpu joined from {count} parts"


def setup(check: Check) -> list[str]:
    """Carried wheels into a target folder first on PYTHONPATH; the project editable,
    offline (the repo is on PYTHONPATH as well, should that fail)."""
    notes, t0 = [], time.monotonic()
    site = check.work / "site"
    wheels = sorted((ROOT / "build" / "gpu-wheels").glob("*.whl"))
    if not wheels:
        notes.append("no build/gpu-wheels carried (bench/gpu_wheels.py): pydantic may be missing")
    ort_wheel, note = join_ort_parts(check.work)
    notes.append(note)
    wheels += [ort_wheel] if ort_wheel else []
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    pip += ["--no-cache-dir", "--disable-pip-version-check"]
    status = "ok"
    if wheels:
        cmd = [*pip, "--no-compile", "--upgrade", "--target", str(site), *map(str, wheels)]
        status = check.finish("setup: wheels", check.start("setup", cmd), 45, time.monotonic())
        check.env["PYTHONPATH"] = f"{site}{os.pathsep}{ROOT}"
    left = max(10.0, BUDGETS["setup"] - (time.monotonic() - t0))
    editable = check.run("setup", [*pip, "--no-build-isolation", "-e", "."], left)
    notes.append(f"wheels: {status}; pip install -e . (offline): {editable}")
    return notes


# -- the parts ----------------------------------------------------------------------------
def machine_info(check: Check) -> dict:
    out = check.work / "info.json"
    check.run("info", [sys.executable, "-c", INFO_SCRIPT, str(out)])
    return json.loads(out.read_text()) if out.exists() else {"error": "info part failed"}


def bench(check: Check, name: str, script: str, args: list[str], rows: list, notes: list):
    out = check.work / f"{name}.json"
    status = check.run(name, [sys.executable, f"bench/{script}", *args, "--json", str(out)])
    if out.exists():
        got = json.loads(out.read_text())
        rows += got["rows"]
        notes += [f"{name}: {n}" for n in got["notes"]]
    else:
        rows.append({"what": name, "baseline": "-", "ganpipe": "-", "ratio": None, "note": status})


def run_all(check: Check, info: dict, device: str, size: list[str]) -> tuple[list, list]:
    """The tests (the upscale models made meanwhile), then the benchmarks."""
    rows: list[dict] = []
    notes: list[str] = []
    py, work = sys.executable, check.work
    up_args = ["--device", device, *size, "--work", str(work / "upscale")]
    prep = check.start("upscale-prepare", [py, "bench/gpu_bench_upscale.py", *up_args, "--prepare"])
    prep_t0 = time.monotonic()
    pytest = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra"]
    check.run("tests", [*pytest, "tests/test_cuda.py", f"--junitxml={work / 'junit.xml'}"])
    prep_budget = BUDGETS["upscale-prepare"]
    try:  # RRDBNet's export is slow: if need be it goes on, on one core, beside train/generate
        prep.wait(30)
        check.finish("upscale-prepare", prep, prep_budget, prep_t0)
    except subprocess.TimeoutExpired:
        notes.append("upscale-prepare: still running (one CPU core) during train and generate")
    cpu = device == "cpu"
    train = ["--device", device, *size, *(["--repeats", "2"] if cpu else [])]
    bench(check, "train", "gpu_bench_train.py", train, rows, notes)
    bench(check, "generate", "gpu_bench_generate.py", ["--device", device, *size], rows, notes)
    if prep.returncode is None:  # its time: up to now (it may have ended earlier)
        check.finish("upscale-prepare", prep, prep_budget, prep_t0)
    quick = ["--repeats", "1", "--tile-repeats", "3"] if cpu else []
    bench(check, "upscale", "gpu_bench_upscale.py", [*up_args, *quick], rows, notes)
    if not cpu and "TensorrtExecutionProvider" in info.get("ort_providers", []):
        trt = [*up_args, "--ort-device", "tensorrt", "--models", "compact", "--repeats", "1"]
        bench(
            check, "upscale-trt", "gpu_bench_upscale.py", [*trt, "--tile-repeats", "5"], rows, notes
        )
    else:
        notes.append("upscale-trt: not run (a dry run, or no TensorrtExecutionProvider listed)")
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dry_env = os.environ.get("GANPIPE_GPU_DRY_RUN", "") not in ("", "0")
    ap.add_argument(
        "--dry-run", action="store_true", default=dry_env, help="CPU, tiny, no installs"
    )
    ap.add_argument("--budget", type=int, default=480, help="seconds for everything")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="copy the results here too")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    check = Check(args.budget, work)
    date = datetime.date.today().isoformat()
    check.say(
        f"ganpipe GPU check {date}{' (CPU dry run)' if args.dry_run else ''}, {args.budget} s"
    )
    notes = (
        ["setup: dry run, no installs"] if args.dry_run else [f"setup: {n}" for n in setup(check)]
    )
    info = machine_info(check)
    if args.dry_run or info.get("cuda_available"):
        device, size = ("cpu", ["--tiny"]) if args.dry_run else ("cuda", [])
        rows, more = run_all(check, info, device, size)
        notes += more
    else:
        rows, notes = [], [*notes, "torch sees no CUDA GPU here: nothing was run (see the table)"]
    total = time.monotonic() - check.t0
    name = f"gpu-dryrun-cpu-{date}" if args.dry_run else f"gpu-{date}"
    tests = junit_tests(work / "junit.xml")
    text = render(args.dry_run, date, info, check.parts, tests, rows, notes, total, args.budget)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.md").write_text(text, encoding="utf-8")
    data = {"info": info, "parts": check.parts, "tests": tests, "rows": rows, "notes": notes}
    (work / f"{name}.json").write_text(json.dumps(data, indent=1))
    check.say(text + f"\nwrote bench/results/{name}.md in {total:.0f} s")
    check.log.close()
    if args.out:
        for path in (results / f"{name}.md", work / f"{name}.json", work / "gpu-check-log.txt"):
            shutil.copy(path, Path(args.out) / path.name)
        if (work / "junit.xml").exists():
            shutil.copy(work / "junit.xml", Path(args.out) / "junit.xml")
    shutil.rmtree(work, ignore_errors=True)
    # setup may fail harmlessly (the repo is on PYTHONPATH); what it broke shows below
    parts_ok = all(p["status"] == "ok" for p in check.parts if not p["part"].startswith("setup"))
    bad = tests["counts"]["failed"] or not parts_ok
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
