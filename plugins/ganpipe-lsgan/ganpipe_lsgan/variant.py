"""LSGAN: the DCGAN nets trained with least-squares losses (Mao et al. 2017).

With target values ``a`` (fake), ``b`` (real) and ``c`` (what G wants D to believe about
fakes), the discriminator minimises::

    0.5 * E[(D(x) - b)^2] + 0.5 * E[(D(G(z)) - a)^2]

and the generator minimises::

    0.5 * E[(D(G(z)) - c)^2]

``D`` outputs a raw score (no sigmoid). The defaults are the 0-1 coding of the paper
(a=0, b=1, c=1); a=-1, b=1, c=0 minimises the Pearson chi^2 divergence (b - c = 1,
b - a = 2).

Besides its losses each step logs ``d_real`` and ``d_fake``, moving averages of D's
scores on real and generated images (how close D is to its targets ``b`` and ``a``). The
averages are the variant's own state, kept in ``ctx.state`` so that checkpoints hold them
and a resumed run logs what an uninterrupted one would. The variant also recommends
``[train]`` values (``train_defaults``) that a pipeline gets where it sets none.
"""

from __future__ import annotations

import torch
from ganpipe import Batch, DataInfo, GANOptions, StepContext, Variant
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator, check_dcgan_size
from pydantic import Field, ValidationInfo, field_validator


def discriminator_loss(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, a: float = 0.0, b: float = 1.0
) -> torch.Tensor:
    """``0.5 * mean((D(x) - b)^2) + 0.5 * mean((D(G(z)) - a)^2)``."""
    return 0.5 * (real_scores - b).pow(2).mean() + 0.5 * (fake_scores - a).pow(2).mean()


def generator_loss(fake_scores: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """``0.5 * mean((D(G(z)) - c)^2)``."""
    return 0.5 * (fake_scores - c).pow(2).mean()


#: decay of the moving averages of D's scores (about the last 1 / (1 - decay) steps)
SCORE_DECAY = 0.9


def track_scores(state: dict, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Update the moving averages of D's mean scores on real and fake images kept in
    ``state`` (a tensor ``scores`` and a step count ``n``); returns them, bias-corrected
    (the first step gives the first scores exactly)."""
    now = torch.stack([real.detach().float().mean(), fake.detach().float().mean()])
    if "scores" not in state:
        state["scores"], state["n"] = torch.zeros_like(now), 0
    state["scores"].mul_(SCORE_DECAY).add_(now, alpha=1.0 - SCORE_DECAY)
    state["n"] += 1
    return state["scores"] / (1.0 - SCORE_DECAY ** state["n"])


class LSGANOptions(GANOptions):
    max_width: int = Field(512, ge=1, description="cap on channels per layer")
    a: float = Field(0.0, description="discriminator target for fake images")
    b: float = Field(1.0, description="discriminator target for real images")
    c: float = Field(1.0, description="generator's target for D on fake images")

    @field_validator("b")
    @classmethod
    def _b_differs_from_a(cls, b: float, info: ValidationInfo) -> float:
        a = info.data.get("a")
        if a is not None and a == b:
            raise ValueError(
                f"b must differ from a (both {b}); the discriminator would "
                f"have nothing to tell apart, e.g. use a = 0, b = 1"
            )
        return b


class LSGAN(Variant):
    # name, task and description: declared once, in ganpipe_lsgan.plugin's register.lazy
    channels_last_on_cpu = True  # bench/cpu_speed.py: faster on the CPU
    Options = LSGANOptions
    tiny_options = {"latent_dim": 8, "g_width": 4, "d_width": 4}
    #: sample grids every 250 steps: least-squares training can drift on short CPU runs, and
    #: the grids show when. (Not an EMA of G: on the digits at 900 steps the exported EMA
    #: scored 0.245 confident against the live G's pass of the 0.25 floor.)
    train_defaults = {"sample_every": 250}

    def check_data(self, opts: LSGANOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        check_dcgan_size(self.name, info.image_size)  # at load time, not in build

    def build(self, opts: LSGANOptions, info: DataInfo):
        return {
            "G": DCGANGenerator(
                opts.latent_dim, info.image_size, info.channels, opts.g_width, opts.max_width
            ),
            "D": DCGANDiscriminator(info.image_size, info.channels, opts.d_width, opts.max_width),
        }

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D, opts = ctx.nets["G"], ctx.nets["D"], ctx.opts
        real = batch.images
        (z,) = self.make_inputs(opts, ctx.info, real.shape[0], ctx.device)
        fake = G(z)
        aug = ctx.augment  # the run's DiffAugment policy (identity when off)
        real_scores, fake_scores = D(aug(real)), D(aug(fake.detach()))
        d_loss = discriminator_loss(real_scores, fake_scores, opts.a, opts.b)
        ctx.update("D", d_loss)
        g_loss = generator_loss(D(aug(fake)), opts.c)
        ctx.update("G", g_loss)
        d_real, d_fake = track_scores(ctx.state, real_scores, fake_scores)
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real,
            "d_fake": d_fake,
        }
