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
every run and the medians. Throughputs (images/s = images / seconds):

* loop:         all steps, from the first step to the end of the last one. For A this is
                read from the Trainer's own metrics log (its ``images_per_s`` line at the
                last step is written before the final sample grid and checkpoint, but after
                the Trainer's per-log-line work of earlier lines); for B it is timed around
                the loop.
* steady:       the steps after the first metrics-log line (``log_every``), i.e. without
                the first steps' warm-up; from the metrics log for A, timed for B.
* median step:  batch size / the median time between the starts of consecutive steps.
                A's stamps come from a thin proxy around the variant whose ``train_step``
                records ``perf_counter()`` and delegates (B records the same stamp at the
                same point), so each interval holds all of the Trainer's per-step work. The
                median ignores rare slow steps: load bursts from other processes, but also
                the Trainer's once-per-log-line work - which ``loop`` does include.
* reported:     ``TrainResult.images_per_second`` of A: the loop plus the final sample
                grid and checkpoint (what ``ganpipe run`` prints); compared with B's loop.
* end-to-end:   wall time of ``Trainer(...)`` + ``run()`` (builds nets, moves data, final
                sample and checkpoint) against B's build + loop; as a throughput ratio.

The ganpipe/bare ratio (target >= 0.95) is printed for ``loop`` and ``median step`` with
three estimators: ratio of the medians, median of the per-pair ratios (A_i/B_i, each pair
run back to back) and best-of (max/max). On a quiet machine they agree; when they do not,
the machine was busy (see the ``slow`` column and the load average).

The per-step split gives the median ms inside ``train_step`` (B: the same step code) and
outside it (end of one step to the start of the next: the loop's own bookkeeping), which
shows the Trainer's per-step overhead directly. If the estimators disagree by more than
10%, or the runs' median-step rates differ by more than 1.25x, a WARNING is printed and
the headline is marked UNRELIABLE.

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
from ganpipe.errors import GanpipeError
from ganpipe.registry import load_registry
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.variant import DataInfo

SEED = 0


@dataclass
class Run:
    kind: str
    loop: float = float("nan")  # images/s over all steps
    steady: float = float("nan")  # images/s after the first log_every steps
    step: float = float("nan")  # images/s from the median step time
    slow: int = 0  # steps slower than 1.5x the median step
    inside_ms: float = float("nan")  # median time in train_step (B: the same step code)
    outside_ms: float = float("nan")  # median time between steps (loop bookkeeping, batch)
    reported: float = float("nan")  # TrainResult.images_per_second (A only)
    wall: float = float("nan")  # seconds, build + loop (+ final outputs for A)
    extra: dict = field(default_factory=dict)


def load_shapes(image_size: int, channels: int, count: int) -> ImageSet:
    reg = load_registry(entry_points=False)
    source = reg.datasets.get("shapes")
    opts = source.Options(count=count, classes=4, seed=0)
    return source.load(opts, image_size, channels, Path("."))


def data_info(data: ImageSet) -> DataInfo:
    return DataInfo(
        data.image_size, data.channels, tuple(data.class_names) if data.labelled else ()
    )


def step_stats(stamps: list[float], batch_size: int) -> tuple[float, int]:
    """images/s from the median time between consecutive steps (robust to load bursts),
    and how many steps took more than 1.5x that median (a noise / hiccup indicator)."""
    deltas = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    if not deltas:
        return float("nan"), 0
    m = statistics.median(deltas)
    return batch_size / m, sum(d > 1.5 * m for d in deltas)


def split_ms(starts: list[float], ends: list[float]) -> tuple[float, float]:
    """Median ms inside the step code and between the end of one step and the next start."""
    inside = [e - b for b, e in zip(starts, ends, strict=True)]
    outside = [b - e for e, b in zip(ends[:-1], starts[1:], strict=True)]
    return (
        1000 * statistics.median(inside) if inside else float("nan"),
        1000 * statistics.median(outside) if outside else float("nan"),
    )


class TimedVariant:
    """Delegates everything to the real variant; records a time stamp as each
    ``train_step`` starts (one ``perf_counter`` call per step - the bare loop records the
    same stamp at the same point)."""

    def __init__(self, inner):
        self._inner = inner
        self.stamps: list[float] = []
        self.ends: list[float] = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def train_step(self, ctx, batch):
        self.stamps.append(time.perf_counter())
        out = self._inner.train_step(ctx, batch)
        self.ends.append(time.perf_counter())
        return out


def train_options(steps: int, batch_size: int, log_every: int) -> TrainOptions:
    """The Trainer's defaults, except: no EMA, no progress bar, no resume, and sample grids
    and checkpoints only at the end (``*_every=0``)."""
    return TrainOptions(
        steps=steps,
        batch_size=batch_size,
        ema_decay=0.0,
        log_every=log_every,
        sample_every=0,
        checkpoint_every=0,
        keep_checkpoints=1,
        resume=False,
        progress=False,
    )


# -- A: the ganpipe Trainer -----------------------------------------------------------------
def run_trainer(
    variant, vopts, data: ImageSet, steps: int, batch_size: int, log_every: int
) -> tuple[Run, Trainer]:
    timed = TimedVariant(variant)
    opts = train_options(steps, batch_size, log_every)
    with tempfile.TemporaryDirectory(prefix="ganpipe-bench-train-") as tmp:
        t0 = time.perf_counter()
        trainer = Trainer(
            timed, vopts, opts, data, Path(tmp), seed=SEED, device="cpu", log=lambda _msg: None
        )
        result = trainer.run()
        wall = time.perf_counter() - t0
        lines = [
            json.loads(x)
            for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()
            if x.strip()
        ]
    # Each metrics line holds the cumulative rate since the loop started: seconds = seen/rate.
    t_at = {rec["step"]: rec["step"] * batch_size / rec["images_per_s"] for rec in lines}
    last = lines[-1]["step"]
    run = Run("ganpipe", reported=result.images_per_second, wall=wall)
    run.step, run.slow = step_stats(timed.stamps, batch_size)
    run.inside_ms, run.outside_ms = split_ms(timed.stamps, timed.ends)
    run.loop = last * batch_size / t_at[last]
    first = lines[0]["step"]
    if first < last:
        run.steady = (last - first) * batch_size / (t_at[last] - t_at[first])
    run.extra = {
        "losses": {k: v for k, v in lines[-1].items() if k not in ("step", "images_per_s")},
        "loop_s": t_at[last],
    }
    return run, trainer


# -- B: a bare PyTorch loop (DCGAN) ------------------------------------------------------------
def run_bare(
    variant, vopts, data: ImageSet, steps: int, batch_size: int, log_every: int
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

    stamps: list[float] = []
    ends: list[float] = []
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
        real = images[perm[j * batch_size : (j + 1) * batch_size]].float().div_(127.5).sub_(1.0)
        stamps.append(time.perf_counter())  # where A's TimedVariant stamps
        z = torch.randn(batch_size, vopts.latent_dim)
        fake = G(z)
        d_loss = F.binary_cross_entropy_with_logits(
            D(real), real_target
        ) + F.binary_cross_entropy_with_logits(D(fake.detach()), fake_target)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = F.binary_cross_entropy_with_logits(D(fake), gen_target)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        ends.append(time.perf_counter())  # where A's TimedVariant stamps the end
        if step + 1 == log_every:
            t_warm = time.perf_counter()
    t1 = time.perf_counter()

    run = Run("bare", wall=t1 - t_build)
    run.step, run.slow = step_stats(stamps, batch_size)
    run.inside_ms, run.outside_ms = split_ms(stamps, ends)
    run.loop = steps * batch_size / (t1 - t0)
    if t_warm is not None and steps > log_every:
        run.steady = (steps - log_every) * batch_size / (t1 - t_warm)
    run.extra = {
        "losses": {"d_loss": round(d_loss.item(), 6), "g_loss": round(g_loss.item(), 6)},
        "loop_s": t1 - t0,
    }
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
    ap.add_argument(
        "--variant",
        default="dcgan",
        help="any registered 'generate' variant; the bare loop exists for dcgan",
    )
    ap.add_argument("--count", type=int, default=1024, help="images in the shapes data set")
    ap.add_argument("--channels", type=int, default=3, choices=(1, 3))
    ap.add_argument(
        "--log-every",
        type=int,
        default=None,
        help="Trainer metrics-log interval, also the warm-up excluded from "
        "'steady' (default: the Trainer's 50, or steps//2 if steps < 100)",
    )
    ap.add_argument(
        "--warmup-steps", type=int, default=5, help="steps of the untimed warm-up run of each"
    )
    ap.add_argument("--latent-dim", type=int, default=None, help="override the variant default")
    ap.add_argument("--g-width", type=int, default=None, help="override the variant default")
    ap.add_argument("--d-width", type=int, default=None, help="override the variant default")
    args = ap.parse_args()

    default_log = TrainOptions.model_fields["log_every"].default
    log_every = args.log_every or (
        default_log if args.steps >= 2 * default_log else max(1, args.steps // 2)
    )

    reg = load_registry()
    try:
        variant = reg.variants.get(args.variant)
    except GanpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if variant.task != "generate":
        print(
            f"variant {args.variant!r} has task {variant.task!r}; this benchmark trains "
            f"'generate' variants only",
            file=sys.stderr,
        )
        return 2
    overrides = {
        k: v
        for k, v in (
            ("latent_dim", args.latent_dim),
            ("g_width", args.g_width),
            ("d_width", args.d_width),
        )
        if v is not None
    }
    for key in [k for k in overrides if k not in variant.Options.model_fields]:
        print(f"note: variant {variant.name!r} has no option {key!r}; ignored")
        del overrides[key]
    vopts = variant.Options(**overrides)
    bare_ok = args.variant == "dcgan"

    t0 = time.perf_counter()
    data = load_shapes(args.image_size, args.channels, args.count)
    t_data = time.perf_counter() - t0
    info = data_info(data)
    params = {
        k: sum(p.numel() for p in v.parameters()) for k, v in variant.build(vopts, info).items()
    }

    print(
        f"torch {torch.__version__}, device cpu, torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}"
    )
    print(f"variant {variant.name}: {vopts.model_dump(mode='json')}")
    print("params: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()))
    print(
        f"data: shapes, {len(data)} images {args.image_size}x{args.image_size}x"
        f"{args.channels} uint8 in memory ({t_data:.1f} s to draw)"
    )
    print(
        f"steps {args.steps}, batch {args.batch_size}, repeats {args.repeats}, "
        f"log_every {log_every}, warm-up {args.warmup_steps} steps each (untimed)"
    )
    shown = train_options(args.steps, args.batch_size, log_every)
    print(
        "A = ganpipe Trainer, TrainOptions "
        + ", ".join(f"{k}={v}" for k, v in shown.model_dump(mode="json").items())
    )
    print(
        "    (sample_every=0, checkpoint_every=0: the final sample grid + checkpoint only; "
        "every metrics-log line runs the Trainer's own per-line checks, if any)"
    )
    print(
        "B = bare PyTorch loop (same nets/seed, Adam, batches, noise, BCE D+G step; no outputs)"
        if bare_ok
        else f"B = none (no bare loop for {variant.name})"
    )
    print()

    # Warm-up (oneDNN primitives, allocator, lazy imports), untimed.
    warm = max(1, args.warmup_steps)
    run_trainer(variant, vopts, data, warm, args.batch_size, warm)
    if bare_ok:
        run_bare(variant, vopts, data, warm, args.batch_size, warm)

    runs: list[Run] = []
    last_a = last_b = None
    load_before = os.getloadavg()
    for _ in range(args.repeats):
        gc.collect()
        run, trainer = run_trainer(variant, vopts, data, args.steps, args.batch_size, log_every)
        runs.append(run)
        last_a = trainer
        if bare_ok:
            gc.collect()
            run, nets = run_bare(variant, vopts, data, args.steps, args.batch_size, log_every)
            runs.append(run)
            last_b = (run, nets)

    load_after = os.getloadavg()

    # Table of every run.
    print(
        f"{'run':>3}  {'which':<8} {'loop':>8} {'steady':>8} {'med.step':>8} "
        f"{'reported':>8} {'slow':>5}  {'wall s':>7} {'loop s':>7} {'wall-loop s':>11}"
    )
    print("-" * 86)
    for i, r in enumerate(runs, 1):
        print(
            f"{i:>3}  {r.kind:<8} {fmt(r.loop, 8)} {fmt(r.steady, 8)} {fmt(r.step, 8)} "
            f"{fmt(r.reported, 8)} {r.slow:5d}  {fmt(r.wall, 7, 2)} "
            f"{fmt(r.extra['loop_s'], 7, 2)} {fmt(r.wall - r.extra['loop_s'], 11, 3)}"
        )
    print(
        "(images/s; slow = steps > 1.5x the run's median step; wall-loop s: ganpipe = "
        "Trainer() + build +\n final sample grid + checkpoint, bare = build)"
    )
    print(
        f"load average 1/5/15 min: before {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.2f}' for x in load_after)}  ({os.cpu_count()} cpus)"
    )
    print()

    a = [r for r in runs if r.kind == "ganpipe"]
    b = [r for r in runs if r.kind == "bare"]
    work = args.steps * args.batch_size
    rows = [
        ("loop: all steps", med([r.loop for r in a]), med([r.loop for r in b])),
        (
            f"steady: steps {log_every + 1}-{args.steps}"
            if log_every < args.steps
            else "steady: (needs --log-every < --steps)",
            med([r.steady for r in a]),
            med([r.steady for r in b]),
        ),
        ("median step time", med([r.step for r in a]), med([r.step for r in b])),
        (
            "reported: A's TrainResult vs B loop",
            med([r.reported for r in a]),
            med([r.loop for r in b]),
        ),
        (
            "end-to-end: build + loop [+ final outputs]",
            work / med([r.wall for r in a]),
            work / med([r.wall for r in b]) if b else float("nan"),
        ),
    ]
    print(f"medians over {args.repeats} run(s) each, images/s")
    print(f"{'measure':<44} {'ganpipe':>10} {'bare':>10} {'ganpipe/bare':>13}")
    print("-" * 80)
    for label, va, vb in rows:
        ratio = va / vb if vb == vb and vb else float("nan")
        print(f"{label:<44} {fmt(va)} {fmt(vb)} {fmt(ratio, 13, 3)}")
    print()
    print(
        "per-step split, median ms (inside = the variant's train_step / B's step code; "
        "outside = from the end\nof one step to the start of the next: the loop's "
        "bookkeeping and the next batch)"
    )
    print(f"{'':<10} {'inside':>10} {'outside':>10}")
    for label, group in (("ganpipe", a), ("bare", b)):
        if group:
            print(
                f"{label:<10} {med([r.inside_ms for r in group]):10.3f} "
                f"{med([r.outside_ms for r in group]):10.3f}"
            )
    print()
    if not b:
        print(
            f"ganpipe Trainer throughput for {variant.name}: loop {rows[0][1]:.1f} images/s, "
            f"median step {rows[2][1]:.1f} images/s (no bare loop for this variant, "
            f"no ratio)"
        )
        return 0
    print(
        "ganpipe/bare by estimator    ratio of medians  median of pairs A_i/B_i  best-of (max/max)"
    )
    spreads = []
    for name, attr in (("loop: all steps", "loop"), ("median step time", "step")):
        of_medians = med([getattr(r, attr) for r in a]) / med([getattr(r, attr) for r in b])
        paired = med([getattr(x, attr) / getattr(y, attr) for x, y in zip(a, b, strict=True)])
        best = max(getattr(r, attr) for r in a) / max(getattr(r, attr) for r in b)
        print(f"  {name:<26} {of_medians:16.3f}  {paired:23.3f}  {best:17.3f}")
        spreads.append(max(of_medians, paired, best) / min(of_medians, paired, best))
    rates = [r.step for r in runs]
    run_spread = max(rates) / min(rates)
    print()
    busy = max(spreads) > 1.10 or run_spread > 1.25
    if busy:
        print(
            f"WARNING: the machine was busy during the runs: the estimators disagree by up "
            f"to {100 * (max(spreads) - 1):.0f}% and the runs' median-step throughputs "
            f"differ by up to {run_spread:.1f}x for the same computation. The ratios below "
            f"are not reliable; re-run when the machine is quiet, or with more --repeats "
            f"(trust the paired estimator first)."
        )
        print()
    for name, attr in (("whole loop", "loop"), ("median step", "step")):
        ratio = med([getattr(r, attr) for r in a]) / med([getattr(r, attr) for r in b])
        verdict = "meets" if ratio >= 0.95 else "BELOW"
        note = "; UNRELIABLE, see the warning" if busy else ""
        print(f"headline ({name}): ganpipe/bare = {ratio:.3f}  ({verdict} the 0.95 target{note})")
    run_b, nets_b = last_b
    diff = max_weight_diff(last_a.nets, nets_b)
    same = "identical" if diff == 0.0 else "NOT identical"
    la = {k: v for k, v in a[-1].extra["losses"].items() if k in run_b.extra["losses"]}
    print(
        f"same-work check (last A vs last B): final losses ganpipe {la} / bare "
        f"{run_b.extra['losses']}; max |weight diff| G,D = {diff:.3g} ({same})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
