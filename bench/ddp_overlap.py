"""GAN data parallelism: the flat gradient all-reduce ganpipe uses against one
``DistributedDataParallel`` per net, on 2 CPU processes (Gloo).

Each process trains a DCGAN-sized G and D (``ganpipe.nn`` DCGAN nets, 64 px, widths 64:
the sizes of Radford et al.) on its share of a batch. One step is what the built-in dcgan
variant does: D on real and on fake images, one backward, D steps; then G's loss through
D, one backward, G steps. Modes, timed round-robin in blocks (the order reversed every
other round), all in the same run:

* ``none``: no communication at all (the baseline; the processes drift apart);
* ``flat``: after each backward, one flat ``all_reduce`` of the optimizer's gradients
  (:func:`ganpipe.training.distributed.average_gradients`, what ``[train] devices`` and
  torchrun runs do): communication starts when the backward has ended;
* ``ddp``: G and D each wrapped in ``DistributedDataParallel`` (``broadcast_buffers=False``,
  25 MB buckets), so buckets are all-reduced while the backward still runs; the G pass
  through D calls ``D.module`` (D's gradients of that pass are not wanted);
* ``allreduce``: the all-reduces of ``flat`` alone, on gradients already there (what the
  communication costs when nothing hides it).

Printed: the median step time of each mode, its ratio to ``none``, the communication each
exposes (step time minus ``none``) and the share of ``allreduce`` that DDP hides. Also a
probe of DDP's reducer constraints on a GAN step: D run twice before one backward with
``broadcast_buffers=True`` (the default).

    python bench/ddp_overlap.py            # about 2 min on 2 CPU cores
    python bench/ddp_overlap.py --quick    # smaller nets, seconds
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python bench/x.py`` without an install
    sys.path.insert(0, str(ROOT))

MODES = ("none", "flat", "ddp", "allreduce")


def _nets(args):
    import torch

    from ganpipe.nn import DCGANDiscriminator, DCGANGenerator

    torch.manual_seed(0)  # the same weights in every process
    g = DCGANGenerator(args.latent, args.size, 3, args.width)
    d = DCGANDiscriminator(args.size, 3, args.width)
    return g, d


def _step(G, D, D_plain, opt_g, opt_d, real, latent, reduce):
    """One dcgan step (ganpipe.variants.dcgan); ``reduce(params)`` after each backward."""
    import torch
    import torch.nn.functional as F

    n = real.shape[0]
    fake = G(torch.randn(n, latent))
    ones, zeros = torch.ones(n), torch.zeros(n)
    d_loss = F.binary_cross_entropy_with_logits(D(real), ones) + F.binary_cross_entropy_with_logits(
        D(fake.detach()), zeros
    )
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    reduce([p for g in opt_d.param_groups for p in g["params"]])
    opt_d.step()
    g_loss = F.binary_cross_entropy_with_logits(D_plain(fake), ones)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    reduce([p for g in opt_g.param_groups for p in g["params"]])
    opt_g.step()


def _probe_buffers(args) -> str:
    """D twice before one backward, DDP with its default broadcast_buffers=True."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    _, d = _nets(args)
    D = DDP(d)  # broadcast_buffers=True
    real = torch.randn(2, 3, args.size, args.size)
    try:
        loss = D(real).mean() - D(real * 0.5).mean()
        loss.backward()
    except RuntimeError as exc:
        return "RuntimeError: " + str(exc).splitlines()[0][:160]
    return "no error"


def _worker(rank: int, port: int, args, out) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ganpipe.training.distributed import average_gradients

    torch.set_num_threads(args.threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    world = 2
    real = torch.randn(args.batch, 3, args.size, args.size).clamp_(-1, 1)
    setups = {}
    for mode in ("none", "flat", "allreduce"):
        g, d = _nets(args)
        setups[mode] = (g, d, d)
    g, d = _nets(args)
    G, D = DDP(g, broadcast_buffers=False), DDP(d, broadcast_buffers=False)
    setups["ddp"] = (G, D, d)
    opts = {
        m: (torch.optim.Adam(s[0].parameters(), 2e-4), torch.optim.Adam(s[1].parameters(), 2e-4))
        for m, s in setups.items()
    }
    flat = lambda params: average_gradients(params, world)  # noqa: E731
    nothing = lambda params: None  # noqa: E731

    def run(mode: str) -> None:
        G_, D_, D_plain = setups[mode]
        opt_g, opt_d = opts[mode]
        if mode == "allreduce":  # communication alone: grads of one step, reduced again
            for _ in range(args.steps):
                for net in (D_, G_):
                    flat(list(net.parameters()))
            return
        reduce = flat if mode == "flat" else nothing
        for _ in range(args.steps):
            _step(G_, D_, D_plain, opt_g, opt_d, real, args.latent, reduce)

    # gradients there for "allreduce"; one warm-up block of every mode
    _step(*setups["allreduce"], *opts["allreduce"], real, args.latent, nothing)
    for mode in MODES:
        run(mode)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(args.rounds):
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            dist.barrier()
            t0 = time.perf_counter()
            run(mode)
            took = torch.tensor([time.perf_counter() - t0])
            dist.all_reduce(took, op=dist.ReduceOp.MAX)  # the slower process sets the pace
            times[mode].append(float(took) / args.steps)
    # flat and DDP average the same gradients: one step of each from the same weights
    check = {}
    for mode in ("flat", "ddp"):
        g, d = _nets(args)
        G_, D_ = (
            (DDP(g, broadcast_buffers=False), DDP(d, broadcast_buffers=False))
            if mode == "ddp"
            else (g, d)
        )
        torch.manual_seed(100 + rank)
        opt_g, opt_d = torch.optim.SGD(g.parameters(), 0.0), torch.optim.SGD(d.parameters(), 0.0)
        _step(
            G_,
            D_,
            d,
            opt_g,
            opt_d,
            real * (rank + 1),
            args.latent,
            flat if mode == "flat" else nothing,
        )
        check[mode] = torch.cat([p.grad.reshape(-1) for p in g.parameters()])
    same = torch.allclose(check["flat"], check["ddp"], rtol=1e-4, atol=1e-6)
    probe = _probe_buffers(args)
    if rank == 0:
        params = {
            "G": sum(p.numel() for p in setups["none"][0].parameters()),
            "D": sum(p.numel() for p in setups["none"][1].parameters()),
        }
        out.put((times, params, bool(same), probe))
    dist.barrier()
    dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64, help="image size (px)")
    p.add_argument("--width", type=int, default=64, help="g_width = d_width")
    p.add_argument("--latent", type=int, default=100)
    p.add_argument("--batch", type=int, default=16, help="images per process per step")
    p.add_argument("--steps", type=int, default=4, help="steps per timed block")
    p.add_argument("--rounds", type=int, default=6, help="timed blocks per mode")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    p.add_argument("--quick", action="store_true", help="32 px, width 16, 2 rounds")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.width, args.rounds, args.steps = 32, 16, 2, 2
    import torch
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    mp.spawn(_worker, args=(_port(), args, out), nprocs=2, start_method="spawn")
    times, params, same, probe = out.get()
    med = {m: statistics.median(v) for m, v in times.items()}
    base = med["none"]

    def paired(a: str, b: str) -> list[float]:
        """Per round, ``a`` minus ``b``: blocks run back to back, so a busy machine's
        drift (other jobs) cancels out of the difference."""
        return [x - y for x, y in zip(times[a], times[b], strict=True)]

    exposed = {m: statistics.median(paired(m, "none")) for m in ("flat", "ddp")}
    grads_mb = (params["G"] + params["D"]) * 4 / 1e6
    print(
        f"2 CPU processes (Gloo), torch {torch.__version__}, {args.threads} thread(s) each; "
        f"DCGAN {args.size} px, width {args.width}: G {params['G'] / 1e6:.2f} M, "
        f"D {params['D'] / 1e6:.2f} M parameters ({grads_mb:.1f} MB of fp32 gradients "
        f"per step); batch {args.batch} per process; medians of {args.rounds} blocks of "
        f"{args.steps} steps"
    )
    print()
    print("| mode | ms / step | ratio to none | exposed communication (ms, paired median) |")
    print("|---|---|---|---|")
    for mode in ("none", "flat", "ddp"):
        extra = "-" if mode == "none" else f"{1e3 * exposed[mode]:.1f}"
        print(f"| {mode} | {1e3 * med[mode]:.1f} | {med[mode] / base:.3f}x | {extra} |")
    print(f"| allreduce (communication alone) | {1e3 * med['allreduce']:.1f} | - | - |")
    print()
    raw = med["allreduce"]
    for mode in ("flat", "ddp"):
        hidden = 1 - exposed[mode] / raw if raw > 0 else float("nan")
        print(f"{mode}: hides {100 * hidden:.0f}% of the all-reduce time")
    slower = paired("ddp", "flat")
    print(
        f"ddp slower than flat in {sum(d > 0 for d in slower)} of {len(slower)} rounds "
        f"(paired median {1e3 * statistics.median(slower):+.1f} ms / step)"
    )
    print(f"flat and DDP average to the same gradients: {same}")
    print(f"DDP, D twice before one backward, broadcast_buffers=True: {probe}")
    print(f"raw samples (s/step): { {m: [round(x, 4) for x in v] for m, v in times.items()} }")


if __name__ == "__main__":
    main()
