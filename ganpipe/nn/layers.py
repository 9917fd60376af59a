"""Layers shared by the residual GANs (BigGAN-style, Brock et al. 2018): spectrally
normalised convolutions and linears, conditional batch norm, residual up/down blocks.

Spectral norm is :func:`torch.nn.utils.parametrizations.spectral_norm`; in eval mode it
exports to ONNX (dynamo exporter) as plain weights, so no special export path is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn(module: nn.Module, enabled: bool = True) -> nn.Module:
    """``module`` with spectral norm on its weight (orthogonal init first, as BigGAN)."""
    if isinstance(module, nn.Conv2d | nn.Linear | nn.Embedding):
        nn.init.orthogonal_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    return spectral_norm(module) if enabled else module


def sn_conv(cin: int, cout: int, kernel: int = 3, enabled: bool = True) -> nn.Module:
    """A same-padded ``kernel`` x ``kernel`` convolution with spectral norm (if ``enabled``)."""
    return sn(nn.Conv2d(cin, cout, kernel, 1, kernel // 2), enabled)


def sn_linear(cin: int, cout: int, bias: bool = True, enabled: bool = True) -> nn.Module:
    """A linear layer with spectral norm (if ``enabled``)."""
    return sn(nn.Linear(cin, cout, bias=bias), enabled)


def has_spectral_norm(module: nn.Module) -> bool:
    """True when some weight of ``module`` is spectrally normalised."""
    from torch.nn.utils import parametrize

    return any(parametrize.is_parametrized(m, "weight") for m in module.modules())


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose per-channel gain (``1 + g(c)``) and bias (``b(c)``) are linear
    functions of a conditioning vector ``c`` [B, cond_dim]."""

    def __init__(self, channels: int, cond_dim: int, use_sn: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = sn_linear(cond_dim, channels, bias=False, enabled=use_sn)
        self.bias = sn_linear(cond_dim, channels, bias=False, enabled=use_sn)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(cond)
        bias = self.bias(cond)
        return self.bn(x) * gain[:, :, None, None] + bias[:, :, None, None]


class UpBlock(nn.Module):
    """BigGAN generator block: CBN-ReLU-up2-conv3, CBN-ReLU-conv3, + up2-conv1 shortcut."""

    def __init__(self, cin: int, cout: int, cond_dim: int, use_sn: bool = True):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(cin, cond_dim, use_sn)
        self.conv1 = sn_conv(cin, cout, 3, use_sn)
        self.bn2 = ConditionalBatchNorm2d(cout, cond_dim, use_sn)
        self.conv2 = sn_conv(cout, cout, 3, use_sn)
        self.skip = sn_conv(cin, cout, 1, use_sn)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """BigGAN discriminator block: (ReLU)-conv3-ReLU-conv3-avgpool2, + conv1 shortcut.
    The first block of a discriminator has no pre-activation (it sees the image)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        preactivation: bool = True,
        downsample: bool = True,
        use_sn: bool = True,
    ):
        super().__init__()
        self.preactivation, self.downsample = preactivation, downsample
        self.conv1 = sn_conv(cin, cout, 3, use_sn)
        self.conv2 = sn_conv(cout, cout, 3, use_sn)
        self.skip = sn_conv(cin, cout, 1, use_sn) if cin != cout or downsample else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if self.skip is None:
            return h + x
        # as BigGAN: convolve then pool inside the net, pool then convolve on the image
        short = self._pool(self.skip(x)) if self.preactivation else self.skip(self._pool(x))
        return h + short


class SelfAttention(nn.Module):
    """SAGAN / BigGAN self-attention: every position attends to every other one (keys and
    values max-pooled 2x to a quarter of the positions), and the result is added back
    scaled by a learned ``gamma`` that starts at 0, so the block starts as the identity.
    Needs an even height and width."""

    def __init__(self, channels: int, use_sn: bool = True):
        super().__init__()
        key, value = max(1, channels // 8), max(1, channels // 2)
        self.theta = sn(nn.Conv2d(channels, key, 1, bias=False), use_sn)
        self.phi = sn(nn.Conv2d(channels, key, 1, bias=False), use_sn)
        self.g = sn(nn.Conv2d(channels, value, 1, bias=False), use_sn)
        self.o = sn(nn.Conv2d(value, channels, 1, bias=False), use_sn)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        theta = self.theta(x).flatten(2)  # B, k, HW
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # B, k, HW/4
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # B, v, HW/4
        attn = torch.softmax(theta.transpose(1, 2) @ phi, -1)  # B, HW, HW/4
        out = (g @ attn.transpose(1, 2)).reshape(b, -1, h, w)  # B, v, H, W
        return x + self.gamma * self.o(out)
