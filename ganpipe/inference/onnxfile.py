"""What opening a model needs from an ``.onnx`` file, read without the ``onnx`` package.

:func:`ganpipe.inference.session.open_model` needs three facts before ONNX Runtime loads a
file: that it is an ONNX model with a non-empty graph, its metadata (the model card), and
that no tensor's external data points outside the model's folder. ``onnx.load_model``
gives them by parsing the whole file, and ``import onnx`` alone imports ``ml_dtypes``,
which took 0.7 s of a 2.2 s ``ganpipe upscale`` of five small images on this project's
CPU (``python -X importtime``; ``bench/cli_overhead.py``). :func:`read_header` reads the
same facts from the protobuf wire format directly: the model's top-level fields, the
graph's fields up to its first node, the metadata entries decoded; weights are skipped by
their lengths, never decoded.

External data is named by a ``location`` entry in a tensor's ``external_data``, so a file
whose bytes do not contain ``location`` has none a check could refuse: only a file that
does (:attr:`OnnxHeader.may_have_external_data`) is parsed with ``onnx`` and each tensor
checked (:func:`check_external_data`), exactly as before.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ganpipe.errors import ModelFileError

#: what the parser reads: the file's bytes, or the file mapped (indexing and slicing
#: both give ints and bytes; no memoryview is taken, so the map closes cleanly)
Buffer = bytes | mmap.mmap

#: ModelProto fields (onnx.proto): the graph and the metadata entries
MODEL_GRAPH, MODEL_METADATA = 7, 14
#: GraphProto's repeated ``node``; StringStringEntryProto's ``key`` and ``value``
GRAPH_NODE, ENTRY_KEY, ENTRY_VALUE = 1, 1, 2
#: the key of an external data entry that names its file
LOCATION = b"location"


class WireError(ValueError):
    """The bytes are not a protobuf message."""


@dataclass(frozen=True)
class OnnxHeader:
    """What :func:`read_header` found: the metadata entries (``metadata_props``, later
    keys winning as in ``onnx``), whether the graph has a node, and whether any
    tensor may keep its data in another file."""

    props: dict[str, str]
    has_nodes: bool
    may_have_external_data: bool


def _varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _skip(buf: Buffer, pos: int, end: int, tag: int, depth: int = 0) -> int:
    """The position after the value of a field with ``tag`` whose value starts at ``pos``
    (a group, proto2's and unused by ONNX, is skipped to its end tag)."""
    wire = tag & 7
    if wire == 0:
        return _varint(buf, pos, end)[1]
    if wire in (1, 5):
        pos += 8 if wire == 1 else 4
    elif wire == 2:
        size, pos = _varint(buf, pos, end)
        pos += size
    elif wire == 3 and depth < 64:
        while True:
            inner, pos = _varint(buf, pos, end)
            if inner == tag + 1:  # the group's end tag: same field, wire type 4
                return pos
            if inner >> 3 == 0 or inner & 7 == 4:
                raise WireError("a group ends with another field's end tag")
            pos = _skip(buf, pos, end, inner, depth + 1)
    else:
        raise WireError(f"wire type {wire}")
    if pos > end:
        raise WireError("a field runs past the end of its message")
    return pos


def _fields(buf: Buffer, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(field number, start, stop)`` of each length-delimited field of the message in
    ``buf[pos:end]``; fields of the other wire types are checked and skipped."""
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        if tag >> 3 == 0:
            raise WireError("field number 0")
        if tag & 7 != 2:
            pos = _skip(buf, pos, end, tag)
            continue
        size, pos = _varint(buf, pos, end)
        if pos + size > end:
            raise WireError("a field runs past the end of its message")
        yield tag >> 3, pos, pos + size
        pos += size


def _text(buf: Buffer, start: int, stop: int) -> str:
    return bytes(buf[start:stop]).decode("utf-8")


def parse_header(data: Buffer) -> OnnxHeader:
    """:class:`OnnxHeader` of the serialized ModelProto ``data``; :class:`WireError` (a
    ``ValueError``) where it is not one."""
    buf, end = data, len(data)
    props: dict[str, str] = {}
    has_nodes = False
    for number, start, stop in _fields(buf, 0, end):
        if number == MODEL_GRAPH:
            # one node is enough to know the graph is not empty (the graph is checked
            # whole at its top level: its length must fit the file)
            has_nodes = has_nodes or any(n == GRAPH_NODE for n, _, _ in _fields(buf, start, stop))
        elif number == MODEL_METADATA:
            key = value = ""
            for n, a, b in _fields(buf, start, stop):
                if n == ENTRY_KEY:
                    key = _text(buf, a, b)
                elif n == ENTRY_VALUE:
                    value = _text(buf, a, b)
            props[key] = value
    return OnnxHeader(props, has_nodes, data.find(LOCATION) >= 0)


def read_header(path: Path) -> OnnxHeader:
    """:func:`parse_header` of the file at ``path`` (mapped, not copied: ONNX Runtime
    reads it next); ``ValueError`` where it is not an ONNX model with a non-empty graph,
    ``OSError`` where it cannot be read."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise WireError("the file is empty")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            header = parse_header(data)
    if not header.has_nodes:
        raise WireError("the graph is empty")
    return header


def check_external_data(model_path: Path) -> None:
    """External tensor data must live inside the model's folder (no absolute paths, no
    ``..``, no links leading out): a one-line :class:`ModelFileError` if not. Parses the
    file with ``onnx`` (only files that may have external data come here)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load_model(str(model_path), load_external_data=False)
    root = model_path.resolve().parent
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(root):
            raise ModelFileError(
                f"{model_path}: external data {location!r} points outside the model's folder; "
                f"refusing to load it (keep the data file next to the .onnx)"
            )
