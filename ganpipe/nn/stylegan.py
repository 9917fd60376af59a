"""Compact StyleGAN2 networks (Karras et al. 2020): a mapping network to W, a synthesis
network of modulated / demodulated convolutions from a learned constant with per-pixel
noise and skip-connected RGB outputs, and a residual discriminator with a minibatch
standard-deviation feature. Equalised learning rate throughout.

Simplifications, for size: bilinear up-sampling and average-pool down-sampling instead of
FIR filters, and modulation applied to the activations (StyleGAN2's non-fused path: scale
the input channels by the style, convolve with the shared weight, scale the output
channels by the demodulation factor), which is the same maths as modulating the weights
and exports to plain ONNX ops. In eval mode the noise is a fixed buffer per layer
("const" noise), so the exported generator is deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * SQRT2


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate: weights ~ N(0, 1) / lr_mul, scaled
    at run time by lr_mul / sqrt(fan_in)."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale, self.lr_mul = lr_mul / math.sqrt(cin), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """Convolution with the equalised learning rate: weights ~ N(0, 1), scaled at run time
    by 1 / sqrt(fan_in) (ProGAN / StyleGAN); same padding."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.padding = 1.0 / math.sqrt(cin * kernel * kernel), kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then ``layers`` equalised linear layers (lr x 0.01).

    ``w_avg`` (a buffer) tracks the average w for the truncation trick, as StyleGAN2-ADA's
    mapping network does: at every training step it moves towards the batch mean of w,
    ``w_avg = lerp(mean(w), w_avg, W_AVG_BETA)``. One difference: the first update takes
    the batch mean itself (the reference starts from zeros, which would leave a share
    0.995^T of zero in w_avg after T steps: 8% after 500). A checkpoint from before
    w_avg existed loads with w_avg estimated from the loaded net (:meth:`estimate_w_avg`).
    """

    #: StyleGAN2-ADA's ``w_avg_beta``
    W_AVG_BETA = 0.995

    def __init__(self, z_dim: int, w_dim: int, layers: int):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.z_dim = z_dim
        self.layers = nn.ModuleList(
            EqualLinear(a, b, lr_mul=0.01) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self._w_avg_missing = False
        self.register_load_state_dict_post_hook(MappingNetwork._estimate_if_missing)

    def forward(self, z: torch.Tensor, update_w_avg: bool = False) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = _act(layer(x))
        if update_w_avg:
            self.track(x)
        return x

    @torch.no_grad()
    def track(self, w: torch.Tensor) -> None:
        """Move ``w_avg`` towards the mean of the batch ``w`` [B, w_dim] (the first time:
        to the mean itself; an all-zero w_avg is the untracked state)."""
        mean = w.detach().float().mean(dim=0)
        fresh = (self.w_avg == 0).all()
        self.w_avg.copy_(torch.where(fresh, mean, mean.lerp(self.w_avg, self.W_AVG_BETA)))

    def truncate(self, ws: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """The truncation trick in W: ``w_avg + psi * (w - w_avg)`` for ws [B, num_ws,
        w_dim] and psi [B, num_ws] (1: unchanged; 0: the average w)."""
        return self.w_avg + psi[..., None] * (ws - self.w_avg)

    @torch.no_grad()
    def estimate_w_avg(self, samples: int = 10_000, seed: int = 0) -> torch.Tensor:
        """The mean of w over ``samples`` z from a fixed seed (not the global RNG)."""
        g = torch.Generator().manual_seed(seed)
        device = self.w_avg.device
        total = torch.zeros_like(self.w_avg)
        for start in range(0, samples, 1000):
            z = torch.randn(min(1000, samples - start), self.z_dim, generator=g)
            total += self(z.to(device)).float().sum(dim=0)
        return total / samples

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before w_avg: estimated once the layers are loaded
        self._w_avg_missing = prefix + "w_avg" not in state_dict
        if self._w_avg_missing:
            state_dict = {**state_dict, prefix + "w_avg": self.w_avg}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _estimate_if_missing(self, incompatible) -> None:
        if self._w_avg_missing:
            self._w_avg_missing = False
            self.w_avg.copy_(self.estimate_w_avg())


class ModulatedConv(nn.Module):
    """Convolution whose input channels are scaled by a style from w, with the output
    demodulated (each output channel brought back to unit variance)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        w_dim: int,
        demodulate: bool = True,
        up: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.scale, self.padding = 1.0 / math.sqrt(cin * kernel * kernel), kernel // 2
        self.demodulate, self.up = demodulate, up

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)  # B, cin
        x = x * style[:, :, None, None]  # before up-sampling: same result, 4x fewer pixels
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        weight = self.weight * self.scale
        out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            energy = weight.pow(2).sum(dim=(2, 3))  # cout, cin
            demod = torch.rsqrt(style.pow(2) @ energy.t() + 1e-8)  # B, cout
            out = out * demod[:, :, None, None]
        return out


class StyledLayer(nn.Module):
    """Modulated conv + per-pixel noise (learned strength) + bias + leaky ReLU."""

    def __init__(self, cin: int, cout: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv(cin, cout, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)
        if self.training:
            noise = torch.randn(
                x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype
            )
        else:
            noise = self.noise_const
        return _act(x + noise * self.noise_strength + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    def __init__(self, cin: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv(cin, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


def widths(base: int, levels: int, cap: int) -> list[int]:
    """Channels at 4, 8, ... px: ``base`` at full resolution, doubling towards 4 px."""
    return [min(cap, base * 2 ** (levels - i)) for i in range(levels + 1)]


class StyleGenerator(nn.Module):
    """z [B, z_dim] -> image [B, C, S, S] in about [-1, 1]. ``synthesis(ws)`` takes one w
    per layer ([B, num_ws, w_dim]) for style mixing. ``depth``: styled 3x3 convs per
    resolution above 4 px (2 in StyleGAN2: the up-sampling one, then one more; 1: only the
    up-sampling one, for small runs)."""

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        mapping_layers: int,
        image_size: int,
        channels: int,
        base: int,
        cap: int,
        depth: int = 2,
    ):
        super().__init__()
        if depth not in (1, 2):
            raise ValueError(f"depth must be 1 or 2, not {depth}")
        levels = int(math.log2(image_size)) - 2
        ch = widths(base, levels, cap)
        self.depth = depth
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers)
        self.const = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        self.first = StyledLayer(ch[0], ch[0], w_dim, 4)
        self.rgbs = nn.ModuleList([ToRGB(ch[0], channels, w_dim)])
        self.ups, self.convs = nn.ModuleList(), nn.ModuleList()
        for i in range(1, levels + 1):
            res = 4 * 2**i
            self.ups.append(StyledLayer(ch[i - 1], ch[i], w_dim, res, up=True))
            if depth == 2:
                self.convs.append(StyledLayer(ch[i], ch[i], w_dim, res))
            self.rgbs.append(ToRGB(ch[i], channels, w_dim))
        self.num_ws = self.count_ws(image_size, depth)

    @staticmethod
    def count_ws(image_size: int, depth: int = 2) -> int:
        """Ws the generator takes: the 4 px conv and ToRGB, then ``depth`` styled convs per
        level above 4 px (each level's ToRGB shares the next level's first w)."""
        return depth * (int(math.log2(image_size)) - 2) + 2

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.first(self.const.expand(ws.shape[0], -1, -1, -1), ws[:, 0])
        rgb = self.rgbs[0](x, ws[:, 1])
        for i, up in enumerate(self.ups):
            k = 1 + self.depth * i  # this level's first w
            x = up(x, ws[:, k])
            if self.depth == 2:
                x = self.convs[i](x, ws[:, k + 1])
            rgb = F.interpolate(rgb, scale_factor=2.0, mode="bilinear", align_corners=False)
            rgb = rgb + self.rgbs[i + 1](x, ws[:, k + self.depth])
        return rgb

    def forward(self, z: torch.Tensor, psi: torch.Tensor | None = None) -> torch.Tensor:
        """Images from z; ``psi`` [B, num_ws] truncates each layer's w towards the average
        w (:meth:`MappingNetwork.truncate`; the exported model's second input)."""
        ws = self.mapping(z)[:, None].expand(-1, self.num_ws, -1)
        if psi is not None:
            ws = self.mapping.truncate(ws, psi)
        # images to look at (samples, export) are clipped to the value range; training
        # calls synthesis() directly, so D sees the linear output, as in StyleGAN2
        return self.synthesis(ws).clamp(-1.0, 1.0)


class MinibatchStd(nn.Module):
    """Appends the mean (over features and pixels) of the per-pixel standard deviation
    across groups of ``group`` images: lets D see a batch's lack of variety."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = math.gcd(self.group, b)
        y = x.reshape(g, -1, c, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # B/g
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class StyleDiscriminator(nn.Module):
    """Residual discriminator: fromRGB, (conv, conv + down) blocks with 1x1 skips,
    minibatch std, conv, two linear layers -> logit [B]. ``depth``: 3x3 convs per block
    (2 in StyleGAN2; 1: only the widening one, for small runs)."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        base: int,
        cap: int,
        depth: int = 2,
        mbstd_group: int = 4,
    ):
        super().__init__()
        levels = int(math.log2(image_size)) - 2
        ch = widths(base, levels, cap)[::-1]  # full resolution first
        self.depth = depth
        self.from_rgb = EqualConv2d(channels, ch[0], 1)
        self.blocks = nn.ModuleList()
        for a, b in zip(ch[:-1], ch[1:], strict=True):
            convs = {f"conv{j + 1}": EqualConv2d(a, a, 3) for j in range(depth - 1)}
            convs[f"conv{depth}"] = EqualConv2d(a, b, 3)
            self.blocks.append(nn.ModuleDict({**convs, "skip": EqualConv2d(a, b, 1, bias=False)}))
        self.stddev = MinibatchStd(mbstd_group)
        self.conv = EqualConv2d(ch[-1] + 1, ch[-1], 3)
        self.fc = EqualLinear(ch[-1] * 16, ch[-1])
        self.out = EqualLinear(ch[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _act(self.from_rgb(x))
        for block in self.blocks:
            skip = block["skip"](F.avg_pool2d(x, 2))
            h = x
            for j in range(1, self.depth + 1):
                h = _act(block[f"conv{j}"](h))
            x = (F.avg_pool2d(h, 2) + skip) / SQRT2
        x = _act(self.conv(self.stddev(x)))
        return self.out(_act(self.fc(x.flatten(1)))).reshape(-1)
