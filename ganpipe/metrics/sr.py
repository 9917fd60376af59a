"""Super-resolution validation: PSNR / SSIM of a model on held-out HR images, against the
bicubic baseline.

Each HR image (cropped to a multiple of ``scale``) is down-scaled with anti-aliased bicubic
interpolation; the model up-scales the LR image back; PSNR and SSIM compare it with the HR
image, per image, averaged, as BasicSR computes them by default (on the Y channel with
``crop_border = scale``; :mod:`ganpipe.metrics.sr_scores`). The baseline up-scales the same
LR image with bicubic interpolation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganpipe.data.imageio import to_uint8
from ganpipe.metrics.sr_scores import MetricSpace, psnr, ssim
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
    model card; a model exported at one fixed shape (``fixed_tile``) is tiled, as
    ``ganpipe upscale`` tiles it."""
    from ganpipe.inference.session import OnnxModel, open_model
    from ganpipe.upscale.ensemble import Ensemble
    from ganpipe.upscale.model import SRModel
    from ganpipe.upscale.tiling import whole_image_runner

    if isinstance(model, str | Path):
        model = open_model(model, "cpu", task="super_resolve")
    if isinstance(model, OnnxModel):
        model = SRModel(model)
    if isinstance(model, SRModel | Ensemble):
        model = whole_image_runner(model)
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
    space: MetricSpace = "y",
    crop_border: int | None = None,
) -> dict[str, float]:
    """Mean per-image PSNR (dB) and SSIM of ``model`` and of bicubic up-scaling on
    ``hr_images``: ``{"psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "count"}``, computed
    as BasicSR does by default (:mod:`ganpipe.metrics.sr_scores`): outputs rounded to
    uint8, on the Y channel (``space = "rgb"``: all channels), ``crop_border`` pixels
    (default ``scale``) shaved off each side. Images whose PSNR is infinite (identical)
    are left out of the PSNR mean."""
    up = _upscaler(model)
    border = scale if crop_border is None else crop_border
    scores: dict[str, list[float]] = {
        "psnr": [],
        "ssim": [],
        "bicubic_psnr": [],
        "bicubic_ssim": [],
    }
    count = 0
    for hr in _as_batches(hr_images, batch_size):
        h, w = (hr.shape[-2] // scale) * scale, (hr.shape[-1] // scale) * scale
        hr = hr[..., :h, :w].clamp(0, 1)
        lr = downscale(hr, scale)
        outs = {"": up(lr), "bicubic_": upscale_bicubic(lr, scale)}
        want = (hr.shape[0], hr.shape[1], h, w)
        hr_u8 = to_uint8(hr.numpy(), (0.0, 1.0))  # NHWC, as saved
        for prefix, out in outs.items():
            if tuple(out.shape) != want:
                raise ValueError(
                    f"the model returned {tuple(out.shape)} for LR "
                    f"{tuple(lr.shape)}; expected {want} (scale {scale})"
                )
            out_u8 = to_uint8(out.float().numpy(), (0.0, 1.0))
            for a, b in zip(out_u8, hr_u8, strict=True):
                scores[f"{prefix}psnr"].append(psnr(a, b, space, border))
                scores[f"{prefix}ssim"].append(ssim(a, b, space, border))
        count += hr.shape[0]
    if not count:
        raise ValueError("no HR images to validate on")

    def mean_finite(values: list[float]) -> float:
        v = np.asarray(values)
        return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("inf")

    return {
        "psnr": mean_finite(scores["psnr"]),
        "ssim": float(np.mean(scores["ssim"])),
        "bicubic_psnr": mean_finite(scores["bicubic_psnr"]),
        "bicubic_ssim": float(np.mean(scores["bicubic_ssim"])),
        "count": count,
    }
