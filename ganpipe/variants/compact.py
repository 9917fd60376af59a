"""Real-ESRGAN's compact net (SRVGGNetCompact): conv/PReLU stack, PixelShuffle, plus the
nearest-upsampled input; weights in the Real-ESRGAN layout (``body.N``). Fast on CPU.
The adversarial loss is optional (``adv_weight = 0``: pure L1 / MSE training)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ganpipe import DataInfo, SROptions, SRVariant
from ganpipe.nn import SRVGGNetCompact


class CompactOptions(SROptions):
    scale: Literal[1, 2, 3, 4] = Field(4, description="up-scaling factor")
    num_feat: int = Field(64, ge=1, description="channels of the body's convs")
    num_conv: int = Field(16, ge=1, description="conv/PReLU pairs in the body")
    lr_g: float = Field(5e-4, gt=0)


class Compact(SRVariant):
    Options = CompactOptions
    scales = (1, 2, 3, 4)
    tiny_options = {"scale": 2, "num_feat": 8, "num_conv": 2, "d_width": 4}

    def build_generator(self, opts: CompactOptions, info: DataInfo):
        net = SRVGGNetCompact(
            info.channels, info.channels, opts.num_feat, opts.num_conv, opts.scale
        )
        he_init(net)
        return net


def he_init(net: SRVGGNetCompact) -> SRVGGNetCompact:
    """He initialisation for a fresh training run (released or ``init_from`` weights replace
    it): each conv followed by a PReLU gets std ``sqrt(2 / ((1 + a^2) fan_in))`` for the
    PReLU's initial slope ``a`` = 0.25, biases 0, and the last conv a tenth of that (as
    BasicSR's ``default_init_weights`` scales residual branches), so the net starts near
    its nearest-neighbour skip. PyTorch's default (uniform, a third of the variance per
    layer) loses the input's signal over the 17 conv/PReLU layers: the body then sits at
    the nearest-neighbour output for hundreds of steps, and whether it leaves it within a
    short run depends on the seed."""
    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, a=0.25, nonlinearity="leaky_relu")
        nn.init.zeros_(conv.bias)
    with torch.no_grad():
        convs[-1].weight.mul_(0.1)
    return net
