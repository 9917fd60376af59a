"""Thread pools that fit the machine: training and upscaling throughput, today's thread
counts ("before") against :mod:`ganpipe.cpus`' sizing ("after"), in two situations.

Run:  python bench/threads.py [--repeats 2] [--steps 6] [--batch-size 32] [--images 4]
                              [--write FILE]

Situations (each measurement a fresh subprocess, so that thread pools start anew):

* **load**: ``2 x cores`` busy-loop processes run beside the measurement (started before
  it, bounded in time, killed at the end), as on a shared machine or CI runner;
* **quota**: the measurement runs in a real cgroup (v1 ``cpu`` hierarchy, as root) whose
  quota is half the cores (at least 1 CPU), as ``docker --cpus`` or a Kubernetes CPU limit
  sets; where no cgroup can be made, CPU affinity to half the CPUs stands in (then
  "before" already follows the affinity set: torch and ONNX Runtime count it).

Workloads:

* **train**: the ganpipe Trainer, DCGAN at 32 px, ``--batch-size`` images a step,
  ``--steps`` steps; images/s over the steps after the first two, from the start of the
  third to the end of the last (stalls included: the median step would hide a quota's
  throttled periods).
* **upscale**: :func:`ganpipe.upscale.upscale_path` over ``--images`` 128 px photos-like
  images with a Real-ESRGAN compact x4 net (realesr-animevideov3's shape: 64 features, 16
  convolutions; random weights, imported to ONNX by ganpipe); images/s over the call.

"before" is today's behaviour, reproduced through the current code: torch's own default
thread count (one per core of the affinity set: it ignores quotas) requested explicitly,
OpenMP's default wait policy (spinning); ``threads = os.cpu_count()`` and ``workers =
min(4, os.cpu_count())`` for upscaling (ganpipe sized those from ``os.cpu_count()``; ONNX
Runtime's own default counts the machine's cores too). "after" is automatic (``threads =
0``), and for training ``ganpipe run``'s wait policy: threads sleep at barriers when the
machine is busy (``passive`` in the table; the count, and so the results, stay).

Under load, upscaling also runs with one thread ("one"): what a session whose count
followed the load would take, printed below the table.

Runs alternate before / after (the order flipped every repeat); the table gives medians and
the after/before ratio. About 3 minutes on 2 cores. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for path in (ROOT, BENCH):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
MEANING = (
    "before: what ganpipe ran with until now - torch's default thread count (training), "
    "threads = os.cpu_count() and workers = min(4, os.cpu_count()) (upscaling). after: "
    "automatic (ganpipe.cpus.threads_for), and for training the OpenMP wait policy of "
    "ganpipe run (passive: idle threads sleep at barriers, set when the machine is busy; "
    "same count, same results). Where both columns say the same, the two are one "
    "configuration and the ratio is the noise."
)


# -- children ---------------------------------------------------------------------------------
def child_train(mode: str, steps: int, batch: int) -> dict:
    from ganpipe import cpus

    if mode == "after":  # as ganpipe run does, before torch loads
        cpus.spin_less_when_busy()
    import torch
    from train_throughput import TimedVariant, data_info, load_shapes, train_options

    from ganpipe.registry import load_registry
    from ganpipe.training import defaults
    from ganpipe.training.loop import Trainer

    requested = torch.get_num_threads() if mode == "before" else None
    variant = load_registry(entry_points=False).variants.get("dcgan")
    data = load_shapes(32, 3, 512)
    vopts = defaults.resolve(variant, variant.Options(), data_info(data), "cpu", steps)
    seen: list[int] = []

    class Counting(TimedVariant):
        def train_step(self, ctx, batch):
            seen.append(torch.get_num_threads())
            return super().train_step(ctx, batch)

    timed = Counting(variant)
    opts = train_options(steps, batch, steps)
    with (
        tempfile.TemporaryDirectory(prefix="ganpipe-bench-threads-") as tmp,
        cpus.limits(requested),
    ):
        Trainer(timed, vopts, opts, data, Path(tmp), device="cpu", log=lambda *_: None).run()
    # steps 3..N, first start to last end: stalls count (a quota's throttled periods, a
    # thread that lost its CPU), which the median step would hide
    ips = batch * (len(timed.ends) - 2) / (timed.ends[-1] - timed.stamps[2])
    policy = " passive" if os.environ.get("OMP_WAIT_POLICY") == "PASSIVE" else ""
    return {"ips": ips, "threads": f"{seen[-1]}{policy}"}


def child_upscale(mode: str, model: str, images: str) -> dict:
    from ganpipe.cpus import threads_for
    from ganpipe.upscale import upscale_path

    n = os.cpu_count() or 1
    threads, workers = {"before": (n, min(4, n)), "after": (0, 0), "one": (1, 0)}[mode]
    with tempfile.TemporaryDirectory(prefix="ganpipe-bench-threads-") as out:
        t0 = time.perf_counter()
        summary = upscale_path(images, out, model, threads=threads, workers=workers, tile=0)
        seconds = time.perf_counter() - t0
    assert summary.ok, summary.failures
    return {"ips": len(summary.written) / seconds, "threads": threads or threads_for()}


# -- situations -------------------------------------------------------------------------------
@contextlib.contextmanager
def busy_load(count: int, seconds: float) -> Iterator[None]:
    """``count`` processes spinning on the CPU, each ending by itself after ``seconds``;
    killed when the block ends."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
    time.sleep(0.5)
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def quota_preexec(cpus: int) -> tuple[Callable[[], None], Callable[[], None], str]:
    """``(preexec_fn for the child, cleanup, description)``: a real cgroup v1 with a quota
    of ``cpus`` CPUs, else affinity to ``cpus`` CPUs."""
    folder = CGROUP_V1 / f"ganpipe-bench-{os.getpid()}"
    try:
        if os.geteuid() != 0:
            raise OSError("not root")
        folder.mkdir()
        (folder / "cpu.cfs_period_us").write_text("100000")
        (folder / "cpu.cfs_quota_us").write_text(str(100000 * cpus))
    except OSError as exc:
        chosen = set(sorted(os.sched_getaffinity(0))[:cpus])
        return (
            lambda: os.sched_setaffinity(0, chosen),
            lambda: None,
            f"affinity to {cpus} CPU(s) (no cgroup: {exc})",
        )
    procs = folder / "cgroup.procs"
    return (
        lambda: procs.write_text(str(os.getpid())),
        lambda: folder.rmdir(),
        f"cgroup v1 quota {cpus} CPU(s) ({folder})",
    )


def spawn(args: list[str], preexec: Callable[[], None] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    work: list[str], repeats: int, preexec=None, modes: tuple[str, ...] = ("before", "after")
) -> dict[str, list[dict]]:
    """Each of ``modes`` ``repeats`` times, alternating, the order flipped every repeat."""
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    for i in range(repeats):
        for mode in modes if i % 2 == 0 else modes[::-1]:
            runs[mode].append(spawn([*work, mode], preexec))
    return runs


def make_inputs(folder: Path, count: int) -> tuple[Path, Path]:
    """A compact x4 net (realesr-animevideov3's shape, seed 0) as ONNX, and ``count``
    128 px images."""
    import numpy as np
    import torch
    from PIL import Image

    from ganpipe.nn.sr import SRVGGNetCompact
    from ganpipe.weights import import_weights

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=64, num_conv=16, upscale=4).eval()
    torch.save({"params": net.state_dict()}, folder / "x4.pth")
    import_weights(folder / "x4.pth", folder / "x4.onnx")
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((128, 128), Image.BICUBIC)
        image.save(images / f"{i}.png")
    return folder / "x4.onnx", images


# -- report -----------------------------------------------------------------------------------
def row(situation: str, work: str, runs: dict[str, list[dict]]) -> tuple[str, float]:
    b = statistics.median(r["ips"] for r in runs["before"])
    a = statistics.median(r["ips"] for r in runs["after"])
    tb = "/".join(sorted({str(r["threads"]) for r in runs["before"]}))
    ta = "/".join(sorted({str(r["threads"]) for r in runs["after"]}))
    each = " ".join(f"{r['ips']:.4g}" for r in runs["before"]) + " \\| "
    each += " ".join(f"{r['ips']:.4g}" for r in runs["after"])
    line = f"| {situation} | {work} | {tb} | {ta} | {b:.4g} | {a:.4g} | **{a / b:.2f}x** | {each} |"
    return line, a / b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size")
    parser.add_argument("--images", type=int, default=4, help="images per upscaling run")
    parser.add_argument("--write", type=Path, help="also write the report to this file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "train":
            out = child_train(rest[2], int(rest[0]), int(rest[1]))
        else:
            out = child_upscale(rest[2], rest[0], rest[1])
        print(json.dumps(out))
        return 0

    from ganpipe import cpus

    t_start = time.perf_counter()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ganpipe-bench-threads-") as tmp:
        model, images = make_inputs(Path(tmp), args.images)
        train = ["train", str(args.steps), str(args.batch_size)]
        upscale = ["upscale", str(model), str(images)]
        results: list[tuple[str, float]] = []
        with busy_load(2 * cores, 600):
            situation = f"load: {2 * cores} busy processes"
            results.append(row(situation, "train", measure(train, args.repeats)))
            modes = ("before", "after", "one")
            runs = measure(upscale, args.repeats, modes=modes)
            results.append(row(situation, "upscale", runs))
        ones = [r["ips"] for r in runs["one"]]
        one, before = statistics.median(ones), statistics.median(r["ips"] for r in runs["before"])
        note = (
            f"Upscaling under load with one thread instead (what a session whose count "
            f"followed the load would take): {one:.2f} images/s, {one / before:.2f}x before "
            f"({' '.join(f'{x:.2f}' for x in ones)})."
        )
        preexec, cleanup, quota = quota_preexec(max(1, cores // 2))
        try:
            situation = f"quota: {max(1, cores // 2)} of {cores} CPUs"
            results.append(row(situation, "train", measure(train, args.repeats, preexec)))
            results.append(row(situation, "upscale", measure(upscale, args.repeats, preexec)))
        finally:
            cleanup()
    import onnxruntime
    import torch

    lines += [
        "# Thread pools: before (today's counts) vs after (ganpipe.cpus)",
        "",
        f"`python bench/threads.py --repeats {args.repeats} --steps {args.steps} "
        f"--batch-size {args.batch_size} --images {args.images}`; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"os.cpu_count() {cores}, usable CPUs {cpus.usable_cpus()}, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; quota situation: {quota}.",
        "",
        "| situation | work | threads before | threads after | before images/s | "
        "after images/s | after/before | each run (before \\| after) |",
        "|---|---|---|---|---|---|---|---|",
        *[line for line, _ in results],
        "",
        MEANING,
        "",
        note,
        "",
        f"Load average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other jobs share this machine: "
        f"read the ratios, medians of {args.repeats} alternating runs). "
        f"Total {time.perf_counter() - t_start:.0f} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
