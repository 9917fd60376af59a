"""Reading an ``.onnx`` file's card without the onnx package (ganpipe.inference.onnxfile):
what it reads agrees with ``onnx.load_model`` on real models, and what is not an ONNX
model is refused as the full parse refuses it. In-process and fast; the refusals through
``open_model`` and the CLI are in test_inference.py and test_cli.py."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ganpipe.errors import ModelFileError
from ganpipe.inference.onnxfile import parse_header, read_header
from ganpipe.inference.session import open_model


def _model(props: dict[str, str], nodes: int = 2, big: int = 0) -> onnx.ModelProto:
    """``y = x + b (+ b ...)`` with ``props`` as metadata and a ``big``-value initializer
    (weights the reader must skip, not decode)."""
    chain = ["x"] + [f"h{i}" for i in range(nodes - 1)] + ["y"]
    graph = helper.make_graph(
        [helper.make_node("Add", [a, "b"], [c]) for a, c in zip(chain, chain[1:], strict=False)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(np.arange(3, dtype=np.float32), "b")]
        + ([numpy_helper.from_array(np.ones(big, np.float32), "w")] if big else []),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = "a doc string, a field the reader skips"
    return model


PROPS = {
    "ganpipe.task": "super_resolve",
    "ganpipe.scale": "4",
    "ganpipe.inputs": json.dumps([{"name": "image", "kind": "image", "shape": []}]),
    "ganpipe.note": 'ünïcode ✓, quotes " and a\nnewline',
    "other.tool": "",
}


def test_the_card_and_nodes_match_onnx_load(tmp_path):
    path = tmp_path / "m.onnx"
    model = _model(PROPS, nodes=3, big=70_000)  # a weight over 2 varint bytes long
    path.write_bytes(model.SerializeToString())
    header = read_header(path)
    loaded = onnx.load_model(str(path), load_external_data=False)
    assert header.props == {p.key: p.value for p in loaded.metadata_props} == PROPS
    assert header.has_nodes and not header.may_have_external_data


def test_a_repeated_key_keeps_the_last_value_as_onnx_does():
    model = _model({"k": "first"})
    entry = model.metadata_props.add()
    entry.key, entry.value = "k", "second"
    assert parse_header(model.SerializeToString()).props == {"k": "second"}


def test_external_data_is_flagged_for_the_full_check(tmp_path):
    model = _model({})
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    assert parse_header(model.SerializeToString()).may_have_external_data


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"this is not a model\n" * 20,
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "truncated",
        "no nodes",
    ],
    ids=["empty", "text", "png-like", "truncated", "no-nodes"],
)
def test_what_is_not_an_onnx_model_is_refused(tmp_path, content):
    data = _model(PROPS, big=1000).SerializeToString()
    if content == "truncated":
        content = data[: len(data) // 2]
    elif content == "no nodes":
        empty = _model(PROPS)
        del empty.graph.node[:]
        content = empty.SerializeToString()
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        read_header(path)
    with pytest.raises(ModelFileError, match="is not a valid ONNX model"):
        open_model(path, "cpu")
