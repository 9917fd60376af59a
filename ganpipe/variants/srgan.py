"""SRGAN (Ledig et al. 2017): SRResNet generator (residual blocks with BN and PReLU,
PixelShuffle up-sampling), VGG-style discriminator, content loss + BCE adversarial loss;
the VGG perceptual loss when ``vgg_weights`` points to a local VGG19 file.
``pretrain_steps`` trains SRResNet alone (PSNR-oriented) before the adversarial phase."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ganpipe import DataInfo, SROptions, SRVariant
from ganpipe.nn import SRResNet


class SRGANOptions(SROptions):
    scale: Literal[2, 3, 4, 8] = Field(4, description="up-scaling factor")
    num_feat: int = Field(64, ge=1, description="generator channels")
    num_block: int = Field(16, ge=1, description="residual blocks")
    content_loss: Literal["l1", "mse"] = "mse"
    vgg_layer: int = Field(
        35, ge=0, le=36, description="VGG19 features index; 35 = conv5_4 after ReLU (SRGAN's VGG54)"
    )


class SRGAN(SRVariant):
    Options = SRGANOptions
    scales = (2, 3, 4, 8)
    tiny_options = {"scale": 2, "num_feat": 8, "num_block": 1, "d_width": 4}

    def build_generator(self, opts: SRGANOptions, info: DataInfo):
        return SRResNet(info.channels, opts.scale, opts.num_feat, opts.num_block)
