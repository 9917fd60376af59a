"""The ``--fp16`` conversion of an exported ``.onnx``: float16 weights and activations
(inputs and outputs stay float32), its model card rewritten with ``precision =
"float16"``, checked against torch."""

from __future__ import annotations

from pathlib import Path

import torch

from ganpipe.errors import ModelFileError, one_line
from ganpipe.variant import ExportSpec


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
        try:  # float16 shape arithmetic can break a graph (SwinIR's mask computation)
            sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            got = sess.run(None, {spec.inputs[0].name: x.numpy()})[0].astype(np.float32)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors are many
            raise ModelFileError(
                f"float16 conversion of {dst.name} does not run "
                f"({one_line(exc).split(' : ')[-1][:160]}); use float32 (drop --fp16)"
            ) from None
        diff = float(np.max(np.abs(got - expected)))
        if got.shape != expected.shape or not diff <= atol:
            raise ModelFileError(
                f"float16 conversion of {dst.name} is off: max abs diff "
                f"{diff:.3g} > {atol:g}; use float32 (drop --fp16)"
            )
    return diff
