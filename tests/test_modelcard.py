"""The model card (ganpipe.modelcard): the typed metadata contract inside every .onnx.

Round trips through ``metadata_props``, plugin keys kept, files from a newer ganpipe and
bad values refused in one line (also through a real ``ganpipe generate``), and files
written by older ganpipes still read. The models are built with ``onnx.helper`` (no torch).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper

from ganpipe.errors import ModelFileError
from ganpipe.inference.generate import generate_to_folder
from ganpipe.inference.session import open_model
from ganpipe.modelcard import FORMAT_VERSION, PREFIX, InputSpec, ModelCard

CARD = ModelCard(
    variant="handmade",
    task="generate",
    image_size=4,
    channels=3,
    class_names=("red", "green"),
    value_range=(-1.0, 1.0),
    inputs=(InputSpec("z", "normal", (4,)), InputSpec("label", "label")),
    latent_dim=4,
    extra={"arch": {"depth": 2}, "trained_by": "someone"},
)


def write_model(path: Path, props: dict[str, str]) -> Path:
    """A 4x4 RGB conditional generator (``tanh(z @ W + table[label])``) with ``props`` as
    its ``metadata_props``."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 48)).astype(np.float32), "W"),
        numpy_helper.from_array(np.linspace(-1, 1, 96, dtype=np.float32).reshape(2, 48), "T"),
        numpy_helper.from_array(np.array([-1, 3, 4, 4], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("MatMul", ["z", "W"], ["zw"]),
        helper.make_node("Gather", ["T", "label"], ["emb"], axis=0),
        helper.make_node("Add", ["zw", "emb"], ["sum"]),
        helper.make_node("Tanh", ["sum"], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], ["image"]),
    ]
    graph = helper.make_graph(
        nodes,
        "handmade",
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def with_field(props: dict[str, str], key: str, value: str | None) -> dict[str, str]:
    """``props`` with ``ganpipe.<key>`` set to the raw string ``value`` (None: removed)."""
    out = {k: v for k, v in props.items() if k != PREFIX + key}
    if value is not None:
        out[PREFIX + key] = value
    return out


def assert_one_line_cli_error(proc, code: int, *fragments: str) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- round trip -------------------------------------------------------------------------
def test_to_props_from_props_round_trip():
    props = CARD.to_props()
    assert all(k.startswith(PREFIX) and isinstance(v, str) for k, v in props.items())
    assert json.loads(props["ganpipe.format_version"]) == FORMAT_VERSION
    assert props["ganpipe.task"] == "generate"  # strings are written as they are
    assert json.loads(props["ganpipe.num_classes"]) == 2  # for older readers
    assert json.loads(props["ganpipe.inputs"])[0] == {"name": "z", "kind": "normal", "shape": [4]}
    assert "ganpipe.scale" not in props  # None fields are left out
    back = ModelCard.from_props(props)
    assert back == CARD
    assert back.inputs[1] == InputSpec("label", "label", ())
    assert back.conditional and back.num_classes == 2 and back.image_input() is None
    assert back.to_props() == props


def test_round_trip_through_a_file(tmp_path):
    path = write_model(tmp_path / "m.onnx", CARD.to_props())
    assert ModelCard.from_onnx(onnx.load(str(path)), path) == CARD
    assert open_model(path, "cpu", task="generate").card == CARD


def test_unknown_keys_are_kept_in_extra():
    props = {
        **CARD.to_props(),
        "ganpipe.plugin_key": json.dumps([1, 2]),
        "ganpipe.note": "plain text, not JSON",
        "other.tool": "not ganpipe's",  # other prefixes are not the card's
    }
    card = ModelCard.from_props(props)
    assert card.extra == {**CARD.extra, "plugin_key": [1, 2], "note": "plain text, not JSON"}
    again = card.to_props()
    assert again["ganpipe.plugin_key"] == "[1, 2]"
    assert again["ganpipe.note"] == "plain text, not JSON"
    assert "other.tool" not in again
    assert ModelCard.from_props(again) == card


def test_precision_update_keeps_everything_else():
    # what the float16 copy of an imported model writes (ganpipe.weights.convert)
    half = ModelCard.from_props(CARD.model_copy(update={"precision": "float16"}).to_props())
    assert half.precision == "float16"
    assert half.model_copy(update={"precision": "float32"}) == CARD


# -- refused ----------------------------------------------------------------------------
def test_newer_format_version_is_refused():
    props = with_field(CARD.to_props(), "format_version", str(FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError) as err:
        ModelCard.from_props(props, "new.onnx")
    msg = str(err.value)
    assert "\n" not in msg
    assert f"new.onnx has model card format {FORMAT_VERSION + 1}" in msg
    assert "upgrade ganpipe" in msg


def test_newer_format_version_through_ganpipe_generate(tmp_path):
    props = with_field(CARD.to_props(), "format_version", str(FORMAT_VERSION + 1))
    model = write_model(tmp_path / "new.onnx", props)
    proc = run_cli("generate", "-m", str(model), "-n", "2", "-o", "out", cwd=tmp_path)
    assert_one_line_cli_error(
        proc, 2, "new.onnx", f"model card format {FORMAT_VERSION + 1}", "pip install -U ganpipe"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "key, raw, field",
    [
        ("channels", "7", "channels"),
        ("task", "paint", "task"),
        ("value_range", "[1.0, -1.0]", "value_range"),
        # kinds are names (plugins add kinds): one that cannot be a name is refused
        ("inputs", json.dumps([{"name": "z", "kind": "Weird kind!", "shape": [4]}]), "kind"),
        ("precision", "int4", "precision"),
        ("image_size", '"big"', "image_size"),
    ],
)
def test_bad_field_value_is_refused(key, raw, field):
    with pytest.raises(ModelFileError) as err:
        ModelCard.from_props(with_field(CARD.to_props(), key, raw), "bad.onnx")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("bad.onnx: model card field") and field in msg
    assert "re-export the model" in msg


def test_bad_field_value_through_ganpipe_generate(tmp_path):
    model = write_model(tmp_path / "bad.onnx", with_field(CARD.to_props(), "channels", "7"))
    proc = run_cli("generate", "-m", str(model), "-n", "2", "-o", "out", cwd=tmp_path)
    assert_one_line_cli_error(proc, 2, "bad.onnx", "'channels'", "re-export")
    assert not (tmp_path / "out").exists()


def test_file_without_a_card_is_refused(tmp_path):
    model = write_model(tmp_path / "plain.onnx", {"producer.note": "x"})
    with pytest.raises(ModelFileError, match="is not a ganpipe model"):
        open_model(model, "cpu", task="generate")
    assert open_model(model, "cpu").card is None  # a feature extractor needs no card


# -- older files ------------------------------------------------------------------------
def old_props(version: str | None) -> dict[str, str]:
    """The metadata a first ganpipe wrote: ``format_version`` as the string ``"1"``,
    ``num_classes`` beside ``class_names``, no ``precision``."""
    props = with_field(CARD.to_props(), "format_version", version)
    return with_field(props, "precision", None)


@pytest.mark.parametrize("version", ["1", '"1"', None])
def test_old_format_version_strings_are_read(version):
    card = ModelCard.from_props(old_props(version))
    assert card.format_version == 1 and card.precision == "float32"
    assert card == CARD


def test_old_file_generates(tmp_path):
    model = write_model(tmp_path / "old.onnx", old_props("1"))
    summary = generate_to_folder(model, tmp_path / "out", 4, labels="green", device="cpu")
    assert len(summary.files) == 4
    proc = run_cli("generate", "-m", str(model), "-n", "2", "-o", "cli", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "cli").iterdir())[-1] == "sample_00001.png"
