"""Tiny ONNX models that lie about themselves or never finish, built with ``onnx.helper``
and a ganpipe card in their metadata (no torch), for tests/test_faults_models.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

OPSET = [helper.make_opsetid("", 17)]
LATENT = 8


def _save(path: Path, nodes, inputs, outputs, inits, card: dict) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=8)
    for key, value in card.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = "ganpipe." + key, json.dumps(value)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _endless(src: str, dst: str, cond: str) -> onnx.NodeProto:
    """``dst = src`` through a ``Loop`` with no trip count whose condition ``cond`` never
    changes: no iterations when it is false, endless when it is true."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["c_in"], ["c_out"]),
            helper.make_node("Identity", ["v_in"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None),
        ],
    )
    return helper.make_node("Loop", ["", cond, src], [dst], body=body)


def generator(
    path: Path,
    *,
    channels: int = 3,
    spatial: bool = True,
    card_latent: int = LATENT,
    graph_latent: int | str = LATENT,
    card_channels: int = 3,
    head: str = "tanh",
    hang_above: int | None = None,
) -> Path:
    """z (batch, 8) -> images (batch, channels, 4, 4), or (batch, 48) without
    ``spatial``. ``head``: ``tanh``, ``sqrt0`` (NaN where z[:, 0] < 0), ``nan`` (NaN
    everywhere), ``x100`` (values far outside [-1, 1]), ``reshape`` (a Reshape that
    fails at run time). ``hang_above``: an endless Loop for batches larger than that.
    ``graph_latent`` a name: the graph's latent axis is dynamic (takes any card)."""
    pixels = channels * 16 if spatial else 48
    nodes, inits, src = [], [], "z"
    if hang_above is not None:
        nodes += [
            helper.make_node("Shape", ["z"], ["zs"]),
            helper.make_node("Gather", ["zs", "zero"], ["b"], axis=0),
            helper.make_node("Greater", ["b", "limit"], ["hang"]),
            _endless("z", "zl", "hang"),
        ]
        inits += [_const("zero", np.int64(0)), _const("limit", np.int64(hang_above))]
        src = "zl"
    if head == "reshape":
        nodes.append(helper.make_node("Reshape", [src, "bad_shape"], ["image"]))
        inits.append(_const("bad_shape", np.array([-1, 3, 4, 4], np.int64)))
    else:
        if isinstance(graph_latent, str):  # any latent: one value per image feeds the net
            nodes.append(helper.make_node("ReduceMean", [src], ["zm"], axes=[1], keepdims=1))
            src, rows = "zm", 1
        elif head == "sqrt0":
            nodes += [
                helper.make_node("Slice", [src, "s0", "s1", "s_axis"], ["z0"]),
                helper.make_node("Sqrt", ["z0"], ["zq"]),
            ]
            inits += [_const("s0", [0]), _const("s1", [1]), _const("s_axis", [1])]
            src, rows = "zq", 1
        else:
            rows = LATENT
        weights = np.random.default_rng(0).standard_normal((rows, pixels)) / np.sqrt(rows)
        inits.append(_const("w", weights.astype(np.float32)))
        nodes.append(helper.make_node("MatMul", [src, "w"], ["zw"]))
        last = {"tanh": "Tanh", "sqrt0": "Tanh", "x100": "Tanh", "nan": "Abs"}[head]
        nodes.append(helper.make_node(last, ["zw"], ["t"]))
        if head == "x100":
            nodes.append(helper.make_node("Mul", ["t", "hundred"], ["t2"]))
            inits.append(_const("hundred", np.float32(100)))
        if head == "nan":  # sqrt(-|zw| - 1): NaN for every value
            nodes += [
                helper.make_node("Neg", ["t"], ["tn"]),
                helper.make_node("Sub", ["tn", "one"], ["tm"]),
                helper.make_node("Sqrt", ["tm"], ["t2"]),
            ]
            inits.append(_const("one", np.float32(1)))
        shape = [-1, channels, 4, 4] if spatial else [-1, 48]
        inits.append(_const("shape", np.array(shape, np.int64)))
        nodes.append(
            helper.make_node(
                "Reshape", ["t2" if head in ("x100", "nan") else "t", "shape"], ["image"]
            )
        )
    out_shape = ["batch", channels, 4, 4] if spatial else ["batch", 48]
    card = {
        "format_version": 1,
        "variant": "handmade",
        "task": "generate",
        "image_size": 4,
        "channels": card_channels,
        "value_range": [-1.0, 1.0],
        "inputs": [{"name": "z", "kind": "normal", "shape": [card_latent]}],
        "output": "image",
        "latent_dim": card_latent,
    }
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", graph_latent])]
    outputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, out_shape)]
    return _save(path, nodes, inputs, outputs, inits, card)


def upscaler(
    path: Path, *, out_channels: int = 3, head: str = "", hang_above: int | None = None
) -> Path:
    """An x2 nearest-neighbour SR model. ``out_channels`` other than 3: a 1x1 conv to that
    many first. ``head``: ``nan`` (NaN everywhere), ``reshape`` (fails unless 3 * H * W is
    a multiple of 72, e.g. 24x24 runs, 32x32 and 64x64 fail). ``hang_above``: an endless
    Loop for inputs taller than that."""
    nodes, inits, src = [], [], "image"
    if hang_above is not None:
        nodes += [
            helper.make_node("Shape", ["image"], ["xs"]),
            helper.make_node("Gather", ["xs", "two"], ["h"], axis=0),
            helper.make_node("Greater", ["h", "limit"], ["hang"]),
            _endless("image", "xl", "hang"),
        ]
        inits += [_const("two", np.int64(2)), _const("limit", np.int64(hang_above))]
        src = "xl"
    if head == "reshape":
        nodes += [
            helper.make_node("Shape", [src], ["xs2"]),
            helper.make_node("Reshape", [src, "r_shape"], ["xr"]),
            helper.make_node("Reshape", ["xr", "xs2"], ["xb"]),
        ]
        inits.append(_const("r_shape", np.array([1, 3, 24, -1], np.int64)))
        src = "xb"
    if head == "nan":
        nodes += [
            helper.make_node("Neg", [src], ["xn"]),
            helper.make_node("Sub", ["xn", "one"], ["xm"]),
            helper.make_node("Sqrt", ["xm"], ["xq"]),
        ]
        inits.append(_const("one", np.float32(1)))
        src = "xq"
    if out_channels != 3:
        weight = np.ones((out_channels, 3, 1, 1), np.float32) / 3
        nodes.append(helper.make_node("Conv", [src, "cw"], ["xc"]))
        inits.append(_const("cw", weight))
        src = "xc"
    nodes.append(
        helper.make_node(
            "Resize",
            [src, "", "scales"],
            ["out"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
    )
    inits.append(_const("scales", np.array([1, 1, 2, 2], np.float32)))
    card = {
        "task": "super_resolve",
        "scale": 2,
        "channels": 3,
        "value_range": [0.0, 1.0],
        "inputs": [{"name": "image", "kind": "image", "shape": [3]}],
        "output": "out",
    }
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", "c", "H", "W"])]
    return _save(path, nodes, inputs, outputs, inits, card)


def write_images(folder: Path, sides: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, side in enumerate(sides):
        arr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i}_{side}.png")
    return folder
