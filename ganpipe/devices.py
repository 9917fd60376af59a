"""The one device grammar of ganpipe (torch-free).

``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` | ``tensorrt`` | ``tensorrt:N`` |
``vulkan`` | ``vulkan:N`` (a Vulkan GPU, through ncnn: :mod:`ganpipe.inference.ncnn_runtime`), used by ``run.device``, ``--device`` of ``generate`` and ``upscale`` and the ``device``
options of the stages. The text is parsed once, where it enters (the options' validators:
:func:`training_device`, :func:`ort_device`), into a :class:`Device` that is carried from
there on. Training maps a :class:`Device` to a ``torch.device``
(:func:`ganpipe.training.devices.torch_device`); ONNX Runtime to execution providers
(:func:`ganpipe.inference.session.choose_providers`). Not every consumer takes every kind:
each passes the kinds it supports to :func:`parse_device`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

Kind = Literal["auto", "cpu", "cuda", "mps", "tensorrt", "vulkan"]
KINDS: tuple[str, ...] = ("auto", "cpu", "cuda", "mps", "tensorrt", "vulkan")
#: what training (PyTorch) runs on
TORCH_KINDS: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
#: what ONNX Runtime runs on
ORT_KINDS: tuple[str, ...] = ("auto", "cpu", "cuda", "tensorrt")
#: what the ONNX paths (generate, upscale, evaluate) run on: ONNX Runtime's kinds, and
#: Vulkan GPUs through ncnn (``--runtime ncnn``)
INFERENCE_KINDS: tuple[str, ...] = (*ORT_KINDS, "vulkan")
_RE = re.compile(r"^\s*(auto|cpu|cuda|mps|tensorrt|vulkan)(?::(\d+))?\s*$")
_INDEXED = ("cuda", "tensorrt", "vulkan")


class Device(str):
    """A parsed device: :attr:`kind` and :attr:`index`.

    It is also its canonical text (``Device("cuda", 1) == "cuda:1"``), so that code written
    when devices were strings keeps working unchanged: ``torch.device(d)``, ``d == "cpu"``,
    JSON, a plugin stage reading ``ctx.config.run.device``. ``Device("cuda:1")`` parses the
    text (any kind; :func:`parse_device` also checks the kinds a consumer supports); a
    :class:`ValueError` for text outside the grammar. As a pydantic field type it accepts
    the text or a ``Device`` and is written back as the text.
    """

    __slots__ = ()

    def __new__(cls, kind: str, index: int | None = None) -> Device:
        if isinstance(kind, Device) and index is None:
            return kind
        text = str(kind) if index is None else f"{kind}:{index}"
        m = _RE.match(text)
        if not m or (m.group(2) is not None and m.group(1) not in _INDEXED):
            raise ValueError(f"unknown device {text!r}; use one of {grammar()}")
        canonical = m.group(1) if m.group(2) is None else f"{m.group(1)}:{int(m.group(2))}"
        return super().__new__(cls, canonical)

    @property
    def kind(self) -> Kind:
        return self.partition(":")[0]  # type: ignore[return-value]

    @property
    def index(self) -> int | None:
        index = self.partition(":")[2]
        return int(index) if index else None

    def __str__(self) -> str:
        return str.__str__(self)  # a plain str

    def __repr__(self) -> str:
        return f"Device({str(self)!r})"

    def __getnewargs__(self) -> tuple[str]:  # pickling (devices = N workers get the job)
        return (str(self),)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            _from_field,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.to_string_ser_schema(),
        )


def _from_field(value: Any) -> Device:
    """A ``Device`` field's value: a ``Device`` as it is (a field validator parsed it with
    its consumer's kinds), text parsed with every kind."""
    if isinstance(value, Device):
        return value
    if not isinstance(value, str):
        from pydantic_core import PydanticKnownError

        raise PydanticKnownError("string_type")
    return validated(value, KINDS)


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
    """``text`` parsed (a :class:`Device` is taken as it is) and checked against
    ``kinds``; a :class:`ValueError` with a one-line message for anything else (callers
    turn it into a :class:`~ganpipe.errors.ConfigError` with their key path)."""
    if isinstance(text, Device):
        device = text
    else:
        try:
            device = Device(str(text))
        except ValueError:
            raise ValueError(
                f"{where}: unknown device {text!r}; use one of {grammar(kinds)}"
            ) from None
    if device.kind not in kinds:
        raise ValueError(
            f"{where}: device {str(device)!r} is not available here; use one of {grammar(kinds)}"
        )
    return device


def validated(value: str | Device, kinds: tuple[str, ...]) -> Device:
    """For pydantic field validators: ``value`` parsed against ``kinds`` (``" cuda:0 "``
    -> ``Device("cuda:0")``); otherwise a pydantic error whose one-line message names no
    key (the caller's error adds the key path or the flag)."""
    from pydantic_core import PydanticCustomError

    try:
        return parse_device(value, kinds, where="device")
    except ValueError as exc:
        raise PydanticCustomError("device", str(exc).removeprefix("device: ")) from None


def ort_device(value: str | Device) -> Device:
    """:func:`validated` for ONNX Runtime devices (``generate``, ``evaluate``)."""
    return validated(value, ORT_KINDS)


def inference_device(value: str | Device) -> Device:
    """:func:`validated` for ``upscale``'s devices: ONNX Runtime's kinds and
    ``vulkan[:N]`` (ncnn, ``--runtime ncnn``)."""
    return validated(value, INFERENCE_KINDS)


def training_device(value: str | Device) -> Device:
    """:func:`validated` for training devices (``run.device``). (Named ``torch_device``
    until 0.3; that name is :func:`ganpipe.training.devices.torch_device`'s alone: a
    ``Device`` to a ``torch.device``.)"""
    return validated(value, TORCH_KINDS)
