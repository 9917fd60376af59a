"""Super-resolution validation: PSNR / SSIM of a model on held-out HR images, against the
bicubic baseline.

Each HR image (cropped to a multiple of ``scale``) is down-scaled with anti-aliased bicubic
interpolation; the model up-scales the LR image back; PSNR and SSIM (torchmetrics, data
range 1) compare it with the HR image, per image, averaged. The baseline up-scales the same
LR image with bicubic interpolation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganpipe.nn import downscale, upscale_bicubic


def _as_batches(hr: Any, batch_size: int):
    """HR images as float NCHW [0, 1] tensors: uint8 NHWC arrays (as in ImageSet), float
    NCHW [0, 1] arrays / tensors, or a sequence of uint8 HWC arrays of different sizes."""
    if isinstance(hr, torch.Tensor):
        x = hr.detach().float().cpu()
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size]
        return
    if isinstance(hr, np.ndarray) and hr.ndim == 4:
        if hr.dtype == np.uint8:
            for i in range(0, len(hr), batch_size):
                yield torch.from_numpy(hr[i : i + batch_size]).permute(0, 3, 1, 2).float() / 255
        else:
            x = torch.from_numpy(np.asarray(hr, dtype=np.float32))
            for i in range(0, len(x), batch_size):
                yield x[i : i + batch_size]
        return
    for img in hr:  # one by one: sizes may differ
        arr = np.asarray(img)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        yield torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float() / 255


def _upscaler(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model``: a torch module (LR -> SR in [0, 1]), the path of an exported ``.onnx``,
    an ONNX model opened with :func:`ganpipe.inference.session.open_model`, or a callable
    taking and returning numpy float32 NCHW in [0, 1] (e.g. a
    :class:`ganpipe.upscale.model.SRModel`). ONNX models run through that one runner, as
    ``ganpipe upscale`` runs them: value range, float16 inputs and size multiple from the
    model card."""
    from ganpipe.inference.session import OnnxModel, open_model
    from ganpipe.upscale.model import SRModel

    if isinstance(model, str | Path):
        model = open_model(model, "cpu", task="super_resolve")
    if isinstance(model, OnnxModel):
        model = SRModel(model)
    if isinstance(model, torch.nn.Module):
        module = model

        def run_torch(lr: torch.Tensor) -> torch.Tensor:
            p = next(module.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
            was = module.training
            module.eval()
            with torch.no_grad():
                out = module(lr.to(device)).float().cpu()
            module.train(was)
            return out

        return run_torch
    if callable(model):

        def run_numpy(lr: torch.Tensor) -> torch.Tensor:
            x = np.ascontiguousarray(lr.numpy(), dtype=np.float32)
            return torch.from_numpy(np.asarray(model(x), dtype=np.float32))

        return run_numpy
    raise TypeError(
        f"cannot up-scale with a {type(model).__name__}; pass a torch module, "
        f"an .onnx path or a numpy callable"
    )


def sr_validation(
    model: Any,
    hr_images: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    scale: int,
    *,
    batch_size: int = 16,
    crop_border: int = 0,
) -> dict[str, float]:
    """Mean per-image PSNR (dB) and SSIM of ``model`` and of bicubic up-scaling on
    ``hr_images``: ``{"psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "count"}``.
    ``crop_border`` pixels are shaved off each side before scoring (``scale`` is the
    usual choice in SR papers)."""
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    up = _upscaler(model)
    psnr = {
        k: PeakSignalNoiseRatio(data_range=1.0, reduction="none", dim=(1, 2, 3))
        for k in ("model", "bicubic")
    }
    ssim: dict[str, list[torch.Tensor]] = {"model": [], "bicubic": []}
    count = 0
    for hr in _as_batches(hr_images, batch_size):
        h, w = (hr.shape[-2] // scale) * scale, (hr.shape[-1] // scale) * scale
        hr = hr[..., :h, :w].clamp(0, 1)
        lr = downscale(hr, scale)
        outs = {"model": up(lr).clamp(0, 1), "bicubic": upscale_bicubic(lr, scale)}
        b = crop_border
        if b:
            hr = hr[..., b:-b, b:-b]
        for key, out in outs.items():
            if out.shape != (hr.shape[0], hr.shape[1], h, w):
                raise ValueError(
                    f"the model returned {tuple(out.shape)} for LR "
                    f"{tuple(lr.shape)}; expected {(hr.shape[0], hr.shape[1], h, w)}"
                    f" (scale {scale})"
                )
            if b:
                out = out[..., b:-b, b:-b]
            psnr[key].update(out, hr)
            k = min(11, min(hr.shape[-2:]) - (1 - min(hr.shape[-2:]) % 2))
            metric = StructuralSimilarityIndexMeasure(
                data_range=1.0, kernel_size=max(k, 1), reduction="none"
            )
            ssim[key].append(metric(out, hr).reshape(-1))
        count += hr.shape[0]
    if not count:
        raise ValueError("no HR images to validate on")

    def mean_psnr(m) -> float:
        v = m.compute().reshape(-1)
        return float(v[torch.isfinite(v)].mean()) if torch.isfinite(v).any() else float("inf")

    return {
        "psnr": mean_psnr(psnr["model"]),
        "ssim": float(torch.cat(ssim["model"]).mean()),
        "bicubic_psnr": mean_psnr(psnr["bicubic"]),
        "bicubic_ssim": float(torch.cat(ssim["bicubic"]).mean()),
        "count": count,
    }
