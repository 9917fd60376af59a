"""SR quality: PSNR gain over bicubic on held-out images after a short CPU training run.

Run:  python bench/sr_quality.py [--variants espcn,compact] [--scale 2] [--steps 800]
                                 [--batch-size 16] [--image-size 32] [--photos DIR]

For each variant of ``--variants`` (built-in ``super_resolve`` variants: espcn, compact,
srgan, esrgan, or a plugin's), the script writes a ``pipeline.toml`` in a temporary folder,
modelled on ``examples/super_resolution.toml``, and runs it with ``ganpipe run`` in a fresh
subprocess (``python -m ganpipe.cli run``, this interpreter), one variant after the other:

* ``[data]``: the built-in procedural ``shapes`` set (``--count`` images of
  ``--image-size`` pixels, the HR patches; no download), or with ``--photos DIR`` the
  ``patches`` set: ``--per-image`` regions of each photo in DIR (training draws a new
  ``--image-size`` patch of one at every step, flipped and rotated at random). ``holdout``
  (``--holdout``, default 0.1) is kept out of training; ``patches`` holds out whole photos.
* ``[model]``: the variant with ``scale = --scale`` and its own defaults otherwise, except
  ``adv_weight = --adv-weight`` (default 0: pixel loss only, no discriminator; this is
  espcn's default, while compact, srgan and esrgan default to a GAN loss, which trades
  PSNR for texture). ``--lr-g`` and ``--option VARIANT.KEY=VALUE`` override more.
* ``[train]``: ``--steps`` steps of ``--batch-size`` on the CPU (``run.device = "cpu"``),
  no progress bar, sample grid and checkpoint at the end only.
* ``[export]``: the generator to ONNX (the evaluate stage reads the exported model).
* ``[evaluate]``: on the held-out images, each cropped to a multiple of the scale and
  down-scaled with anti-aliased bicubic, it up-scales the LR image with the exported model
  (ONNX Runtime) and with bicubic interpolation, and scores both against the HR image:
  mean per-image PSNR (dB) and SSIM (``ganpipe.metrics.sr.sr_validation``). It writes
  ``runs/<name>/evaluate/metrics.json``, which the script reads.

**The baseline** is bicubic up-scaling of the same LR images, scored in the same evaluate
stage of the same run. The gain is model PSNR minus bicubic PSNR, in dB. Every variant
sees the same held-out images (same data, same ``--seed``), so the bicubic figures must be
the same in every row; the script checks it.

**Time** comes from the run's ``manifest.json``, where ``ganpipe run`` records the wall
seconds of each stage: ``train min`` is the train stage (loading the data, building the
nets, the loop, the final sample grid and checkpoint). ``loop min`` is the loop alone,
from the last line of ``train/metrics.jsonl`` (steps x batch / its cumulative
``images_per_s``). ``at median`` is the loop at the median pace of its log intervals
(every ``log_every`` = 50 steps), which ignores bursts from other jobs on the machine; when
the loop took more than 1.25x that, a WARNING marks the variant's minutes UNRELIABLE (the
PSNR is not affected: the runs are deterministic). ``run min`` is the whole subprocess:
interpreter start-up, imports, all stages. ``--threads N`` sets ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` for the subprocesses (torch's intra-op threads; ganpipe has no threads
option of its own); without it, torch uses its default.

Also printed: the generator's parameter count (from the final checkpoint) and the number
of held-out images scored. Nothing here asserts on time or quality; the exit status is
non-zero only when a run fails.
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
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

STAGES = ("train", "export", "evaluate")  # the order of the tables in the pipeline file


# -- the pipeline file -------------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a basic TOML string: JSON escapes are valid TOML


def toml_table(name: str, values: dict[str, Any]) -> str:
    return "\n".join([f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in values.items())])


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--option VARIANT.KEY=VALUE`` -> {variant: {key: value}}; the value is read as TOML
    (``3e-3``, ``true``, ``["blur", "noise"]``), else taken as a string."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        variant, dot, key = target.strip().partition(".")
        if not sep or not dot or not variant or not key:
            raise SystemExit(f"--option {item!r}: use VARIANT.KEY=VALUE, e.g. compact.num_conv=8")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out.setdefault(variant, {})[key.strip()] = value
    return out


def pipeline_toml(args, variant: str, model: dict[str, Any]) -> str:
    if args.photos:
        data = {"dataset": "patches", "path": str(args.photos), "per_image": args.per_image}
    else:
        data = {"dataset": "shapes", "count": args.count}
    data |= {"image_size": args.image_size, "holdout": args.holdout}
    tables = [
        toml_table(
            "run", {"name": f"sr-{variant}", "out_dir": "runs", "seed": args.seed, "device": "cpu"}
        ),
        toml_table("data", data),
        toml_table("model", {"variant": variant, **model}),
        toml_table(
            "train",
            {
                "steps": args.steps,
                "batch_size": args.batch_size,
                "sample_every": 0,
                "checkpoint_every": 0,
                "progress": False,
            },
        ),
        toml_table("export", {}),
        toml_table("evaluate", {"device": "cpu"}),
    ]
    return "# written by bench/sr_quality.py\n" + "\n\n".join(tables) + "\n"


# -- one run ------------------------------------------------------------------------------
def run_variant(
    args, variant: str, model: dict[str, Any], folder: Path, env: dict[str, str]
) -> dict[str, Any]:
    folder.mkdir(parents=True)
    toml = folder / "pipeline.toml"
    toml.write_text(pipeline_toml(args, variant, model))
    cmd = [sys.executable, "-m", "ganpipe", "run", str(toml)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=folder, env=env)
    wall = time.perf_counter() - t0
    (folder / "ganpipe-run.log").write_text(proc.stdout + proc.stderr)
    row: dict[str, Any] = {"variant": variant, "run_s": wall, "ok": proc.returncode == 0}
    if proc.returncode != 0:
        row["error"] = (
            f"`ganpipe run` exited {proc.returncode}:\n" + (proc.stderr or proc.stdout)[-3000:]
        )
        return row
    run_dir = folder / "runs" / f"sr-{variant}"
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    row["train_s"] = stages["train"]["seconds"]
    row["stage_s"] = {k: v["seconds"] for k, v in stages.items()}
    lines = [
        json.loads(x)
        for x in (run_dir / stages["train"]["outputs"]["metrics"]).read_text().splitlines()
        if x.strip()
    ]
    last = lines[-1]
    row["loop_s"] = last["step"] * args.batch_size / last["images_per_s"]
    row["pace_s"], row["slow"], row["intervals"] = median_pace(lines, args.batch_size)
    row["steps"] = last["step"]
    ev = json.loads((run_dir / stages["evaluate"]["outputs"]["metrics"]).read_text())
    row["scale"], row["real"] = ev["scale"], ev["real"]
    row |= ev["scores"]  # psnr, ssim, bicubic_psnr, bicubic_ssim, count
    row["metric"] = ev.get("metric", "RGB, no border crop")  # records before the Y default
    row["params"] = generator_params(run_dir / stages["train"]["outputs"]["checkpoint"])
    return row


def median_pace(lines: list[dict[str, Any]], batch_size: int) -> tuple[float, int, int]:
    """The loop time at the median pace of its log intervals, the intervals slower than
    twice that pace, and the number of intervals. Each metrics line holds the cumulative
    rate since the loop started, so the seconds at that line are ``step * batch / rate``."""
    stamps = [(0, 0.0)] + [(r["step"], r["step"] * batch_size / r["images_per_s"]) for r in lines]
    per_step = [
        (t1 - t0) / (s1 - s0)
        for (s0, t0), (s1, t1) in zip(stamps[:-1], stamps[1:], strict=True)
        if s1 > s0
    ]
    if not per_step:
        return float("nan"), 0, 0
    med = statistics.median(per_step)
    return med * stamps[-1][0], sum(x > 2 * med for x in per_step), len(per_step)


def generator_params(checkpoint: Path) -> int | None:
    """Values of the generator ``G`` in the final checkpoint (safetensors, no torch)."""
    from safetensors import safe_open

    path = checkpoint / "model.safetensors"
    if not path.exists():
        return None
    total = 0
    with safe_open(str(path), framework="np") as fh:
        for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
            if key.startswith("G/"):
                n = 1
                for d in fh.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


# -- report -------------------------------------------------------------------------------
def fmt(v: Any, spec: str, width: int) -> str:
    """``v`` right-aligned in ``width`` with ``spec`` (``.2f``, ``+.2f``); ``-`` for none."""
    if v is None or (isinstance(v, float) and v != v):
        return f"{'-':>{width}}"
    sign, prec = ("+", spec[1:]) if spec.startswith("+") else ("", spec)
    return f"{v:{sign}{width}{prec}}"


def params_text(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Each variant is one `ganpipe run` in a fresh subprocess, in a temporary "
        "folder; see the module docstring for what is measured.",
    )
    ap.add_argument(
        "--variants",
        default="espcn,compact",
        help="comma-separated super_resolve variants (default: espcn,compact)",
    )
    ap.add_argument("--scale", type=int, default=2, help="up-scaling factor (default 2)")
    ap.add_argument("--steps", type=int, default=800, help="training steps (default 800)")
    ap.add_argument("--batch-size", type=int, default=16, help="default 16")
    ap.add_argument(
        "--image-size",
        type=int,
        default=32,
        help="HR patch size; the LR input is image-size/scale (default 32)",
    )
    ap.add_argument(
        "--count",
        type=int,
        default=1024,
        help="images in the shapes set (default 1024; ignored with --photos)",
    )
    ap.add_argument(
        "--photos",
        type=Path,
        default=None,
        metavar="DIR",
        help="train and score on random HR crops of the photos in DIR "
        "(the 'patches' data set) instead of procedural shapes",
    )
    ap.add_argument(
        "--per-image",
        type=int,
        default=8,
        help="regions kept per photo with --photos (default 8; training draws a new patch "
        "of one at every step)",
    )
    ap.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        help="fraction of the images (with --photos: of the photos) held out "
        "for scoring (default 0.1)",
    )
    ap.add_argument(
        "--adv-weight",
        type=float,
        default=0.0,
        help="adversarial loss weight for every variant (default 0: pixel loss "
        "only, no discriminator)",
    )
    ap.add_argument(
        "--lr-g",
        type=float,
        default=None,
        help="generator learning rate for every variant (default: each variant's own)",
    )
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="VARIANT.KEY=VALUE",
        help="a [model] option of one variant, repeatable, e.g. "
        "compact.num_conv=8 or espcn.lr_g=3e-3",
    )
    ap.add_argument("--seed", type=int, default=0, help="run.seed: init, batches, holdout")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS / MKL_NUM_THREADS for the runs (default: torch's own default)",
    )
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder (pipeline files, run folders, logs)",
    )
    args = ap.parse_args()

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    overrides = parse_overrides(args.option)
    for name in overrides:
        if name not in variants:
            raise SystemExit(
                f"--option for {name!r}, which is not in --variants ({', '.join(variants)})"
            )
    if args.photos is not None:
        args.photos = args.photos.expanduser().resolve()
        if not args.photos.is_dir():
            raise SystemExit(f"--photos {args.photos}: not a folder")

    # Check the variants and their options here, before any training run.
    from ganpipe.errors import GanpipeError
    from ganpipe.registry import load_registry

    registry = load_registry()
    models: dict[str, dict[str, Any]] = {}
    shown: dict[str, dict[str, Any]] = {}
    for name in variants:
        try:
            variant = registry.variants.get(name)
        except GanpipeError as exc:
            raise SystemExit(f"error: {exc}") from None
        if variant.task != "super_resolve":
            raise SystemExit(
                f"variant {name!r} has task {variant.task!r}; this benchmark "
                f"needs super_resolve variants"
            )
        model: dict[str, Any] = {"scale": args.scale, "adv_weight": args.adv_weight}
        if args.lr_g is not None:
            model["lr_g"] = args.lr_g
        model |= overrides.get(name, {})
        try:
            opts = variant.Options(**model)
        except ValueError as exc:
            raise SystemExit(f"variant {name!r}: bad option: {exc}") from None
        models[name] = model
        dump = opts.model_dump(mode="json")
        keys = (
            "scale",
            "lr_g",
            "adv_weight",
            "content_loss",
            "feat1",
            "feat2",
            "num_feat",
            "num_conv",
            "num_block",
            "num_grow_ch",
            *model,
        )
        shown[name] = {k: dump[k] for k in dict.fromkeys(keys) if k in dump}

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)

    def version(*pkgs: str) -> str:
        for pkg in pkgs:
            try:
                return metadata.version(pkg)
            except metadata.PackageNotFoundError:
                pass
        return "?"

    data = (
        f"patches of the photos in {args.photos} ({args.per_image} per photo)"
        if args.photos
        else f"shapes, {args.count} images"
    )
    ort = version("onnxruntime", "onnxruntime-gpu")
    print(
        f"torch {version('torch')}, onnxruntime {ort}, device cpu, "
        f"cpus {os.cpu_count()}, threads "
        f"{args.threads or env.get('OMP_NUM_THREADS') or 'torch default'}"
    )
    print(
        f"data: {data}, HR {args.image_size}x{args.image_size}, LR "
        f"{args.image_size // args.scale}x{args.image_size // args.scale}, holdout "
        f"{args.holdout}, seed {args.seed}"
    )
    print(
        f"train: {args.steps} steps x batch {args.batch_size}; then export (ONNX) and "
        f"evaluate (ONNX model vs bicubic on the held-out images)"
    )
    for name in variants:
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in shown[name].items()))
    print()

    tmp = Path(tempfile.mkdtemp(prefix="ganpipe-bench-sr-"))
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    t_all = time.perf_counter()
    try:
        for name in variants:
            print(f"running {name} ...", flush=True)
            row = run_variant(args, name, models[name], tmp / name, env)
            rows.append(row)
            if row["ok"]:
                order = [k for k in STAGES if k in row["stage_s"]]
                order += [k for k in row["stage_s"] if k not in STAGES]
                stages = ", ".join(f"{k} {row['stage_s'][k]:.1f}s" for k in order)
                print(
                    f"  done in {row['run_s']:.1f}s ({stages}): PSNR {row['psnr']:.2f} dB, "
                    f"bicubic {row['bicubic_psnr']:.2f} dB",
                    flush=True,
                )
            else:
                print(f"  FAILED: {row['error']}", file=sys.stderr, flush=True)
    finally:
        total = time.perf_counter() - t_all
        load_after = os.getloadavg()
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()

    head = (
        f"{'variant':<10}{'scale':>6}{'steps':>7}{'params':>9}{'train min':>10}"
        f"{'loop min':>9}{'at median':>10}{'run min':>8}{'PSNR dB':>9}{'bicubic':>9}"
        f"{'gain dB':>9}{'SSIM':>8}{'bicubic':>9}{'held-out':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if not r["ok"]:
            print(f"{r['variant']:<10}  FAILED (see above)")
            continue
        print(
            f"{r['variant']:<10}{r['scale']:>6}{r['steps']:>7}{params_text(r['params']):>9}"
            f"{fmt(r['train_s'] / 60, '.2f', 10)}{fmt(r['loop_s'] / 60, '.2f', 9)}"
            f"{fmt(r['pace_s'] / 60, '.2f', 10)}{fmt(r['run_s'] / 60, '.2f', 8)}"
            f"{fmt(r['psnr'], '.2f', 9)}{fmt(r['bicubic_psnr'], '.2f', 9)}"
            f"{fmt(r['psnr'] - r['bicubic_psnr'], '+.2f', 9)}{fmt(r['ssim'], '.4f', 8)}"
            f"{fmt(r['bicubic_ssim'], '.4f', 9)}{r['count']:>9}"
        )
    print(f"PSNR / SSIM on: {', '.join(sorted({r['metric'] for r in rows if r['ok']}))}")
    print(
        "PSNR / SSIM: mean per image over the held-out images; model = the exported ONNX "
        "model, bicubic = the\nbaseline on the same LR images in the same run; gain = "
        "model - bicubic. Minutes (wall): train = the\ntrain stage (manifest), loop = the "
        "training loop alone, at median = the loop at the median pace of\nits log "
        "intervals, run = the whole `ganpipe run` subprocess."
    )
    print(
        f"load average 1/5/15 min: before {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.2f}' for x in load_after)}  ({os.cpu_count()} cpus); "
        f"all runs {total / 60:.1f} min"
    )

    done = [r for r in rows if r["ok"]]
    if len(done) > 1:
        bic = {(round(r["bicubic_psnr"], 6), round(r["bicubic_ssim"], 6), r["count"]) for r in done}
        print(
            "same held-out images check: bicubic PSNR, SSIM and count "
            + (
                "identical in every row (OK)"
                if len(bic) == 1
                else f"DIFFER between rows ({sorted(bic)}): the variants were not scored on "
                f"the same images"
            )
        )
    busy = [r for r in done if r["loop_s"] > 1.25 * r["pace_s"]]
    for r in busy:
        print(
            f"WARNING: {r['variant']}: {r['slow']} of {r['intervals']} log intervals ran at "
            f"less than half the median pace, and the loop took {r['loop_s'] / 60:.2f} min "
            f"against {r['pace_s'] / 60:.2f} min at that pace: the machine was busy. Its "
            f"minutes are UNRELIABLE (the PSNR is not affected); read 'at median', or "
            f"re-run when the machine is quiet."
        )
    print()
    for r in done:
        minutes = (
            f"{r['pace_s'] / 60:.2f} min of training loop at its median pace "
            f"({r['train_s'] / 60:.2f} min measured, machine busy)"
            if r in busy
            else f"{r['train_s'] / 60:.2f} min of training"
        )
        print(
            f"{r['variant']}: {r['psnr'] - r['bicubic_psnr']:+.2f} dB over bicubic "
            f"(x{r['scale']}, {r['count']} {r['real']} images) after {r['steps']} steps, "
            f"{minutes} on this CPU"
        )
    return 0 if len(done) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
