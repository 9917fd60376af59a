"""Conditional GAN (Mirza & Osindero 2014) on DCGAN nets: the class (one-hot) is
concatenated to G's latent and given to D as constant planes. Labels are the data's
subfolders; the exported model takes ``label`` as a second input."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ganpipe import Batch, DataInfo, GANOptions, StepContext, Variant
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator, check_dcgan_size
from ganpipe.variants.gan import bce_step


class CGANOptions(GANOptions):
    max_width: int = Field(512, ge=1, description="cap on channels per layer")


class CondGenerator(nn.Module):
    def __init__(self, opts: CGANOptions, info: DataInfo):
        super().__init__()
        self.register_buffer("eye", torch.eye(info.num_classes), persistent=False)
        self.net = DCGANGenerator(
            opts.latent_dim,
            info.image_size,
            info.channels,
            opts.g_width,
            opts.max_width,
            extra_inputs=info.num_classes,
        )

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, self.eye[label]], dim=1))


class CondDiscriminator(nn.Module):
    def __init__(self, opts: CGANOptions, info: DataInfo):
        super().__init__()
        self.register_buffer("eye", torch.eye(info.num_classes), persistent=False)
        self.net = DCGANDiscriminator(
            info.image_size,
            info.channels,
            opts.d_width,
            opts.max_width,
            extra_channels=info.num_classes,
        )

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        planes = self.eye[label][:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        return self.net(torch.cat([x, planes], dim=1))


class CGAN(Variant):
    channels_last_on_cpu = True  # bench/cpu_speed.py: faster on the CPU
    Options = CGANOptions
    conditional = True
    tiny_options = {"latent_dim": 8, "g_width": 4, "d_width": 4}

    def check_data(self, opts: CGANOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        check_dcgan_size(self.name, info.image_size)

    def build(self, opts: CGANOptions, info: DataInfo):
        return {"G": CondGenerator(opts, info), "D": CondDiscriminator(opts, info)}

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D = ctx.nets["G"], ctx.nets["D"]
        real, labels = batch.images, batch.labels
        z, _ = self.make_inputs(ctx.opts, ctx.info, real.shape[0], ctx.device)
        fake = G(z, labels)
        aug = ctx.augment
        return bce_step(
            ctx,
            real,
            lambda: D(aug(real), labels),
            lambda: D(aug(fake.detach()), labels),
            lambda: D(aug(fake), labels),
        )
