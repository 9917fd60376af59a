"""Differentiable augmentation of D's inputs (Zhao et al. 2020, "DiffAugment").

The same random transforms are applied to real and generated images right before the
discriminator, and gradients flow through them to the generator, which lets GANs train on
small datasets without the discriminator memorising them. Randomness comes from torch's
global RNG, which checkpoints save and restore, so resume stays exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ganpipe.errors import ConfigError


def _rand(x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, dtype=x.dtype)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_rand(x, 1, 1, 1) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift by a whole number of pixels drawn uniformly from ``[-s, s]`` per axis and per
    image, ``s = round(ratio * size)`` (4 on 32 px), filling with zeros, as DiffAugment's
    ``rand_translation``: output pixel ``(i, j)`` is input pixel ``(i + ty, j + tx)``.
    Differentiable (an index into the zero-padded batch)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).reshape(1, h, 1) + ty + sh
    cols = torch.arange(w, device=x.device).reshape(1, 1, w) + tx + sw
    padded = F.pad(x, [sw, sw, sh, sh])
    batch = torch.arange(n, device=x.device).reshape(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random ``round(ratio * size)`` square per image (16x16 on 32 px), as
    DiffAugment's ``rand_cutout``: the square covers ``[o - c // 2, o - c // 2 + c)`` for a
    side ``c`` and an offset ``o`` drawn uniformly from ``[0, size + 1 - c % 2)`` (rows and
    columns each), clipped at the border."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).reshape(1, h, 1) - (oy - ch // 2)
    xs = torch.arange(w, device=x.device).reshape(1, 1, w) - (ox - cw // 2)
    inside = (ys >= 0) & (ys < ch) & (xs >= 0) & (xs < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {
    "color": [brightness, saturation, contrast],
    "translation": [translation],
    "cutout": [cutout],
}


class DiffAugment:
    """Callable applying the policies in order; an empty policy is the identity."""

    def __init__(self, policy: Sequence[str] = ()):
        unknown = [p for p in policy if p not in POLICIES]
        if unknown:
            raise ConfigError(
                f"unknown DiffAugment policy {unknown[0]!r}; use any of {', '.join(POLICIES)}"
            )
        self.policy = tuple(policy)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.policy:
            for fn in POLICIES[name]:
                x = fn(x)
        return x.contiguous() if self.policy else x
