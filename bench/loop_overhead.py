"""Overhead of ganpipe's shared training loop, for every generate variant (CPU).

Run:  python bench/loop_overhead.py [--variants gan,dcgan,...] [--steps 60] [--repeats 3]

A = ganpipe: ``Trainer.run()`` (sampling, batching, finite-loss check, metrics log, final
    sample grid and checkpoint), EMA and progress bar off.
B = bare:    a plain ``for`` loop calling the same ``variant.train_step`` on the same nets
    (same seed), optimizers and batches (same per-epoch permutations), nothing else.

Both are timed end to end including building the nets. The ratio B_time / A_time is the
share of the bare loop's speed the shared loop keeps (1.00 = no overhead; the target is
>= 0.95). Runs alternate A B A B after a warm-up; medians are printed. No assertions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.registry import load_registry
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.training.state import Sampler
from ganpipe.variant import Batch, DataInfo, StepContext

SMALL = {"latent_dim": 64, "g_width": 32, "d_width": 32}
OPTIONS = {
    "gan": {"latent_dim": 64, "hidden": [256, 512]},
    "infogan": SMALL,
    "biggan": {"latent_dim": 64, "g_width": 16, "d_width": 16},
}


def trainer_run(variant, opts, data, steps, batch, seed) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        topts = TrainOptions(
            steps=steps,
            batch_size=batch,
            sample_every=0,
            checkpoint_every=0,
            log_every=max(1, steps // 4),
            progress=False,
            num_samples=16,
        )
        Trainer(variant, opts, topts, data, Path(tmp), seed=seed, device="cpu").run()
        return time.perf_counter() - t


def bare_run(variant, opts, data, steps, batch, seed) -> float:
    t = time.perf_counter()
    info = DataInfo(
        data.image_size, data.channels, tuple(data.class_names) if data.labelled else ()
    )
    torch.manual_seed(seed)
    nets = variant.build(opts, info)
    optims = variant.optimizers(nets, opts)
    ctx = StepContext(nets, optims, opts, info, torch.device("cpu"))
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(data.labels)
    sampler = Sampler(len(data), batch, seed)
    for net in nets.values():
        net.train()
    for step in range(steps):
        idx = sampler.indices(step)
        ctx.step = step
        variant.train_step(ctx, Batch(images[idx].float().div_(127.5).sub_(1.0), labels[idx]))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    reg = load_registry()
    names = [
        n
        for n in (args.variants.split(",") if args.variants else reg.variants)
        if reg.variants.get(n).task == "generate"
    ]
    data = ShapesDataset().load(ShapesOptions(count=512, classes=4), args.image_size, 3, Path())
    print(
        f"{args.steps} steps, batch {args.batch_size}, {args.image_size} px, "
        f"torch threads {torch.get_num_threads()}, {args.repeats} repeats (median)\n"
    )
    print(f"{'variant':<10}{'ganpipe img/s':>15}{'bare img/s':>12}{'ratio':>8}")
    for name in names:
        variant = reg.variants.get(name)
        opts = variant.Options(
            **OPTIONS.get(name, SMALL if "g_width" in variant.Options.model_fields else {})
        )
        trainer_run(variant, opts, data, 3, args.batch_size, 0)  # warm-up
        bare_run(variant, opts, data, 3, args.batch_size, 0)
        a, b = [], []
        for _ in range(args.repeats):
            a.append(trainer_run(variant, opts, data, args.steps, args.batch_size, 0))
            b.append(bare_run(variant, opts, data, args.steps, args.batch_size, 0))
        n = args.steps * args.batch_size
        ta, tb = statistics.median(a), statistics.median(b)
        print(f"{name:<10}{n / ta:>15.1f}{n / tb:>12.1f}{tb / ta:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
