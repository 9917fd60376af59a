"""One adversarial training loop for every variant.

The loop owns the device, seeding, batching, EMA, checkpoints (atomic; exact resume of
step, optimizers, EMA and RNG), the metrics log, sample grids and the progress bar. The
variant owns nets and losses (``build`` / ``optimizers`` / ``train_step``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ganpipe import progress, signals
from ganpipe.data.base import ImageSet
from ganpipe.devices import Device
from ganpipe.errors import TrainingError
from ganpipe.fsutil import append_line, open_append, write_bytes
from ganpipe.training import checkpoint as ckpt
from ganpipe.training import defaults, health, patches, preemption, sampling
from ganpipe.training.devices import amp_dtype, resolve_device
from ganpipe.training.diffaugment import DiffAugment
from ganpipe.training.distributed import (
    DistInfo,
    average_gradients,
    check_in_step,
    check_share,
    gather_objects,
    mean_across,
    reseed,
    same_start,
)
from ganpipe.training.ema import ema_beta
from ganpipe.training.options import TrainOptions
from ganpipe.training.state import (
    ema_key,
    generator_net,
    make_ema,
    pack_variant_state,
    rng_state,
    set_rng_state,
    unpack_variant_state,
    update_ema,
)
from ganpipe.training.tensorboard import open_log
from ganpipe.training.transfer import initialise
from ganpipe.variant import DataInfo, StepContext, Variant


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    resumed_from: int
    images_per_second: float


class Trainer:
    def __init__(
        self,
        variant: Variant,
        variant_opts: Any,
        opts: TrainOptions,
        data: ImageSet,
        out_dir: Path,
        *,
        seed: int = 0,
        device: str | Device = "auto",
        fingerprint: str = "",
        log=print,
        dist_info: DistInfo | None = None,
    ):
        self.variant, self.vopts, self.opts, self.data = variant, variant_opts, opts, data
        self.dist = dist_info or DistInfo(0, 1)
        self.out_dir = Path(out_dir)
        self.seed, self.fingerprint, self.log = seed, fingerprint, log
        #: the variant's generator net (sampled, EMA'd) and its EMA's checkpoint name
        self.generator_net, self.ema_key = generator_net(variant), ema_key(variant)
        self.device = resolve_device(device)
        check_share(self.dist.world, opts.batch_size)  # devices: checked with the config
        self.info = DataInfo(
            data.image_size, data.channels, tuple(data.class_names) if data.labelled else ()
        )
        #: the options as given, and resolved (defaults scaled to data, device, steps)
        self.user_vopts = variant_opts
        self.vopts = defaults.resolve(
            variant, variant_opts, self.info, self.device.type, opts.steps
        )
        #: train_step calls per step (a step is one generator update)
        self.per_step = defaults.updates_per_step(variant, self.vopts)
        variant.check_data(self.vopts, self.info)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.samples_dir = self.out_dir / "samples"
        self.metrics_path = self.out_dir / "metrics.jsonl"

    # -- setup -------------------------------------------------------------------------
    def _build(self) -> None:
        torch.manual_seed(self.seed)
        self.nets = {
            k: v.to(self.device) for k, v in self.variant.build(self.vopts, self.info).items()
        }
        fresh = ckpt.latest_checkpoint(self.ckpt_dir) is None or not self.opts.resume
        if self.opts.init_from is not None and fresh:
            path = self.opts.resolve_path(self.opts.init_from)
            initialise(path, self.nets, self.log, self.generator_net)
        self.optimizers = self.variant.optimizers(self.nets, self.vopts)
        self.ema = make_ema(self.generator) if self.opts.ema_decay > 0 else None
        self.amp_dtype = amp_dtype(self.opts.amp, self.device)
        self.scalers = {
            k: torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
            for k in self.optimizers
        }
        channels_last = self.opts.channels_last
        if channels_last is None:  # CPU: where bench/cpu_speed.py measured it faster
            channels_last = self.device.type == "cuda" or (
                self.device.type == "cpu" and self.variant.channels_last_on_cpu
            )
        if channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        self.ctx = StepContext(
            self.nets,
            self.optimizers,
            self.vopts,
            self.info,
            self.device,
            augment=DiffAugment(self.opts.diffaugment) if self.opts.diffaugment else None,
            scalers=self.scalers,
        )
        flips = patches.train_flips(self.variant, self.vopts)  # SR: flips and rot90
        self.batches = patches.TrainBatches(
            self.data, self.device, self.opts.batch_size, self.seed, flips
        )
        self.images = self.batches.reference  # at the training size: samples, health
        if self.dist.world > 1:  # same weights everywhere (built above), own noise per rank
            self.ctx.reduce_grads = lambda params: average_gradients(params, self.dist.world)
            torch.manual_seed(self.seed * 1_000_003 + 7919 * (self.dist.rank + 1))
        g = torch.Generator().manual_seed(self.seed + 1)
        n = self.opts.num_samples
        # image-to-image variants build sample inputs from real images
        real = self.images[torch.arange(n, device=self.device) % len(self.images)]
        self.fixed_inputs = self.variant.fixed_inputs(
            self.vopts, self.info, n, self.device, g, real.float().div(127.5).sub(1.0)
        )
        self.real_spread = sampling.pairwise_spread(self.images[:64].float().div(127.5).sub(1.0))
        self.real_stats, self.gap_floor = health.reference(self.images, self.seed)

    @property
    def generator(self) -> torch.nn.Module:
        """The variant's generator net (:attr:`~ganpipe.Variant.generator_net`)."""
        return self.nets[self.generator_net]

    @property
    def sampling_generator(self) -> torch.nn.Module:
        """What samples are drawn from: the EMA generator when there is one."""
        return self.ema if self.ema is not None else self.generator

    def modules(self) -> dict[str, torch.nn.Module]:
        """What a checkpoint holds: the nets, and the EMA under :attr:`ema_key`."""
        mods = dict(self.nets)
        if self.ema is not None:
            mods[self.ema_key] = self.ema
        return mods

    def _resume(self) -> int:
        step = self._load_checkpoint()
        if self.dist.world > 1:  # every process must see the checkpoints process 0 wrote
            same_start(step, self.ckpt_dir)
        return step

    def _load_checkpoint(self) -> int:
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        if latest is None or not self.opts.resume:
            return 0
        state = ckpt.load_state(latest)
        if state.get("fingerprint") != self.fingerprint:
            raise TrainingError(
                f"checkpoint {latest} was made with a different model, data or training "
                f"configuration{health.options_hint(state, self.vopts)}; re-run with "
                f"--force to start over, or restore the config"
            )
        weights = ckpt.load_weights(latest)
        for name, module in self.modules().items():
            if name not in weights:
                raise TrainingError(
                    f"checkpoint {latest} has no weights for {name!r}; "
                    f"re-run with --force to start over"
                )
            module.load_state_dict(weights[name])
        for name, opt in self.optimizers.items():
            ckpt.load_optimizer(latest, name, opt, state["optimizers"][name])
        self.ctx.state = unpack_variant_state(state.get("variant_state", {}), self.device)
        for name, sc_state in state.get("scalers", {}).items():
            if name in self.scalers and self.scalers[name].is_enabled():
                self.scalers[name].load_state_dict(sc_state)
        ranks = state.get("rng_ranks") or [state["rng"]]  # one noise stream per process
        step = int(state["step"])
        if len(ranks) == self.dist.world:
            set_rng_state(ranks[self.dist.rank])
        else:  # another number of processes: all is exact but the noise
            reseed(self.seed, step, self.dist.rank)
            self.log(
                f"train: {latest} was made by {len(ranks)} process(es), resuming with "
                f"{self.dist.world}: weights, optimizers, EMA, step and batches carry over "
                f"exactly, the noise streams restart (bit-exact only with {len(ranks)})"
            )
        if self.dist.main:
            self._truncate_metrics(step)
        self.log(f"train: resuming from {latest} (step {step})")
        return step

    def _truncate_metrics(self, step: int) -> None:
        if not self.metrics_path.exists():
            return
        keep = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # empty, or cut short by a crash mid-write
            if not isinstance(rec, dict):
                continue
            if self.per_step > 1 and "iteration" not in rec and "step" in rec:
                # written before a step meant a G update: "step" counted train_step calls
                rec = {**rec, "step": rec["step"] // self.per_step, "iteration": rec["step"]}
                line = json.dumps(rec)
            if rec.get("iteration", rec.get("step", 0)) <= step:
                keep.append(line)
        write_bytes(
            self.metrics_path, ("\n".join(keep) + "\n" if keep else "").encode(), "metrics log"
        )

    # -- outputs -----------------------------------------------------------------------
    def save(self, step: int) -> Path:
        """Write a checkpoint (process 0; the others only hand over their RNG states)."""
        rng = rng_state()
        ranks = gather_objects(rng) if self.dist.world > 1 else None
        if not self.dist.main:
            return self.ckpt_dir / f"step_{step:08d}"  # what process 0 writes
        state = {
            "step": step,  # train_step calls (checkpoints before 0.x have no other count)
            "generator_steps": step // self.per_step,
            "model_options": self.vopts.model_dump(mode="json"),
            "fingerprint": self.fingerprint,
            "rng": rng,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": {k: sc.state_dict() for k, sc in self.scalers.items() if sc.is_enabled()},
        }
        if ranks is not None:
            state["rng_ranks"] = ranks
        if self.ctx.state:  # the variant's own (ctx.state): none, no key
            state["variant_state"] = pack_variant_state(self.ctx.state, self.variant.name)
        return ckpt.save_checkpoint(
            self.ckpt_dir, step, self.modules(), state, self.opts.keep_checkpoints
        )

    def sample_health(self) -> tuple[float, float]:
        """The samples' diversity (logged) and stats gap (:mod:`~ganpipe.training.health`)."""
        few = tuple(x[: sampling.DIVERSITY_SAMPLES] for x in self.fixed_inputs)
        name, g = self.generator_net, self.sampling_generator
        out = sampling.generate_with(self.variant, self.nets, name, g, few).float()
        div = sampling.pairwise_spread(out) / max(self.real_spread, 1e-8)
        gap = health.stats_gap(out, *self.real_stats)
        return round(div, 4), gap

    def sample_grid(self, step: int) -> Path:
        return sampling.save_sample_grid(
            self.variant,
            self.nets,
            self.generator_net,
            self.sampling_generator,
            self.fixed_inputs,
            self.samples_dir,
            step,
        )

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to ``opts.steps``. SIGTERM / SIGINT stop it after the current step with a
        checkpoint (:mod:`ganpipe.training.preemption`)."""
        from ganpipe.training.threads import cpu_threads

        with signals.deferred(), cpu_threads(self.device):  # the CPUs this process may use
            return self._run()

    def _run(self) -> TrainResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._build()
        start = self._resume()  # train_step calls done (per_step of them make a step)
        opts, per = self.opts, self.per_step
        total = opts.steps * per
        if start >= total:
            latest = ckpt.latest_checkpoint(self.ckpt_dir)
            done = start // per
            self.log(f"train: already at step {done} of {opts.steps}; nothing to do")
            return TrainResult(latest, done, done, 0.0)
        for net in self.nets.values():
            net.train()
        main, world = self.dist.main, self.dist.world
        bar = progress.bar(
            opts.steps,
            "train",
            "step",
            enabled=None if opts.progress and main else False,
            initial=start // per,
        )
        t0, seen = time.perf_counter(), 0
        last_ckpt = ckpt.latest_checkpoint(self.ckpt_dir)
        metrics = open_append(self.metrics_path, "metrics log") if main else None
        it, saved_at = start, None
        watch = health.HealthWatch(opts.steps, self.samples_dir, self.gap_floor)
        board = None
        try:
            board = open_log(opts.tensorboard, self.out_dir, start) if main else None
            while it < total:
                batch = self.batches.batch(it, self.dist.rank, world)  # this process's share
                self.ctx.step = it
                with torch.autocast(
                    self.device.type,
                    dtype=self.amp_dtype or torch.float32,
                    enabled=self.amp_dtype is not None,
                ):
                    losses = self.variant.train_step(self.ctx, batch)
                values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
                if world > 1:
                    values = mean_across(values)
                if not bool(torch.isfinite(values).all()):
                    bad = {k: float(v) for k, v in zip(losses, values.tolist(), strict=True)}
                    where = (
                        f"last good checkpoint: {last_ckpt}"
                        if last_ckpt
                        else "no checkpoint was written yet"
                    )
                    at = f"step {it // per + 1}" + (f" (call {it + 1})" if per > 1 else "")
                    raise TrainingError(
                        f"non-finite loss at {at} ({bad}); {where}; lower the "
                        f"learning rates or check the data"
                    )
                it += 1
                seen += batch.images.shape[0] * world
                step, boundary = divmod(it, per)[0], it % per == 0  # a G update completed
                if boundary and self.ema is not None:  # one EMA update per G update
                    update_ema(self.ema, self.generator, ema_beta(opts, step - 1))
                if boundary:
                    bar.update(1)
                if main and boundary and (step % opts.log_every == 0 or step == opts.steps):
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    rec = {
                        "step": step,
                        **({"iteration": it} if per > 1 else {}),
                        **{
                            k: round(float(v), 6)
                            for k, v in zip(losses, values.tolist(), strict=True)
                        },
                        "images_per_s": round(rate, 2),
                    }
                    every = opts.diversity_every or opts.log_every
                    gap = None
                    if step % every == 0 or step == opts.steps:
                        rec["diversity"], gap = self.sample_health()
                    for warning in watch.check(step, rec, gap):
                        tqdm.write(warning)
                    append_line(metrics, json.dumps(rec), "metrics log")  # disk full: 1 line
                    if board is not None:
                        board.scalars(rec)
                    bar.set_postfix(health.postfix(rec))
                if (
                    main
                    and boundary
                    and ((opts.sample_every and step % opts.sample_every == 0) or it == total)
                ):
                    grid = self.sample_grid(step)
                    if board is not None:
                        board.grid(step, grid)
                if boundary and (
                    (opts.checkpoint_every and step % opts.checkpoint_every == 0) or it == total
                ):
                    last_ckpt, saved_at = self.save(it), it
                signum = preemption.agreed_stop(world, self.device)
                if signum:
                    preemption.stop(self, it, signum, last_ckpt, saved_at)
        finally:
            if metrics is not None:
                metrics.close()
            if board is not None:
                board.close()
            bar.close()
        if world > 1:
            check_in_step(self.modules())
        rate = seen / max(time.perf_counter() - t0, 1e-9)
        return TrainResult(last_ckpt, it // per, start // per, rate)
