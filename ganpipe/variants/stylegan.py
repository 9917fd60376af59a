"""StyleGAN (compact StyleGAN2, Karras et al. 2020): mapping network, modulated convolutions
with noise, skip generator, residual discriminator with minibatch std; non-saturating
logistic loss, lazy R1 regularisation of D (with StyleGAN2's Adam correction) and style
mixing. The nets are in :mod:`ganpipe.nn.stylegan` (what is simplified there is said
there); path-length regularisation is left out.

The generator tracks the average w (``w_avg``, updated once per step as in StyleGAN2-ADA)
and the exported model takes ``z`` and ``psi`` (one per style layer): each layer's w is
``w_avg + psi * (w - w_avg)``, the truncation trick in W. ``ganpipe generate`` feeds psi 1
(untruncated) unless ``--truncation`` says otherwise; the card's ``truncation = "w_lerp"``
says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from ganpipe import (
    SMALL_RUN_SCALE,
    Batch,
    DataInfo,
    ExportSpec,
    GANOptions,
    InputSpec,
    StepContext,
    Variant,
    default_scale,
    fill_unset,
    require_power_of_two,
    scaled_defaults,
)
from ganpipe.nn import StyleDiscriminator, StyleGenerator


class StyleGANOptions(GANOptions):
    latent_dim: int = Field(512, ge=1, le=4096, description="size of z")
    w_dim: int = Field(512, ge=1, le=4096, description="size of w (the style space)")
    mapping_layers: int = Field(8, ge=1, le=16, description="layers of the mapping net z -> w")
    g_width: int = Field(32, ge=1, description="channels at full resolution (G)")
    d_width: int = Field(32, ge=1, description="channels at full resolution (D)")
    max_width: int = Field(512, ge=1, description="cap on channels per block")
    depth: int = Field(
        2,
        ge=1,
        le=2,
        description="3x3 convs per resolution above 4 px, in G and in D (2 in StyleGAN2; "
        "1: the resolution-changing one only); unset: 2, and 1 below half scale",
    )
    mbstd_group: int = Field(
        4, ge=1, description="images per minibatch-std group: D sees each group's spread"
    )
    lr_g: float = Field(2e-3, gt=0, description="unset: 2e-3, and 5e-3 below half scale")
    lr_d: float = Field(2e-3, gt=0, description="unset: 2e-3, and 5e-3 below half scale")
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = Field(
        10.0,
        ge=0,
        description="R1 penalty weight on D's real-image gradients; 0 = off; unset: "
        "10 x (image_size / 1024)^2, at least 0.01, and 1 below half scale (10 outside the "
        "training loop)",
    )
    r1_every: int = Field(
        16,
        ge=1,
        description="lazy R1: every this many steps, scaled up; D's Adam then runs with lr "
        "x k/(k+1) and betas^(k/(k+1)) (k = r1_every), StyleGAN2's correction",
    )
    mixing: float = Field(0.9, ge=0, le=1, description="probability of style mixing")


def r1_default(image_size: int) -> float:
    """R1 weight for ``image_size``: 10 (the FFHQ 1024 px value) scaled by the image area,
    as StyleGAN2-ADA's heuristic does (CIFAR 32 px: 0.01), at least 0.01."""
    return max(0.01, round(10.0 * (image_size / 1024) ** 2, 4))


class StyleGAN(Variant):
    channels_last_on_cpu = True  # bench/cpu_speed.py: faster on the CPU
    Options = StyleGANOptions
    tiny_options = {
        "latent_dim": 8,
        "w_dim": 8,
        "mapping_layers": 2,
        "g_width": 4,
        "d_width": 4,
        "max_width": 8,
        "r1_every": 2,
    }

    def check_data(self, opts: StyleGANOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        require_power_of_two(self.name, info.image_size)

    def resolve_options(self, opts, info: DataInfo, device: str, steps: int):
        """Scaled with :func:`ganpipe.default_scale`: the widths (down to 8 channels at the
        full resolution) and their cap, the sizes of z and w, the mapping depth (8 layers at
        full size, 2 at the smallest); ``r1_gamma`` from the image area (:func:`r1_default`:
        10 would hold D back at 32 px for thousands of steps) and ``r1_every`` from
        ``steps``. Below half scale the small-run recipe (StyleGAN2-ADA's CIFAR setting of
        no style mixing, and three changes measured on the 32 px digits in 3 CPU-minutes,
        bench/results/variant-quality-2026-12-04.md): one styled conv per resolution
        (``depth = 1``: 1.4x cheaper steps); learning rates of 5e-3 (with the equalised
        learning rate a step of 2e-3 moves each weight by about 0.2% of its scale, too
        little for a thousand steps: confident share 0.82 and 0.79 at 5e-3 over seeds 0
        and 1, 0.37 at 1e-3); and ``r1_gamma = 1``: the small D at 0.01 let G collapse
        onto a few digits (class entropy 0.65 and 0.78), at 1 the entropy was 0.82 and
        0.86 (seed 2: 0.95). With the paper's nets and rates, seeds 0 and 1 gave
        0.44 / 0.60 and 0.33 / 0.51 (confident / entropy)."""
        scale = default_scale(info, device)
        f = StyleGANOptions.model_fields
        sizes = scaled_defaults(
            StyleGANOptions, scale, g_width=8, d_width=8, max_width=64, latent_dim=64, w_dim=64
        )
        small = {"mixing": 0.0, "depth": 1, "lr_g": 5e-3, "lr_d": 5e-3, "r1_gamma": 1.0}
        return fill_unset(
            opts,
            {
                **sizes,
                "mapping_layers": max(2, round(f["mapping_layers"].default * scale)),
                "r1_gamma": r1_default(info.image_size),
                "r1_every": max(1, min(f["r1_every"].default, steps // 8)),
                **(small if scale < SMALL_RUN_SCALE else {}),
            },
        )

    def schedule_problems(self, opts, info: DataInfo, steps: int) -> dict[str, str]:
        if opts.r1_gamma > 0 and opts.r1_every * 4 > steps:
            return {
                "r1_every": f"lazy R1 every {opts.r1_every} steps runs only "
                f"{-(-steps // opts.r1_every)} time(s) in train.steps = {steps}; use at most "
                f"{max(1, steps // 8)} (or leave it unset)"
            }
        return {}

    def build(self, opts: StyleGANOptions, info: DataInfo):
        require_power_of_two(self.name, info.image_size)
        return {
            "G": StyleGenerator(
                opts.latent_dim,
                opts.w_dim,
                opts.mapping_layers,
                info.image_size,
                info.channels,
                opts.g_width,
                opts.max_width,
                opts.depth,
            ),
            "D": StyleDiscriminator(
                info.image_size,
                info.channels,
                opts.d_width,
                opts.max_width,
                opts.depth,
                opts.mbstd_group,
            ),
        }

    def optimizers(self, nets, opts: StyleGANOptions) -> dict[str, torch.optim.Optimizer]:
        """Adam; with R1 on, D's is corrected for the lazy R1 updates it also takes, as in
        StyleGAN2 (``mb_ratio``): k main steps and one R1 step every k steps make k + 1
        updates where the hyper-parameters assume k, so lr x k/(k+1) and each beta to the
        power k/(k+1) keep the moments' time constants per step (k = ``r1_every``)."""
        out = super().optimizers(nets, opts)
        if opts.r1_gamma > 0:
            ratio = opts.r1_every / (opts.r1_every + 1)
            betas = tuple(b**ratio for b in opts.betas)
            out["D"] = torch.optim.Adam(nets["D"].parameters(), lr=opts.lr_d * ratio, betas=betas)
        return out

    def inputs(self, opts: StyleGANOptions, info: DataInfo) -> list[InputSpec]:
        """``z`` and ``psi``: the truncation of each style layer (1: none)."""
        ws = StyleGenerator.count_ws(info.image_size, opts.depth)
        return [InputSpec("z", "normal", (opts.latent_dim,)), InputSpec("psi", "truncation", (ws,))]

    def export_spec(self, nets, opts: StyleGANOptions, info: DataInfo) -> ExportSpec:
        spec = super().export_spec(nets, opts, info)
        spec.metadata = {**spec.metadata, "truncation": "w_lerp"}
        return spec

    def _fake(
        self, G: StyleGenerator, opts: StyleGANOptions, info: DataInfo, n: int, device: torch.device
    ) -> torch.Tensor:
        """Images from fresh noise, with two styles mixed at a random layer (``mixing``);
        the first mapping moves ``w_avg`` (StyleGAN2-ADA: once per step, not the mixing one)."""
        z = self.make_inputs(opts, info, n, device)[0]
        ws = G.mapping(z, update_w_avg=True)[:, None].expand(-1, G.num_ws, -1)
        if opts.mixing > 0 and float(torch.rand(())) < opts.mixing:
            z2 = self.make_inputs(opts, info, n, device)[0]
            cut = int(torch.randint(1, G.num_ws, ()))
            ws2 = G.mapping(z2)[:, None].expand(-1, G.num_ws, -1)
            ws = torch.cat([ws[:, :cut], ws2[:, cut:]], dim=1)
        return G.synthesis(ws)

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D, opts, aug = ctx.nets["G"], ctx.nets["D"], ctx.opts, ctx.augment
        real = batch.images
        n = real.shape[0]
        fake = self._fake(G, opts, ctx.info, n, ctx.device)  # for D's step and G's
        d_loss = F.softplus(D(aug(fake.detach()))).mean() + F.softplus(-D(aug(real))).mean()
        ctx.update("D", d_loss)
        out = {"d_loss": d_loss.detach()}
        if opts.r1_gamma > 0 and ctx.step % opts.r1_every == 0:
            x = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(aug(x)).sum(), x, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            ctx.update("D", r1 * (opts.r1_gamma / 2) * opts.r1_every)
            out["r1"] = r1.detach()
        g_loss = F.softplus(-D(aug(fake))).mean()
        ctx.update("G", g_loss)
        out["g_loss"] = g_loss.detach()
        return out
