"""Degradations that make the LR input of super-resolution training from an HR batch:
bicubic anti-aliased down-scaling and Real-ESRGAN-style blur, noise and JPEG (images in
[0, 1], random strengths from torch's RNG so that resume stays exact)."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic down-scaling with anti-aliasing (``hr`` in [0, 1]), clamped to [0, 1]."""
    if scale == 1:
        return hr
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    return F.interpolate(
        hr, size=(h, w), mode="bicubic", antialias=True, align_corners=False
    ).clamp(0.0, 1.0)


def upscale_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic up-scaling by ``scale`` (the baseline SR is compared against), clamped to
    [0, 1]."""
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
