"""The VGG19 feature extractor of the perceptual loss (SRGAN, ESRGAN): torchvision's
``features.N`` layout, loaded from a local file (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ganpipe.errors import ConfigError

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
