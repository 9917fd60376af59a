"""The public base of super-resolution variants, :class:`SRVariant` with its options
:class:`SROptions` (``ganpipe.SRVariant``, ``ganpipe.SROptions``; since 0.3): what the
built-in ``srgan``, ``esrgan``, ``compact`` and ``espcn`` share, for third-party SR
plugins to reuse - options, the LR input made on the fly from the HR batch, the content /
perceptual / adversarial losses, the training step and the ONNX contract. A plugin
subclasses it, sets ``scales`` and implements ``build_generator(opts, info)``; its options
subclass :class:`SROptions`. Torch-free at import, as :class:`ganpipe.Variant`: the
methods import torch.

Training batches are HR patches (``data.image_size``, in [-1, 1] from the loop, drawn
anew every step from the ``patches`` source's regions and flipped / rotated at random:
:mod:`ganpipe.training.patches`); the LR input is their bicubic (anti-aliased)
down-scaling, optionally after Real-ESRGAN-style degradations (``degrade = ["blur",
"noise", "jpeg"]``), rounded to 8 bits. Nets work in [0, 1].

Exported models take an LR image float32 NCHW in [0, 1] named ``image`` (any height and
width) and return ``upscaled``, ``scale`` times larger, clamped to [0, 1]; the metadata
carries ``scale`` and ``tile_multiple``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

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

if TYPE_CHECKING:
    import torch
    from torch import nn

DEGRADATIONS = Literal["blur", "noise", "jpeg"]


class SROptions(Options):
    """Hyper-parameters shared by the super-resolution variants."""

    scale: int = Field(4, description="up-scaling factor")
    lr_g: float = Field(1e-4, gt=0, description="learning rate of the generator (Adam)")
    lr_d: float = Field(1e-4, gt=0, description="learning rate of the discriminator (Adam)")
    betas: tuple[float, float] = Field((0.9, 0.99), description="Adam's beta1 and beta2")
    content_loss: Literal["l1", "mse"] = Field("l1", description="pixel loss against HR")
    content_weight: float = Field(
        1.0, ge=0, description="pixel loss weight (the pretrain_steps warm-up weighs it 1)"
    )
    adv_weight: float = Field(
        1e-3, ge=0, description="adversarial weight; 0: no discriminator (pure pixel-loss training)"
    )
    gan_loss: Literal["bce", "ragan"] = Field(
        "bce", description="standard or relativistic average GAN loss"
    )
    d_width: int = Field(64, ge=1, description="channels of the discriminator's first block")
    pretrain_steps: int = Field(
        0,
        ge=0,
        description="first steps on the pixel loss alone, at weight 1 (PSNR-oriented "
        "warm-up, as BasicSR's RRDBNet_PSNR / SRResNet before the GAN)",
    )
    vgg_weights: Path | None = Field(
        None,
        description="local torchvision VGG19 weights "
        "(.pth / .safetensors) for the perceptual loss, "
        "relative to the pipeline.toml; never downloaded",
    )
    vgg_layer: int = Field(
        34,
        ge=0,
        le=36,
        description="index in VGG19 features: 34 = "
        "conv5_4 before ReLU (ESRGAN), 35 = after (SRGAN)",
    )
    vgg_weight: float = Field(1.0, ge=0, description="perceptual loss weight")
    flip_rot: bool = Field(
        True,
        description="flip and rotate each training patch at random (BasicSR's use_hflip "
        "and use_rot: the 8 flips and 90-degree rotations)",
    )
    degrade: list[DEGRADATIONS] = Field(
        [],
        description="degradations of the LR input: blur (at HR, before down-scaling), noise, jpeg",
    )
    blur_sigma: tuple[float, float] = Field(
        (0.2, 2.0), description="Gaussian blur sigma range (HR pixels)"
    )
    noise_sigma: tuple[float, float] = Field(
        (0.0, 0.04), description="Gaussian noise sigma range (in [0, 1] units)"
    )
    jpeg_quality: tuple[int, int] = Field((40, 95), description="JPEG quality range")


class SRVariant(Variant):
    """Base of the ``super_resolve`` variants (public; register with
    ``task="super_resolve"``).

    A subclass sets ``Options`` (a subclass of :class:`SROptions`), ``scales`` (the
    ``scale`` values its generator supports) and implements
    ``build_generator(opts, info) -> nn.Module`` (LR [0, 1] -> ``scale`` times larger);
    ``tile_multiple(opts)`` when the net needs input sizes of a multiple (the export pads
    to it). Everything else is here: ``build`` (``G``, plus an ``SRDiscriminator`` ``D``
    when ``adv_weight > 0``), Adam optimizers, ``make_lr`` (down-scaling and degradations),
    ``train_step`` (pixel warm-up for ``pretrain_steps``, then pixel + perceptual +
    adversarial), ``check_data`` (scale and patch size), and ``export_spec`` (an ONNX
    model taking any LR height and width). Override any of them.
    """

    task = "super_resolve"
    test_image_size = 16
    #: Scales the generator supports.
    scales: ClassVar[tuple[int, ...]] = (2, 4)

    def __init__(self) -> None:
        self._vgg: dict[tuple[str, int, str], nn.Module] = {}

    # -- nets ------------------------------------------------------------------------------
    def resolve_options(self, opts: Any, info: DataInfo, device: str, steps: int) -> Any:
        """As written: SR nets keep their sizes (released weights fit them) on any device."""
        return opts

    def schedule_problems(self, opts: Any, info: DataInfo, steps: int) -> dict[str, str]:
        if opts.adv_weight > 0 and opts.pretrain_steps >= steps:
            return {
                "pretrain_steps": f"{opts.pretrain_steps} pretraining steps leave none of "
                f"train.steps = {steps} for the adversarial phase; lower it below {steps} "
                f"or raise train.steps"
            }
        return {}

    def build_generator(self, opts: Any, info: DataInfo) -> nn.Module:
        """The generator: LR images [B, C, h, w] in [0, 1] -> [B, C, h*scale, w*scale]."""
        raise NotImplementedError

    def train_flips(self, opts: Any) -> bool:
        """The loop flips and rotates the training patches (``flip_rot``)."""
        return bool(getattr(opts, "flip_rot", True))

    def tile_multiple(self, opts: Any) -> int:
        """The multiple the generator needs the LR height and width to be (1: any)."""
        return 1

    def check_data(self, opts: SROptions, info: DataInfo) -> None:
        if opts.scale not in self.scales:
            raise ConfigError(
                f"model.scale = {opts.scale}: variant {self.name!r} supports "
                f"scale {', '.join(map(str, self.scales))}"
            )
        need = opts.scale * self.tile_multiple(opts)
        if info.image_size % need:
            raise ConfigError(
                f"data.image_size = {info.image_size} (the HR patch size) must "
                f"be a multiple of {need} for {self.name} x{opts.scale}"
            )
        if opts.vgg_weights is not None and not opts.resolve_path(opts.vgg_weights).is_file():
            raise ConfigError(
                f"model.vgg_weights: {opts.resolve_path(opts.vgg_weights)} is "
                f"not a file; give the path of local torchvision VGG19 weights "
                f"(relative to the pipeline.toml), or remove it"
            )

    def build(self, opts: SROptions, info: DataInfo) -> dict[str, nn.Module]:
        from ganpipe.nn import SRDiscriminator

        nets = {"G": self.build_generator(opts, info)}
        if opts.adv_weight > 0:
            nets["D"] = SRDiscriminator(info.channels, info.image_size, opts.d_width)
        return nets

    def optimizers(self, nets, opts: SROptions):
        import torch

        return {
            k: torch.optim.Adam(
                net.parameters(), lr=opts.lr_g if k == "G" else opts.lr_d, betas=tuple(opts.betas)
            )
            for k, net in nets.items()
        }

    def vgg(self, opts: SROptions, device: torch.device) -> nn.Module | None:
        if opts.vgg_weights is None or opts.vgg_weight <= 0:
            return None
        path = opts.resolve_path(opts.vgg_weights)
        key = (str(path), opts.vgg_layer, str(device))
        if key not in self._vgg:
            from ganpipe.nn import VGG19Features

            self._vgg[key] = VGG19Features.from_file(path, opts.vgg_layer).to(device)
        return self._vgg[key]

    # -- inputs ----------------------------------------------------------------------------
    def inputs(self, opts: Any, info: DataInfo) -> list[InputSpec]:
        return [InputSpec("image", "image", (info.channels,))]

    def make_inputs(
        self,
        opts: Any,
        info: DataInfo,
        n: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Random LR images in [0, 1] at ``image_size // scale``."""
        import torch

        size = max(1, info.image_size // opts.scale)
        return (torch.rand((n, info.channels, size, size), generator=generator).to(device),)

    def fixed_inputs(
        self,
        opts: Any,
        info: DataInfo,
        n: int,
        device: torch.device,
        generator: torch.Generator | None,
        real: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """The sample grids up-scale the bicubic down-scaling of real images."""
        from ganpipe.nn import downscale

        return (downscale((real.float() + 1.0) * 0.5, opts.scale).to(device),)

    def make_lr(self, hr: torch.Tensor, opts: SROptions) -> torch.Tensor:
        """The LR input of ``hr`` ([0, 1]), made in float32 even under AMP and rounded to
        8 bits, as the LR images the model will up-scale (BasicSR trains on stored 8-bit
        LR images; Real-ESRGAN rounds its degraded LR the same way)."""
        import torch

        from ganpipe.nn import degrade

        with torch.autocast(hr.device.type, enabled=False):
            lr = degrade(
                hr.float(),
                opts.scale,
                opts.degrade,
                opts.blur_sigma,
                opts.noise_sigma,
                opts.jpeg_quality,
            )
            return (lr * 255.0).round().clamp(0.0, 255.0) / 255.0

    def generate(self, nets, inputs):
        """Up-scaled images in [-1, 1], as the loop's sample grids expect."""
        return nets[self.generator_net](*inputs).clamp(0.0, 1.0) * 2.0 - 1.0

    # -- losses ----------------------------------------------------------------------------
    @staticmethod
    def _pixel(opts: SROptions, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.l1_loss(a, b) if opts.content_loss == "l1" else F.mse_loss(a, b)

    @staticmethod
    def _gan(
        opts: SROptions, real: torch.Tensor, fake: torch.Tensor, fake_is_real: bool
    ) -> torch.Tensor:
        """BCE on logits; ``fake_is_real``: the generator's view (targets swapped)."""
        import torch
        import torch.nn.functional as F

        bce = F.binary_cross_entropy_with_logits
        t_fake = 1.0 if fake_is_real else 0.0
        if opts.gan_loss == "ragan":
            r, f = real - fake.mean(), fake - real.mean()
            return 0.5 * (
                bce(r, torch.full_like(r, 1.0 - t_fake)) + bce(f, torch.full_like(f, t_fake))
            )
        if fake_is_real:
            return bce(fake, torch.ones_like(fake))
        return bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))

    def train_step(self, ctx: StepContext, batch: Batch):
        G, opts = ctx.nets["G"], ctx.opts
        D = ctx.nets.get("D")
        import torch

        hr = (batch.images.float() + 1.0) * 0.5
        with torch.no_grad():
            lr = self.make_lr(hr, opts)
        sr = G(lr)
        content = self._pixel(opts, sr, hr)
        out = {"content": content.detach()}
        adversarial = D is not None and opts.adv_weight > 0 and ctx.step >= opts.pretrain_steps
        if D is not None and not adversarial:
            # the PSNR-oriented warm-up (BasicSR's RRDBNet_PSNR / SRResNet): the pixel loss
            # alone at weight 1, whatever the adversarial phase weighs it
            ctx.update("G", content)
            out["g_loss"] = content.detach()
            return out
        g_loss = opts.content_weight * content
        vgg = self.vgg(opts, hr.device)
        if vgg is not None:
            perceptual = self._pixel(opts, vgg(sr), vgg(hr).detach())
            g_loss = g_loss + opts.vgg_weight * perceptual
            out["perceptual"] = perceptual.detach()
        if adversarial:
            aug = ctx.augment
            D.requires_grad_(False)
            fake = D(aug(sr * 2 - 1))
            real = D(aug(hr * 2 - 1)) if opts.gan_loss == "ragan" else fake
            adv = self._gan(opts, real, fake, True)
            D.requires_grad_(True)
            g_loss = g_loss + opts.adv_weight * adv
            out["adv"] = adv.detach()
        ctx.update("G", g_loss)
        out["g_loss"] = g_loss.detach()
        if adversarial:
            d_loss = self._gan(opts, D(aug(hr * 2 - 1)), D(aug(sr.detach() * 2 - 1)), False)
            ctx.update("D", d_loss)
            out["d_loss"] = d_loss.detach()
        return out

    # -- export ----------------------------------------------------------------------------
    def export_spec(self, nets, opts: SROptions, info: DataInfo) -> ExportSpec:
        import torch

        from ganpipe.nn import SRExport

        g = nets[self.generator_net].eval()
        multiple = self.tile_multiple(opts)
        gen = torch.Generator().manual_seed(0)
        return ExportSpec(
            module=SRExport(g, opts.scale, multiple).eval(),
            inputs=self.inputs(opts, info),
            example_inputs=(torch.rand(2, info.channels, 16, 12, generator=gen),),
            output_name="upscaled",
            value_range=(0.0, 1.0),
            metadata={"scale": opts.scale, "tile_multiple": multiple},
        )
