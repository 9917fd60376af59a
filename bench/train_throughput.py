"""Training throughput of the ganpipe Trainer against a bare PyTorch loop (CPU).

Run:  python bench/train_throughput.py [--image-size 32] [--batch-size 64] [--steps 100]
                                       [--repeats 3] [--variant dcgan]

A = ganpipe: ``ganpipe.training.loop.Trainer`` with the variant's ``train_step``, EMA off,
    progress bar off, ``sample_every=0`` and ``checkpoint_every=0`` (so the only sample grid
    and checkpoint are the final ones, which the Trainer always writes at the last step).
B = bare:    a plain PyTorch loop written in this file (DCGAN only): the same nets (built
    by the variant's ``build`` after the same ``torch.manual_seed``), the same Adam
    optimizers (lr, betas), the same batches (the shapes data set in memory as a uint8
    tensor, the same per-epoch permutations, the same ``/127.5 - 1`` normalisation), the
    same noise and the same step (D on real + fake with BCE-with-logits, then G); no
    checkpoints, samples or logging.

The runs alternate A B A B ... after one short untimed warm-up of each; the tables show
every run and the medians. Throughputs (images/s = steps * batch size / seconds):

* loop:         all steps, from the first step to the end of the last one. For A this is
                read from the Trainer's own metrics log (its ``images_per_s`` line at the
                last step is written before the final sample grid and checkpoint); for B
                it is timed around the loop. Headline ratio A/B (target >= 0.95).
* steady:       the steps after the first metrics-log line (``log_every``), i.e. without
                the first steps' warm-up; from the metrics log for A, timed for B.
* reported:     ``TrainResult.images_per_second`` of A: the loop plus the final sample
                grid and checkpoint (what ``ganpipe run`` prints); compared with B's loop.
* end-to-end:   wall time of ``Trainer(...)`` + ``run()`` (builds nets, moves data, final
                sample and checkpoint) against B's build + loop; as a throughput ratio.

As a check that B does the same work, the nets of the last A and B runs are compared after
training (same seed, same batches, same noise): the difference is printed (0 = identical).
For variants other than dcgan only A is measured (no ratio).

Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ganpipe.data.base import ImageSet
from ganpipe.plugins import load_registry
from ganpipe.training.loop import TrainOptions, Trainer
from ganpipe.variants.base import DataInfo

SEED = 0


@dataclass
class Run:
    kind: str
    loop: float = float("nan")        # images/s over all steps
    steady: float = float("nan")      # images/s after the first log_every steps
    reported: float = float("nan")    # TrainResult.images_per_second (A only)
    wall: float = float("nan")        # seconds, build + loop (+ final outputs for A)
    extra: dict = field(default_factory=dict)


def load_shapes(image_size: int, channels: int, count: int) -> ImageSet:
    reg = load_registry(entry_points=False)
    source = reg.datasets.get("shapes")
    opts = source.Options(count=count, classes=4, seed=0)
    return source.load(opts, image_size, channels, Path("."))


def data_info(data: ImageSet) -> DataInfo:
    return DataInfo(data.image_size, data.channels,
                    tuple(data.class_names) if data.labelled else ())


# -- A: the ganpipe Trainer -----------------------------------------------------------------
def run_trainer(variant, vopts, data: ImageSet, steps: int, batch_size: int, log_every: int
                ) -> tuple[Run, Trainer]:
    opts = TrainOptions(steps=steps, batch_size=batch_size, ema_decay=0.0, log_every=log_every,
                        sample_every=0, checkpoint_every=0, keep_checkpoints=1,
                        resume=False, progress=False)
    with tempfile.TemporaryDirectory(prefix="ganpipe-bench-train-") as tmp:
        t0 = time.perf_counter()
        trainer = Trainer(variant, vopts, opts, data, Path(tmp), seed=SEED, device="cpu",
                          log=lambda _msg: None)
        result = trainer.run()
        wall = time.perf_counter() - t0
        lines = [json.loads(x) for x in
                 (Path(tmp) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    # Each metrics line holds the cumulative rate since the loop started: seconds = seen/rate.
    t_at = {rec["step"]: rec["step"] * batch_size / rec["images_per_s"] for rec in lines}
    last = lines[-1]["step"]
    run = Run("ganpipe", reported=result.images_per_second, wall=wall)
    run.loop = last * batch_size / t_at[last]
    first = lines[0]["step"]
    if first < last:
        run.steady = (last - first) * batch_size / (t_at[last] - t_at[first])
    run.extra = {"losses": {k: v for k, v in lines[-1].items()
                            if k not in ("step", "images_per_s")},
                 "loop_s": t_at[last]}
    return run, trainer


# -- B: a bare PyTorch loop (DCGAN) ------------------------------------------------------------
def run_bare(variant, vopts, data: ImageSet, steps: int, batch_size: int, log_every: int
             ) -> tuple[Run, dict[str, torch.nn.Module]]:
    t_build = time.perf_counter()
    torch.manual_seed(SEED)
    nets = variant.build(vopts, data_info(data))
    G, D = nets["G"], nets["D"]
    betas = tuple(vopts.betas)
    opt_g = torch.optim.Adam(G.parameters(), lr=vopts.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=vopts.lr_d, betas=betas)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    n = images.shape[0]
    per_epoch = max(1, n // batch_size)
    real_target = torch.full((batch_size,), 1.0 - vopts.label_smoothing)
    fake_target = torch.zeros(batch_size)
    gen_target = torch.ones(batch_size)
    G.train()
    D.train()
    cur_epoch, perm = -1, None

    t0 = time.perf_counter()
    t_warm = None
    for step in range(steps):
        epoch, j = divmod(step, per_epoch)
        if epoch != cur_epoch:  # same permutations as the Trainer's Sampler
            g = torch.Generator().manual_seed(SEED * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=g)
            if n < batch_size:
                perm = perm.repeat(-(-batch_size // n))
            cur_epoch = epoch
        real = images[perm[j * batch_size:(j + 1) * batch_size]].float().div_(127.5).sub_(1.0)
        z = torch.randn(batch_size, vopts.latent_dim)
        fake = G(z)
        d_loss = (F.binary_cross_entropy_with_logits(D(real), real_target)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), fake_target))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = F.binary_cross_entropy_with_logits(D(fake), gen_target)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if step + 1 == log_every:
            t_warm = time.perf_counter()
    t1 = time.perf_counter()

    run = Run("bare", wall=t1 - t_build)
    run.loop = steps * batch_size / (t1 - t0)
    if t_warm is not None and steps > log_every:
        run.steady = (steps - log_every) * batch_size / (t1 - t_warm)
    run.extra = {"losses": {"d_loss": round(d_loss.item(), 6), "g_loss": round(g_loss.item(), 6)},
                 "loop_s": t1 - t0}
    return run, nets


def max_weight_diff(a: dict[str, torch.nn.Module], b: dict[str, torch.nn.Module]) -> float:
    diff = 0.0
    for name in ("G", "D"):
        sa, sb = a[name].state_dict(), b[name].state_dict()
        for key, value in sa.items():
            if value.is_floating_point():
                diff = max(diff, float((value - sb[key]).abs().max()))
    return diff


# -- report ------------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def fmt(v: float, width: int = 10, prec: int = 1) -> str:
    return f"{'-':>{width}}" if v != v else f"{v:{width}.{prec}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each (A B A B ...)")
    ap.add_argument("--variant", default="dcgan",
                    help="any registered 'generate' variant; the bare loop exists for dcgan")
    ap.add_argument("--count", type=int, default=1024, help="images in the shapes data set")
    ap.add_argument("--channels", type=int, default=3, choices=(1, 3))
    ap.add_argument("--log-every", type=int, default=None,
                    help="Trainer metrics-log interval, also the warm-up excluded from "
                         "'steady' (default: the Trainer's 50, or steps//2 if steps < 100)")
    ap.add_argument("--warmup-steps", type=int, default=5,
                    help="steps of the untimed warm-up run of each")
    ap.add_argument("--latent-dim", type=int, default=None, help="override the variant default")
    ap.add_argument("--g-width", type=int, default=None, help="override the variant default")
    ap.add_argument("--d-width", type=int, default=None, help="override the variant default")
    args = ap.parse_args()

    default_log = TrainOptions.model_fields["log_every"].default
    log_every = args.log_every or (default_log if args.steps >= 2 * default_log
                                   else max(1, args.steps // 2))

    reg = load_registry()
    variant = reg.variants.get(args.variant)
    if variant.task != "generate":
        print(f"variant {args.variant!r} has task {variant.task!r}; this benchmark trains "
              f"'generate' variants only", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("latent_dim", args.latent_dim), ("g_width", args.g_width),
                                   ("d_width", args.d_width)) if v is not None}
    vopts = variant.Options(**overrides)
    bare_ok = args.variant == "dcgan"

    t0 = time.perf_counter()
    data = load_shapes(args.image_size, args.channels, args.count)
    t_data = time.perf_counter() - t0
    info = data_info(data)
    params = {k: sum(p.numel() for p in v.parameters())
              for k, v in variant.build(vopts, info).items()}

    print(f"torch {torch.__version__}, device cpu, torch threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}")
    print(f"variant {variant.name}: {vopts.model_dump(mode='json')}")
    print("params: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()))
    print(f"data: shapes, {len(data)} images {args.image_size}x{args.image_size}x"
          f"{args.channels} uint8 in memory ({t_data:.1f} s to draw)")
    print(f"steps {args.steps}, batch {args.batch_size}, repeats {args.repeats}, "
          f"log_every {log_every}, warm-up {args.warmup_steps} steps each (untimed)")
    print("A = ganpipe Trainer (EMA off, progress off, sample_every=0, checkpoint_every=0: "
          "final sample grid + checkpoint only)")
    print("B = bare PyTorch loop (same nets/seed, Adam, batches, noise, BCE D+G step; no "
          "outputs)" if bare_ok else f"B = none (no bare loop for {variant.name})")
    print()

    # Warm-up (oneDNN primitives, allocator, lazy imports), untimed.
    warm = max(1, args.warmup_steps)
    run_trainer(variant, vopts, data, warm, args.batch_size, warm)
    if bare_ok:
        run_bare(variant, vopts, data, warm, args.batch_size, warm)

    runs: list[Run] = []
    last_a = last_b = None
    for _ in range(args.repeats):
        gc.collect()
        run, trainer = run_trainer(variant, vopts, data, args.steps, args.batch_size,
                                   log_every)
        runs.append(run)
        last_a = trainer
        if bare_ok:
            gc.collect()
            run, nets = run_bare(variant, vopts, data, args.steps, args.batch_size, log_every)
            runs.append(run)
            last_b = (run, nets)

    # Table of every run.
    print(f"{'run':>3}  {'which':<8} {'loop img/s':>10} {'steady':>10} {'reported':>10} "
          f"{'wall s':>8} {'loop s':>8} {'wall-loop s':>12}")
    print("-" * 80)
    for i, r in enumerate(runs, 1):
        print(f"{i:>3}  {r.kind:<8} {fmt(r.loop)} {fmt(r.steady)} {fmt(r.reported)} "
              f"{fmt(r.wall, 8, 2)} {fmt(r.extra['loop_s'], 8, 2)} {fmt(r.wall - r.extra['loop_s'], 12, 3)}")
    print("wall-loop s: ganpipe = Trainer() + build + final sample grid + checkpoint; "
          "bare = build")
    print()

    a = [r for r in runs if r.kind == "ganpipe"]
    b = [r for r in runs if r.kind == "bare"]
    work = args.steps * args.batch_size
    rows = [
        ("loop (all steps)", med([r.loop for r in a]), med([r.loop for r in b])),
        (f"steady (steps {log_every + 1}-{args.steps})", med([r.steady for r in a]),
         med([r.steady for r in b])),
        ("reported (A incl. final outputs) vs B loop", med([r.reported for r in a]),
         med([r.loop for r in b])),
        ("end-to-end (build+loop[+outputs])", work / med([r.wall for r in a]),
         work / med([r.wall for r in b]) if b else float("nan")),
    ]
    print(f"medians over {args.repeats} run(s) each, images/s")
    print(f"{'measure':<44} {'ganpipe':>10} {'bare':>10} {'ganpipe/bare':>13}")
    print("-" * 80)
    for label, va, vb in rows:
        ratio = va / vb if vb == vb and vb else float("nan")
        print(f"{label:<44} {fmt(va)} {fmt(vb)} {fmt(ratio, 13, 3)}")
    print()
    if b:
        headline = rows[0][1] / rows[0][2]
        verdict = "meets" if headline >= 0.95 else "BELOW"
        print(f"headline: ganpipe/bare loop throughput = {headline:.3f}  ({verdict} the 0.95 "
              f"target)")
        run_b, nets_b = last_b
        diff = max_weight_diff(last_a.nets, nets_b)
        same = "identical" if diff == 0.0 else "NOT identical"
        print(f"same-work check (last A vs last B): final losses ganpipe "
              f"{a[-1].extra['losses']} / bare {run_b.extra['losses']}; "
              f"max |weight diff| G,D = {diff:.3g} ({same})")
    else:
        print(f"ganpipe Trainer loop throughput for {variant.name}: {rows[0][1]:.1f} images/s "
              f"(no bare loop for this variant, no ratio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
