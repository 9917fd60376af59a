"""Batch upscaling on Ray (``--engine ray``, 2 actors) against the local engine, same folder.

Run:  python bench/ray_upscale.py [--count 48] [--size 128] [--actors 2] [--repeats 2]
                                  [--out bench/results/ray-upscale-cpu-DATE.md]

Setup (temporary folder): ``--count`` procedural RGB PNGs of ``--size`` pixels and a
Real-ESRGAN-layout SRVGGNetCompact x4 (num_feat 32, num_conv 8, seeded) converted with
``ganpipe import``. Each side runs in its own subprocess (no warm state carries over):

* local: :func:`ganpipe.upscale.upscale_path` (one ONNX Runtime session; decode and
  encode thread pools around it);
* ray: the same plan through :func:`ganpipe.upscale.ray_engine.run_on_ray` on a local
  Ray instance with ``--actors`` actors (one session each); Ray's start-up (``ray.init``)
  is timed apart from the batch.

Reported: images/s of both (median of ``--repeats``), their ratio, the per-image overhead
of Ray (``(t_ray - t_local) / count`` on the batch alone; on a 2-core machine 2 actors
also compete with the driver for the cores, so this is an upper bound), the fixed start-up
cost, and, on paper, the hours for 1M 512x512 images x4 on N GPUs from these figures and a
GPU model time per image given with ``--gpu-seconds`` (no GPU here to measure it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, print_markdown

CHILD = r"""
import json, sys, time
from pathlib import Path
side, src, out, model, actors = sys.argv[1:6]
from ganpipe.upscale.options import UpscaleOptions
opts = UpscaleOptions(model=[Path(model)], device="cpu")
if side == "local":
    from ganpipe.upscale import upscale_path
    t0 = time.perf_counter()
    s = upscale_path(src, out, options=opts, progress=False)
    print(json.dumps({"batch": time.perf_counter() - t0, "n": len(s.written), "init": 0.0}))
else:
    import ray
    from ganpipe.upscale.plan import plan_jobs
    from ganpipe.upscale.ray_engine import _quiet_ray, run_on_ray
    _quiet_ray(ray)
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    t1 = time.perf_counter()
    r = run_on_ray(plan_jobs(src, out, opts).jobs, opts, actors=int(actors))
    t2 = time.perf_counter()
    n = sum(rec.outcome == "written" for rec in r.records)
    print(json.dumps({"batch": t2 - t1, "n": n, "init": t1 - t0}))
"""


def setup(folder: Path, count: int, size: int) -> Path:
    import numpy as np
    import torch
    from PIL import Image

    from ganpipe.nn.sr import SRVGGNetCompact
    from ganpipe.weights import import_weights

    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=32, num_conv=8, upscale=4).eval()
    torch.save({"params": net.state_dict()}, folder / "m.pth")
    import_weights(folder / "m.pth", folder / "m.onnx")
    rng = np.random.default_rng(0)
    (folder / "in").mkdir()
    (folder / "half").mkdir()
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        base = (np.sin(xx / (5 + i % 7)) + np.cos(yy / (3 + i % 5))) * 60 + 128
        arr = np.clip(base[..., None] + rng.normal(0, 12, (size, size, 3)), 0, 255)
        Image.fromarray(arr.astype(np.uint8)).save(folder / "in" / f"{i:04d}.png")
        if i < count // 2:
            Image.fromarray(arr.astype(np.uint8)).save(folder / "half" / f"{i:04d}.png")
    return folder / "m.onnx"


def run(side: str, folder: Path, model: Path, actors: int, k: int, src: str = "in") -> dict:
    out = folder / f"out-{side}-{src}-{k}"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, side, str(folder / src), str(out), str(model), str(actors)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=48)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--gpu-seconds", type=float, default=0.05, help="model time per 512px x4")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = setup(folder, args.count, args.size)
        runs: dict[str, list[dict]] = {"local": [], "ray": [], "local-half": [], "ray-half": []}
        for k in range(args.repeats):
            for side in ("local", "ray") if k % 2 == 0 else ("ray", "local"):
                runs[side].append(run(side, folder, model, args.actors, k))
                runs[f"{side}-half"].append(run(side, folder, model, args.actors, k, "half"))
    t = {key: statistics.median(r["batch"] for r in rs) for key, rs in runs.items()}
    t_local, t_ray = t["local"], t["ray"]
    init = statistics.median(r["init"] for r in runs["ray"])
    n, half = args.count, args.count // 2
    # time = fixed + n * per_image on each side: the slope between the two folder sizes
    slope = {side: (t[side] - t[f"{side}-half"]) / (n - half) for side in ("local", "ray")}
    fixed = {side: t[side] - n * slope[side] for side in ("local", "ray")}
    overhead = slope["ray"] - slope["local"]
    # paper estimate: per GPU, a 512px image costs the model time plus the CPU-side work
    # that does not overlap it (decode and encode overlap in the actor's thread pools), plus
    # Ray's per-image overhead measured here
    per_image = args.gpu_seconds + max(0.0, overhead)
    lines = [
        f"{n} PNGs of {args.size}x{args.size}, compact x4 (num_feat 32, num_conv 8), CPU, "
        f"{args.actors} Ray actors, median of {args.repeats}",
        "",
        "| engine | batch s | images/s | ratio vs local |",
        "|---|---:|---:|---:|",
        f"| local | {t_local:.2f} | {n / t_local:.2f} | 1.00x |",
        f"| ray ({args.actors} actors) | {t_ray:.2f} | {n / t_ray:.2f} | {t_local / t_ray:.2f}x |",
        "",
        f"Ray start-up (ray.init, local instance): {init:.1f} s, once per run; actor start "
        f"and model load: {fixed['ray']:.1f} s (local engine: {fixed['local']:.1f} s).",
        f"Per image (slope between {half} and {n} images): local "
        f"{slope['local'] * 1000:.0f} ms, ray {slope['ray'] * 1000:.0f} ms; Ray's "
        f"overhead per image: {overhead * 1000:.1f} ms.",
        "",
        f"On paper, 1M 512x512 images x4 at {args.gpu_seconds:.3f} s of model time per image "
        f"and GPU, plus the overhead above:",
        "",
        "| GPUs | hours |",
        "|---:|---:|",
    ]
    lines += [f"| {g} | {1e6 * per_image / g / 3600:.1f} |" for g in (1, 8, 32, 128)]
    print_markdown(lines, args.out)


if __name__ == "__main__":
    main()
