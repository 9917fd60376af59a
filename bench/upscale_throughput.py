"""Batch super-resolution throughput: ``ganpipe upscale`` against a Real-ESRGAN-style loop.

Run:  python bench/upscale_throughput.py [--count 20] [--size 256] [--tiles 512,128]
                                         [--repeats 3] [--num-conv 16]
      python bench/upscale_throughput.py --device cuda --fp16     (GPU machines)

Setup, in a temporary folder: ``--count`` procedural RGB PNGs of ``--size`` pixels (noise,
gradients and shapes, seeded), and a Real-ESRGAN-layout SRVGGNetCompact x4 (``body.N``
keys, ``--num-feat`` 64, ``--num-conv`` 16, PReLU) saved as ``model.pth`` with a ``params``
wrapper and converted with ``ganpipe.weights.import_weights``, the function behind
``ganpipe import`` (with ``--fp16``: ``ganpipe import --fp16``). num_conv 16 is the size of
Real-ESRGAN's realesr-animevideov3 (XS); realesr-general-x4v3 (S) has num_conv 32
(``--num-conv 32``). The weights are random (seeded), except that by default
(``--init fit``) the last conv is fitted by least squares so that the net approximates a
bicubic x4: the compute is the same whatever the weights, but the outputs then look like
natural upscales, and PNG-encoding them costs what it costs on real images (about 0.3 s
per 1024 px image at Pillow's level 6 here, as for a photo). With PyTorch's default init
(``--init random``) the outputs are blocky nearest-neighbour upscales that encode about 7x
faster, which understates the encoding work of a real batch.

A = ganpipe: the library call ``ganpipe.upscale.upscale_path(folder, out, model,
    device=..., tile=T, overlap=--overlap, progress=False)``, which is what the CLI's
    ``ganpipe upscale -i folder -o out -m model.onnx --tile T`` runs: ONNX Runtime, decoding
    in a thread pool ahead of the model and PNG encoding in another behind it.
B = baseline: what Real-ESRGAN's ``RealESRGANer`` does, written here: PyTorch eager with the
    same weights (loaded from the same ``.pth``), ``torch.inference_mode``, torch's default
    thread count; per image, strictly one after the other: PIL load -> float32 / 255 ->
    tensor -> tile loop (``ceil(W / T) x ceil(H / T)`` tiles of ``T`` pixels, each read with
    ``--tile-pad`` 10 pixels of context, one forward per tile, the centre pasted into the
    output) -> clamp, ``* 255``, round -> PIL PNG save at Pillow's default level 6 (ganpipe
    writes level 4: 3-4 % larger on photos, in less than half the time; pass
    ``--baseline-png-level 4`` for the same level on both sides). ``T`` = 0 runs the whole image at once. With ``--fp16`` on CUDA the net and
    its inputs are ``.half()``.

Both sides get the same ``T``. Their tile geometries differ (ganpipe: evenly spread
windows on the ``T`` grid, just large enough to share ``--overlap`` pixels, blended;
RealESRGANer: the same grid plus ``--tile-pad`` context on each side, pasted), so the
table also shows how many pixels each one feeds the model per image. An image no larger than ``T`` is one tile on both sides.

Each timed run is a fresh subprocess (no thread pool or allocator state carries over from
the other side); the time is taken inside it around the work alone - opening the model
included, interpreter start-up and imports excluded (the ``process`` column has them). One
untimed warm-up run of each side on 2 images comes first, then the runs alternate A B A B
... (the order swaps every repeat). Reported: medians of images/s and input MP/s, and the
ratio ganpipe / baseline as the ratio of the medians, the median of the per-pair ratios,
and best-of.

Same-work check: the first output image of the last A and B runs are compared (uint8
max and mean absolute difference): whole-image runs agree to a level or so (float rounding);
tiled runs also differ near the tile borders (different seams and context), by a few
levels at most there and a small fraction of a level on average.

Then, per tile size and in two more subprocesses, a sequential per-stage profile of
``--profile-images`` images (after one untimed image): decode, model, tiling/blend,
quantize, PNG encode + write, for both sides; for ganpipe also Pillow's PNG encode time
of its output at zlib levels 6 (what it writes), 4 and 1, the cost of one fsync, and (for
the first tile size) the model alone under other ONNX Runtime session options
(intra-op threads, spinning, graph optimisation level). That shows where the time goes
and which settings could still move the ratio.

Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PNG_LEVELS = (6, 4, 1)


# -- setup -------------------------------------------------------------------------------
def make_images(folder: Path, count: int, size: int, seed: int) -> list[Path]:
    """Seeded procedural RGB PNGs: a smooth colour field, noise, and filled shapes."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        rng = np.random.default_rng(seed * 1000 + i)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        base = np.stack(
            [np.sin(2 * np.pi * (a * xx + b * yy) + p) for a, b, p in rng.uniform(-2, 2, (3, 3))],
            axis=2,
        )
        arr = 127.5 + 60 * base + rng.normal(0, 12, (size, size, 3))
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(im)
        for _ in range(12):
            x0, y0 = (int(v) for v in rng.integers(0, size, 2))
            w, h = (int(v) for v in rng.integers(size // 16, size // 3, 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = int(rng.integers(0, 3))
            box = (x0, y0, x0 + w, y0 + h)
            if shape == 0:
                draw.ellipse(box, fill=colour)
            elif shape == 1:
                draw.rectangle(box, fill=colour)
            else:
                draw.line(box, fill=colour, width=int(rng.integers(1, 6)))
        path = folder / f"img_{i:04d}.png"
        im.save(path)
        paths.append(path)
    return paths


def fit_to_bicubic(net, image: Path, crop: int = 128) -> float:
    """Random body (Kaiming normal for PReLU, zero biases: the signal neither dies out nor
    explodes over the layers), then the last conv fitted by least squares so that the net
    maps a ``crop`` px patch of ``image`` to its bicubic x4 (the body learns the residual
    over the nearest-upsampled input). The outputs then look like a plain smooth upscale
    and cost what natural images cost to PNG-encode; with PyTorch's default init the body
    adds an almost constant pattern, the output is the blocky nearest-neighbour upscale and
    its PNGs encode several times faster than real ones. Returns the RMSE in uint8 levels
    against bicubic on the fitted patch."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch import nn

    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    for conv in convs[:-1]:
        nn.init.kaiming_normal_(conv.weight, a=0.25, nonlinearity="leaky_relu")
        nn.init.zeros_(conv.bias)
    with Image.open(image) as im:
        patch = im.convert("RGB").crop((0, 0, crop, crop))
    lr = np.asarray(patch, dtype=np.float32) / 255.0
    hr = (
        np.asarray(patch.resize((crop * 4, crop * 4), Image.Resampling.BICUBIC), dtype=np.float32)
        / 255.0
    )
    x = torch.from_numpy(lr.transpose(2, 0, 1)[None].copy())
    y = torch.from_numpy(hr.transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        feat = x
        for layer in list(net.body)[:-1]:
            feat = layer(feat)
        target = F.pixel_unshuffle(y - F.interpolate(x, scale_factor=4, mode="nearest"), 4)
        cols = F.unfold(feat, 3, padding=1)[0].T  # (pixels, C*9)
        a = torch.cat([cols, torch.ones(cols.shape[0], 1)], 1).double()
        b = target[0].reshape(target.shape[1], -1).T.double()
        sol = torch.linalg.lstsq(a, b, driver="gelsd").solution.float()
        last = convs[-1]
        last.weight.copy_(sol[:-1].T.reshape(last.weight.shape))
        last.bias.copy_(sol[-1])
        err = (net(x).clamp(0, 1) - y).pow(2).mean().sqrt().item() * 255
    return err


def make_model(
    folder: Path, num_feat: int, num_conv: int, seed: int, fp16: bool, init: str, fit_image: Path
) -> tuple[Path, Path, str]:
    """model.pth (``params`` wrapper, Real-ESRGAN layout) and its ONNX import."""
    import torch

    from ganpipe.nn.sr import SRVGGNetCompact
    from ganpipe.weights import import_weights

    torch.manual_seed(seed)
    net = SRVGGNetCompact(3, 3, num_feat, num_conv, 4).eval()
    if init == "fit":
        rmse = fit_to_bicubic(net, fit_image)
        how = (
            f"random body (seed {seed}), last conv fitted to bicubic x4 on a 128 px patch "
            f"(RMSE {rmse:.1f} levels)"
        )
    else:
        how = f"PyTorch's default random init (seed {seed})"
    pth = folder / "model.pth"
    torch.save({"params": net.state_dict()}, pth)
    onnx_path = folder / ("model_fp16.onnx" if fp16 else "model.onnx")
    t0 = time.perf_counter()
    result = import_weights(pth, onnx_path, fp16=fp16)
    dt = time.perf_counter() - t0
    arch = result.arch
    sizes = ", ".join(f"{k} {v}" for k, v in arch.kwargs.items())
    half = (
        f"; float16 max abs diff {result.fp16_max_abs_diff:.2e}"
        if result.fp16_max_abs_diff is not None
        else ""
    )
    note = (
        f"{arch.variant} x{arch.scale} ({sizes}), "
        f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M params, {how};\n       "
        f"{pth.name} -> {onnx_path.name} ({onnx_path.stat().st_size / 2**20:.1f} MiB) "
        f"with ganpipe.weights.import_weights in {dt:.1f} s (ONNX vs torch max abs diff "
        f"{result.max_abs_diff:.1e}{half})"
    )
    return pth, onnx_path, note


def ganpipe_geometry(size: int, tile: int, overlap: int) -> tuple[int, int]:
    """(tiles, model input pixels) per size x size image, as ganpipe's Upscaler tiles it."""
    from ganpipe.upscale.tiling import tile_windows

    if tile <= 0 or size <= tile:
        return 1, size * size
    window, starts = tile_windows(size, tile, overlap)
    return len(starts) ** 2, (len(starts) * window) ** 2


def esrgan_geometry(size: int, tile: int, pad: int) -> tuple[int, int]:
    """(tiles, model input pixels) per size x size image for RealESRGANer's tile loop."""
    if tile <= 0:
        return 1, size * size
    n = math.ceil(size / tile)
    side = sum(min((k + 1) * tile + pad, size) - max(k * tile - pad, 0) for k in range(n))
    return n * n, side * side


# -- the baseline ------------------------------------------------------------------------
def esrgan_tile_forward(net, x, tile: int, pad: int, scale: int):
    """RealESRGANer.tile_process: a ``tile`` grid, each tile read with ``pad`` pixels of
    context (clipped at the image border), the centre of each output pasted."""
    _, c, h, w = x.shape
    if tile <= 0:
        return net(x)
    out = x.new_zeros((1, c, h * scale, w * scale))
    for ty in range(math.ceil(h / tile)):
        for tx in range(math.ceil(w / tile)):
            y0, x0 = ty * tile, tx * tile
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - pad, 0), max(x0 - pad, 0)
            py1, px1 = min(y1 + pad, h), min(x1 + pad, w)
            pred = net(x[:, :, py0:py1, px0:px1])
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = pred[
                :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
            ]
    return out


def load_baseline_net(pth: Path, num_feat: int, num_conv: int, device: str, fp16: bool):
    import torch

    from ganpipe.nn.sr import SRVGGNetCompact  # the same module layout as Real-ESRGAN's

    net = SRVGGNetCompact(3, 3, num_feat, num_conv, 4)
    state = torch.load(pth, map_location="cpu", weights_only=True)
    net.load_state_dict(state["params_ema" if "params_ema" in state else "params"], strict=True)
    net = net.eval().to(device)
    return net.half() if fp16 else net


def baseline_enhance(net, arr, tile: int, pad: int, device: str, fp16: bool, stamps=None):
    """RealESRGANer.enhance for an RGB uint8 array: -> RGB uint8 array x4."""
    import numpy as np
    import torch

    def stamp(name: str) -> None:
        if stamps is not None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            stamps.append((name, time.perf_counter()))

    img = arr.astype(np.float32) / 255.0
    x = torch.from_numpy(np.transpose(img, (2, 0, 1))).float().unsqueeze(0).to(device)
    if fp16:
        x = x.half()
    stamp("to tensor")
    out = esrgan_tile_forward(net, x, tile, pad, 4)
    stamp("model + paste")
    out = out.squeeze(0).float().cpu().clamp_(0, 1).numpy()
    result = (np.transpose(out, (1, 2, 0)) * 255.0).round().astype(np.uint8)
    stamp("quantize")
    return result


def run_baseline(cfg: dict) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    files = sorted(Path(cfg["input"]).glob("*.png"))
    out_dir = Path(cfg["output"])
    out_dir.mkdir(parents=True, exist_ok=True)
    device, fp16 = cfg["device"], cfg["fp16"]
    t0 = time.perf_counter()
    with torch.inference_mode():
        net = load_baseline_net(Path(cfg["pth"]), cfg["num_feat"], cfg["num_conv"], device, fp16)
        t_open = time.perf_counter() - t0
        mp = 0.0
        for path in files:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
            mp += arr.shape[0] * arr.shape[1] / 1e6
            result = baseline_enhance(net, arr, cfg["tile"], cfg["tile_pad"], device, fp16)
            params = {} if cfg["png_level"] is None else {"compress_level": cfg["png_level"]}
            Image.fromarray(result).save(out_dir / path.name, "PNG", **params)
    return {
        "seconds": time.perf_counter() - t0,
        "images": len(files),
        "megapixels": mp,
        "open_s": t_open,
        "threads": torch.get_num_threads(),
    }


# -- ganpipe -----------------------------------------------------------------------------
def run_ganpipe(cfg: dict) -> dict:
    from ganpipe.upscale import upscale_path

    t0 = time.perf_counter()
    summary = upscale_path(
        cfg["input"],
        cfg["output"],
        cfg["onnx"],
        device=cfg["device"],
        tile=cfg["tile"],
        overlap=cfg["overlap"],
        progress=False,
        workers=cfg["workers"],
        **(
            {}
            if cfg["ganpipe_png_level"] is None
            else {"png_compression": cfg["ganpipe_png_level"]}
        ),
    )
    dt = time.perf_counter() - t0
    if summary.failures:
        raise SystemExit(
            f"ganpipe failed on {len(summary.failures)} file(s): {summary.failures[0]}"
        )
    return {
        "seconds": dt,
        "images": len(summary.written),
        "megapixels": summary.megapixels,
        "open_s": dt - summary.seconds,
        "providers": summary.providers,
        "line": summary.line(),
    }


# -- per-stage profiles (sequential, in their own subprocesses) ---------------------------
def _med_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def profile_baseline(cfg: dict) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    files = sorted(Path(cfg["input"]).glob("*.png"))[: cfg["profile_images"]]
    out_dir = Path(cfg["output"])
    out_dir.mkdir(parents=True, exist_ok=True)
    device, fp16 = cfg["device"], cfg["fp16"]
    stages: dict[str, list[float]] = {}
    with torch.inference_mode():
        net = load_baseline_net(Path(cfg["pth"]), cfg["num_feat"], cfg["num_conv"], device, fp16)
        with Image.open(files[0]) as im:  # one untimed image: first-call set-up
            baseline_enhance(
                net, np.asarray(im.convert("RGB")), cfg["tile"], cfg["tile_pad"], device, fp16
            )
        for path in files:
            stamps = [("start", time.perf_counter())]
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
            stamps.append(("decode (PIL)", time.perf_counter()))
            result = baseline_enhance(net, arr, cfg["tile"], cfg["tile_pad"], device, fp16, stamps)
            Image.fromarray(result).save(out_dir / path.name, "PNG")
            stamps.append(("PNG encode + write", time.perf_counter()))
            for (_, a), (name, b) in zip(stamps, stamps[1:], strict=False):
                stages.setdefault(name, []).append(b - a)
    return {
        "stages": {k: _med_ms(v) for k, v in stages.items()},
        "threads": torch.get_num_threads(),
    }


def profile_ganpipe(cfg: dict) -> dict:
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    from ganpipe.imaging.decode import decode_image
    from ganpipe.imaging.encode import encode_image
    from ganpipe.upscale.model import open_sr_model
    from ganpipe.upscale.options import UpscaleOptions
    from ganpipe.upscale.tiling import Upscaler

    files = sorted(Path(cfg["input"]).glob("*.png"))[: cfg["profile_images"]]
    out_dir = Path(cfg["output"])
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sr = open_sr_model(cfg["onnx"], cfg["device"])
    open_s = time.perf_counter() - t0
    model_time = [0.0]
    inner = sr.__call__

    class Timed:  # the SRModel, with the time spent in it summed up
        scale, multiple = sr.scale, sr.multiple

        def __call__(self, x):
            t = time.perf_counter()
            try:
                return inner(x)
            finally:
                model_time[0] += time.perf_counter() - t

    opts = UpscaleOptions(tile=cfg["tile"], overlap=cfg["overlap"])
    upscaler = Upscaler(sr, opts)
    upscaler.model = Timed()
    upscaler.upscale(decode_image(files[0]), 8)  # untimed: first-call set-up
    stages: dict[str, list[float]] = {}
    png: dict[int, list[tuple[float, int]]] = {level: [] for level in PNG_LEVELS}
    fsync = []
    for path in files:
        t_a = time.perf_counter()
        pic = decode_image(path)
        t_b = time.perf_counter()
        model_time[0] = 0.0
        result = upscaler.upscale(pic, 8)
        t_c = time.perf_counter()
        q = result.color.copy()
        t_d = time.perf_counter()
        encode_image(result, out_dir / path.name, "PNG", opts.quality, opts.png_compression)
        t_e = time.perf_counter()
        stages.setdefault("decode (decode_image)", []).append(t_b - t_a)
        stages.setdefault("model (SRModel calls)", []).append(model_time[0])
        stages.setdefault("tiling: to float, blend, quantize", []).append(t_c - t_b - model_time[0])
        stages.setdefault("encode_image: PNG + write", []).append(t_e - t_d)
        for level, into in png.items():
            buf = io.BytesIO()
            t = time.perf_counter()
            Image.fromarray(q).save(buf, "PNG", compress_level=level)
            into.append((time.perf_counter() - t, len(buf.getvalue())))
        data = (out_dir / path.name).read_bytes()
        probe = out_dir / ".fsync-probe"
        t = time.perf_counter()
        with open(probe, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        fsync.append(time.perf_counter() - t)
        probe.unlink()

    # The model alone on one image (or tile) under other session options.
    tile = cfg["tile"] if 0 < cfg["tile"] < cfg["size"] else cfg["size"]
    x = np.random.default_rng(0).random((1, 3, tile, tile), dtype=np.float32)
    variants = [("as ganpipe opens it (defaults)", {}, None)]
    if cfg["device"] == "cpu" and cfg["session_variants"]:
        ncpu = os.cpu_count() or 1
        variants += [
            (f"intra_op_num_threads={n}", {"intra_op_num_threads": n}, None)
            for n in sorted({1, ncpu})
        ]
        variants += [
            ("allow_spinning=0", {}, ("session.intra_op.allow_spinning", "0")),
            (
                "graph_optimization_level=EXTENDED",
                {"graph_optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED},
                None,
            ),
            (
                "graph_optimization_level=BASIC",
                {"graph_optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC},
                None,
            ),
        ]
    session_rows = []
    providers = sr.session.get_providers()
    for label, attrs, entry in variants:
        if not attrs and entry is None:
            sess = sr.session
        else:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            for k, v in attrs.items():
                setattr(so, k, v)
            if entry:
                so.add_session_config_entry(*entry)
            sess = ort.InferenceSession(cfg["onnx"], so, providers=providers)
        name = sess.get_inputs()[0].name
        sess.run(None, {name: x})
        times = []
        for _ in range(cfg["session_runs"]):
            t = time.perf_counter()
            sess.run(None, {name: x})
            times.append(time.perf_counter() - t)
        session_rows.append((label, _med_ms(times)))
        del sess
    return {
        "stages": {k: _med_ms(v) for k, v in stages.items()},
        "open_s": open_s,
        "png": {
            str(level): (_med_ms([t for t, _ in v]), statistics.median(n for _, n in v))
            for level, v in png.items()
        },
        "fsync_ms": _med_ms(fsync),
        "sessions": session_rows,
        "session_input": tile,
        "providers": providers,
    }


WORKERS = {
    "ganpipe": run_ganpipe,
    "baseline": run_baseline,
    "profile-ganpipe": profile_ganpipe,
    "profile-baseline": profile_baseline,
}


def worker_main(kind: str, cfg_json: str) -> int:
    cfg = json.loads(cfg_json)
    if cfg["device"] == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    result = WORKERS[kind](cfg)
    print("RESULT " + json.dumps(result))
    return 0


def spawn(kind: str, cfg: dict) -> dict:
    """Run one worker in a fresh interpreter; its result plus the process's wall time."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--worker-config",
        json.dumps(cfg),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["process_s"] = wall
    return result


# -- checks for --device cuda --------------------------------------------------------------
def cuda_skip_reason() -> str | None:
    """Why the CUDA comparison cannot run here, or None when both sides can use a GPU."""
    reasons = []
    try:
        import torch

        if not torch.cuda.is_available():
            reasons.append(f"torch {torch.__version__} sees no CUDA device")
    except Exception as exc:  # noqa: BLE001
        reasons.append(f"torch cannot be imported ({exc})")
    try:
        from ganpipe.inference.session import choose_providers

        choose_providers("cuda")
    except Exception as exc:  # noqa: BLE001 - GanpipeError: no usable CUDA provider
        reasons.append(str(exc).splitlines()[0])
    return "; ".join(reasons) or None


# -- comparison helpers ----------------------------------------------------------------------
def compare_outputs(a: Path, b: Path) -> tuple[int, float]:
    import numpy as np
    from PIL import Image

    with Image.open(a) as ia, Image.open(b) as ib:
        x = np.asarray(ia.convert("RGB"), dtype=np.int16)
        y = np.asarray(ib.convert("RGB"), dtype=np.int16)
    if x.shape != y.shape:
        return -1, float("nan")
    d = np.abs(x - y)
    return int(d.max()), float(d.mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20, help="images in the folder")
    ap.add_argument("--size", type=int, default=256, help="width and height of each image")
    ap.add_argument(
        "--tiles",
        default="512,128",
        help="comma-separated tile sizes to compare, each on both sides; 0 = "
        "whole image (default: 512, ganpipe's default, which holds a whole "
        "256 px image, and 128, which tiles it)",
    )
    ap.add_argument("--overlap", type=int, default=32, help="ganpipe's --tile-overlap")
    ap.add_argument(
        "--tile-pad", type=int, default=10, help="the baseline's tile_pad (RealESRGANer's default)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed A/B pairs per tile size")
    ap.add_argument("--num-feat", type=int, default=64)
    ap.add_argument(
        "--num-conv",
        type=int,
        default=16,
        help="16: realesr-animevideov3 size; 32: realesr-general-x4v3",
    )
    ap.add_argument(
        "--init",
        default="fit",
        choices=["fit", "random"],
        help="fit: random body, last conv fitted to bicubic x4 (outputs look like "
        "natural upscales, so PNG encoding costs what it costs on real "
        "images); random: PyTorch's default init (blocky outputs that "
        "encode several times faster)",
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--fp16",
        action="store_true",
        help="ganpipe: an ONNX imported with --fp16; baseline: .half() (only with --device cuda)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="ganpipe's decode/encode threads each (0: its default)",
    )
    ap.add_argument(
        "--baseline-png-level",
        type=int,
        default=None,
        help="zlib level of the baseline's PNGs (default: Pillow's, 6; "
        "ganpipe writes 4 (UpscaleOptions.png_compression); "
        "Real-ESRGAN's cv2.imwrite uses 1)",
    )
    ap.add_argument(
        "--png-level",
        type=int,
        default=None,
        help="zlib level of ganpipe's PNGs (its --png-compression; default 4)",
    )
    ap.add_argument(
        "--profile-images",
        type=int,
        default=3,
        help="images in the per-stage profile (0: no profile)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args.worker, args.worker_config)

    tiles = [int(t) for t in args.tiles.split(",") if t.strip()]
    if args.fp16 and args.device != "cuda":
        ap.error(
            "--fp16 is for --device cuda (ONNX Runtime's CPU provider runs float16 "
            "convolutions slowly or not at all)"
        )
    if args.device == "cuda":
        reason = cuda_skip_reason()
        if reason:
            print(
                f"SKIPPED: --device cuda needs a CUDA GPU for both torch and ONNX Runtime: "
                f"{reason}. Run it on a GPU machine, or without --device for the CPU "
                f"comparison."
            )
            return 0

    import onnxruntime
    import PIL
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="ganpipe-bench-upscale-"))
    try:
        t0 = time.perf_counter()
        folder = tmp / "in"
        make_images(folder, args.count, args.size, args.seed)
        warm = tmp / "warm"
        warm.mkdir()
        for p in sorted(folder.glob("*.png"))[:2]:
            shutil.copy(p, warm / p.name)
        t_images = time.perf_counter() - t0
        pth, onnx_path, model_note = make_model(
            tmp,
            args.num_feat,
            args.num_conv,
            args.seed,
            args.fp16,
            args.init,
            sorted(folder.glob("*.png"))[0],
        )

        print(
            f"python {sys.version.split()[0]}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, "
            f"Pillow {PIL.__version__}; cpus: {os.cpu_count()}; device: {args.device}"
            f"{' fp16' if args.fp16 else ''}"
        )
        print(
            f"images: {args.count} procedural RGB PNGs, {args.size}x{args.size} "
            f"({args.count * args.size**2 / 1e6:.2f} MP in, x4 out), made in "
            f"{t_images:.1f} s"
        )
        print(f"model: {model_note}")
        print(
            "A = ganpipe: upscale_path() library call (what `ganpipe upscale` runs), "
            f"--tile-overlap {args.overlap}"
            f"{'' if args.png_level is None else f', --png-compression {args.png_level}'}"
        )
        print(
            f"B = baseline: RealESRGANer-style torch eager, tile_pad {args.tile_pad}, "
            f"sequential PIL load -> infer -> PIL PNG save"
            f"{'' if args.baseline_png_level is None else f' (level {args.baseline_png_level})'}"
        )
        print(
            f"each run: a fresh subprocess; {args.repeats} A/B pairs per tile size after "
            f"one warm-up of each on 2 images; load average before: "
            f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
        )
        print()

        def overlap_for(tile: int) -> int:  # what ganpipe's Upscaler makes of --overlap
            return tile // 4 if 0 < tile <= 2 * args.overlap else args.overlap

        def config(tile: int, src: Path, out: Path) -> dict:
            return {
                "input": str(src),
                "output": str(out),
                "onnx": str(onnx_path),
                "pth": str(pth),
                "device": args.device,
                "fp16": args.fp16,
                "tile": tile,
                "overlap": overlap_for(tile),
                "tile_pad": args.tile_pad,
                "num_feat": args.num_feat,
                "num_conv": args.num_conv,
                "workers": args.workers,
                "png_level": args.baseline_png_level,
                "ganpipe_png_level": args.png_level,
                "profile_images": args.profile_images,
                "size": args.size,
                "session_runs": 5,
                "session_variants": True,
            }

        sides = (("A", "ganpipe"), ("B", "baseline"))
        summary_rows = []
        for tile in tiles:
            for _, kind in sides:  # warm-up: file cache, first-run costs
                out = tmp / f"warm-{kind}"
                spawn(kind, config(tile, warm, out))
                shutil.rmtree(out, ignore_errors=True)
            runs: dict[str, list[dict]] = {"ganpipe": [], "baseline": []}
            for rep in range(args.repeats):
                order = sides if rep % 2 == 0 else sides[::-1]
                for _, kind in order:
                    out = tmp / f"out-{kind}"
                    shutil.rmtree(out, ignore_errors=True)
                    res = spawn(kind, config(tile, folder, out))
                    if res["images"] != args.count:
                        raise SystemExit(f"{kind} wrote {res['images']} of {args.count} images")
                    runs[kind].append(res)
            first = sorted(folder.glob("*.png"))[0].name
            max_d, mean_d = compare_outputs(
                tmp / "out-ganpipe" / first, tmp / "out-baseline" / first
            )
            out_png = statistics.median(
                p.stat().st_size for p in (tmp / "out-ganpipe").glob("*.png")
            )

            g_tiles, g_px = ganpipe_geometry(args.size, tile, overlap_for(tile))
            b_tiles, b_px = esrgan_geometry(args.size, tile, args.tile_pad)
            print(
                f"== tile {tile}{' (whole image)' if tile == 0 or tile >= args.size else ''}"
                f" (ganpipe overlap {overlap_for(tile)})"
                f": ganpipe {g_tiles} tile(s), {g_px / args.size**2:.2f}x the image's "
                f"pixels through the model; baseline {b_tiles} tile(s), "
                f"{b_px / args.size**2:.2f}x"
            )
            print(
                f"{'run':<4} {'side':<9} {'seconds':>8} {'img/s':>7} {'MP/s in':>8} "
                f"{'open s':>7} {'process s':>9}"
            )
            for rep in range(args.repeats):
                for _, kind in sides:
                    r = runs[kind][rep]
                    print(
                        f"{rep + 1:<4} {kind:<9} {r['seconds']:8.2f} "
                        f"{r['images'] / r['seconds']:7.2f} "
                        f"{r['megapixels'] / r['seconds']:8.3f} {r['open_s']:7.2f} "
                        f"{r['process_s']:9.2f}"
                    )
            ips = {k: [r["images"] / r["seconds"] for r in v] for k, v in runs.items()}
            mps = {k: [r["megapixels"] / r["seconds"] for r in v] for k, v in runs.items()}
            proc = {k: [r["images"] / r["process_s"] for r in v] for k, v in runs.items()}
            med = {k: statistics.median(v) for k, v in ips.items()}
            ratio = med["ganpipe"] / med["baseline"]
            paired = statistics.median(
                a / b for a, b in zip(ips["ganpipe"], ips["baseline"], strict=True)
            )
            best = max(ips["ganpipe"]) / max(ips["baseline"])
            proc_ratio = statistics.median(proc["ganpipe"]) / statistics.median(proc["baseline"])
            print(
                f"median    ganpipe  {med['ganpipe']:7.2f} img/s "
                f"{statistics.median(mps['ganpipe']):7.3f} MP/s   baseline "
                f"{med['baseline']:7.2f} img/s {statistics.median(mps['baseline']):7.3f} "
                f"MP/s"
            )
            print(
                f"ratio ganpipe/baseline (img/s): {ratio:.2f}x (median of pairs "
                f"{paired:.2f}x, best-of {best:.2f}x; whole process incl. imports "
                f"{proc_ratio:.2f}x)"
            )
            print(
                f"same-work check, {first}: max abs diff {max_d}, mean {mean_d:.2f} "
                f"(uint8 levels); median output PNG {out_png / 2**20:.2f} MiB; "
                f"ganpipe providers: {','.join(runs['ganpipe'][-1]['providers'])}"
            )
            print()
            summary_rows.append((tile, med, ratio, paired, best))

        if args.profile_images > 0:
            from ganpipe.upscale.options import UpscaleOptions

            default_level = UpscaleOptions().png_compression

            for k, tile in enumerate(tiles):
                cfg = config(tile, folder, tmp / "prof-g")
                cfg["session_variants"] = k == 0  # the same picture for every tile size
                pg = spawn("profile-ganpipe", cfg)
                cfg = config(tile, folder, tmp / "prof-b")
                pb = spawn("profile-baseline", cfg)
                n = min(args.profile_images, args.count)
                print(
                    f"== per-stage profile, tile {tile}: median ms per image over {n} "
                    f"images, sequential (no pipelining)"
                )
                gs, bs = pg["stages"], pb["stages"]
                rows = [
                    ("decode", gs["decode (decode_image)"], bs["decode (PIL)"]),
                    ("to float / tensor", None, bs["to tensor"]),
                    ("model (+ paste for B)", gs["model (SRModel calls)"], bs["model + paste"]),
                    (
                        "tiling: to float, blend (+ quantize)",
                        gs["tiling: to float, blend, quantize"],
                        None,
                    ),
                    ("quantize", None, bs["quantize"]),
                    (
                        "encode: PNG + write",
                        gs["encode_image: PNG + write"],
                        bs["PNG encode + write"],
                    ),
                ]
                print(f"  {'stage':<34} {'ganpipe ms':>10} {'baseline ms':>11}")
                for name, g, b in rows:
                    fg = f"{g:10.1f}" if g is not None else f"{'-':>10}"
                    fb = f"{b:11.1f}" if b is not None else f"{'-':>11}"
                    print(f"  {name:<34} {fg} {fb}")
                tg, tb = sum(gs.values()), sum(bs.values())
                print(f"  {'sum':<34} {tg:10.1f} {tb:11.1f}   (sums' ratio B/A {tb / tg:.2f}x)")
                print(
                    "  ganpipe's output, Pillow PNG encode alone (to memory) by zlib level: "
                    + ", ".join(
                        f"{lv} {ms:.0f} ms {size / 2**20:.2f} MiB"
                        for lv, (ms, size) in pg["png"].items()
                    )
                    + f" (ganpipe writes level {default_level}; Pillow's default is 6)"
                )
                print(
                    f"  fsync of one output file {pg['fsync_ms']:.1f} ms; model open "
                    f"{pg['open_s'] * 1000:.0f} ms"
                )
                print(
                    f"  ganpipe model only, one {pg['session_input']}x"
                    f"{pg['session_input']} input, median of {cfg['session_runs']} runs "
                    f"(providers {','.join(pg['providers'])}):"
                )
                base_ms = pg["sessions"][0][1]
                for label, ms in pg["sessions"]:
                    print(f"    {label:<36} {ms:8.1f} ms  ({base_ms / ms:.2f}x)")
                print(f"  baseline torch threads: {pb['threads']}")
                print()

        print("summary (ratio of the medians of images/s, ganpipe / baseline; target >= 1.5x):")
        for tile, med, ratio, paired, best in summary_rows:
            print(
                f"  tile {tile:>4}: ganpipe {med['ganpipe']:.2f} img/s, baseline "
                f"{med['baseline']:.2f} img/s -> {ratio:.2f}x (pairs {paired:.2f}x, "
                f"best-of {best:.2f}x)"
            )
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
