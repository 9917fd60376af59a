"""Compact BigGAN (Brock et al. 2018) for 16-64 px: class-conditional generator of residual
up-blocks with conditional batch norm (gains and biases from a shared class embedding
concatenated with a chunk of z: the hierarchical latent), a projection discriminator
(Miyato & Koyama 2018) of residual down-blocks, spectral norm on every conv and linear of
both nets, hinge loss, TTUR learning rates and ``d_steps`` D steps per G step, a
self-attention block (SAGAN) in both nets at ``attention`` px, and optional orthogonal
regularisation of G's weights (``ortho_reg``). The truncation trick is a generation
option for every model with Gaussian noise (``ganpipe generate --truncation``).

Labels are the data's subfolders; the exported model takes ``z`` and ``label``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganpipe import (
    SMALL_RUN_SCALE,
    Batch,
    ConfigError,
    DataInfo,
    GANOptions,
    StepContext,
    Variant,
    default_scale,
    fill_unset,
    scaled_defaults,
)
from ganpipe.nn import DownBlock, SelfAttention, UpBlock, sn, sn_conv, sn_linear


class BigGANOptions(GANOptions):
    latent_dim: int = Field(120, ge=1, le=4096)
    embed_dim: int = Field(128, ge=1, description="size of G's shared class embedding")
    hierarchical: bool = Field(
        True,
        description="split z over the blocks (hierarchical "
        "latent); false: z feeds the first layer only",
    )
    max_width: int = Field(512, ge=1, description="cap on channels per block")
    lr_g: float = Field(1e-4, gt=0)
    lr_d: float = Field(4e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.999)
    d_steps: int = Field(2, ge=1, description="D steps per G step (each on a fresh batch)")
    attention: int | None = Field(
        None,
        ge=0,
        description="resolution (px) of the "
        "self-attention block in G and D: a power of two from 8 "
        "to image_size / 2; 0 = none; default: image_size / 2, "
        "at most 32",
    )
    ortho_reg: float = Field(
        0.0,
        ge=0,
        description="strength of the orthogonal regularisation of G's weights, as "
        "BigGAN-PyTorch's G_ortho (1e-4 in BigGAN): adds ortho_reg * 2 (W W^T * (1 - I)) W "
        "to each weight's gradient; 0 = off. Earlier versions pulled twice as hard for the "
        "same value: double an old config's value to keep its strength",
    )


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-mean(D(fake))."""
    return -fake_logits.mean()


def _levels(image_size: int) -> int:
    n = int(math.log2(image_size)) if image_size > 0 else 0
    if 2**n != image_size or image_size < 16:
        raise ValueError(
            f"biggan needs an image_size that is a power of two >= 16, got {image_size}"
        )
    return n - 2  # 2x up-samplings from 4x4


def attention_resolution(opts: BigGANOptions, image_size: int) -> int:
    """Where the self-attention block goes (0: nowhere); raises ValueError if impossible."""
    if opts.attention is None:
        return min(32, image_size // 2)
    r = opts.attention
    if r and (r & (r - 1) or not 8 <= r <= image_size // 2):
        raise ValueError(
            f"model.attention = {r} is not a power of two from 8 to "
            f"{image_size // 2} (image_size / 2); use one of those, or 0 for none"
        )
    return r


def orthogonal_penalty(net: nn.Module, skip: tuple[nn.Parameter, ...] = ()) -> torch.Tensor:
    """BigGAN's orthogonal regularisation: sum over G's weight matrices W (conv kernels
    flattened per output channel) of ``||W W^T * (1 - I)||_F^2``: the filters are pushed
    towards orthogonality without constraining their norms. Its gradient is
    ``4 (W W^T * (1 - I)) W``; BigGAN-PyTorch's ``ortho(strength)`` adds ``strength *
    2 (W W^T * (1 - I)) W``, so :func:`ortho_loss` weighs it by ``strength / 2``."""
    skipped = {id(p) for p in skip}
    total = None
    for param in net.parameters():
        if param.ndim < 2 or id(param) in skipped:
            continue
        w = param.flatten(1)
        gram = w @ w.t()
        term = (gram * (1.0 - torch.eye(gram.shape[0], device=w.device))).pow(2).sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def ortho_loss(G: nn.Module, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss term, penalty): the term whose gradient is BigGAN-PyTorch's ``ortho(G,
    strength, blacklist=G.shared)`` - ``strength * 2 (W W^T * (1 - I)) W`` on every weight
    of G with two or more axes but the shared class embedding - and the penalty
    (:func:`orthogonal_penalty`, which the log shows)."""
    penalty = orthogonal_penalty(G, tuple(G.shared.parameters()))
    return 0.5 * strength * penalty, penalty


def latent_chunks(latent_dim: int, levels: int, hierarchical: bool) -> list[int]:
    """Sizes of the z chunks: one for the first layer, then one per up-block."""
    if not hierarchical:
        return [latent_dim]
    n = levels + 1
    base = latent_dim // n
    return [latent_dim - base * (n - 1)] + [base] * (n - 1)


class BigGANGenerator(nn.Module):
    """(z [B, latent], label int64 [B]) -> image [B, C, S, S] in [-1, 1]."""

    def __init__(self, opts: BigGANOptions, info: DataInfo):
        super().__init__()
        levels = _levels(info.image_size)
        widths = [min(opts.max_width, opts.g_width * 2 ** (levels - i)) for i in range(levels + 1)]
        self.chunks = latent_chunks(opts.latent_dim, levels, opts.hierarchical)
        cond = (
            [opts.embed_dim + c for c in self.chunks[1:]]
            if opts.hierarchical
            else [opts.embed_dim] * levels
        )
        self.width0 = widths[0]
        self.shared = nn.Embedding(info.num_classes, opts.embed_dim)
        nn.init.normal_(self.shared.weight, 0.0, 0.02)
        self.linear = sn_linear(self.chunks[0], widths[0] * 16)
        self.blocks = nn.ModuleList(
            UpBlock(a, b, c) for a, b, c in zip(widths[:-1], widths[1:], cond, strict=True)
        )
        res = attention_resolution(opts, info.image_size)
        # block i outputs 8 * 2**i px
        self.attn_at = int(math.log2(res)) - 3 if res else -1
        self.attention = SelfAttention(widths[self.attn_at + 1]) if res else None
        self.out_bn = nn.BatchNorm2d(widths[-1])
        self.out_conv = sn_conv(widths[-1], info.channels, 3)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        y = self.shared(label)
        if len(self.chunks) > 1:
            zs = torch.split(z, self.chunks, dim=1)
            conds = [torch.cat([y, zi], dim=1) for zi in zs[1:]]
            z0 = zs[0]
        else:
            conds, z0 = [y] * len(self.blocks), z
        h = self.linear(z0).reshape(-1, self.width0, 4, 4)
        for i, (block, c) in enumerate(zip(self.blocks, conds, strict=True)):
            h = block(h, c)
            if i == self.attn_at:
                h = self.attention(h)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class ProjectionDiscriminator(nn.Module):
    """(image, label) -> logit [B]: residual down-blocks, ReLU, global sum pooling, then
    ``linear(h) + <embed(label), h>`` (projection)."""

    def __init__(self, opts: BigGANOptions, info: DataInfo):
        super().__init__()
        levels = _levels(info.image_size)
        widths = [min(opts.max_width, opts.d_width * 2**i) for i in range(levels + 1)]
        blocks = [DownBlock(info.channels, widths[0], preactivation=False)]
        blocks += [
            DownBlock(a, b) for a, b in zip(widths[: levels - 1], widths[1:levels], strict=True)
        ]
        blocks.append(DownBlock(widths[levels - 1], widths[levels], downsample=False))
        res = attention_resolution(opts, info.image_size)
        if res:  # after the block that outputs res px: block k outputs size / 2**(k+1)
            k = int(math.log2(info.image_size // res)) - 1
            blocks.insert(k + 1, SelfAttention(widths[k]))
        self.blocks = nn.Sequential(*blocks)  # size -> 4x4
        self.linear = sn_linear(widths[-1], 1)
        self.embed = sn(nn.Embedding(info.num_classes, widths[-1]))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.linear(h).reshape(-1) + (self.embed(label) * h).sum(dim=1)


class BigGAN(Variant):
    channels_last_on_cpu = True  # bench/cpu_speed.py: faster on the CPU
    Options = BigGANOptions
    conditional = True
    tiny_options = {"latent_dim": 8, "g_width": 4, "d_width": 4, "embed_dim": 4, "d_steps": 1}
    test_image_size = 16

    def check_data(self, opts: BigGANOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        try:
            levels = _levels(info.image_size)
        except ValueError as exc:
            raise ConfigError(f"{exc}; set data.image_size to 16, 32, 64, ...") from None
        try:
            attention_resolution(opts, info.image_size)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if opts.hierarchical and opts.latent_dim < levels + 1:
            raise ConfigError(
                f"model.latent_dim = {opts.latent_dim} is too small for the "
                f"hierarchical latent at {info.image_size} px: it needs one "
                f"chunk per block, at least {levels + 1}"
            )

    def resolve_options(self, opts, info: DataInfo, device: str, steps: int):
        """Scaled with :func:`ganpipe.default_scale`: the widths, their cap and the class
        embedding; below half scale no self-attention, one D step per G step and one
        learning rate of 1e-3 for both nets. The paper's TTUR rates (1e-4 / 4e-4) move G
        too little in a few hundred steps: on the 32 px digits in 3 CPU-minutes they gave
        digits that ignore the label (accuracy 0.09 in 457 steps), 1e-3 gave 0.99 in 300
        steps (bench/results/variant-quality-2026-12-03.md)."""
        scale = default_scale(info, device)
        small = (
            {"attention": 0, "d_steps": 1, "lr_g": 1e-3, "lr_d": 1e-3}
            if scale < SMALL_RUN_SCALE
            else {}
        )
        sizes = scaled_defaults(
            BigGANOptions, scale, g_width=16, d_width=16, max_width=64, embed_dim=32
        )
        return fill_unset(opts, {**sizes, **small})

    def updates_per_step(self, opts: BigGANOptions) -> int:
        """``d_steps``: a step is one G update after ``d_steps`` D updates."""
        return opts.d_steps

    def build(self, opts: BigGANOptions, info: DataInfo):
        self.check_data(opts, info)
        return {"G": BigGANGenerator(opts, info), "D": ProjectionDiscriminator(opts, info)}

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D, opts = ctx.nets["G"], ctx.nets["D"], ctx.opts
        real, labels = batch.images, batch.labels
        z, _ = self.make_inputs(opts, ctx.info, real.shape[0], ctx.device)
        fake = G(z, labels)
        aug = ctx.augment
        d_loss = hinge_d_loss(D(aug(real), labels), D(aug(fake.detach()), labels))
        ctx.update("D", d_loss)
        out = {"d_loss": d_loss.detach()}
        if (ctx.step + 1) % opts.d_steps == 0:
            g_loss = hinge_g_loss(D(aug(fake), labels))
            loss = g_loss
            if opts.ortho_reg > 0:
                term, ortho = ortho_loss(G, opts.ortho_reg)
                loss = g_loss + term
                out["ortho"] = ortho.detach()
            ctx.update("G", loss)
            out["g_loss"] = g_loss.detach()
        return out
