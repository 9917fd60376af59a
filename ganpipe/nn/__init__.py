"""Layers and nets shared by variants: part of the public plugin API (imports torch).

Plugins (and ganpipe's built-in variants) build on these rather than on the modules
behind them::

    from ganpipe.nn import DCGANDiscriminator, DCGANGenerator
"""

from ganpipe.nn.dcgan import Discriminator as DCGANDiscriminator
from ganpipe.nn.dcgan import Generator as DCGANGenerator
from ganpipe.nn.dcgan import check_dcgan_size, init_weights
from ganpipe.nn.degradations import degrade, downscale, gaussian_blur, jpeg, upscale_bicubic
from ganpipe.nn.layers import (
    ConditionalBatchNorm2d,
    DownBlock,
    SelfAttention,
    UpBlock,
    has_spectral_norm,
    sn,
    sn_conv,
    sn_linear,
)
from ganpipe.nn.sr import (
    ESPCN,
    RRDB_UNSHUFFLE,
    RRDBNet,
    SRDiscriminator,
    SRExport,
    SRResNet,
    SRVGGNetCompact,
    upsample_factors,
)
from ganpipe.nn.stylegan import (
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    MinibatchStd,
    ModulatedConv,
    StyleDiscriminator,
    StyleGenerator,
    widths,
)
from ganpipe.nn.vgg import VGG19Features, vgg19_layers

__all__ = [
    "ESPCN",
    "RRDB_UNSHUFFLE",
    "ConditionalBatchNorm2d",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DownBlock",
    "EqualConv2d",
    "EqualLinear",
    "MappingNetwork",
    "MinibatchStd",
    "ModulatedConv",
    "RRDBNet",
    "SRDiscriminator",
    "SRExport",
    "SRResNet",
    "SRVGGNetCompact",
    "SelfAttention",
    "StyleDiscriminator",
    "StyleGenerator",
    "UpBlock",
    "VGG19Features",
    "degrade",
    "downscale",
    "gaussian_blur",
    "has_spectral_norm",
    "check_dcgan_size",
    "init_weights",
    "jpeg",
    "sn",
    "sn_conv",
    "sn_linear",
    "upsample_factors",
    "upscale_bicubic",
    "vgg19_layers",
    "widths",
]
