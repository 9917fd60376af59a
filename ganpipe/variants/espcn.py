"""ESPCN (Shi et al. 2016): two convolutions in LR space and a sub-pixel convolution
(conv to ``C*scale^2`` channels + PixelShuffle). Tiny and fast on CPU; trained with the
pixel loss alone by default (``adv_weight = 0``), optionally with a discriminator."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ganpipe import DataInfo, SROptions, SRVariant
from ganpipe.nn import ESPCN


class ESPCNOptions(SROptions):
    scale: Literal[2, 3, 4] = Field(2, description="up-scaling factor")
    feat1: int = Field(64, ge=1, description="channels of the 5x5 conv")
    feat2: int = Field(32, ge=1, description="channels of the 3x3 conv")
    adv_weight: float = Field(0.0, ge=0, description="adversarial weight (0: pixel loss only)")
    lr_g: float = Field(
        3e-3,
        gt=0,
        description="Adam learning rate (1e-3 stays near bicubic for the first thousand steps)",
    )


class ESPCNVariant(SRVariant):
    Options = ESPCNOptions
    scales = (2, 3, 4)
    tiny_options = {"scale": 2, "feat1": 8, "feat2": 4, "adv_weight": 1e-3, "d_width": 4}

    def build_generator(self, opts: ESPCNOptions, info: DataInfo):
        return ESPCN(info.channels, opts.scale, opts.feat1, opts.feat2)
