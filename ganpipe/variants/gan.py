"""The original GAN (Goodfellow et al. 2014) as in the seed documents: MLP generator and
discriminator on flattened images, non-saturating BCE loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganpipe import Batch, DataInfo, GANOptions, StepContext, Variant


class GANOpts(GANOptions):
    hidden: list[int] = Field(
        [256, 512, 1024], min_length=1, description="hidden widths of G (D uses them reversed)"
    )


class MLPGenerator(nn.Module):
    def __init__(self, latent_dim: int, hidden: list[int], info: DataInfo, extra: int = 0):
        super().__init__()
        self.shape = (info.channels, info.image_size, info.image_size)
        dims = [latent_dim + extra, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2, True)]
        layers += [nn.Linear(dims[-1], self.shape[0] * self.shape[1] * self.shape[2]), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, hidden: list[int], info: DataInfo, extra: int = 0):
        super().__init__()
        dims = [info.channels * info.image_size**2 + extra, *reversed(hidden)]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Linear(dims[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).reshape(-1)


def bce_step(ctx: StepContext, real: torch.Tensor, d_real, d_fake_detached, d_fake):
    """Non-saturating GAN losses given the three D evaluations (callables)."""
    n = real.shape[0]
    ones, zeros = torch.ones(n, device=real.device), torch.zeros(n, device=real.device)
    d_loss = F.binary_cross_entropy_with_logits(
        d_real(), ones
    ) + F.binary_cross_entropy_with_logits(d_fake_detached(), zeros)
    ctx.update("D", d_loss)
    g_loss = F.binary_cross_entropy_with_logits(d_fake(), ones)
    ctx.update("G", g_loss)
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


class VanillaGAN(Variant):
    name = "gan"
    Options = GANOpts
    tiny_options = {"latent_dim": 8, "hidden": [16]}

    def build(self, opts: GANOpts, info: DataInfo):
        return {
            "G": MLPGenerator(opts.latent_dim, opts.hidden, info),
            "D": MLPDiscriminator(opts.hidden, info),
        }

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D = ctx.nets["G"], ctx.nets["D"]
        (z,) = self.make_inputs(ctx.opts, ctx.info, batch.images.shape[0], ctx.device)
        fake = G(z)
        aug = ctx.augment
        return bce_step(
            ctx,
            batch.images,
            lambda: D(aug(batch.images)),
            lambda: D(aug(fake.detach())),
            lambda: D(aug(fake)),
        )
