"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation between two domains.

Data: a folder with two subfolders, one per domain (``horses/``, ``zebras/``); the first
name in sorted order is domain A. Two ResNet generators (G: A -> B, F: B -> A, instance
norm, reflection padding) and two PatchGAN discriminators, least-squares adversarial
losses, cycle consistency ``|F(G(a)) - a| + |G(F(b)) - b|`` (``lambda_cycle``) and the
identity loss (``lambda_identity``, a fraction of it). Left out for size: the pool of 50
past fakes for the discriminators.

A batch mixes both domains (the loop samples the folder as one set); each step uses the
images of each domain it has, and a domain missing from a batch skips the terms that
need it. ``direction`` picks the exported generator (``AtoB``: G). The ONNX model takes
and returns images in [0, 1] of any size (padded to a multiple of 4 inside), with task
``translate`` and scale 1, so ``ganpipe upscale`` (alias ``ganpipe translate``) converts
whole folders with it: tiles, alpha, 16 bits and all.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganpipe import (
    Batch,
    ConfigError,
    DataInfo,
    ExportSpec,
    InputSpec,
    Options,
    StepContext,
    Variant,
)
from ganpipe.nn import SRExport


class CycleGANOptions(Options):
    g_width: int = Field(64, ge=1, description="channels of G's first conv")
    d_width: int = Field(64, ge=1, description="channels of D's first conv")
    res_blocks: int = Field(6, ge=1, le=32, description="residual blocks in G (9 for 256 px)")
    d_layers: int = Field(3, ge=1, le=6, description="stride-2 convs in the PatchGAN D")
    lambda_cycle: float = Field(10.0, ge=0, description="weight of the cycle-consistency loss")
    lambda_identity: float = Field(
        0.5, ge=0, description="identity loss, as a fraction of lambda_cycle"
    )
    direction: Literal["AtoB", "BtoA"] = Field(
        "AtoB", description="the generator exported: AtoB (G) or BtoA (F)"
    )
    lr_g: float = Field(2e-4, gt=0, description="learning rate of the generators (Adam)")
    lr_d: float = Field(2e-4, gt=0, description="learning rate of the discriminators (Adam)")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam's beta1 and beta2")


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            _norm(ch),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            _norm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-w, d2w, d4w, res_blocks x R4w, u2w, uw, c7s1-C, tanh: [-1, 1] in and out;
    height and width must be multiples of 4."""

    def __init__(self, channels: int, width: int, blocks: int):
        super().__init__()
        w = width
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, w, 7),
            _norm(w),
            nn.ReLU(True),
        ]
        for m in (1, 2):
            layers += [nn.Conv2d(w * m, w * m * 2, 3, 2, 1), _norm(w * m * 2), nn.ReLU(True)]
        layers += [ResBlock(w * 4) for _ in range(blocks)]
        for m in (4, 2):
            layers += [
                nn.ConvTranspose2d(w * m, w * m // 2, 3, 2, 1, output_padding=1),
                _norm(w * m // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``layers`` stride-2 4x4 convs, one stride-1, then a 1-channel map of
    real/fake scores for overlapping patches."""

    def __init__(self, channels: int, width: int, layers: int):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            seq += [nn.Conv2d(ch, out, 4, stride, 1), _norm(out), nn.LeakyReLU(0.2, True)]
            ch = out
        seq.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _UnitRange(nn.Module):
    """[0, 1] in and out around a generator that works in [-1, 1]."""

    def __init__(self, g: nn.Module):
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.g(x * 2.0 - 1.0) + 1.0) * 0.5


def _lsgan(pred: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, target))


class CycleGAN(Variant):
    Options = CycleGANOptions
    tiny_options = {"g_width": 4, "d_width": 4, "res_blocks": 1, "d_layers": 1}

    def check_data(self, opts: CycleGANOptions, info: DataInfo) -> None:
        if info.num_classes != 2:
            raise ConfigError(
                f"cyclegan needs two domains: a data folder with exactly two "
                f"subfolders (e.g. horses/ and zebras/); found "
                f"{info.num_classes or 'no'} class(es)"
            )
        if info.image_size % 4:
            raise ConfigError(
                f"cyclegan needs data.image_size a multiple of 4, got {info.image_size}"
            )
        if info.image_size // 2**opts.d_layers < 4:
            raise ConfigError(
                f"model.d_layers = {opts.d_layers} halves {info.image_size} px "
                f"images too often; use at most "
                f"{max(1, (info.image_size // 4).bit_length() - 1)}"
            )

    def build(self, opts: CycleGANOptions, info: DataInfo):
        c = info.channels
        return {
            "G": ResnetGenerator(c, opts.g_width, opts.res_blocks),
            "F": ResnetGenerator(c, opts.g_width, opts.res_blocks),
            "D": PatchDiscriminator(c, opts.d_width, opts.d_layers),  # judges targets
            "D_src": PatchDiscriminator(c, opts.d_width, opts.d_layers),
        }  # judges sources

    def optimizers(self, nets, opts: CycleGANOptions):
        g = list(nets["G"].parameters()) + list(nets["F"].parameters())
        d = list(nets["D"].parameters()) + list(nets["D_src"].parameters())
        return {
            "G": torch.optim.Adam(g, lr=opts.lr_g, betas=tuple(opts.betas)),
            "D": torch.optim.Adam(d, lr=opts.lr_d, betas=tuple(opts.betas)),
        }

    # -- inputs and outputs ------------------------------------------------------------
    def inputs(self, opts, info: DataInfo) -> list[InputSpec]:
        return [InputSpec("image", "image", (info.channels,))]

    def make_inputs(
        self,
        opts,
        info: DataInfo,
        n: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        labels=None,
    ):
        """Random images in [-1, 1] (the real inputs come from ``fixed_inputs``)."""
        size = info.image_size
        return (
            torch.rand((n, info.channels, size, size), generator=generator)
            .mul(2)
            .sub(1)
            .to(device),
        )

    def fixed_inputs(
        self, opts, info: DataInfo, n: int, device: torch.device, generator, real: torch.Tensor
    ):
        """The sample grids translate real images."""
        return (real.to(device),)

    def export_spec(self, nets, opts: CycleGANOptions, info: DataInfo) -> ExportSpec:
        g = nets[self.generator_net].eval()  # G: source -> target
        gen = torch.Generator().manual_seed(0)
        return ExportSpec(
            module=SRExport(_UnitRange(g), 1, 4).eval(),
            inputs=self.inputs(opts, info),
            example_inputs=(torch.rand(2, info.channels, 16, 12, generator=gen),),
            output_name="translated",
            value_range=(0.0, 1.0),
            metadata={"scale": 1, "tile_multiple": 4, "direction": opts.direction},
        )

    # -- training ----------------------------------------------------------------------
    def train_step(self, ctx: StepContext, batch: Batch):
        nets, opts, aug = ctx.nets, ctx.opts, ctx.augment
        G, Fn, D, D_src = nets["G"], nets["F"], nets["D"], nets["D_src"]
        src_label = 0 if opts.direction == "AtoB" else 1
        a = batch.images[batch.labels == src_label]  # source domain
        b = batch.images[batch.labels != src_label]  # target domain
        zero = batch.images.new_zeros(())
        fake_b = G(a) if len(a) else None
        fake_a = Fn(b) if len(b) else None
        adv, cycle, identity = zero, zero, zero
        lam_id = opts.lambda_cycle * opts.lambda_identity
        for d in (D, D_src):
            d.requires_grad_(False)
        if fake_b is not None:
            adv = adv + _lsgan(D(aug(fake_b)), 1.0)
            cycle = cycle + F.l1_loss(Fn(fake_b), a)
            identity = identity + F.l1_loss(Fn(a), a)
        if fake_a is not None:
            adv = adv + _lsgan(D_src(aug(fake_a)), 1.0)
            cycle = cycle + F.l1_loss(G(fake_a), b)
            identity = identity + F.l1_loss(G(b), b)
        for d in (D, D_src):
            d.requires_grad_(True)
        g_loss = adv + opts.lambda_cycle * cycle + (lam_id * identity if lam_id else zero)
        ctx.update("G", g_loss)
        d_loss = zero
        if fake_b is not None and len(b):
            d_loss = d_loss + 0.5 * (_lsgan(D(aug(b)), 1.0) + _lsgan(D(aug(fake_b.detach())), 0.0))
        if fake_a is not None and len(a):
            d_loss = d_loss + 0.5 * (
                _lsgan(D_src(aug(a)), 1.0) + _lsgan(D_src(aug(fake_a.detach())), 0.0)
            )
        if not d_loss.requires_grad:  # no pair for either D in this batch: a zero update,
            # so that every process of a data-parallel run takes part in the same steps
            d_loss = d_loss + sum((p * 0.0).sum() for net in (D, D_src) for p in net.parameters())
        ctx.update("D", d_loss)
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "cycle": cycle.detach(),
            "identity": identity.detach(),
        }
