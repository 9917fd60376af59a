"""The original GAN (Goodfellow et al. 2014) as in the seed documents: MLP generator and
discriminator on flattened images, dropout in D, non-saturating BCE loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganpipe import (
    Batch,
    DataInfo,
    GANOptions,
    StepContext,
    Variant,
    default_scale,
    fill_unset,
    scaled_width,
)


class GANOpts(GANOptions):
    hidden: list[int] = Field(
        [256, 512, 1024],
        min_length=1,
        description="hidden widths of G (D uses them reversed); unset: scaled with "
        "default_scale, at least half of these",
    )
    dropout: float = Field(
        0.3,
        ge=0.0,
        lt=1.0,
        description="dropout after each hidden layer of D (Goodfellow et al. 2014 trained D "
        "with dropout): without it the MLP D memorises a small set and G collapses",
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
    def __init__(self, hidden: list[int], info: DataInfo, extra: int = 0, dropout: float = 0.0):
        super().__init__()
        dims = [info.channels * info.image_size**2 + extra, *reversed(hidden)]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            act = nn.LeakyReLU(0.2, True)  # the dropout shares its slot: same state-dict keys
            layers += [nn.Linear(a, b), nn.Sequential(act, nn.Dropout(dropout)) if dropout else act]
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
    Options = GANOpts
    tiny_options = {"latent_dim": 8, "hidden": [16]}

    def resolve_options(self, opts, info: DataInfo, device: str, steps: int):
        """``hidden`` scaled with :func:`ganpipe.default_scale`, to no less than half (a
        32 px grayscale CPU run: 128, 256, 512, four times fewer multiply-adds per step);
        ``g_width`` / ``d_width`` are not used by the MLPs and stay as they are."""
        scale = max(0.5, default_scale(info, device))
        default = GANOpts.model_fields["hidden"].default
        return fill_unset(opts, {"hidden": [scaled_width(h, scale, 16) for h in default]})

    def build(self, opts: GANOpts, info: DataInfo):
        return {
            "G": MLPGenerator(opts.latent_dim, opts.hidden, info),
            "D": MLPDiscriminator(opts.hidden, info, dropout=opts.dropout),
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
