"""Peak memory of ``ganpipe upscale`` on one large image, tiled and untiled.

Run:  python bench/upscale_memory.py [--cases 2048:512,2048:256,2048:0,1024:512,1536:512]
                                     [--format jpg] [--repeats 1]

Setup, in a temporary folder: one procedural RGB PNG per image size (seeded), and a small,
fast Real-ESRGAN-layout SRVGGNetCompact x4 (``--num-feat`` 16, ``--num-conv`` 2, randomly
initialised) saved as a ``.pth`` and converted with ``ganpipe.weights.import_weights`` (what
``ganpipe import`` runs). The model is small on purpose: the point is the memory around it.

Each case ``SIZE:TILE`` is one fresh subprocess (it never imports torch) that calls
``ganpipe.upscale.upscale_path(image, out, model, device="cpu", tile=TILE)``,
what ``ganpipe upscale -i image.png -o out -m model.onnx --tile TILE`` runs; TILE 0 = the
whole image at once. Two module functions are wrapped (in the subprocess only, to read the
memory; they still do their work):

* ``open_sr_model``: right after the model is opened, the process's current RSS
  (``/proc/self/statm``) is the **baseline**: interpreter, numpy, Pillow, ONNX Runtime and
  the opened session, before any image is touched;
* ``encode_image``: right before the output is encoded, the RSS high-water mark
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is the **peak of decode + upscale**.

The **peak** is ``ru_maxrss`` at the end (decode, upscale and encode). The table shows both
peaks, their growth over the baseline, and next to them the size of the output buffer the
upscaler fills: ``4W x 4H x 3`` bytes (``ganpipe.upscale.tiling`` blends tiles into a
float32 band one row of tiles high and rounds finished rows into the uint8 output, the only
array at output size; encoding adds Pillow's RGBX image, a third more). ``upscale -
buffer`` is what the upscale stage holds besides that buffer: with tiles it stays small
and about the same for every image size (the band grows with the width only); without
tiles it grows with the image (the model's activations and its whole output at once, in
float32).

The default output format is JPEG (``--format jpg``): encoding a 64 MP PNG takes about 20 s
here at Pillow's level 6, and Pillow's PNG and JPEG encoders both stream rows, so the
memory is the same. ``--format png`` measures the PNG writer itself.

Nothing here asserts on memory or time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20


def rss_now() -> int:
    """Current resident set size in bytes (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    """The RSS high-water mark in bytes (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def vm_hwm() -> int:
    """The kernel's per-address-space high-water mark (``VmHWM``), as a cross-check."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return -1


def worker(cfg: dict) -> dict:
    """One measurement: upscale_path on one image, with the memory read around it."""
    import ganpipe.upscale.batch as up

    seen: dict[str, int] = {}
    open_model, encode = up.open_sr_model, up.encode_image

    def open_and_measure(*a, **k):
        model = open_model(*a, **k)
        seen["baseline"] = rss_now()
        seen["peak_before_open_done"] = rss_peak()
        return model

    def encode_and_measure(pic, *a, **k):
        seen["peak_upscale"] = rss_peak()
        seen["buffer"] = pic.color.nbytes + (pic.alpha.nbytes if pic.alpha is not None else 0)
        seen["buffer_dtype"] = str(pic.color.dtype)
        return encode(pic, *a, **k)

    up.open_sr_model = open_and_measure
    up.encode_image = encode_and_measure
    t0 = time.perf_counter()
    summary = up.upscale_path(
        cfg["image"],
        cfg["out"],
        cfg["model"],
        device="cpu",
        tile=cfg["tile"],
        overlap=cfg["overlap"],
        format=cfg["format"],
        progress=False,
    )
    seconds = time.perf_counter() - t0
    if summary.failures or len(summary.written) != 1:
        raise SystemExit(f"upscale failed: {summary.failures}")
    seen["peak"] = rss_peak()
    seen["hwm"] = vm_hwm()
    seen["seconds"] = seconds
    seen["tile_used"] = summary.tile
    return seen


def spawn(cfg: dict, flag: str = "--worker") -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), flag, json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def make_image(path: Path, size: int, seed: int) -> None:
    """Seeded procedural RGB PNG: a smooth colour field, mild noise and shapes."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack(
        [np.sin(2 * np.pi * (a * xx + b * yy) + p) for a, b, p in rng.uniform(-3, 3, (3, 3))],
        axis=2,
    )
    arr = 127.5 + 60 * base + rng.normal(0, 6, (size, size, 3))
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(size // 32, size // 4, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.integers(0, 2) else draw.rectangle)(
            (x0, y0, x0 + w, y0 + h), fill=colour
        )
    im.save(path, compress_level=1)


def setup(cfg: dict) -> dict:
    """The model and the images (run in a subprocess: see ``main``)."""
    import onnxruntime

    folder = Path(cfg["folder"])
    model, note = make_model(folder, cfg["num_feat"], cfg["num_conv"], cfg["seed"])
    images = {}
    for size in cfg["sizes"]:
        images[size] = str(folder / f"in_{size}.png")
        make_image(Path(images[size]), size, cfg["seed"] + size)
    return {
        "model": str(model),
        "note": note,
        "images": images,
        "onnxruntime": onnxruntime.__version__,
    }


def make_model(folder: Path, num_feat: int, num_conv: int, seed: int) -> tuple[Path, str]:
    import torch

    from ganpipe.nn.sr import SRVGGNetCompact
    from ganpipe.weights import import_weights

    torch.manual_seed(seed)
    net = SRVGGNetCompact(3, 3, num_feat, num_conv, 4).eval()
    pth = folder / "small_x4.pth"
    torch.save({"params": net.state_dict()}, pth)
    result = import_weights(pth, folder / "small_x4.onnx")
    params = sum(p.numel() for p in net.parameters())
    return result.path, (
        f"{result.arch.variant} x{result.arch.scale} "
        f"(num_feat {num_feat}, num_conv {num_conv}, {params / 1e3:.1f} k "
        f"params), imported with ganpipe.weights.import_weights"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--cases",
        default="2048:512,2048:256,2048:0,1024:512,1536:512",
        help="comma-separated SIZE:TILE (input SIZE x SIZE, TILE 0 = untiled)",
    )
    ap.add_argument("--overlap", type=int, default=32, help="ganpipe's --tile-overlap")
    ap.add_argument(
        "--format",
        default="jpg",
        choices=["jpg", "png", "webp", "tiff"],
        help="output format (see the module docstring)",
    )
    ap.add_argument("--num-feat", type=int, default=16)
    ap.add_argument("--num-conv", type=int, default=2)
    ap.add_argument(
        "--repeats", type=int, default=1, help="subprocesses per case; the table shows the median"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--setup", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.setup:
        print("RESULT " + json.dumps(setup(json.loads(args.setup))))
        return 0
    if not Path("/proc/self/statm").exists():
        print("SKIPPED: this script reads /proc/self/statm (Linux)")
        return 0

    cases = []
    for spec in args.cases.split(","):
        size, _, tile = spec.strip().partition(":")
        cases.append((int(size), int(tile or 0)))

    # This process stays small (no torch, numpy or onnxruntime): on Linux a child's
    # ru_maxrss starts at the RSS of the process that forked it, so a big parent would
    # raise every worker's high-water mark. The set-up runs in a subprocess of its own.
    tmp = Path(tempfile.mkdtemp(prefix="ganpipe-bench-upmem-"))
    try:
        t0 = time.perf_counter()
        made = spawn(
            {
                "folder": str(tmp),
                "num_feat": args.num_feat,
                "num_conv": args.num_conv,
                "seed": args.seed,
                "sizes": sorted({s for s, _ in cases}),
            },
            "--setup",
        )
        model, note = made["model"], made["note"]
        images = {int(k): v for k, v in made["images"].items()}
        print(
            f"python {sys.version.split()[0]}, onnxruntime {made['onnxruntime']}; "
            f"cpus: {os.cpu_count()}; device: cpu; RSS of this parent process "
            f"{rss_now() / MiB:.0f} MiB (a child's ru_maxrss starts there)"
        )
        print(f"model: {note}")
        print(
            f"set-up (model + images) {time.perf_counter() - t0:.1f} s; each case: a fresh "
            f"subprocess running upscale_path() (the `ganpipe upscale` library call), "
            f"output format {args.format}, tile overlap {args.overlap}, "
            f"{args.repeats} run(s) per case (median)"
        )
        print()
        header = (
            f"{'input':>9} {'tile':>5} {'out MP':>7} {'buffer MiB':>10} "
            f"{'baseline':>9} {'peak upscale':>12} {'peak':>7} {'+upscale':>9} "
            f"{'+peak':>7} {'upscale-buffer':>14} {'seconds':>7}"
        )
        print(header)
        print(
            f"{'':>9} {'':>5} {'':>7} {'(4W*4H*3)':>10} {'MiB':>9} {'MiB':>12} "
            f"{'MiB':>7} {'MiB':>9} {'MiB':>7} {'MiB':>14} {'':>7}"
        )
        print("-" * len(header))
        rows = []
        worst_gap = 0
        for size, tile in cases:
            results = []
            for rep in range(args.repeats):
                out = tmp / f"out_{size}_{tile}_{rep}"
                overlap = min(args.overlap, tile // 2 - 1) if tile > 0 else args.overlap
                results.append(
                    spawn(
                        {
                            "image": images[size],
                            "out": str(out),
                            "model": model,
                            "tile": tile,
                            "overlap": overlap,
                            "format": args.format,
                        }
                    )
                )
                shutil.rmtree(out, ignore_errors=True)

            def med(key: str, results: list[dict] = results) -> float:
                return statistics.median(r[key] for r in results)

            base, p_up, peak, buf = med("baseline"), med("peak_upscale"), med("peak"), med("buffer")
            expected = (4 * size) ** 2 * 3  # uint8 RGB, what the encoder gets
            hwm_gap = max(abs(r["hwm"] - r["peak"]) for r in results)
            worst_gap = max(worst_gap, hwm_gap)
            rows.append((size, tile, base, p_up, peak, buf))
            print(
                f"{f'{size}x{size}':>9} {tile if tile else 'none':>5} "
                f"{(4 * size) ** 2 / 1e6:7.1f} {buf / MiB:10.0f} {base / MiB:9.0f} "
                f"{p_up / MiB:12.0f} {peak / MiB:7.0f} {(p_up - base) / MiB:9.0f} "
                f"{(peak - base) / MiB:7.0f} {(p_up - base - buf) / MiB:14.0f} "
                f"{med('seconds'):7.1f}"
            )
            if buf != expected:
                print(
                    f"  note: the buffer handed to the encoder is {buf} bytes "
                    f"({results[0]['buffer_dtype']}), not 4W*4H*3 = {expected}"
                )
        print()
        print(
            "baseline = RSS after importing and opening the model, before the image; "
            "+upscale / +peak = growth of the RSS high-water mark over it, before "
            "encoding / at the end; buffer = the uint8 HWC output the upscaler fills; "
            "upscale-buffer = what decode + upscale held besides it."
        )
        print(
            f"check: ru_maxrss and /proc/self/status VmHWM at the end differ by at most "
            f"{worst_gap / MiB:.1f} MiB over all runs"
        )
        tiled = [(s, t, pu - b - buf) for s, t, b, pu, _, buf in rows if t > 0]
        untiled = [(s, t, pu - b - buf, pk - b) for s, t, b, pu, pk, buf in rows if t == 0]
        if tiled:
            extra = [e / MiB for _, _, e in tiled]
            print(
                f"tiled: besides the output buffer, decode + upscale held "
                f"{min(extra):.0f}..{max(extra):.0f} MiB over "
                f"{', '.join(f'{s}px/tile {t}' for s, t, _ in tiled)}"
            )
        for s, _, e, pk in untiled:
            same = [(t, pk2 - b) for s2, t, b, _, pk2, _ in rows if s2 == s and t > 0]
            if same:
                t, pkt = min(same, key=lambda x: x[1])
                print(
                    f"untiled {s}px: decode + upscale held {e / MiB:.0f} MiB besides the "
                    f"buffer; peak growth {pk / MiB:.0f} MiB vs {pkt / MiB:.0f} MiB with "
                    f"tile {t} ({pk / max(pkt, 1):.2f}x)"
                )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
