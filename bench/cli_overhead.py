"""Fixed cost per command: ``ganpipe upscale`` through the whole CLI against the floor of
its runtime, for a few small images and per image in a long batch.

Run:  python bench/cli_overhead.py [--repeats 5] [--ncnn] [--before DIR] [--out FILE.md]

What runs (each a fresh subprocess, wall time, output folder emptied in between):

* **floor**: a minimal Python process that loads the same ``.onnx`` into an ONNX Runtime
  session (default settings, CPU) and upscales the same PNGs one by one, writing PNGs at
  ganpipe's default compression: the cost of the runtime itself, with nothing checked;
* **ganpipe**: ``python -m ganpipe upscale -i DIR -o OUT -m model.onnx``, and ``-m
  model.pth`` (released weights, whose conversion the cache already holds: the lookup
  hashes the file), with the defaults a user gets;
* with ``--ncnn``: ``ganpipe upscale ... --runtime ncnn`` too, against ncnn's own engine
  (bench/ncnn_speed.py's: the conversion ganpipe caches, loaded into an ``ncnn.Net`` at
  fp32 with ganpipe's threads; decode, extract, encode per image) as its floor;
* with ``--before DIR``: the same ganpipe commands on another checkout (e.g. ``git
  worktree add DIR <commit>``), run with ``PYTHONPATH=DIR`` and the same interpreter,
  in the same rounds: before and after from one run.

The model is Real-ESRGAN's compact x4 shape (``realesr-animevideov3``: SRVGGNetCompact,
64 features, 16 convolutions) with random weights, imported here with ``ganpipe import``;
the images are ``--side`` px smooth noise, ``--few`` of them and ``--many`` of them.
Every command runs once untimed, then ``--repeats`` rounds, the order rotating each
round; the tables give medians. Per image = (time for many - time for few) / (many -
few); fixed = time for few - few x per image: what a command costs before (and around)
its images. Ratios are floor / ganpipe (1.0: as fast as the bare runtime; higher is
better). Nothing asserts on time.

Then ``--phases`` more rounds (default 3) of the few-image commands, instrumented: the
same command run through ``python -c`` with a few functions wrapped to note the time
(imports, reading the model card, the ONNX Runtime session, the model's test image, the
hash of the weights, the images, the exit), so that the table says where the time
before the first image goes, before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FLOOR = """\
import pathlib, sys
import numpy as np
import onnxruntime as ort
from PIL import Image

src, dst, model, level = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
dst.mkdir(parents=True, exist_ok=True)
for path in sorted(pathlib.Path(src).iterdir()):
    x = np.asarray(Image.open(path).convert("RGB"), np.float32).transpose(2, 0, 1)[None] / 255
    y = session.run(None, {name: x})[0][0]
    rgb = (np.clip(y, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(rgb).save(dst / (path.stem + ".png"), compress_level=level)
"""


#: one upscale command with the time of its phases noted (wrapped functions; the times
#: go to stderr as one JSON line at exit)
PHASES = """\
import atexit, json, sys, time
T, acc = {"start": time.time()}, {}
def timed(name, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t
    return wrapper
from ganpipe.cli.main import main
T["cli"] = time.time()
import ganpipe.cli.upscale
import ganpipe.upscale.batch as b
T["modules"] = time.time()
import ganpipe.upscale.cache as c
import ganpipe.upscale.model as m
m.open_model = timed("open_model", m.open_model)
m.SRModel.check = timed("probe", m.SRModel.check)
c._digest = timed("hash", c._digest)
if "ncnn" in sys.argv:  # the session is ncnn's (onnxruntime is not imported)
    import ganpipe.inference.ncnn_open as n
    n.open_ncnn = timed("session", n.open_ncnn)
else:
    import onnxruntime as ort
    ort.InferenceSession.__init__ = timed("session", ort.InferenceSession.__init__)
T["ort"] = time.time()
run_jobs = b.run_jobs
def timed_run(upscaler, jobs, opts, **kw):
    T["images"] = time.time()
    keep = kw["on_record"]
    def on_record(record):
        T.setdefault("first", time.time())
        keep(record)
    try:
        return run_jobs(upscaler, jobs, opts, **dict(kw, on_record=on_record))
    finally:
        T["last"] = time.time()
b.run_jobs = timed_run
def done():
    T["exit"] = time.time()
    print("PHASES", json.dumps([T, acc]), file=sys.stderr)
atexit.register(done)
sys.argv = ["ganpipe", *sys.argv[1:]]
main()
"""
#: rows of the phase table: label -> seconds from the child's marks ``t`` and sums ``a``
PHASE_ROWS = {
    "interpreter start": lambda t, a: t["start"] - t["spawn"],
    "import ganpipe.cli.main (click)": lambda t, a: t["cli"] - t["start"],
    "import the command (numpy, pydantic, Pillow, options)": lambda t, a: t["modules"] - t["cli"],
    "import onnxruntime (ncnn: ganpipe's ncnn module)": lambda t, a: t["ort"] - t["modules"],
    "hash of the weights (-m .pth)": lambda t, a: a.get("hash", 0.0),
    "read the model card (before: import onnx, parse)": lambda t, a: a["open_model"] - a["session"],
    "the session (ONNX Runtime; ncnn: its cached conversion)": lambda t, a: a["session"],
    "test image (model check)": lambda t, a: a["probe"],
    "the rest before the images (options, plan, folders)": lambda t, a: (
        t["images"] - t["ort"] - a["open_model"] - a["probe"] - a.get("hash", 0.0)
    ),
    "images: until the first is written": lambda t, a: t["first"] - t["images"],
    "images: the others": lambda t, a: t["last"] - t["first"],
    "after the images (summary)": lambda t, a: t["exit"] - t["last"],
    "interpreter exit": lambda t, a: t["end"] - t["exit"],
    "total": lambda t, a: t["end"] - t["spawn"],
}


def make_inputs(work: Path, side: int, few: int, many: int) -> tuple[Path, Path, Path, Path]:
    """The compact x4 weights (.pth), their ONNX import, and two folders of PNGs."""
    import numpy as np
    import torch
    from PIL import Image, ImageFilter

    from ganpipe.nn.sr import SRVGGNetCompact

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=64, num_conv=16, upscale=4)
    pth = work / "compact-x4.pth"
    torch.save({"params": net.state_dict()}, pth)
    onnx_path = work / "compact-x4.onnx"
    cmd = [sys.executable, "-m", "ganpipe", "import", str(pth), "-o", str(onnx_path)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    rng = np.random.default_rng(0)
    folders = work / "few", work / "many"
    for folder in folders:
        folder.mkdir()
    for i in range(many):
        noise = (rng.random((side, side, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3))
        image.save(folders[1] / f"{i:03d}.png")
        if i < few:
            image.save(folders[0] / f"{i:03d}.png")
    return pth, onnx_path, *folders


def run(cmd: list[str], env: dict[str, str], out: Path) -> float:
    """Wall seconds of ``cmd`` writing into ``out`` (emptied first, untimed)."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out.parent)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds


Commands = dict[str, tuple[list[str], dict]]
#: the ganpipe rows: label -> (extra arguments, model kind, its floor)
ROWS = {
    "-m .onnx": ([], "onnx", "onnxruntime"),
    "-m .pth": ([], "pth", "onnxruntime"),
    "-m .onnx --runtime ncnn": (["--runtime", "ncnn"], "onnx", "ncnn"),
}


def ncnn_engine(work: Path, env: dict, model: Path, ganpipe: list[str], few: Path) -> list[str]:
    """The ncnn engine of bench/ncnn_speed.py on the conversion ganpipe caches (made here
    by one ganpipe run), with ganpipe's ncnn threads: argv up to the image folder."""
    sys.path.insert(0, str(ROOT / "bench"))
    from ncnn_speed import ENGINE

    from ganpipe.cpus import threads_for

    cmd = ganpipe + ["-i", str(few), "-m", str(model), "--runtime", "ncnn"]
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=work)
    param = next((Path(env["GANPIPE_CACHE_DIR"]) / "ncnn").glob("*/model.ncnn.param"))
    engine = work / "engine.py"
    engine.write_text(ENGINE)
    return [sys.executable, str(engine), str(param), str(param.with_suffix(".bin")), "SRC"] + [
        str(work / "out"),
        str(threads_for()),
    ]


def commands(args: argparse.Namespace, work: Path) -> tuple[Commands, Commands]:
    """Every timed command by label (``floor NAME N`` / ``TREE ROW N``), with its
    environment; and the instrumented ones of the phase table (``TREE ROW``)."""
    from ganpipe.upscale.options import UpscaleOptions

    pth, model, few, many = make_inputs(work, args.side, args.few, args.many)
    level = UpscaleOptions.model_fields["png_compression"].default
    floor = work / "floor.py"
    floor.write_text(FLOOR)
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    trees = {"after" if args.before else "ganpipe": (ROOT, base)}
    if args.before:
        trees["before"] = (args.before, base | {"PYTHONPATH": str(args.before)})
    rows = {k: v for k, v in ROWS.items() if args.ncnn or v[2] != "ncnn"}
    ganpipe = [sys.executable, "-m", "ganpipe", "upscale", "-o", str(work / "out")]
    floors = {"onnxruntime": [sys.executable, str(floor), "SRC", str(work / "out"), str(model)]}
    floors["onnxruntime"].append(str(level))
    table: Commands = {}
    phases: Commands = {}
    for tree_name, (tree, env) in trees.items():
        env = env | {"GANPIPE_CACHE_DIR": str(work / f"cache-{tree_name}")}
        check = [sys.executable, "-c", "import ganpipe; print(ganpipe.__file__)"]
        where = subprocess.run(check, capture_output=True, text=True, env=env, cwd=work).stdout
        if not where.startswith(str(tree)):
            raise SystemExit(f"{tree_name} tree: ganpipe imported from {where.strip()}")
        if args.ncnn and "ncnn" not in floors:
            floors["ncnn"] = ncnn_engine(work, env, model, ganpipe, few)
        for row, (extra, kind, _) in rows.items():
            path = model if kind == "onnx" else pth
            for n, src in ((args.few, few), (args.many, many)):
                if kind == "onnx" or n == args.few:  # .pth: per image as .onnx
                    cmd = ganpipe + ["-i", str(src), "-m", str(path), *extra]
                    table[f"{tree_name} {row} {n}"] = (cmd, env)
            argv = [*ganpipe[3:], "-i", str(few), "-m", str(path), *extra]  # upscale -o OUT
            phases[f"{tree_name} {row}"] = ([sys.executable, "-c", PHASES, *argv], env)
    for name, argv in floors.items():
        for n, src in ((args.few, few), (args.many, many)):
            table[f"floor {name} {n}"] = ([str(src) if a == "SRC" else a for a in argv], base)
    return table, phases


def phase_times(cmd: list[str], env: dict, out: Path) -> dict[str, float]:
    """Seconds of each :data:`PHASE_ROWS` row for one run of an instrumented command."""
    shutil.rmtree(out, ignore_errors=True)
    spawn = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out.parent)
    end = time.time()
    line = next((x for x in proc.stderr.splitlines() if x.startswith("PHASES ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(
            f"instrumented run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    marks, sums = json.loads(line.removeprefix("PHASES "))
    marks |= {"spawn": spawn, "end": end}
    return {row: fn(marks, sums) for row, fn in PHASE_ROWS.items()}


def measure_phases(phases: Commands, rounds: int, out: Path) -> str:
    """The phase table (ms, medians of ``rounds`` rotating rounds after one untimed)."""
    labels = list(phases)
    for label in labels:
        phase_times(*phases[label], out)
    got: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    for r in range(rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            got[label].append(phase_times(*phases[label], out))
    lines = [
        f"Where the time of one command goes (ms, medians of {rounds} instrumented runs):",
        "",
        "| phase | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for row in PHASE_ROWS:
        cells = [statistics.median(run[row] for run in got[label]) * 1000 for label in labels]
        lines.append(f"| {row} | " + " | ".join(f"{c:.0f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def measure(table: Commands, repeats: int, out: Path) -> dict:
    """Median seconds per label: one untimed round, then ``repeats`` rotating rounds."""
    labels = list(table)
    for label in labels:  # warm-up: file cache, the .pth conversion into the cache
        run(*table[label], out)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(repeats):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in order:
            times[label].append(run(*table[label], out))
        print(f"round {r + 1}/{repeats} done", file=sys.stderr)
    return {label: statistics.median(ts) for label, ts in times.items()}


def report(med: dict[str, float], args: argparse.Namespace, trees: list[str]) -> str:
    """The markdown tables: medians, then per image, fixed cost and ratios."""
    few, many = args.few, args.many
    lines = [
        f"{args.repeats} interleaved rounds, medians; {few} and {many} images of "
        f"{args.side} px, compact x4 (64 features, 16 convolutions), CPU; load average "
        f"at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| command | median s |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {s:.3f} |" for label, s in med.items()]
    lines += [
        "",
        f"| | {few} images s | per image s | fixed s | {few} images: floor / it "
        f"| per image: floor / it |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def per_image(key: str) -> float:
        return (med[f"{key} {many}"] - med[f"{key} {few}"]) / (many - few)

    floors = sorted({floor for _, _, floor in ROWS.values() if f"floor {floor} {few}" in med})
    for floor in floors:
        t, per = med[f"floor {floor} {few}"], per_image(f"floor {floor}")
        name = "floor: bare ONNX Runtime" if floor == "onnxruntime" else "floor: ncnn engine"
        lines.append(f"| {name} | {t:.3f} | {per:.3f} | {t - few * per:.3f} | 1.00x | 1.00x |")
    for tree in trees:
        for row, (_, _, floor) in ROWS.items():
            if f"{tree} {row} {few}" not in med:
                continue
            t = med[f"{tree} {row} {few}"]
            per = per_image(f"{tree} {row.replace('.pth', '.onnx')}")
            ft, fper = med[f"floor {floor} {few}"], per_image(f"floor {floor}")
            lines.append(
                f"| {tree} {row} | {t:.3f} | {per:.3f} | {t - few * per:.3f} "
                f"| {ft / t:.2f}x | {fper / per:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--few", type=int, default=5)
    parser.add_argument("--many", type=int, default=40)
    parser.add_argument("--side", type=int, default=192)
    parser.add_argument("--phases", type=int, default=3, help="instrumented rounds (0: none)")
    parser.add_argument("--before", type=Path, help="another checkout, run with PYTHONPATH")
    parser.add_argument("--ncnn", action="store_true", help="also --runtime ncnn vs its engine")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    if args.many <= args.few:
        parser.error("--many must be larger than --few")
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="ganpipe-cli-overhead-") as tmp:
        work = Path(tmp)
        table, phases = commands(args, work)
        trees = ["before", "after"] if args.before else ["ganpipe"]
        text = report(measure(table, args.repeats, work / "out"), args, trees)
        if args.phases:
            text += "\n" + measure_phases(phases, args.phases, work / "out")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
