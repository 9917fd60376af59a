"""CPU runtimes for one upscaling ``.onnx``: ONNX Runtime fp32 vs OpenVINO fp32 vs OpenVINO
bf16 vs PyTorch eager, on SRVGGNetCompact x4 and RRDBNet x4, plus ONNX Runtime's session
options (graph optimisation level, intra-op threads).

Run:  python bench/runtimes.py [--tile 128] [--repeats 5] [--out FILE.md]

Setup (in a temporary folder): Real-ESRGAN-layout nets with seeded random weights, saved as
``.pth`` and converted by :func:`ganpipe.weights.import_weights` (``ganpipe import``):
compact = realesr-general-x4v3's size (num_feat 64, num_conv 32), rrdb = RealESRGAN_x4plus'
size (num_feat 64, 23 blocks). Each runtime runs the same ``(1, 3, T, T)`` float32 tile
``--repeats`` times after two warm-up runs; reported: the median seconds per tile, the
ratio to ONNX Runtime fp32 (measured in the same run), and the largest absolute difference
of the output to ONNX Runtime fp32 (in [0, 1]). PyTorch eager is the same net with
``torch.inference_mode`` and torch's default threads (what Real-ESRGAN's inference runs).

The runtimes take turns within each repeat (ORT, OV fp32, OV bf16, torch, ORT, ...), so a
neighbour's load on this shared machine is spread over all of them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import print_markdown


def build(kind: str, folder: Path):
    import torch

    from ganpipe.nn.sr import RRDBNet, SRVGGNetCompact
    from ganpipe.weights import import_weights

    torch.manual_seed(0)
    if kind == "compact":
        net = SRVGGNetCompact(3, 3, num_feat=64, num_conv=32, upscale=4)
    else:
        net = RRDBNet(3, 3, 4, num_feat=64, num_block=23, num_grow_ch=32)
    net.eval()
    pth = folder / f"{kind}.pth"
    torch.save({"params_ema": net.state_dict()}, pth)
    onnx = folder / f"{kind}.onnx"
    import_weights(pth, onnx)
    return net, onnx


def sessions(onnx: Path, net):
    import onnxruntime as ort
    import torch

    from ganpipe.inference.session import open_model

    runs = {"onnxruntime fp32": open_model(onnx, "cpu").session}
    for precision in ("fp32", "bf16"):
        try:
            runs[f"openvino {precision}"] = open_model(
                onnx, "cpu", runtime="openvino", precision=precision
            ).session
        except Exception as exc:  # noqa: BLE001 - a bench reports what it cannot run
            print(f"openvino {precision}: {exc}")

    def torch_run(_names, feeds):
        with torch.inference_mode():
            return [net(torch.from_numpy(feeds["image"])).clamp(0, 1).numpy()]

    runs["pytorch eager fp32"] = type("T", (), {"run": staticmethod(torch_run)})()
    for level, name in (
        (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "basic"),
        (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "extended"),
    ):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        runs[f"onnxruntime fp32, graph {name}"] = ort.InferenceSession(
            str(onnx), opts, providers=["CPUExecutionProvider"]
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    runs["onnxruntime fp32, 1 thread"] = ort.InferenceSession(
        str(onnx), opts, providers=["CPUExecutionProvider"]
    )
    return runs


def measure(kind: str, tile: int, repeats: int, folder: Path) -> list[tuple]:
    net, onnx = build(kind, folder)
    runs = sessions(onnx, net)
    x = np.random.default_rng(0).random((1, 3, tile, tile), dtype=np.float32)
    feeds = {"image": x}
    ref = runs["onnxruntime fp32"].run(None, feeds)[0]
    diffs = {}
    for name, sess in runs.items():
        sess.run(None, feeds)
        diffs[name] = float(np.abs(np.asarray(sess.run(None, feeds)[0]) - ref).max())
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, sess in runs.items():
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["onnxruntime fp32"])
    return [
        (kind, name, statistics.median(t), base / statistics.median(t), diffs[name])
        for name, t in times.items()
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--nets", default="compact,rrdb")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.nets.split(","):
            rows += measure(kind, args.tile, args.repeats, Path(tmp))
    lines = [
        f"tile {args.tile}x{args.tile} (x4 -> {4 * args.tile}px), median of {args.repeats}",
        "",
        "| net | runtime | s / tile | speed vs ORT fp32 | max abs diff vs ORT fp32 |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {k} | {n} | {t:.3f} | {r:.2f}x | {d:.4f} |" for k, n, t, r, d in rows]
    print_markdown(lines, args.out)


if __name__ == "__main__":
    main()
