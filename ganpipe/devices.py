"""The one device grammar of ganpipe (torch-free).

``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` | ``tensorrt`` | ``tensorrt:N``,
used by ``run.device``, ``--device`` of ``generate`` and ``upscale`` and the ``device``
options of the stages. Training maps a :class:`Device` to a ``torch.device``
(:func:`ganpipe.training.devices.torch_device`); ONNX Runtime to execution providers
(:func:`ganpipe.inference.session.choose_providers`). Not every consumer takes every kind:
each passes the kinds it supports to :func:`parse_device`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["auto", "cpu", "cuda", "mps", "tensorrt"]
KINDS: tuple[str, ...] = ("auto", "cpu", "cuda", "mps", "tensorrt")
#: what training (PyTorch) runs on
TORCH_KINDS: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
#: what ONNX Runtime runs on
ORT_KINDS: tuple[str, ...] = ("auto", "cpu", "cuda", "tensorrt")
_RE = re.compile(r"^\s*(auto|cpu|cuda|mps|tensorrt)(?::(\d+))?\s*$")
_INDEXED = ("cuda", "tensorrt")


@dataclass(frozen=True)
class Device:
    kind: Kind
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def grammar(kinds: tuple[str, ...] = KINDS) -> str:
    """``auto, cpu, cuda, cuda:N ...`` for error messages and help texts."""
    out = []
    for k in kinds:
        out.append(k)
        if k in _INDEXED:
            out.append(f"{k}:N")
    return ", ".join(out)


def parse_device(
    text: str | Device, kinds: tuple[str, ...] = KINDS, where: str = "device"
) -> Device:
    """Parse ``text``; a :class:`ValueError` with a one-line message for anything else
    (callers turn it into a :class:`~ganpipe.errors.ConfigError` with their key path)."""
    if isinstance(text, Device):
        device = text
    else:
        m = _RE.match(str(text))
        if not m or (m.group(2) is not None and m.group(1) not in _INDEXED):
            raise ValueError(f"{where}: unknown device {text!r}; use one of {grammar(kinds)}")
        device = Device(m.group(1), None if m.group(2) is None else int(m.group(2)))  # type: ignore[arg-type]
    if device.kind not in kinds:
        raise ValueError(
            f"{where}: device {str(device)!r} is not available here; use one of {grammar(kinds)}"
        )
    return device


def validated(value: str | Device, kinds: tuple[str, ...]) -> str:
    """For pydantic field validators: ``value`` parsed against ``kinds`` and written
    canonically (``" cuda:0 "`` -> ``"cuda:0"``); otherwise a pydantic error whose one-line
    message names no key (the caller's error adds the key path or the flag)."""
    from pydantic_core import PydanticCustomError

    try:
        return str(parse_device(value, kinds, where="device"))
    except ValueError as exc:
        raise PydanticCustomError("device", str(exc).removeprefix("device: ")) from None


def ort_device(value: str | Device) -> str:
    """:func:`validated` for ONNX Runtime devices (``generate``, ``upscale``, ``evaluate``)."""
    return validated(value, ORT_KINDS)


def torch_device(value: str | Device) -> str:
    """:func:`validated` for training devices (``run.device``)."""
    return validated(value, TORCH_KINDS)
