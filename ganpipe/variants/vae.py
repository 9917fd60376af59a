"""Convolutional VAE (Kingma & Welling 2014): the non-adversarial baseline. The decoder is
the DCGAN generator, the encoder a DCGAN-style conv net; ``generate`` samples z ~ N(0, I)
through the decoder like any other variant."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganpipe import Batch, DataInfo, Options, StepContext, Variant
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator, check_dcgan_size


class VAEOptions(Options):
    latent_dim: int = Field(64, ge=1, le=4096, description="size of the latent code z")
    g_width: int = Field(64, ge=1, description="decoder width")
    d_width: int = Field(64, ge=1, description="encoder width")
    max_width: int = Field(512, ge=1, description="cap on channels per layer")
    lr: float = Field(1e-3, gt=0, description="learning rate (Adam)")
    beta: float = Field(1.0, ge=0, description="weight of the KL term (beta-VAE)")


class Encoder(nn.Module):
    def __init__(self, opts: VAEOptions, info: DataInfo):
        super().__init__()
        conv = DCGANDiscriminator(info.image_size, info.channels, opts.d_width, opts.max_width)
        self.features = conv.features
        width = conv.head.in_channels
        self.head = nn.Conv2d(width, 2 * opts.latent_dim, 4, 1, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.features(x)).flatten(1).chunk(2, dim=1)
        return mu, logvar.clamp(-30, 20)


class VAE(Variant):
    channels_last_on_cpu = True  # bench/cpu_speed.py: faster on the CPU
    Options = VAEOptions
    tiny_options = {"latent_dim": 8, "g_width": 4, "d_width": 4}

    def check_data(self, opts: VAEOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        check_dcgan_size(self.name, info.image_size)

    def build(self, opts: VAEOptions, info: DataInfo):
        return {
            "G": DCGANGenerator(
                opts.latent_dim, info.image_size, info.channels, opts.g_width, opts.max_width
            ),
            "E": Encoder(opts, info),
        }

    def optimizers(self, nets, opts: VAEOptions):
        params = [*nets["G"].parameters(), *nets["E"].parameters()]
        return {"VAE": torch.optim.Adam(params, lr=opts.lr)}

    def train_step(self, ctx: StepContext, batch: Batch):
        G, E = ctx.nets["G"], ctx.nets["E"]
        x = batch.images
        mu, logvar = E(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = F.mse_loss(G(z), x, reduction="sum") / x.shape[0]
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / x.shape[0]
        loss = recon + ctx.opts.beta * kl
        ctx.update("VAE", loss)
        return {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}
