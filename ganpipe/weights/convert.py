"""Released weights to ONNX: the net loaded strictly, exported with the same ONNX contract
as trained ``esrgan`` / ``compact`` models (parity-checked against torch), and optionally
converted to float16 (weights and activations; inputs and outputs stay float32), its model
card rewritten with ``precision = "float16"``."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganpipe.errors import ModelFileError
from ganpipe.variant import ExportSpec, InputSpec
from ganpipe.weights.detect import Architecture, detect_architecture, to_basicsr_layout
from ganpipe.weights.read import one_line, read_state_dict


def load_model(path: str | Path, scale: int | None = None) -> tuple[torch.nn.Module, Architecture]:
    """The net of a weights file, loaded strictly, in eval mode."""
    state = to_basicsr_layout(read_state_dict(path), path)
    arch = detect_architecture(state, path, scale)
    net = arch.build()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ModelFileError(
            f"{path}: weights do not fit a {arch.variant} x{arch.scale} net "
            f"({' '.join(lines[1:2]) or lines[0]})"
        ) from None
    return net.eval(), arch


@dataclass
class ImportResult:
    """What :func:`import_weights` wrote: the file, the net found, and the max abs
    differences ONNX vs torch (float32, and float16 when converted)."""

    path: Path
    arch: Architecture
    max_abs_diff: float
    fp16_max_abs_diff: float | None = None


def export_spec(net: torch.nn.Module, arch: Architecture, source: str = "") -> ExportSpec:
    """The export of an imported net: one image input, ``upscaled`` output in [0, 1], the
    scale and tile multiple (and ``source``, the file name) for its model card."""
    from ganpipe.nn.sr import SRExport

    g = torch.Generator().manual_seed(0)
    meta: dict[str, Any] = {
        "scale": arch.scale,
        "tile_multiple": arch.tile_multiple,
        "arch": {"variant": arch.variant, **arch.kwargs},
    }
    if source:
        meta["imported_from"] = source
    return ExportSpec(
        module=SRExport(net, arch.scale, arch.tile_multiple).eval(),
        inputs=[InputSpec("image", "image", (arch.channels,))],
        example_inputs=(torch.rand(2, arch.channels, 16, 12, generator=g),),
        output_name="upscaled",
        value_range=(0.0, 1.0),
        metadata=meta,
    )


def _toposort(graph) -> None:
    """Order ``graph.node`` so every node comes after the producers of its inputs (the
    float16 converter appends its input casts at the end)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:
            raise ModelFileError("float16 conversion produced a cyclic graph; drop --fp16")
        for n in done:
            ready.update(n.output)
        ordered += done
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def _unshare_float_inputs(graph) -> None:
    """Give each Resize its own copy of a shared ``scales`` initializer: the float16
    converter casts such inputs per node under one name, which breaks SSA form."""
    inits = {t.name: t for t in graph.initializer}
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if node.op_type != "Resize" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        name = node.input[2]
        if name in seen:
            copy = type(inits[name])()
            copy.CopyFrom(inits[name])
            copy.name = f"{name}__{i}"
            graph.initializer.append(copy)
            node.input[2] = copy.name
        seen.add(name)


def to_float16(src: Path, dst: Path, spec: ExportSpec, atol: float = 0.05) -> float:
    """Convert the float32 ONNX ``src`` to float16 weights and activations (inputs and
    outputs stay float32), its model card with ``precision = "float16"``, check it
    against torch; write ``dst``. Returns the max abs difference."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from ganpipe.fsutil import atomic_path
    from ganpipe.modelcard import ModelCard

    model = onnx.load_model(str(src))
    card = ModelCard.from_onnx(model, src).model_copy(update={"precision": "float16"})
    _unshare_float_inputs(model.graph)
    try:
        half = convert_float_to_float16(model, keep_io_types=True)
        _toposort(half.graph)
        del half.metadata_props[:]
        for key, value in card.to_props().items():
            entry = half.metadata_props.add()
            entry.key, entry.value = key, value
        half.producer_name = "ganpipe"
        onnx.checker.check_model(half)
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - converter / checker errors are many
        raise ModelFileError(
            f"float16 conversion of {dst.name} failed ({type(exc).__name__}: "
            f"{one_line(exc)}); use float32 (drop --fp16)"
        ) from None
    x = torch.rand(1, *spec.example_inputs[0].shape[1:], generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = spec.module(x).numpy()
    with atomic_path(dst) as tmp:
        onnx.save_model(half, str(tmp))
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = sess.run(None, {spec.inputs[0].name: x.numpy()})[0].astype(np.float32)
        diff = float(np.max(np.abs(got - expected)))
        if got.shape != expected.shape or not diff <= atol:
            raise ModelFileError(
                f"float16 conversion of {dst.name} is off: max abs diff "
                f"{diff:.3g} > {atol:g}; use float32 (drop --fp16)"
            )
    return diff


def import_weights(
    src: str | Path,
    dst: str | Path,
    *,
    scale: int | None = None,
    fp16: bool = False,
    opset: int = 18,
    atol: float = 1e-3,
) -> ImportResult:
    """Read ``src`` (.pth / .safetensors), detect the net, export ``dst`` (.onnx)."""
    from ganpipe.export.onnx_export import build_card, export_onnx

    src, dst = Path(src), Path(dst)
    net, arch = load_model(src, scale)
    spec = export_spec(net, arch, src.name)
    card = build_card(spec, arch.variant, "super_resolve", 0, arch.channels, ())
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not fp16:
        result = export_onnx(spec, dst, card, opset=opset, atol=atol)
        return ImportResult(dst, arch, result.max_abs_diff)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=".fp32.onnx", dir=dst.parent)
    os.close(fd)
    try:
        result = export_onnx(spec, tmp, card, opset=opset, atol=atol)
        half = to_float16(Path(tmp), dst, spec)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return ImportResult(dst, arch, result.max_abs_diff, half)
