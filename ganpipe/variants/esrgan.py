"""ESRGAN (Wang et al. 2018): RRDBNet generator in the exact BasicSR / Real-ESRGAN layout
(so released weights import and fine-tune as-is), relativistic average GAN with a
VGG-style discriminator, L1 content loss (+ VGG perceptual loss with ``vgg_weights``).
The adversarial phase weighs them as BasicSR's ``train_ESRGAN_x4.yml``: pixel L1 1e-2,
perceptual 1.0, GAN 5e-3; the ``pretrain_steps`` warm-up is L1 alone (``RRDBNet_PSNR``).
x2 and x1 pixel-unshuffle the input, so LR sizes must be multiples of 2 / 4 (the exported
model pads by itself; ``tile_multiple`` tells tilers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ganpipe import DataInfo, SROptions, SRVariant, fill_unset
from ganpipe.nn import RRDB_UNSHUFFLE, RRDBNet


class ESRGANOptions(SROptions):
    scale: Literal[1, 2, 4] = Field(4, description="up-scaling factor")
    num_feat: int = Field(64, ge=1, description="channels of the trunk")
    num_block: int = Field(23, ge=1, description="RRDB blocks")
    num_grow_ch: int = Field(32, ge=1, description="growth channels of the dense blocks")
    content_weight: float = Field(
        1e-2,
        ge=0,
        description="pixel (L1) weight of the adversarial phase (BasicSR's ESRGAN: 1e-2, "
        "next to perceptual 1.0 and GAN 5e-3); the warm-up weighs it 1; unset without "
        "vgg_weights (no perceptual loss): 1.0, L1 + 5e-3 GAN as SRGAN-MSE weighs them",
    )
    adv_weight: float = Field(5e-3, ge=0)
    gan_loss: Literal["bce", "ragan"] = "ragan"


class ESRGAN(SRVariant):
    Options = ESRGANOptions
    scales = (1, 2, 4)
    tiny_options = {"scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4, "d_width": 4}

    def resolve_options(self, opts: ESRGANOptions, info: DataInfo, device: str, steps: int):
        """BasicSR's weights assume the perceptual loss; without ``vgg_weights`` there is
        none, and 1e-2 L1 next to 5e-3 GAN would make the GAN half the loss: the pixel
        weight the user left unset is then 1.0 (the run's ``model:`` line says so)."""
        if opts.vgg_weights is None:
            return fill_unset(opts, {"content_weight": 1.0})
        return opts

    def tile_multiple(self, opts: ESRGANOptions) -> int:
        return RRDB_UNSHUFFLE[opts.scale]

    def build_generator(self, opts: ESRGANOptions, info: DataInfo):
        return RRDBNet(
            info.channels,
            info.channels,
            opts.scale,
            opts.num_feat,
            opts.num_block,
            opts.num_grow_ch,
        )
