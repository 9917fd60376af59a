"""DCGAN: transposed-convolution generator, strided-convolution discriminator with batch
norm and LeakyReLU, non-saturating BCE loss (Radford et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from ganpipe import Batch, DataInfo, GANOptions, StepContext, Variant
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator, check_dcgan_size


class DCGANOptions(GANOptions):
    max_width: int = Field(512, ge=1, description="cap on channels per layer")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=0.5, description="real targets are 1 - label_smoothing"
    )


class DCGAN(Variant):
    channels_last_on_cpu = True  # bench/cpu_speed.py: faster on the CPU
    Options = DCGANOptions
    tiny_options = {"latent_dim": 8, "g_width": 4, "d_width": 4}

    def check_data(self, opts: DCGANOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        check_dcgan_size(self.name, info.image_size)

    def build(self, opts: DCGANOptions, info: DataInfo):
        return {
            "G": DCGANGenerator(
                opts.latent_dim, info.image_size, info.channels, opts.g_width, opts.max_width
            ),
            "D": DCGANDiscriminator(info.image_size, info.channels, opts.d_width, opts.max_width),
        }

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D, opts = ctx.nets["G"], ctx.nets["D"], ctx.opts
        real = batch.images
        n = real.shape[0]
        (z,) = self.make_inputs(opts, ctx.info, n, ctx.device)
        fake = G(z)
        ones = torch.full((n,), 1.0 - opts.label_smoothing, device=real.device)
        zeros = torch.zeros(n, device=real.device)
        aug = ctx.augment
        d_loss = F.binary_cross_entropy_with_logits(
            D(aug(real)), ones
        ) + F.binary_cross_entropy_with_logits(D(aug(fake.detach())), zeros)
        ctx.update("D", d_loss)
        g_loss = F.binary_cross_entropy_with_logits(D(aug(fake)), torch.ones(n, device=real.device))
        ctx.update("G", g_loss)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
