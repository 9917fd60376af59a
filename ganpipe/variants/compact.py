"""Real-ESRGAN's compact net (SRVGGNetCompact): conv/PReLU stack, PixelShuffle, plus the
nearest-upsampled input; weights in the Real-ESRGAN layout (``body.N``). Fast on CPU.
The adversarial loss is optional (``adv_weight = 0``: pure L1 / MSE training)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ganpipe import DataInfo
from ganpipe.nn import SRVGGNetCompact
from ganpipe.variants.srbase import SROptions, SRVariant


class CompactOptions(SROptions):
    scale: Literal[1, 2, 3, 4] = Field(4, description="up-scaling factor")
    num_feat: int = Field(64, ge=1)
    num_conv: int = Field(16, ge=1, description="conv/PReLU pairs in the body")
    lr_g: float = Field(5e-4, gt=0)


class Compact(SRVariant):
    name = "compact"
    Options = CompactOptions
    scales = (1, 2, 3, 4)
    tiny_options = {"scale": 2, "num_feat": 8, "num_conv": 2, "d_width": 4}

    def build_generator(self, opts: CompactOptions, info: DataInfo):
        return SRVGGNetCompact(
            info.channels, info.channels, opts.num_feat, opts.num_conv, opts.scale
        )
