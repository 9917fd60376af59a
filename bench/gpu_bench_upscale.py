"""Folder upscaling on the GPU: ``ganpipe.upscale.upscale_path`` (ONNX Runtime, float16
import) against PyTorch fp16 eager with the same tile size.

Run:  python bench/gpu_bench_upscale.py [--device cuda] [--tiny] [--json out.json]
      python bench/gpu_bench_upscale.py --ort-device tensorrt --models compact   (TensorRT)

Setup, in a temporary folder: ``--count`` (16) procedural RGB PNGs of ``--size`` (512) px,
and two x4 nets in Real-ESRGAN's layouts with seeded random weights: SRVGGNetCompact
(num_feat 64, num_conv 32: realesr-general-x4v3's size) and RRDBNet (num_feat 64, 23
blocks, grow 32: RealESRGAN_x4plus's size); ``--tiny``: 2 images of 32 px, small nets.
Each is saved as ``.pth`` (``params`` wrapper) and imported with
``ganpipe.weights.import_weights(..., fp16=True)`` (``ganpipe import --fp16``).

* ganpipe: ``upscale_path(folder, out, model.onnx, device=--ort-device, tile=T,
  overlap=20)``: decode and PNG encode in thread pools around the model, as ``ganpipe
  upscale`` runs; opening the model (the session) is timed too.
* baseline: a Real-ESRGAN-style loop written here: the same weights from the ``.pth`` in
  PyTorch eager, ``.half()`` on CUDA (float32 on the CPU), per image one after the other:
  PIL load -> tensor on the device -> ``T`` px tiles read with 10 px of context each (20
  px shared by neighbours, as ganpipe's overlap 20) -> clamp, round -> uint8 on the host
  -> PNG at zlib level 4 (ganpipe's default level).

Rows: the folder (images/s and input MP/s, end to end) and the model alone on one ``T``
px tile (host array in, host array out, both sides). One untimed warm-up, then
alternating rounds; medians. Same-work check: the first output image of both sides.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

from common import alternate, make_images, median, num, ratio, row, torch_sync, write_result

SIZES = {
    "compact": {"full": dict(num_feat=64, num_conv=32), "tiny": dict(num_feat=8, num_conv=2)},
    "rrdb": {
        "full": dict(num_feat=64, num_block=23, num_grow_ch=32),
        "tiny": dict(num_feat=8, num_block=1, num_grow_ch=4),
    },
}
OVERLAP, PAD = 20, 10  # ganpipe's blended overlap; the baseline's context on each side


def make_net(arch: str, tiny: bool):
    from ganpipe.nn.sr import RRDBNet, SRVGGNetCompact

    kw = SIZES[arch]["tiny" if tiny else "full"]
    if arch == "compact":
        return SRVGGNetCompact(3, 3, upscale=4, **kw).eval()
    return RRDBNet(3, 3, scale=4, **kw).eval()


def random_net(arch: str, tiny: bool):
    """Seeded random weights. RRDBNet's (scaled-down init) would give outputs just under
    0, clamped to black, which PNG-encodes far faster than real pictures: its last conv is
    scaled up and shifted so that the outputs spread over (0, 1)."""
    import torch

    torch.manual_seed(0)
    net = make_net(arch, tiny)
    if arch == "rrdb":
        with torch.no_grad():
            net.conv_last.weight.mul_(10.0)
            net.conv_last.bias.add_(0.5)
    return net


def prepare(work: Path, args) -> list[str]:
    """Images, ``.pth`` weights and their ``--fp16`` imports in ``work``, each made once
    (the check makes them in the background while the tests run). Returns notes."""
    import torch

    from ganpipe.weights import import_weights

    stamp, images = work / "images.txt", f"{args.tiny} {args.count} {args.size}"
    if not stamp.exists() or stamp.read_text() != images:
        made = make_images(work / "in", args.count, args.size)
        (work / "warm").mkdir(exist_ok=True)
        shutil.copy(made[0], work / "warm" / made[0].name)
        stamp.write_text(images)
    notes = []
    for arch in args.models.split(","):
        done = work / f"{arch}.json"
        if not done.exists():
            net = random_net(arch, args.tiny)
            torch.save({"params": net.state_dict()}, work / f"{arch}.pth")
            t0 = time.perf_counter()
            got = import_weights(work / f"{arch}.pth", work / f"{arch}_fp16.onnx", fp16=True)
            params = sum(p.numel() for p in net.parameters()) / 1e6
            note = (
                f"{arch}: {got.arch.variant} x4 {got.arch.kwargs}, {params:.2f} M params, "
                f"random weights; import --fp16 {time.perf_counter() - t0:.1f} s, fp16 vs "
                f"torch max abs diff {got.fp16_max_abs_diff:.1e} (its CPU check)"
            )
            done.write_text(json.dumps(note))
        notes.append(json.loads(done.read_text()))
    return notes


def tile_forward(net, x, tile: int, pad: int = PAD):
    """Each ``tile`` px tile read with ``pad`` px of context, its centre pasted."""
    _, c, h, w = x.shape
    out = x.new_zeros((1, c, h * 4, w * 4))
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - pad, 0), max(x0 - pad, 0)
            pred = net(x[:, :, py0 : min(y1 + pad, h), px0 : min(x1 + pad, w)])
            oy, ox = (y0 - py0) * 4, (x0 - px0) * 4
            out[:, :, y0 * 4 : y1 * 4, x0 * 4 : x1 * 4] = pred[
                :, :, oy : oy + (y1 - y0) * 4, ox : ox + (x1 - x0) * 4
            ]
    return out


def baseline_net(pth: Path, arch: str, tiny: bool, device: str):
    """The net from the ``.pth`` on ``device``, half precision on CUDA."""
    import torch

    net = make_net(arch, tiny)
    net.load_state_dict(torch.load(pth, weights_only=True)["params"])
    net = net.to(device)
    return net.half() if device.startswith("cuda") else net


def baseline_folder(pth: Path, arch: str, tiny: bool, folder: Path, out: Path, device: str, tile):
    """The Real-ESRGAN-style loop: load the net, then each image strictly in turn."""
    import numpy as np
    import torch
    from PIL import Image

    net = baseline_net(pth, arch, tiny, device)
    dtype = next(net.parameters()).dtype
    out.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for path in sorted(folder.glob("*.png")):
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            x = torch.from_numpy(arr.transpose(2, 0, 1)[None].copy()).to(device, dtype)
            y = tile_forward(net, x, tile).float().clamp_(0, 1).mul_(255.0).round_()
            Image.fromarray(y.to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()).save(
                out / path.name, compress_level=4
            )


def max_mean_diff(a: Path, b: Path) -> str:
    import numpy as np
    from PIL import Image

    with Image.open(a) as ia, Image.open(b) as ib:
        d = np.abs(np.asarray(ia, dtype=int) - np.asarray(ib, dtype=int))
    return f"max {d.max()}, mean {d.mean():.3f} levels"


def short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider")


def bench_model(arch: str, args, work: Path) -> list[dict]:
    import numpy as np
    import torch

    from ganpipe.errors import GanpipeError
    from ganpipe.upscale import upscale_path
    from ganpipe.upscale.model import open_sr_model

    dev, tile, sync = args.device, args.tile, torch_sync(args.device)
    pth, onnx, folder = work / f"{arch}.pth", work / f"{arch}_fp16.onnx", work / "in"
    base_kind = "torch eager " + ("fp16" if dev.startswith("cuda") else "fp32")
    try:
        sr = open_sr_model(onnx, args.ort_device)  # a warm session, for the one-tile row
    except GanpipeError as exc:  # e.g. no CUDA provider in this onnxruntime
        sr, missing = None, str(exc)
    kind = (
        "not measured" if sr is None else f"ORT {args.ort_device} fp16 ({short(sr.providers[0])})"
    )
    trt = args.ort_device.startswith("tensorrt")
    if trt and (sr is None or sr.providers[0] != "TensorrtExecutionProvider"):
        why = missing if sr is None else f"the session fell back to {sr.providers[0]}"
        return [row(f"upscale {arch} x4 on TensorRT", "-", "not measured", None, why)]
    runs = iter(range(1_000_000))

    def ganpipe(src: Path = folder) -> None:  # a fresh output folder each time
        upscale_path(src, work / f"out_{arch}_g{next(runs)}", onnx, device=args.ort_device,
                     tile=tile, overlap=OVERLAP, progress=False)  # fmt: skip

    def baseline(src: Path = folder) -> None:
        baseline_folder(pth, arch, args.tiny, src, work / f"out_{arch}_b", dev, tile)

    sides = {"baseline": baseline, "ganpipe": ganpipe}
    if sr is None:
        del sides["ganpipe"]
    for fn in sides.values():
        fn(work / "warm")  # warm-up on one image
    times = alternate(sides, args.repeats, warmup=0, sync=sync)
    count = len(list(folder.glob("*.png")))
    rate = {k: count * args.size**2 / 1e6 / median(v) for k, v in times.items()}
    what = f"upscale {count} x {args.size} px, {arch} x4, tile {tile}, folder MP/s"
    base = f"{base_kind} {num(rate['baseline'])}"
    if sr is None:
        return [row(what, base, kind, None, missing)]
    first = sorted(folder.glob("*.png"))[0].name
    last = work / f"out_{arch}_g{next(runs) - 1}"
    per_s = {k: num(count / median(v)) for k, v in times.items()}
    rows = [
        row(
            what,
            base,
            f"{kind} {num(rate['ganpipe'])}",
            ratio(rate["ganpipe"], rate["baseline"]),
            f"images/s {per_s['baseline']} / {per_s['ganpipe']}; outputs differ by "
            + max_mean_diff(last / first, work / f"out_{arch}_b" / first),
        )
    ]
    # the model alone on one tile: host float32 in, host float32 out, warm sessions
    net = baseline_net(pth, arch, args.tiny, dev)
    x = np.random.default_rng(0).random((1, 3, tile, tile), dtype=np.float32)

    def eager_tile() -> None:
        with torch.inference_mode():
            net(torch.from_numpy(x).to(dev, next(net.parameters()).dtype)).float().cpu().numpy()

    tile_times = alternate(
        {"baseline": eager_tile, "ganpipe": lambda: sr(x)}, args.tile_repeats, 3, sync
    )
    mps = {k: tile**2 / 1e6 / median(v) for k, v in tile_times.items()}
    ms = {k: f"{median(v) * 1e3:.1f}" for k, v in tile_times.items()}
    rows.append(
        row(
            f"{arch} x4 model alone, one {tile} px tile, MP/s",
            f"{base_kind} {num(mps['baseline'])}",
            f"{kind} {num(mps['ganpipe'])}",
            ratio(mps["ganpipe"], mps["baseline"]),
            f"median ms {ms['baseline']} / {ms['ganpipe']}",
        )
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="the baseline's torch device")
    ap.add_argument("--ort-device", default=None, help="ganpipe's device (default: --device)")
    ap.add_argument("--tiny", action="store_true", help="CPU dry run: small sizes")
    ap.add_argument("--models", default="compact,rrdb")
    ap.add_argument("--count", type=int, default=None, help="default 16; --tiny: 2")
    ap.add_argument("--size", type=int, default=None, help="default 512; --tiny: 32")
    ap.add_argument("--tile", type=int, default=None, help="default 256; --tiny: 16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile-repeats", type=int, default=10)
    ap.add_argument("--work", default=None, help="keep images and models here (reused)")
    ap.add_argument("--prepare", action="store_true", help="only make images and models")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.tiny:
        import torch

        torch.set_num_threads(1)  # tiny nets on a shared CPU: one thread is far faster
    args.ort_device = args.ort_device or args.device
    args.count = args.count or (2 if args.tiny else 16)
    args.size = args.size or (32 if args.tiny else 512)
    args.tile = args.tile or (16 if args.tiny else 256)

    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-upscale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        notes = prepare(work, args)
        if args.prepare:
            print("\n".join(notes))
            return
        grid = math.ceil(args.size / args.tile) ** 2
        notes.append(
            f"{args.count} images, {grid} tiles of {args.tile} px each; ganpipe overlap "
            f"{OVERLAP} px (blended), baseline context {PAD} px per side (pasted)"
        )
        rows = [r for arch in args.models.split(",") for r in bench_model(arch, args, work)]
    finally:
        for out in work.glob("out_*"):
            shutil.rmtree(out, ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    write_result(args.json, "upscale", rows, notes)


if __name__ == "__main__":
    main()
