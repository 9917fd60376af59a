"""Where training runs: a :class:`ganpipe.devices.Device` mapped to a ``torch.device``
(:func:`torch_device`, the only function of that name), and the mixed-precision dtype for
a device.

``run.device`` arrives parsed (the config's validator made it a ``Device``, which the
train stage, the workers of a data-parallel run and the loop carry); text given to the
loop directly (``Trainer(device="cpu")``) is parsed by :func:`parse_torch_device`, through
:func:`ganpipe.devices.parse_device` with :data:`~ganpipe.devices.TORCH_KINDS`. Nothing
here matches device strings itself.
"""

from __future__ import annotations

import torch

from ganpipe.devices import TORCH_KINDS, Device, parse_device
from ganpipe.errors import ConfigError


def parse_torch_device(text: str | Device, where: str = "run.device") -> Device:
    """``text`` parsed with the kinds PyTorch runs on (a ConfigError naming ``where``); a
    ``Device`` is only checked against those kinds."""
    try:
        return parse_device(text, TORCH_KINDS, where=where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def torch_device(device: Device) -> torch.device:
    """The ``torch.device`` of a parsed device (``auto``: CUDA when available, else CPU)."""
    if device.kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device.kind, device.index)


def resolve_device(text: str | Device, where: str = "run.device") -> torch.device:
    """The ``torch.device`` of ``text`` (a ``Device``, or text parsed here), checked to be
    usable on this machine."""
    device = parse_torch_device(text, where)
    if device.kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f'{where} = {str(device)!r} but CUDA is not available here; use "auto" or "cpu"'
        )
    if device.kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where} = 'mps' but MPS is not available here; use \"auto\"")
    return torch_device(device)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device`` (None: full precision)."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp = 'fp16' needs a CUDA device; use 'bf16' or 'off'")
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16
