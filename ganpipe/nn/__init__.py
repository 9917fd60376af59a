"""Layers and nets shared by variants: part of the public plugin API (imports torch).

Plugins build on these rather than on ganpipe's internals::

    from ganpipe.nn import DCGANDiscriminator, DCGANGenerator
"""

from ganpipe.nn.dcgan import Discriminator as DCGANDiscriminator
from ganpipe.nn.dcgan import Generator as DCGANGenerator
from ganpipe.nn.dcgan import init_weights
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
    RRDBNet,
    SRDiscriminator,
    SRExport,
    SRResNet,
    SRVGGNetCompact,
    degrade,
    downscale,
    upscale_bicubic,
)
from ganpipe.nn.stylegan import (
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    MinibatchStd,
    ModulatedConv,
    StyleDiscriminator,
    StyleGenerator,
)

__all__ = [
    "ESPCN",
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
    "degrade",
    "downscale",
    "has_spectral_norm",
    "init_weights",
    "sn",
    "sn_conv",
    "sn_linear",
    "upscale_bicubic",
]
