"""Super-resolution nets: generators, the export wrapper and the discriminator.

Every generator maps an LR image ``[B, C, h, w]`` in [0, 1] to ``[B, C, h*s, w*s]``
(unclamped while training; :class:`SRExport` clamps and handles odd sizes).

* :class:`SRResNet` - SRGAN's generator (Ledig et al. 2017): residual blocks with BN and
  PReLU, PixelShuffle up-sampling.
* :class:`RRDBNet` - ESRGAN (Wang et al. 2018) with exactly the BasicSR / Real-ESRGAN
  state-dict layout (``conv_first``, ``body.{i}.rdb{1,2,3}.conv{1..5}``, ``conv_body``,
  ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), so released weights load as-is.
* :class:`SRVGGNetCompact` - Real-ESRGAN's compact net (``body.N``; conv/PReLU pairs).
* :class:`ESPCN` - Shi et al. 2016: sub-pixel convolution.
* :class:`SRDiscriminator` - SRGAN's VGG-style discriminator (size-agnostic head).

The LR degradations are in :mod:`ganpipe.nn.degradations`, the perceptual (VGG19) features in
:mod:`ganpipe.nn.vgg`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# -- generators ------------------------------------------------------------------------------


def upsample_factors(scale: int) -> list[int]:
    """PixelShuffle steps for ``scale``: 2 -> [2], 3 -> [3], 4 -> [2, 2], 8 -> [2, 2, 2]."""
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    raise ValueError(f"unsupported scale {scale}; use 2, 3, 4 or 8")


class _SRResBlock(nn.Module):
    def __init__(self, num_feat: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.act = nn.PReLU(num_feat)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SRResNet(nn.Module):
    """SRGAN generator: conv9-PReLU, ``num_block`` residual blocks, conv3-BN + skip,
    PixelShuffle up-sampling blocks (conv3-shuffle-PReLU), conv9."""

    def __init__(self, channels: int = 3, scale: int = 4, num_feat: int = 64, num_block: int = 16):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(channels, num_feat, 9, 1, 4), nn.PReLU(num_feat))
        self.body = nn.Sequential(*[_SRResBlock(num_feat) for _ in range(num_block)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.BatchNorm2d(num_feat)
        )
        up: list[nn.Module] = []
        for f in upsample_factors(scale):
            up += [
                nn.Conv2d(num_feat, num_feat * f * f, 3, 1, 1),
                nn.PixelShuffle(f),
                nn.PReLU(num_feat),
            ]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(num_feat, channels, 9, 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = feat + self.body_tail(self.body(feat))
        return self.tail(self.upsample(feat))


def _scaled_kaiming_(modules, scale: float) -> None:
    """BasicSR's ``default_init_weights``: Kaiming normal times ``scale``, zero bias."""
    for m in modules:
        nn.init.kaiming_normal_(m.weight)
        m.weight.data.mul_(scale)
        if m.bias is not None:
            m.bias.data.zero_()


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        _scaled_kaiming_([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


#: RRDBNet: pixel-unshuffle factor in front of ``conv_first`` per output scale.
RRDB_UNSHUFFLE = {4: 1, 2: 2, 1: 4}


class RRDBNet(nn.Module):
    """ESRGAN / Real-ESRGAN generator (BasicSR layout). Always up-samples x4 (nearest x2
    twice); scale 2 and 1 pixel-unshuffle the input by 2 and 4 first."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ):
        super().__init__()
        if scale not in RRDB_UNSHUFFLE:
            raise ValueError(f"RRDBNet supports scale 1, 2 or 4, not {scale}")
        self.scale = scale
        self.unshuffle = RRDB_UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact net: ``body.0`` conv, ``body.1`` PReLU, ``num_conv`` conv/PReLU
    pairs, a last conv to ``C*scale^2`` channels, PixelShuffle, plus the nearest-upsampled
    input."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
    ):
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


class ESPCN(nn.Module):
    """Shi et al. 2016: conv5x5(64)-tanh, conv3x3(32)-tanh, conv3x3(C*s^2), PixelShuffle."""

    def __init__(self, channels: int = 3, scale: int = 2, feat1: int = 64, feat2: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, feat1, 5, 1, 2),
            nn.Tanh(),
            nn.Conv2d(feat1, feat2, 3, 1, 1),
            nn.Tanh(),
        )
        self.sub_pixel = nn.Conv2d(feat2, channels * scale * scale, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.sub_pixel(self.features(x)))


class SRExport(nn.Module):
    """What is exported: pads the LR input (replicate) to a multiple of ``multiple`` (the
    pixel-unshuffle of RRDBNet x2 / x1), runs ``net``, crops to ``h*scale x w*scale`` and
    clamps to [0, 1]. The ONNX model therefore accepts any height and width."""

    def __init__(self, net: nn.Module, scale: int, multiple: int = 1):
        super().__init__()
        self.net, self.scale, self.multiple = net, scale, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if self.multiple > 1:
            m = self.multiple
            # sides rounded up as m * ceil(side / m): a form torch.export's shape solver
            # sees is a multiple of m (with (-side) % m it cannot prove the graph dynamic)
            ph, pw = (h + m - 1) // m * m - h, (w + m - 1) // m * m - w
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            out = self.net(x)[..., : h * self.scale, : w * self.scale]
        else:
            out = self.net(x)
        return out.clamp(0.0, 1.0)


# -- discriminator ------------------------------------------------------------------------------


class SRDiscriminator(nn.Module):
    """SRGAN's VGG-style discriminator: conv-LReLU, then (conv-BN-LReLU, strided conv-BN-
    LReLU) blocks doubling the width, then a dense head. Global average pooling before the
    head makes it work at any patch size (SRGAN flattened a fixed 96 px map)."""

    def __init__(
        self, channels: int = 3, image_size: int = 96, width: int = 64, max_levels: int = 4
    ):
        super().__init__()
        levels = max(1, min(max_levels, int(math.log2(max(image_size, 4))) - 2))

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.2, inplace=True),
            ]

        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            *block(width, width, 2),
        ]
        c = width
        for _ in range(levels - 1):
            layers += block(c, c * 2, 1) + block(c * 2, c * 2, 2)
            c *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c, 2 * c),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(2 * c, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)
