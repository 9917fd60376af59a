"""Progressive growing of GANs (PGGAN, Karras et al. 2018): G and D start at 4x4 and grow
a resolution at a time, each new block faded in linearly (``phase_steps`` steps to fade
in, as many to stabilise), the real images D sees faded with the same alpha
(:func:`fade_reals`, the reference's ``process_reals``). Pixel norm and equalised
learning rate in G, minibatch std in D, WGAN-GP loss with the small drift term,
``d_steps`` D steps per G step.

The growth lives in the nets: ``level`` and ``alpha`` are buffers set from the step at
every training step (so checkpoints, resume and the EMA copy carry them), and G always
returns full-resolution images (nearest up-sampling of the current level), so data,
samples and export need nothing special. The exported model is the generator at the
level it has reached (the full resolution after ``2 * levels`` phases). It has no
truncation trick (its card says ``truncation = "none"``): G normalises z to unit length,
so truncating z changes nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganpipe import (
    SMALL_RUN_SCALE,
    Batch,
    DataInfo,
    ExportSpec,
    GANOptions,
    StepContext,
    Variant,
    default_scale,
    fill_unset,
    require_power_of_two,
    scaled_defaults,
)
from ganpipe.nn import EqualConv2d, EqualLinear, MinibatchStd, widths


class PGGANOptions(GANOptions):
    latent_dim: int = Field(128, ge=1, le=4096)
    g_width: int = Field(32, ge=1, description="channels at full resolution (G)")
    d_width: int = Field(32, ge=1, description="channels at full resolution (D)")
    max_width: int = Field(256, ge=1, description="cap on channels per block")
    phase_steps: int = Field(
        1000,
        ge=1,
        description="steps to fade a resolution in, and again to stabilise it; unset: "
        "train.steps / (2 x levels + 4), so that the full resolution is reached at 60-70% of "
        "the run and trained for the rest (1000 outside the training loop)",
    )
    gp_lambda: float = Field(10.0, ge=0, description="gradient-penalty weight")
    drift: float = Field(1e-3, ge=0, description="weight of D(real)^2, keeps scores near 0")
    d_steps: int = Field(
        3,
        ge=1,
        description="D steps per G step (each on a fresh batch); unset: 3, and 2 below "
        "half scale (small CPU runs, where each D step costs as much as a G update)",
    )
    depth: int = Field(
        2,
        ge=1,
        le=2,
        description="3x3 convs per growth block, in G and in D (2 in PGGAN; 1: the "
        "channel-changing one only); unset: 2, and 1 below half scale",
    )
    lr_g: float = Field(1e-3, gt=0, description="unset: 1e-3, and 3e-3 below half scale")
    lr_d: float = Field(1e-3, gt=0, description="unset: 1e-3, and 3e-3 below half scale")
    betas: tuple[float, float] = (0.0, 0.99)


def schedule(step: int, phase_steps: int, levels: int) -> tuple[int, float]:
    """(level, alpha) at ``step``: phase 0 trains 4x4; each later odd phase fades the next
    level in (alpha 0 -> 1), each even one stabilises it."""
    phase = step // phase_steps
    if phase >= 2 * levels:
        return levels, 1.0
    level = (phase + 1) // 2
    alpha = (step % phase_steps) / phase_steps if phase % 2 else 1.0
    return level, alpha


def fade_reals(x: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
    """The real images D sees at (``level``, ``alpha``), as progressive_growing_of_gans'
    ``process_reals`` makes them: box-filtered to the level's resolution (its mipmaps);
    during a fade-in (``alpha`` < 1) blended with their 2x box-down, nearest-up version,
    ``lerp(down_up(x), x, alpha)``, the alpha G's output is blended with; then brought back
    to the full size by nearest up-sampling, like G's images."""
    size, res = x.shape[-1], 4 * 2**level
    if size != res:
        x = F.adaptive_avg_pool2d(x, res)
    if level > 0 and alpha < 1.0:
        coarse = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest")
        x = torch.lerp(coarse, x, alpha)
    if size != res:
        x = F.interpolate(x, size=(size, size), mode="nearest")
    return x


def _levels(image_size: int) -> int:
    return max(0, int(math.log2(max(image_size, 1))) - 2)


def _pixel_norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class _Growing(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("level", torch.zeros((), dtype=torch.long))
        self.register_buffer("alpha", torch.ones(()))

    def stage(self) -> tuple[int, float]:
        return int(self.level), float(self.alpha)


def _block(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for conv in convs:
        x = _act(conv(x))
    return x


class ProGenerator(_Growing):
    def __init__(
        self, z_dim: int, image_size: int, channels: int, base: int, cap: int, depth: int = 2
    ):
        super().__init__()
        self.levels = int(math.log2(image_size)) - 2
        ch = widths(base, self.levels, cap)
        self.size, self.first_ch = image_size, ch[0]
        self.first_fc = EqualLinear(z_dim, ch[0] * 16)
        self.first_conv = EqualConv2d(ch[0], ch[0], 3)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualConv2d(a, b, 3)] + [EqualConv2d(b, b, 3) for _ in range(depth - 1)])
            for a, b in zip(ch[:-1], ch[1:], strict=True)
        )
        self.to_rgb = nn.ModuleList(EqualConv2d(c, channels, 1) for c in ch)

    def grow(self, z: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        x = _pixel_norm(_act(self.first_fc(_pixel_norm(z)).reshape(-1, self.first_ch, 4, 4)))
        x = _pixel_norm(_act(self.first_conv(x)))
        prev = x
        for block in self.blocks[:level]:
            prev = x
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            for conv in block:
                x = _pixel_norm(_act(conv(x)))
        rgb = self.to_rgb[level](x)
        if level > 0 and alpha < 1.0:
            old = F.interpolate(self.to_rgb[level - 1](prev), scale_factor=2.0, mode="nearest")
            rgb = torch.lerp(old, rgb, alpha)
        if rgb.shape[-1] != self.size:
            rgb = F.interpolate(rgb, size=(self.size, self.size), mode="nearest")
        return torch.tanh(rgb)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.grow(z, *self.stage())


class ProDiscriminator(_Growing):
    def __init__(self, image_size: int, channels: int, base: int, cap: int, depth: int = 2):
        super().__init__()
        self.levels = int(math.log2(image_size)) - 2
        ch = widths(base, self.levels, cap)
        self.size = image_size
        self.from_rgb = nn.ModuleList(EqualConv2d(channels, c, 1) for c in ch)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualConv2d(b, b, 3) for _ in range(depth - 1)] + [EqualConv2d(b, a, 3)])
            for a, b in zip(ch[:-1], ch[1:], strict=True)
        )
        self.stddev = MinibatchStd()
        self.conv = EqualConv2d(ch[0] + 1, ch[0], 3)
        self.fc = EqualLinear(ch[0] * 16, ch[0])
        self.out = EqualLinear(ch[0], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level, alpha = self.stage()
        res = 4 * 2**level
        if x.shape[-1] != res:
            x = F.adaptive_avg_pool2d(x, res)
        h = _act(self.from_rgb[level](x))
        if level > 0:
            h = F.avg_pool2d(_block(self.blocks[level - 1], h), 2)
            if alpha < 1.0:
                h = torch.lerp(_act(self.from_rgb[level - 1](F.avg_pool2d(x, 2))), h, alpha)
        for block in reversed(self.blocks[: level - 1] if level > 1 else []):
            h = F.avg_pool2d(_block(block, h), 2)
        h = _act(self.conv(self.stddev(h)))
        return self.out(_act(self.fc(h.flatten(1)))).reshape(-1)


class _AtLevel(nn.Module):
    """The generator frozen at a level, for export (no data-dependent control flow)."""

    def __init__(self, g: ProGenerator):
        super().__init__()
        self.g = g
        self.level, self.alpha = g.stage()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.g.grow(z, self.level, self.alpha)


class PGGAN(Variant):
    Options = PGGANOptions
    tiny_options = {
        "latent_dim": 8,
        "g_width": 4,
        "d_width": 4,
        "max_width": 8,
        "phase_steps": 1,
        "d_steps": 1,
    }

    def check_data(self, opts: PGGANOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        require_power_of_two(self.name, info.image_size)

    def updates_per_step(self, opts: PGGANOptions) -> int:
        """``d_steps``: a step is one G update after ``d_steps`` D updates."""
        return opts.d_steps

    def resolve_options(self, opts, info: DataInfo, device: str, steps: int):
        """Widths scaled with :func:`ganpipe.default_scale` (down to 8 channels at the full
        resolution; cap included); ``phase_steps`` from ``steps``: ``2 x levels`` growth
        phases, then four more at the full resolution (on the 32 px digits at about 420
        steps, confident share 0.35 with one, 0.75 with four). Below half scale the
        small-run recipe (bench/results/variant-quality-2026-12-04.md): two D steps per G
        step (three cost too much CPU time per G update, one lets G outrun D: FID 4.26
        with one, 1.90 with two), one 3x3 conv per growth block (``depth = 1``: 1.3x
        cheaper steps) and learning rates of 3e-3 (with the equalised learning rate a
        step of 1e-3 moves each weight by about 0.1% of its scale, too little for a few
        hundred steps: on the digits in 3 CPU-minutes, over seeds 0-2, confident share
        0.31-0.53 with the paper's nets and rates, 0.59-0.74 with these)."""
        scale = default_scale(info, device)
        phases = 2 * _levels(info.image_size) + 4
        small = (
            {"d_steps": 2, "depth": 1, "lr_g": 3e-3, "lr_d": 3e-3}
            if scale < SMALL_RUN_SCALE
            else {}
        )
        sizes = scaled_defaults(PGGANOptions, scale, g_width=8, d_width=8, max_width=64)
        return fill_unset(opts, {**sizes, "phase_steps": max(1, steps // phases), **small})

    def schedule_problems(self, opts, info: DataInfo, steps: int) -> dict[str, str]:
        levels = _levels(info.image_size)
        phases = 2 * levels + 1
        if steps < phases:
            return {
                "phase_steps": f"train.steps = {steps} is too few for pggan at "
                f"{info.image_size} px: it grows through {phases} phases of at least "
                f"one step; raise train.steps to {phases} or more"
            }
        if opts.phase_steps * 2 * levels >= steps:
            level, _ = schedule(steps - 1, opts.phase_steps, levels)
            return {
                "phase_steps": f"{opts.phase_steps} steps per phase x {2 * levels} "
                f"growth phases do not fit in train.steps = {steps}: training would end "
                f"at {4 * 2**level} px, not {info.image_size} px; use at most "
                f"{max(1, steps // phases)} (or leave it unset)"
            }
        return {}

    def build(self, opts: PGGANOptions, info: DataInfo):
        self.check_data(opts, info)
        return {
            "G": ProGenerator(
                opts.latent_dim,
                info.image_size,
                info.channels,
                opts.g_width,
                opts.max_width,
                opts.depth,
            ),
            "D": ProDiscriminator(
                info.image_size, info.channels, opts.d_width, opts.max_width, opts.depth
            ),
        }

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D, opts, aug = ctx.nets["G"], ctx.nets["D"], ctx.opts, ctx.augment
        # the schedule counts steps (G updates), not train_step calls
        level, alpha = schedule(ctx.step // opts.d_steps, opts.phase_steps, G.levels)
        for net in (G, D):
            net.level.fill_(level)
            net.alpha.fill_(alpha)
        real = fade_reals(batch.images, level, alpha)  # faded like the fakes
        n = real.shape[0]
        (z,) = self.make_inputs(opts, ctx.info, n, ctx.device)
        g_turn = (ctx.step + 1) % opts.d_steps == 0
        with torch.set_grad_enabled(g_turn):  # G's graph only where G is updated
            fake = G(z)
        d_real, d_fake = D(aug(real)), D(aug(fake.detach()))
        t = torch.rand(n, 1, 1, 1, device=real.device)
        mix = (t * real + (1 - t) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(aug(mix)).sum(), mix, create_graph=True)
        gp = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
        d_loss = (
            d_fake.mean() - d_real.mean() + opts.gp_lambda * gp + opts.drift * d_real.pow(2).mean()
        )
        ctx.update("D", d_loss)
        out = {
            "d_loss": d_loss.detach(),
            "gp": gp.detach(),
            "level": torch.tensor(float(level)),
            "alpha": torch.tensor(alpha),
        }
        if g_turn:
            g_loss = -D(aug(fake)).mean()
            ctx.update("G", g_loss)
            out["g_loss"] = g_loss.detach()
        return out

    def export_spec(self, nets, opts, info: DataInfo) -> ExportSpec:
        spec = super().export_spec(nets, opts, info)
        spec.module = _AtLevel(spec.module).eval()
        spec.metadata = {
            **spec.metadata,
            "resolution": 4 * 2**spec.module.level,
            "truncation": "none",  # z is pixel-normalised: truncating it does nothing
        }
        return spec
