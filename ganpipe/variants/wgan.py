"""Wasserstein GAN: a critic without sigmoid trained on ``mean(D(fake)) - mean(D(real))``
(the seed pseudo-code), with gradient penalty (Gulrajani et al. 2017, ``wgan-gp``) or
weight clipping (Arjovsky et al. 2017, ``clip = 0.01``). The critic takes ``n_critic``
steps, each on a fresh batch, per generator step."""

from __future__ import annotations

import torch
from pydantic import Field

from ganpipe import (
    SMALL_RUN_SCALE,
    Batch,
    DataInfo,
    GANOptions,
    StepContext,
    Variant,
    default_scale,
    fill_unset,
)
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator, check_dcgan_size


class WGANOptions(GANOptions):
    lr_g: float = Field(1e-4, gt=0)
    lr_d: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)
    max_width: int = Field(512, ge=1)
    n_critic: int = Field(
        5, ge=1, description="critic steps per generator step; unset: 2 below half scale"
    )
    gp_lambda: float = Field(10.0, ge=0, description="gradient-penalty weight")
    clip: float | None = Field(None, gt=0, description="weight clipping instead of GP")


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates of real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


class WGANGP(Variant):
    name = "wgan-gp"
    channels_last_on_cpu = True  # bench/cpu_speed.py: faster on the CPU
    Options = WGANOptions
    tiny_options = {"latent_dim": 8, "g_width": 4, "d_width": 4, "n_critic": 2}

    def check_data(self, opts: WGANOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        check_dcgan_size(self.name, info.image_size)

    def resolve_options(self, opts, info: DataInfo, device: str, steps: int):
        """Widths as the base class scales them; below half scale (small CPU runs) 2 critic
        steps per G update instead of 5, at 2e-4 with betas (0.5, 0.9) (the WGAN-GP
        paper's MNIST settings, at twice its rate): each critic step with its gradient
        penalty costs about a DCGAN step, and 5 of them leave a CPU-minute ~200 G
        updates."""
        opts = super().resolve_options(opts, info, device, steps)
        if default_scale(info, device) >= SMALL_RUN_SCALE:
            return opts
        return fill_unset(opts, {"n_critic": 2, "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.9)})

    def updates_per_step(self, opts: WGANOptions) -> int:
        """``n_critic``: a step is one G update after ``n_critic`` critic updates."""
        return opts.n_critic

    def build(self, opts: WGANOptions, info: DataInfo):
        return {
            "G": DCGANGenerator(
                opts.latent_dim, info.image_size, info.channels, opts.g_width, opts.max_width
            ),
            "D": DCGANDiscriminator(
                info.image_size, info.channels, opts.d_width, opts.max_width, batch_norm=False
            ),
        }

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D, opts = ctx.nets["G"], ctx.nets["D"], ctx.opts
        real = batch.images
        (z,) = self.make_inputs(opts, ctx.info, real.shape[0], ctx.device)
        fake = G(z)
        aug = ctx.augment
        distance = D(aug(real)).mean() - D(aug(fake.detach())).mean()
        d_loss = -distance
        out = {"wasserstein": distance.detach()}
        if opts.clip is None and opts.gp_lambda > 0:
            gp = gradient_penalty(D, real, fake.detach())
            d_loss = d_loss + opts.gp_lambda * gp
            out["gp"] = gp.detach()
        ctx.update("D", d_loss)
        if opts.clip is not None:
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-opts.clip, opts.clip)
        out["d_loss"] = d_loss.detach()
        if (ctx.step + 1) % opts.n_critic == 0:
            g_loss = -D(aug(fake)).mean()
            ctx.update("G", g_loss)
            out["g_loss"] = g_loss.detach()
        return out
