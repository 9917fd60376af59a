"""Super-resolution nets, degradations and the VGG19 feature extractor.

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
* :class:`VGG19Features` - torchvision's ``features.N`` layout, loaded from a local file.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganpipe.errors import ConfigError

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
            x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")
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


# -- perceptual features ------------------------------------------------------------------------

#: torchvision's VGG19 "E" configuration: channels, "M" = max-pool.
VGG19_CFG = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_layers(upto: int) -> nn.Sequential:
    """torchvision's ``vgg19().features[: upto + 1]`` (same indices, so same keys)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, 1, 1), nn.ReLU(inplace=False)]
            cin = int(v)
    if not 0 <= upto < len(layers):
        raise ValueError(f"VGG19 feature index {upto} out of range 0..{len(layers) - 1}")
    return nn.Sequential(*layers[: upto + 1])


class VGG19Features(nn.Module):
    """Frozen VGG19 features of [0, 1] images (ImageNet-normalised inside). ``layer`` is
    the index in ``features``: 34 = conv5_4 before ReLU (ESRGAN), 35 = after (SRGAN)."""

    def __init__(self, layer: int = 34):
        super().__init__()
        self.features = vgg19_layers(layer)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features((x - self.mean) / self.std)

    @classmethod
    def from_file(cls, path: str | Path, layer: int = 34) -> VGG19Features:
        """Load torchvision-layout weights (``features.N.weight`` / ``.bias``; the
        classifier is ignored) from ``.safetensors`` or a ``.pth`` read with
        ``weights_only=True``."""
        from ganpipe.weights import read_state_dict

        path = Path(path)
        state = read_state_dict(path)
        model = cls(layer)
        want = {k: v for k, v in model.features.state_dict().items()}
        missing = [f"features.{k}" for k in want if f"features.{k}" not in state]
        if missing:
            raise ConfigError(
                f"{path}: not torchvision VGG19 weights; missing "
                f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
            )
        try:
            model.features.load_state_dict({k: state[f"features.{k}"] for k in want})
        except RuntimeError as exc:
            raise ConfigError(
                f"{path}: VGG19 weights do not fit ({str(exc).splitlines()[-1].strip()})"
            ) from None
        return model.requires_grad_(False).eval()


# -- degradations -----------------------------------------------------------------------------


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic down-scaling with anti-aliasing (``hr`` in [0, 1]), clamped to [0, 1]."""
    if scale == 1:
        return hr
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    return F.interpolate(
        hr, size=(h, w), mode="bicubic", antialias=True, align_corners=False
    ).clamp(0.0, 1.0)


def upscale_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    if scale == 1:
        return lr
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(
        0.0, 1.0
    )


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Isotropic Gaussian blur with one ``sigma`` per sample (reflect padding)."""
    b, c, h, w = x.shape
    radius = max(1, int(math.ceil(3.0 * float(sigma.max()))))
    radius = min(radius, max(1, min(h, w) - 1))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k1 = torch.exp(-(t[None, :] ** 2) / (2.0 * sigma.to(x.dtype)[:, None] ** 2))
    k1 = k1 / k1.sum(dim=1, keepdim=True)  # [B, k]
    k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, dim=0)  # [B*C, k, k]
    xp = F.pad(x.reshape(1, b * c, h, w), (radius,) * 4, mode="reflect")
    return F.conv2d(xp, k2[:, None], groups=b * c).reshape(b, c, h, w)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG round trip with Pillow on the CPU, one quality per sample (no gradient)."""
    from PIL import Image

    arr = (x.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
    arr = arr.cpu().numpy()
    out = []
    for img, q in zip(arr, quality.tolist(), strict=True):
        im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(q))
        dec = np.asarray(Image.open(buf).convert(im.mode), dtype=np.uint8)
        out.append(dec[:, :, None] if dec.ndim == 2 else dec)
    back = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype)
    return back / 255.0


def _uniform(n: int, lo: float, hi: float, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device)


def degrade(
    hr: torch.Tensor,
    scale: int,
    kinds: list[str] | tuple[str, ...] = (),
    blur_sigma: tuple[float, float] = (0.2, 2.0),
    noise_sigma: tuple[float, float] = (0.0, 0.04),
    jpeg_quality: tuple[int, int] = (40, 95),
) -> torch.Tensor:
    """The LR input for ``hr`` ([0, 1]): optional blur (at HR), bicubic anti-aliased
    down-scaling, optional Gaussian noise, optional JPEG, in the Real-ESRGAN order (one
    pass; random strengths per sample from torch's RNG, so resume stays exact)."""
    n, device = hr.shape[0], hr.device
    x = hr
    if "blur" in kinds:
        x = gaussian_blur(x, _uniform(n, *blur_sigma, device))
    x = downscale(x, scale)
    if "noise" in kinds:
        sigma = _uniform(n, *noise_sigma, device).view(n, 1, 1, 1)
        x = (x + torch.randn_like(x) * sigma).clamp(0.0, 1.0)
    if "jpeg" in kinds:
        q = torch.randint(jpeg_quality[0], jpeg_quality[1] + 1, (n,), device=device)
        x = jpeg(x, q)
    return x
