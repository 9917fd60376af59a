"""The DCGAN generator and discriminator (Radford et al. 2015), sized by image size.

Shared so that variants with other losses (LSGAN, WGAN, ...) can reuse the nets.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganpipe.errors import ConfigError


def _levels(image_size: int) -> int:
    n = int(math.log2(image_size))
    if 2**n != image_size or image_size < 8:
        raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
    return n - 2  # number of 2x up-samplings from 4x4


def check_dcgan_size(variant: str, image_size: int) -> None:
    """The size rule of the DCGAN nets (doublings from 4x4): checked when the pipeline
    loads, by every variant built on them (call it from ``check_data``), rather than
    by the nets at build time."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ConfigError(
            f"data.image_size = {image_size}: {variant} needs a power of two >= 8 "
            f"(8, 16, 32, 64, ...)"
        )


def init_weights(module: nn.Module) -> None:
    """DCGAN init: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z [B, latent] -> image [B, C, S, S] in [-1, 1]."""

    def __init__(
        self,
        latent_dim: int,
        image_size: int,
        channels: int,
        width: int = 64,
        max_width: int = 512,
        extra_inputs: int = 0,
    ):
        super().__init__()
        levels = _levels(image_size)
        widths = [min(max_width, width * 2**i) for i in range(levels)][::-1]
        self.latent_dim = latent_dim
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + extra_inputs, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    """image [B, C, S, S] -> one logit per image [B]."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        width: int = 64,
        max_width: int = 512,
        batch_norm: bool = True,
        extra_channels: int = 0,
    ):
        super().__init__()
        levels = _levels(image_size)
        widths = [min(max_width, width * 2**i) for i in range(levels)]
        layers: list[nn.Module] = [
            nn.Conv2d(channels + extra_channels, widths[0], 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.LeakyReLU(0.2, True))
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, 4, 1, 0)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).reshape(-1)
