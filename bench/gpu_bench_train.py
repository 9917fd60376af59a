"""Training throughput of the one Trainer: AMP + channels_last against full precision.

Run:  python bench/gpu_bench_train.py [--device cuda] [--tiny] [--json out.json]

Both sides are ``ganpipe.training.loop.Trainer`` running DCGAN on the procedural shapes
set (64 px, batch 128 on the GPU; ``--tiny``: 16 px, batch 8, small nets), built from the
same seed. Baseline: ``amp = "off"``, ``channels_last = false`` (float32; PyTorch's default
lets cuDNN use TF32 for convolutions, recorded in the notes). ganpipe: ``amp`` bf16 and
fp16 (CUDA only) with ``channels_last = true``; ``amp = "auto"`` picks bf16 on a GPU that
supports it. Images/s is the steady rate between the first and the last metrics-log line
(the first ``--log-every`` steps are the warm-up: cuDNN's algorithm choice, allocator
growth). One untimed run of each configuration, then ``--repeats`` rounds alternating
their order; medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from common import alternate, median, num, ratio, row, write_result


def steady_rate(metrics: Path, batch: int) -> float:
    """Images/s between the first and the last line of a metrics log: each line's
    ``images_per_s`` is cumulative since the loop started, so t = step * batch / rate."""
    recs = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    first, last = recs[0], recs[-1]
    t_first = first["step"] * batch / first["images_per_s"]
    t_last = last["step"] * batch / last["images_per_s"]
    return (last["step"] - first["step"]) * batch / (t_last - t_first)


def make_run(data, device: str, size: dict, amp: str, channels_last: bool, rates: list[float]):
    """A function that trains once in a fresh folder and appends its steady images/s."""
    from ganpipe.training.loop import Trainer
    from ganpipe.training.options import TrainOptions
    from ganpipe.variants.dcgan import DCGAN, DCGANOptions

    vopts = DCGANOptions(**size["model"])
    opts = TrainOptions(
        steps=size["steps"],
        batch_size=size["batch"],
        log_every=size["log_every"],
        diversity_every=size["steps"],
        sample_every=0,
        checkpoint_every=0,
        num_samples=8,
        resume=False,
        progress=False,
        amp=amp,
        channels_last=channels_last,
    )

    def run() -> None:
        out = Path(tempfile.mkdtemp(prefix="gpu-train-"))
        try:
            Trainer(DCGAN(), vopts, opts, data, out, device=device, log=lambda *_: None).run()
            rates.append(steady_rate(out / "metrics.jsonl", size["batch"]))
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="CPU dry run: small sizes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()
    if args.tiny:
        import torch

        torch.set_num_threads(1)  # tiny nets on a shared CPU: one thread is far faster

    import torch

    from ganpipe.data.sources import ShapesDataset, ShapesOptions

    if args.tiny:
        size = dict(image=16, batch=8, steps=8, log_every=2, count=64)
        size["model"] = dict(latent_dim=16, g_width=8, d_width=8)
    else:
        size = dict(image=64, batch=128, steps=160, log_every=40, count=2048)
        size["model"] = dict(latent_dim=100, g_width=64, d_width=64)
    data = ShapesDataset().load(
        ShapesOptions(count=size["count"], classes=4, seed=0), size["image"], 3, Path(".")
    )
    cuda = args.device.startswith("cuda")
    base_name = "fp32 (amp off, NCHW)"
    configs = {base_name: ("off", False), "amp bf16 + channels_last": ("bf16", True)}
    if cuda:
        configs["amp fp16 + channels_last"] = ("fp16", True)
    rates: dict[str, list[float]] = {name: [] for name in configs}
    runs = {
        name: make_run(data, args.device, size, amp, cl, rates[name])
        for name, (amp, cl) in configs.items()
    }
    alternate(runs, args.repeats, warmup=1)
    med = {name: median(r[1:]) for name, r in rates.items()}  # r[0]: the warm-up run
    what = f"train DCGAN {size['image']} px, batch {size['batch']}, images/s"
    base = f"{base_name} {num(med[base_name])}"
    rows = [
        row(what, base, f"{name} {num(med[name])}", ratio(med[name], med[base_name]))
        for name in configs
        if name != base_name
    ]
    notes = [
        f"{args.device}: {size['steps']} steps per run, steady rate after {size['log_every']} "
        f"warm-up steps; medians of {args.repeats} runs; all rates: "
        + "; ".join(f"{k} {', '.join(f'{v:.0f}' for v in r[1:])}" for k, r in rates.items()),
        f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32} (the fp32 side)",
    ]
    write_result(args.json, "train", rows, notes)


if __name__ == "__main__":
    main()
