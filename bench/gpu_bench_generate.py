"""Generation of one batch with the exported generator (ONNX Runtime) against PyTorch eager.

Run:  python bench/gpu_bench_generate.py [--device cuda] [--tiny] [--json out.json]

One DCGAN generator (64 px, latent 100, width 64; ``--tiny``: 16 px, small), seeded random
weights, exported with ganpipe's exporter (``export_onnx``, model card included). Both
sides go from noise drawn on the host to uint8 NHWC images in host memory, ``--batch``
(256) images at once:

* ganpipe: ``ganpipe.inference.generate.generate_batches`` on a session opened with
  ``open_model(path, device)`` (CUDA provider on ``cuda``) - what ``ganpipe generate``
  runs, minus writing files;
* baseline: the same ``nn.Module`` in PyTorch eager, float32, ``torch.inference_mode``:
  noise to the device, forward, the same [-1, 1] -> uint8 rounding on the device, copy back.

Same-work check: both sides on the same noise; max abs difference in uint8 levels.
Warm-up calls first, then ``--repeats`` alternating rounds; medians.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import alternate, median, num, ratio, row, torch_sync, write_result


def build_generator(tiny: bool):
    import torch

    from ganpipe.variant import DataInfo
    from ganpipe.variants.dcgan import DCGAN, DCGANOptions

    variant = DCGAN()
    opts = DCGANOptions(latent_dim=8, g_width=4) if tiny else DCGANOptions()
    info = DataInfo(16 if tiny else 64, 3, ())
    torch.manual_seed(0)
    nets = variant.build(opts, info)
    return variant, opts, info, nets


def export(variant, opts, info, nets, path: Path) -> float:
    from ganpipe.export.onnx_export import build_card, export_onnx

    spec = variant.export_spec(nets, opts, info)
    card = build_card(spec, variant.name, "generate", info.image_size, info.channels, ())
    return export_onnx(spec, path, card).max_abs_diff


def eager_uint8(G, z, device: str):
    """The baseline: host noise -> device -> forward -> uint8 NHWC on the host."""
    import torch

    with torch.inference_mode():
        y = G(torch.from_numpy(z).to(device, non_blocking=True))
        y = ((y + 1.0) * 127.5 + 0.5).clamp_(0, 255).to(torch.uint8)
        return y.permute(0, 2, 3, 1).cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda or cpu (both sides)")
    ap.add_argument("--tiny", action="store_true", help="CPU dry run: small sizes")
    ap.add_argument("--batch", type=int, default=None, help="default 256; --tiny: 16")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.tiny:
        import torch

        torch.set_num_threads(1)  # tiny nets on a shared CPU: one thread is far faster
    n = args.batch or (16 if args.tiny else 256)

    import numpy as np

    from ganpipe.errors import GanpipeError
    from ganpipe.inference.generate import generate_batches, sample_inputs
    from ganpipe.inference.session import open_model

    variant, opts, info, nets = build_generator(args.tiny)
    folder = Path(tempfile.mkdtemp(prefix="gpu-generate-"))
    parity = export(variant, opts, info, nets, folder / "G.onnx")
    G = nets["G"].eval().to(args.device)
    notes = [f"export: ONNX vs torch max abs diff {parity:.1e} (CPU)"]
    what = f"generate {n} images {info.image_size} px (DCGAN), images/s"
    rng = np.random.default_rng(1)
    z_shape = (n, opts.latent_dim)
    sides = {
        "baseline": lambda: eager_uint8(
            G, rng.standard_normal(z_shape, dtype=np.float32), args.device
        )
    }
    try:
        model = open_model(folder / "G.onnx", args.device, task="generate")
    except GanpipeError as exc:  # no CUDA provider here: the baseline alone, for the record
        model, missing = None, str(exc)
    else:
        notes.append(f"ONNX Runtime providers: {', '.join(model.providers)}")
        z = sample_inputs(model, n, 0, None)["z"]
        same = np.abs(
            next(generate_batches(model, n, 0, batch_size=n)).astype(int)
            - eager_uint8(G, z, args.device).astype(int)
        )
        notes.append(f"same noise: max abs diff {same.max()} levels, mean {same.mean():.3f}")
        sides["ganpipe"] = lambda: next(generate_batches(model, n, 0, batch_size=n))
    times = alternate(sides, args.repeats, warmup=3, sync=torch_sync(args.device))
    rate = {k: n / median(v) for k, v in times.items()}
    base = f"torch eager fp32 {num(rate['baseline'])}"
    if model is None:
        rows = [row(what, base, "not measured", None, missing)]
    else:
        kind = model.providers[0].removesuffix("ExecutionProvider")
        ms = f"median ms {median(times['baseline']) * 1e3:.1f} / {median(times['ganpipe']) * 1e3:.1f}"
        rows = [
            row(
                what,
                base,
                f"ORT {kind} {num(rate['ganpipe'])}",
                ratio(rate["ganpipe"], rate["baseline"]),
                ms,
            )
        ]
    write_result(args.json, "generate", rows, notes)


if __name__ == "__main__":
    main()
