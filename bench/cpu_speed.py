"""CPU training speed per generative variant: channels_last (and bf16 autocast) against the
default contiguous float32 layout, measured in the same run.

Run:  python bench/cpu_speed.py [--image-size 32] [--channels 1] [--batch-size 64]
                                [--calls 12] [--repeats 3] [--variant dcgan ...] [--bf16]
                                [--out bench/results/cpu-speed-DATE.md]

For each variant: its options resolved as a CPU run with only ``variant`` set would have
them (:meth:`ganpipe.Variant.resolve_options`), the nets built after the same seed, then
``--calls`` ``train_step`` calls on random batches (images/s = images given to train_step
per second), timed A B A B ... after one untimed warm-up of each side:

* A = contiguous (NCHW) float32, the baseline;
* B = channels_last: every net moved to ``torch.channels_last`` (what the loop does);
* C = bf16 autocast (``--bf16``, opt-in ``train.amp = "bf16"``), on contiguous nets.

The ratio is B/A (C/A): > 1 means faster. ``Variant.channels_last_on_cpu`` is set for the
variants where B/A came out at 1.05 or more. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, median  # noqa: E402

GENERATIVE = (
    "gan",
    "dcgan",
    "cgan",
    "wgan-gp",
    "infogan",
    "biggan",
    "stylegan",
    "pggan",
    "vae",
    "lsgan",
)


def load_variant(name: str):
    from ganpipe.registry import load_registry

    return load_registry(entry_points=True).variants.get(name)


def side(variant, info, opts, batch: int, calls: int, layout: str):
    """A function running ``calls`` train_step calls in ``layout`` on fresh nets."""
    import torch

    from ganpipe.variant import Batch, StepContext

    torch.manual_seed(0)
    nets = variant.build(opts, info)
    if layout == "channels_last":
        for net in nets.values():
            net.to(memory_format=torch.channels_last)
    ctx = StepContext(nets, variant.optimizers(nets, opts), opts, info, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    images = torch.rand(batch, info.channels, info.image_size, info.image_size, generator=g)
    labels = torch.arange(batch) % max(1, info.num_classes)
    data = Batch(images * 2 - 1, labels)

    def run() -> None:
        cast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if layout == "bf16"
            else contextlib.nullcontext()
        )
        with cast:
            for _ in range(calls):
                variant.train_step(ctx, data)
                ctx.step += 1

    return run


def bf16_supported() -> bool:
    import torch

    check = getattr(torch.backends.cpu, "get_cpu_capability", None)
    cap = check() if check else ""
    return "AVX512" in cap.upper() or "AMX" in cap.upper()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--calls", type=int, default=12, help="train_step calls per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variant", action="append", help="default: every generative variant")
    ap.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    ap.add_argument("--out", type=Path, help="write the table (markdown) here")
    args = ap.parse_args(argv)

    import torch

    from ganpipe.training.defaults import resolve
    from ganpipe.variant import DataInfo

    layouts = ["contiguous", "channels_last"] + (["bf16"] if args.bf16 else [])
    lines = [
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, capability "
        f"{getattr(torch.backends.cpu, 'get_cpu_capability', lambda: '?')()}); "
        f"{args.image_size} px, {args.channels} channel(s), batch {args.batch_size}, "
        f"{args.calls} train_step calls x {args.repeats} alternating runs, medians",
        "",
        "| variant | resolved CPU defaults | contiguous img/s | channels_last img/s | ratio |"
        + (" bf16 img/s | ratio |" if args.bf16 else ""),
        "|---|---|---|---|---|" + ("---|---|" if args.bf16 else ""),
    ]
    for name in args.variant or GENERATIVE:
        try:
            variant = load_variant(name)
        except Exception as exc:  # noqa: BLE001 - a plugin that is not installed
            print(f"{name}: skipped ({exc})")
            continue
        classes = tuple("0123456789") if variant.conditional else ()
        info = DataInfo(args.image_size, args.channels, classes)
        user = variant.Options()
        opts = resolve(variant, user, info, "cpu", 1000)
        shown = {k: getattr(opts, k) for k in type(opts).model_fields if k in opts.model_fields_set}
        sides = {
            lay: side(variant, info, opts, args.batch_size, args.calls, lay) for lay in layouts
        }
        times = alternate(sides, args.repeats)
        rate = {k: args.batch_size * args.calls / median(v) for k, v in times.items()}
        cl = rate["channels_last"] / rate["contiguous"]
        row = (
            f"| {name} | {', '.join(f'{k}={v}' for k, v in shown.items()) or '-'} | "
            f"{rate['contiguous']:.0f} | {rate['channels_last']:.0f} | {cl:.2f}x |"
        )
        if args.bf16:
            row += f" {rate['bf16']:.0f} | {rate['bf16'] / rate['contiguous']:.2f}x |"
        print(row, flush=True)
        lines.append(row)
    if args.bf16 and not bf16_supported():
        lines += ["", "This CPU has no native bf16 (AVX512-BF16 / AMX): bf16 is emulated."]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
