"""ganpipe's upscaling against ncnn's own engine, on this CPU: issue 27's ratios.

Run:  python bench/ncnn_speed.py [--repeats 3] [--rrdb-side 128] [--out FILE.md]

Setup (a temporary folder): Real-ESRGAN-layout nets with seeded random weights (speed does
not depend on the values), imported with ``ganpipe import``: compact = realesr-animevideov3's
size (num_feat 64, num_conv 16, x4), rrdb = RealESRGAN_x4plus' widths (64 features, 32
growth, x4) with ``--rrdb-blocks`` RRDB blocks (default 6: pnnx needs 23 GiB and 90 s for
the released 23, 0.9 GiB for 6; time per image grows linearly with the blocks on every
runtime, so the ratios hold); 192 px photo-like PNGs (:func:`common.make_images`).

"ncnn's own engine" is what realesrgan-ncnn-vulkan does with the same ncnn files (the
conversion ganpipe caches): a process that loads the ``.param`` / ``.bin`` into an
``ncnn.Net`` at fp32 on the CPU with ncnn's default threads (:func:`engine_options`)
and, per image, decodes the PNG, extracts the output and encodes the PNG. Rows:

* **per image in a batch**: (wall(25 images) - wall(5 images)) / 20 for both whole
  processes (``ganpipe upscale -i DIR -o OUT -m model.onnx --runtime ...`` against the
  engine script), so the fixed cost of each cancels and decode/encode count on both sides;
* **whole command, 5 images**: the wall time of each process, start to exit;
* **RRDBNet x4**, one ``--rrdb-side`` image in-process: ganpipe's opened model (default
  runtime, and ncnn) against the engine's one extraction (fixed cost excluded).

Ratios are ganpipe's speed over the engine's (> 1: ganpipe faster). Each repeat runs both
sides back to back, alternating which goes first; medians are reported. No assertion on
time; the load average at start is printed, since a loaded machine moves every figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import alternate, make_images, median, print_markdown

ENGINE = r"""
import sys, numpy as np, ncnn
from PIL import Image
param, weights, src, dst = sys.argv[1:5]
net = ncnn.Net()
net.opt.use_vulkan_compute = False
for name in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
    setattr(net.opt, name, False)
net.load_param(param); net.load_model(weights)
import os
os.makedirs(dst, exist_ok=True)
for name in sorted(os.listdir(src)):
    x = np.asarray(Image.open(os.path.join(src, name)).convert("RGB"), np.float32) / 255
    ex = net.create_extractor()
    ex.input("in0", ncnn.Mat(np.ascontiguousarray(x.transpose(2, 0, 1))))
    _, out = ex.extract("out0")
    y = (np.clip(np.array(out).transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(y).save(os.path.join(dst, name))
"""


def build(kind: str, folder: Path, blocks: int = 23) -> Path:
    import torch

    from ganpipe.nn.sr import RRDBNet, SRVGGNetCompact
    from ganpipe.weights import import_weights

    torch.manual_seed(0)
    if kind == "compact":
        net = SRVGGNetCompact(3, 3, num_feat=64, num_conv=16, upscale=4)
    else:
        net = RRDBNet(3, 3, num_feat=64, num_block=blocks, num_grow_ch=32, scale=4)
    torch.save({"params": net.eval().state_dict()}, folder / f"{kind}.pth")
    import_weights(folder / f"{kind}.pth", folder / f"{kind}.onnx")
    return folder / f"{kind}.onnx"


def ncnn_files(onnx: Path) -> tuple[Path, Path]:
    """The conversion ganpipe caches for ``onnx`` (made here if needed)."""
    import onnx as onnx_lib

    from ganpipe.inference.ncnn_convert import converted
    from ganpipe.modelcard import ModelCard

    card = ModelCard.from_onnx(onnx_lib.load_model(str(onnx), load_external_data=False), onnx)
    folder = converted(onnx, card)
    return folder / "model.ncnn.param", folder / "model.ncnn.bin"


def wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def batch_rows(onnx: Path, folder: Path, repeats: int, runtime: str) -> list[str]:
    param, weights = ncnn_files(onnx)
    few, many = folder / "few", folder / "many"
    make_images(few, 5, 192)
    make_images(many, 25, 192)
    exe = [sys.executable, "-m", "ganpipe.cli"]

    def ours(src: Path) -> float:
        cmd = ["upscale", "-i", str(src), "-o", str(folder / "o"), "-m", str(onnx)]
        return wall(exe + cmd + ["--runtime", runtime])

    def engine(src: Path) -> float:
        argv = [sys.executable, "-c", ENGINE, str(param), str(weights), str(src)]
        return wall(argv + [str(folder / "e")])

    sides = {"ours5": lambda: ours(few), "eng5": lambda: engine(few)}
    sides |= {"ours25": lambda: ours(many), "eng25": lambda: engine(many)}
    t = alternate(sides, repeats, warmup=1)
    o5, e5, o25, e25 = (median(t[k]) for k in ("ours5", "eng5", "ours25", "eng25"))
    po, pe = (o25 - o5) / 20, (e25 - e5) / 20
    return [
        f"| compact x4, per image in a batch (192 px) | {runtime} | {pe:.3f} s | {po:.3f} s "
        f"| {pe / po:.2f}x |",
        f"| compact x4, whole command, 5 images | {runtime} | {e5:.2f} s | {o5:.2f} s "
        f"| {e5 / o5:.2f}x |",
    ]


def engine_options(opt) -> None:
    """ncnn at fp32 on the CPU with its own default threads (the physical cores), as
    realesrgan-ncnn runs it (ncnn's defaults would store fp16 where the CPU can; the
    issue's engine ran fp32)."""
    opt.use_vulkan_compute = False
    for name in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(opt, name, False)


def runtime_rows(label: str, onnx: Path, side: int, repeats: int) -> list[str]:
    import ncnn

    from ganpipe.upscale.model import open_sr_model

    param, weights = ncnn_files(onnx)
    net = ncnn.Net()
    engine_options(net.opt)
    net.load_param(str(param))
    net.load_model(str(weights))
    x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)

    def engine() -> None:
        ex = net.create_extractor()
        ex.input("in0", ncnn.Mat(x[0]))
        ex.extract("out0")

    runtimes = ["onnxruntime", "ncnn"] + (["openvino"] if importlib_ok("openvino") else [])
    rows = []
    for rt in runtimes:  # pairwise: the engine and one runtime, no other session alive
        model = open_sr_model(onnx, "cpu", runtime=rt)
        t = alternate({"engine": engine, rt: lambda m=model: m(x)}, repeats, warmup=1)
        del model
        e, g = median(t["engine"]), median(t[rt])
        name = f"{rt} (default)" if rt == "onnxruntime" else rt
        rows.append(
            f"| {label}, one {side} px image | {name} | {e:.3f} s | {g:.3f} s | {e / g:.2f}x |"
        )
    return rows


def importlib_ok(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rrdb-side", type=int, default=128)
    ap.add_argument("--runtimes", default="ncnn,onnxruntime", help="of the batch rows")
    ap.add_argument("--skip-batch", action="store_true")
    ap.add_argument("--skip-rrdb", action="store_true")
    ap.add_argument("--rrdb-blocks", type=int, default=6, help="pnnx needs 23 GiB for 23")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ.setdefault("GANPIPE_CACHE_DIR", str(folder / "cache"))
        load = os.getloadavg()[0]
        lines = [
            f"# ganpipe against ncnn's own engine ({time.strftime('%Y-%m-%d')})",
            "",
            f"`python bench/ncnn_speed.py --repeats {args.repeats}`; load average at "
            f"start {load:.1f} on {os.cpu_count()} CPUs; medians; ratio = ganpipe's speed / "
            f"the engine's.",
            "",
            "| what | ganpipe runtime | ncnn engine | ganpipe | ratio |",
            "|---|---|---:|---:|---:|",
        ]
        compact = build("compact", folder)
        for runtime in [] if args.skip_batch else args.runtimes.split(","):
            lines += batch_rows(compact, folder, args.repeats, runtime)
        lines += runtime_rows("compact x4", compact, 192, args.repeats)
        if not args.skip_rrdb:
            rrdb = build("rrdb", folder, args.rrdb_blocks)
            label = f"RRDBNet x4 ({args.rrdb_blocks} blocks)"
            lines += runtime_rows(label, rrdb, args.rrdb_side, args.repeats)
        print_markdown(lines, args.out)


if __name__ == "__main__":
    main()
