"""The old-variant variant: ganpipe's DCGAN generator and discriminator trained with the hinge
loss (Lim & Ye 2017; Miyato et al. 2018)::

    D minimises  E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]
    G minimises  -E[D(G(z))]

Change the nets in :meth:`OldVariant.build` and the losses in :meth:`OldVariant.train_step`; the
shared loop of ganpipe does the rest (devices, AMP, EMA, checkpoints, samples, export).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from ganpipe import Batch, DataInfo, GANOptions, StepContext, Variant
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator
from pydantic import Field


def discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """``-mean(D(G(z)))``."""
    return -fake_scores.mean()


class OldVariantOptions(GANOptions):
    """The keys of ``[model]`` (besides ``variant``); unknown keys are errors."""

    max_width: int = Field(512, ge=1, description="cap on channels per layer")


class OldVariant(Variant):
    name = "old-variant"
    task = "generate"
    description = "hinge-loss GAN on the DCGAN nets (ganpipe-old-variant)"
    Options = OldVariantOptions
    #: options that make the nets tiny, for ganpipe.testing (seconds on a CPU)
    tiny_options = {"latent_dim": 8, "g_width": 4, "d_width": 4}

    def build(self, opts: OldVariantOptions, info: DataInfo):
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
        d_loss = discriminator_loss(D(aug(real)), D(aug(fake.detach())))
        ctx.update("D", d_loss)
        g_loss = generator_loss(D(aug(fake)))
        ctx.update("G", g_loss)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
