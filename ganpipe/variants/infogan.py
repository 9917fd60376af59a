"""InfoGAN (Chen et al. 2016) on DCGAN nets: G takes noise ``z`` plus latent codes -
``n_categorical`` one-hot codes of ``categories`` values and ``n_continuous`` codes uniform
in [-1, 1] - and a Q head on D's trunk predicts the codes from the image. Both G and D+Q
minimise ``lambda_info`` times that prediction loss (a lower bound on the mutual
information between codes and images) on top of the non-saturating GAN loss, so the codes
come to control factors of variation without labels.

The exported model has inputs ``z`` (kind ``normal``), ``c_cat`` (kind ``categorical``:
one-hot, shape ``[categories]``, or ``[n_categorical, categories]`` for several codes) and
``c_cont`` (kind ``uniform``, shape ``[n_continuous]``); ``ganpipe generate --code`` fixes
them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ganpipe import Batch, DataInfo, GANOptions, InputSpec, StepContext, Variant
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator, check_dcgan_size


class InfoGANOptions(GANOptions):
    max_width: int = Field(512, ge=1, description="cap on channels per layer")
    n_categorical: int = Field(1, ge=0, le=64, description="categorical codes")
    categories: int = Field(10, ge=2, le=1000, description="values of each categorical code")
    n_continuous: int = Field(2, ge=0, le=256, description="continuous codes, U(-1, 1)")
    lambda_info: float = Field(1.0, ge=0, description="weight of the mutual-information term")
    cont_weight: float = Field(
        0.1,
        ge=0,
        description="weight of the continuous codes "
        "inside the information term (the paper's smaller lambda)",
    )
    continuous_loss: Literal["gaussian", "mse"] = Field(
        "gaussian",
        description="Q's loss on continuous codes: factored-Gaussian NLL "
        "(learned variance) or mean squared error",
    )
    q_hidden: int = Field(128, ge=1, description="channels of the Q head's hidden layer")

    @model_validator(mode="after")
    def _some_code(self):
        if self.n_categorical + self.n_continuous < 1:
            raise ValueError(
                "InfoGAN needs at least one latent code: set n_categorical or "
                "n_continuous to 1 or more"
            )
        return self


def sample_code(spec: InputSpec, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random values of a code input: ``categorical`` (one-hot along the last axis, each
    code uniform over its classes) or ``uniform`` (U(-1, 1))."""
    if spec.kind == "categorical":
        k = spec.shape[-1]
        idx = torch.randint(0, k, (n, *spec.shape[:-1]), generator=generator)
        return F.one_hot(idx, k).float()
    if spec.kind == "uniform":
        return torch.rand((n, *spec.shape), generator=generator) * 2 - 1
    raise ValueError(f"unknown code kind {spec.kind!r}")


class InfoGenerator(nn.Module):
    """(z, *codes) -> image; the codes are flattened and concatenated to z."""

    def __init__(self, opts: InfoGANOptions, info: DataInfo):
        super().__init__()
        codes = opts.n_categorical * opts.categories + opts.n_continuous
        self.net = DCGANGenerator(
            opts.latent_dim,
            info.image_size,
            info.channels,
            opts.g_width,
            opts.max_width,
            extra_inputs=codes,
        )

    def forward(self, z: torch.Tensor, *codes: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, *(c.flatten(1) for c in codes)], dim=1))


class QHead(nn.Module):
    """D's trunk features [B, W, 4, 4] -> (categorical logits [B, n_cat, k], continuous
    means [B, n_cont], log standard deviations [B, n_cont] or None)."""

    def __init__(self, width: int, opts: InfoGANOptions):
        super().__init__()
        self.n_cat, self.k, self.n_cont = opts.n_categorical, opts.categories, opts.n_continuous
        self.gaussian = opts.continuous_loss == "gaussian"
        out = self.n_cat * self.k + self.n_cont * (2 if self.gaussian else 1)
        # As the paper's Q (FC-BN-LReLU-FC); PyTorch's default init: the DCGAN init's
        # small weights make the information term learn far slower.
        self.net = nn.Sequential(
            nn.Conv2d(width, opts.q_hidden, 4, 1, 0),
            nn.BatchNorm2d(opts.q_hidden),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(opts.q_hidden, out, 1),
        )

    def forward(self, h: torch.Tensor):
        out = self.net(h).flatten(1)
        split = self.n_cat * self.k
        logits = out[:, :split].reshape(-1, self.n_cat, self.k)
        mean = out[:, split : split + self.n_cont]
        log_std = out[:, split + self.n_cont :].clamp(-5.0, 2.0) if self.gaussian else None
        return logits, mean, log_std


def info_losses(
    q_out, cat_idx: torch.Tensor | None, cont: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(categorical cross-entropy summed over codes, continuous NLL/MSE summed over dims),
    both averaged over the batch; zero where the model has no such codes."""
    logits, mean, log_std = q_out
    zero = logits.new_zeros(())
    cat = zero
    if cat_idx is not None:
        cat = (
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), cat_idx.reshape(-1))
            * logits.shape[1]
        )
    cont_loss = zero
    if cont is not None:
        err = cont - mean.float()
        if log_std is None:
            cont_loss = err.pow(2).sum(1).mean()
        else:
            log_std = log_std.float()
            cont_loss = (0.5 * (err * torch.exp(-log_std)).pow(2) + log_std).sum(1).mean()
    return cat, cont_loss


class _TwoInputs(nn.Module):
    """Fixed-arity view of G for torch.export, which does not take ``*codes``."""

    def __init__(self, g: nn.Module):
        super().__init__()
        self.g = g

    def forward(self, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.g(z, code)


class _ThreeInputs(_TwoInputs):
    def forward(self, z: torch.Tensor, c_cat: torch.Tensor, c_cont: torch.Tensor) -> torch.Tensor:
        return self.g(z, c_cat, c_cont)


class InfoGAN(Variant):
    channels_last_on_cpu = True  # bench/cpu_speed.py: faster on the CPU
    Options = InfoGANOptions
    tiny_options = {"latent_dim": 8, "g_width": 4, "d_width": 4, "q_hidden": 8, "categories": 3}

    def inputs(self, opts: InfoGANOptions, info: DataInfo) -> list[InputSpec]:
        specs = [InputSpec("z", "normal", (opts.latent_dim,))]
        if opts.n_categorical:
            shape = (
                (opts.categories,)
                if opts.n_categorical == 1
                else (opts.n_categorical, opts.categories)
            )
            specs.append(InputSpec("c_cat", "categorical", shape))
        if opts.n_continuous:
            specs.append(InputSpec("c_cont", "uniform", (opts.n_continuous,)))
        return specs

    def make_inputs(
        self,
        opts: InfoGANOptions,
        info: DataInfo,
        n: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        out = []
        for spec in self.inputs(opts, info):
            if spec.kind == "normal":
                out.append(torch.randn((n, *spec.shape), generator=generator))
            else:
                out.append(sample_code(spec, n, generator))
        return tuple(t.to(device) for t in out)

    def check_data(self, opts: InfoGANOptions, info: DataInfo) -> None:
        super().check_data(opts, info)
        check_dcgan_size(self.name, info.image_size)

    def build(self, opts: InfoGANOptions, info: DataInfo):
        D = DCGANDiscriminator(info.image_size, info.channels, opts.d_width, opts.max_width)
        return {"G": InfoGenerator(opts, info), "D": D, "Q": QHead(D.head.in_channels, opts)}

    def optimizers(self, nets, opts: InfoGANOptions):
        """G alone; D together with the Q head (Q shares D's trunk)."""
        betas = tuple(opts.betas)
        return {
            "G": torch.optim.Adam(nets["G"].parameters(), lr=opts.lr_g, betas=betas),
            "D": torch.optim.Adam(
                [*nets["D"].parameters(), *nets["Q"].parameters()], lr=opts.lr_d, betas=betas
            ),
        }

    def code_targets(self, opts: InfoGANOptions, codes: tuple[torch.Tensor, ...]):
        """(categorical class indices [B, n_cat] or None, continuous values or None)."""
        rest = list(codes)
        cat_idx = (
            rest.pop(0).argmax(-1).reshape(-1, opts.n_categorical) if opts.n_categorical else None
        )
        cont = rest.pop(0) if opts.n_continuous else None
        return cat_idx, cont

    def info_loss(self, ctx: StepContext, features: torch.Tensor, targets):
        cat, cont = info_losses(ctx.nets["Q"](features), *targets)
        return cat + ctx.opts.cont_weight * cont, cat, cont

    def train_step(self, ctx: StepContext, batch: Batch):
        G, D, opts = ctx.nets["G"], ctx.nets["D"], ctx.opts
        real = batch.images
        n = real.shape[0]
        z, *codes = self.make_inputs(opts, ctx.info, n, ctx.device)
        targets = self.code_targets(opts, tuple(codes))
        fake = G(z, *codes)
        ones = torch.ones(n, device=real.device)
        zeros = torch.zeros(n, device=real.device)
        aug = ctx.augment

        h_fake = D.features(aug(fake.detach()))
        d_adv = F.binary_cross_entropy_with_logits(
            D(aug(real)), ones
        ) + F.binary_cross_entropy_with_logits(D.head(h_fake).reshape(-1), zeros)
        d_info, _, _ = self.info_loss(ctx, h_fake, targets)
        d_loss = d_adv + opts.lambda_info * d_info
        ctx.update("D", d_loss)

        h = D.features(aug(fake))
        g_adv = F.binary_cross_entropy_with_logits(D.head(h).reshape(-1), ones)
        info, cat, cont = self.info_loss(ctx, h, targets)
        ctx.update("G", g_adv + opts.lambda_info * info)
        out = {"d_loss": d_loss.detach(), "g_loss": g_adv.detach(), "info_loss": info.detach()}
        if opts.n_categorical:
            out["cat_loss"] = cat.detach()
        if opts.n_continuous:
            out["cont_loss"] = cont.detach()
        return out

    def export_spec(self, nets, opts: InfoGANOptions, info: DataInfo):
        spec = super().export_spec(nets, opts, info)
        spec.module = (_ThreeInputs if len(spec.inputs) == 3 else _TwoInputs)(spec.module)
        return spec
