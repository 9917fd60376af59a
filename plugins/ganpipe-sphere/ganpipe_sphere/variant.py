"""dcgan-sphere: the DCGAN nets and losses, with latent codes drawn uniformly on the
hypersphere of radius ``sqrt(latent_dim)`` (the input kind ``sphere`` this plugin
registers) instead of from a normal distribution. The exported model's card says so in
its ``sphere`` namespace (:class:`ganpipe_sphere.card.SphereFields`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from ganpipe import Batch, DataInfo, ExportSpec, GANOptions, InputSpec, StepContext, Variant
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator, check_dcgan_size
from pydantic import Field

from ganpipe_sphere.card import SphereFields


class SphereOptions(GANOptions):
    max_width: int = Field(512, ge=1, description="cap on channels per layer")


class DCGANSphere(Variant):
    # name, task and description: declared once, in ganpipe_sphere.plugin's register.lazy
    Options = SphereOptions
    tiny_options = {"latent_dim": 8, "g_width": 4, "d_width": 4}

    def check_data(self, opts: SphereOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        check_dcgan_size(self.name, info.image_size)

    def build(self, opts: SphereOptions, info: DataInfo):
        return {
            "G": DCGANGenerator(
                opts.latent_dim, info.image_size, info.channels, opts.g_width, opts.max_width
            ),
            "D": DCGANDiscriminator(info.image_size, info.channels, opts.d_width, opts.max_width),
        }

    def inputs(self, opts: SphereOptions, info: DataInfo) -> list[InputSpec]:
        # drawn by the kind's sampler: the default make_inputs in training, generate after
        return [InputSpec("z", "sphere", (opts.latent_dim,))]

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D, opts = ctx.nets["G"], ctx.nets["D"], ctx.opts
        real = batch.images
        n = real.shape[0]
        (z,) = self.make_inputs(opts, ctx.info, n, ctx.device)
        fake = G(z)
        ones, zeros = torch.ones(n, device=real.device), torch.zeros(n, device=real.device)
        aug = ctx.augment
        d_loss = F.binary_cross_entropy_with_logits(
            D(aug(real)), ones
        ) + F.binary_cross_entropy_with_logits(D(aug(fake.detach())), zeros)
        ctx.update("D", d_loss)
        g_loss = F.binary_cross_entropy_with_logits(D(aug(fake)), ones)
        ctx.update("G", g_loss)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def export_spec(self, nets, opts: SphereOptions, info: DataInfo) -> ExportSpec:
        spec = super().export_spec(nets, opts, info)
        fields = SphereFields(radius=math.sqrt(opts.latent_dim))
        spec.metadata["extensions"] = {"sphere": fields}
        return spec
