"""Feature extractors for sample-quality metrics.

* :class:`RandomFeatures` (default, offline): a fixed, seeded random conv net. It needs no
  download and is deterministic, so scores are comparable between runs of ganpipe with the
  same settings - but not with published Inception-based FIDs.
* :class:`OnnxFeatures`: any ONNX feature extractor the user has locally, e.g. InceptionV3
  exported to ONNX (pool3 features). Loaded with ONNX Runtime through the same safe loader
  as models (external data confined to the model's folder); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganpipe.devices import Device
from ganpipe.errors import ModelFileError


def _to_float(images: torch.Tensor, size: int, value_range: tuple[float, float]) -> torch.Tensor:
    """uint8 NCHW -> float NCHW, 3 channels, ``size`` x ``size``, in ``value_range``."""
    x = images.float() / 255.0
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size
        )
    lo, hi = value_range
    return x * (hi - lo) + lo


class RandomFeatures(nn.Module):
    """Mean and standard deviation of the activations of a seeded random conv net at three
    scales: sensitive to colour, texture and shape statistics."""

    def __init__(self, seed: int = 0, width: int = 32, size: int = 64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        self.convs = nn.ModuleList()
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            conv = nn.Conv2d(a, b, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=g) * (2.0 / (a * 9)) ** 0.5
                )
                conv.bias.zero_()
            self.convs.append(conv)
        self.size = size
        self.num_features = 2 * sum(chans[2:])
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _to_float(images, self.size, (-1.0, 1.0))
        feats = []
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), 0.2)
            if i >= 1:
                feats += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        return torch.cat(feats, dim=1)


class OnnxFeatures(nn.Module):
    """Features from a local ONNX model (first output, flattened per image), run on
    ``device`` (ONNX Runtime's kinds of :func:`ganpipe.devices.parse_device`, through
    :func:`~ganpipe.inference.session.open_model`)."""

    def __init__(
        self,
        path: str | Path,
        value_range: tuple[float, float] = (-1.0, 1.0),
        size: int | None = None,
        device: str | Device = "auto",
    ):
        super().__init__()
        from ganpipe.inference.session import open_model

        self.model = open_model(path, device)
        inp = self.model.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        static = [d for d in shape[2:] if isinstance(d, int)]
        if size is None:
            if len(static) != 2:
                raise ModelFileError(
                    f"{path}: input {inp.name} has no fixed size; set evaluate.feature_size"
                )
            size = int(static[0])
        self.size = size
        self.value_range = value_range
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        probe = self(torch.zeros(1, 3, size, size, dtype=torch.uint8))
        self.num_features = int(probe.shape[1])

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _to_float(images, self.size, self.value_range).numpy().astype(np.float32)
        step = self.fixed_batch or len(x)
        outs = []
        for start in range(0, len(x), step):  # models exported with a fixed batch size
            chunk = x[start : start + step]
            n = len(chunk)
            if self.fixed_batch and n < step:
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), np.float32)])
            outs.append(
                np.asarray(self.model.run({self.input_name: chunk}), dtype=np.float32).reshape(
                    len(chunk), -1
                )[:n]
            )
        return torch.from_numpy(np.concatenate(outs))


def extract(extractor: nn.Module, images_nhwc: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """Features of uint8 NHWC images, float64 [N, D]."""
    out = []
    for start in range(0, len(images_nhwc), batch_size):
        batch = torch.from_numpy(
            np.ascontiguousarray(images_nhwc[start : start + batch_size].transpose(0, 3, 1, 2))
        )
        out.append(extractor(batch).double())
    return torch.cat(out) if out else torch.zeros(0, getattr(extractor, "num_features", 1))
