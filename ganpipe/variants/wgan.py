"""Wasserstein GAN: a critic without sigmoid trained on ``mean(D(fake)) - mean(D(real))``
(the seed pseudo-code), with gradient penalty (Gulrajani et al. 2017, ``wgan-gp``: Adam) or
weight clipping (Arjovsky et al. 2017, ``clip = 0.01``: RMSprop at 5e-5, as the paper).
The critic takes ``n_critic`` steps, each on a fresh batch, per generator step.

With DiffAugment the critic compares augmented reals and fakes, so the penalty is taken on
interpolates of those very batches (as the DiffAugment authors' compare_gan code does)."""

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
    betas: tuple[float, float] = Field((0.0, 0.9), description="Adam's; unused with clip")
    max_width: int = Field(512, ge=1, description="cap on channels per layer")
    n_critic: int = Field(
        5,
        ge=1,
        description="critic steps per generator step; unset: 2 below half scale (with the "
        "penalty; clip keeps 5)",
    )
    gp_lambda: float = Field(10.0, ge=0, description="gradient-penalty weight")
    clip: float | None = Field(
        None,
        gt=0,
        description="weight clipping instead of GP (the WGAN paper: 0.01); with it both "
        "nets train with RMSprop, the paper's optimizer, at 5e-5 unless lr_g / lr_d are "
        "set, and n_critic stays 5 unless set",
    )


#: the WGAN paper's learning rate with weight clipping (RMSprop)
CLIP_LR = 5e-5


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates of real and fake (pass what
    the critic saw: the augmented batches under DiffAugment)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


class WGANGP(Variant):
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
        updates. With ``clip``: the WGAN paper's RMSprop rate 5e-5 for the rates left
        unset, and no small-run changes (no penalty to save)."""
        opts = super().resolve_options(opts, info, device, steps)
        if opts.clip is not None:
            return fill_unset(opts, {"lr_g": CLIP_LR, "lr_d": CLIP_LR})
        if default_scale(info, device) >= SMALL_RUN_SCALE:
            return opts
        return fill_unset(opts, {"n_critic": 2, "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.9)})

    def optimizers(self, nets, opts: WGANOptions):
        """Adam (``betas``) with the penalty; RMSprop (torch's defaults, as the WGAN
        paper's code) with weight clipping."""
        if opts.clip is None:
            return super().optimizers(nets, opts)
        return {
            "G": torch.optim.RMSprop(nets["G"].parameters(), lr=opts.lr_g),
            "D": torch.optim.RMSprop(nets["D"].parameters(), lr=opts.lr_d),
        }

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
        seen_real, seen_fake = aug(real), aug(fake.detach())
        distance = D(seen_real).mean() - D(seen_fake).mean()
        d_loss = -distance
        out = {"wasserstein": distance.detach()}
        if opts.clip is None and opts.gp_lambda > 0:
            # on the batches the critic just scored: same augmentation draws
            gp = gradient_penalty(D, seen_real.detach(), seen_fake.detach())
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
