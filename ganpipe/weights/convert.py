"""Released weights to ONNX: the net loaded strictly (Real-ESRGAN layouts with ganpipe's own
nets, bit-exact; any other architecture through spandrel), exported with the same ONNX
contract as trained ``esrgan`` / ``compact`` models (parity-checked against torch, and
spandrel's nets also against spandrel at further sizes), and optionally converted to
float16 (weights and activations; inputs and outputs stay float32), its model card
rewritten with ``precision = "float16"``."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganpipe.errors import ModelFileError
from ganpipe.variant import ExportSpec, InputSpec
from ganpipe.weights.detect import (
    Architecture,
    detect_architecture,
    expected_layouts,
    is_realesrgan,
    to_basicsr_layout,
)
from ganpipe.weights.read import one_line, read_state_dict
from ganpipe.weights.spandrel_arch import (
    INSTALL,
    SpandrelArch,
    SpandrelExport,
    load_spandrel,
    sizes,
    spandrel_version,
)

#: what a loaded net is: a Real-ESRGAN net of ganpipe's or one that spandrel detected
AnyArch = Architecture | SpandrelArch


def load_model(path: str | Path, scale: int | None = None) -> tuple[torch.nn.Module, AnyArch]:
    """The net of a weights file, loaded strictly, in eval mode."""
    return model_from_state(read_state_dict(path), path, scale)


def model_from_state(
    state: dict[str, torch.Tensor], path: str | Path = "weights", scale: int | None = None
) -> tuple[torch.nn.Module, AnyArch]:
    """The net of a state dict (as :func:`~ganpipe.weights.read.read_state_dict` gives it):
    RRDBNet / SRVGGNetCompact (also in the original ESRGAN layouts) with ganpipe's nets,
    anything else through spandrel (old ESRGAN layouts at x1 / x2 / x8 too)."""
    try:
        basicsr = to_basicsr_layout(state, path)
    except ModelFileError as exc:
        if spandrel_version() is None:
            raise ModelFileError(f"{exc}; spandrel reads the others: {INSTALL}") from None
        return load_spandrel(state, path, scale)
    if not is_realesrgan(basicsr):
        if spandrel_version() is None:
            keys = ", ".join(list(state)[:3])
            raise ModelFileError(
                f"{path}: unknown weight layout (first keys: {keys}); {expected_layouts()}; "
                f"other architectures (SwinIR, HAT, SPAN, ...) need spandrel: {INSTALL}"
            )
        return load_spandrel(state, path, scale, expected_layouts())
    state = basicsr
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
    arch: AnyArch
    max_abs_diff: float
    fp16_max_abs_diff: float | None = None


def export_spec(net: torch.nn.Module, arch: AnyArch, source: str = "") -> ExportSpec:
    """The export of an imported net: one image input, ``upscaled`` output in [0, 1], the
    scale and tile multiple (and ``source``, the file name; for spandrel's nets the
    minimum side, ``min_size``) for its model card."""
    from ganpipe.nn.sr import SRExport

    g = torch.Generator().manual_seed(0)
    meta: dict[str, Any] = {
        "scale": arch.scale,
        "tile_multiple": arch.tile_multiple,
        "arch": {"variant": arch.variant, **arch.kwargs},
    }
    if source:
        meta["imported_from"] = source
    if isinstance(arch, SpandrelArch):
        module: torch.nn.Module = SpandrelExport(net, arch)
        (h, w), *_ = sizes(arch)
        if arch.minimum > 1:
            meta["min_size"] = arch.minimum
    else:
        module, (h, w) = SRExport(net, arch.scale, arch.tile_multiple), (16, 12)
    return ExportSpec(
        module=module.eval(),
        inputs=[InputSpec("image", "image", (arch.channels,))],
        example_inputs=(torch.rand(2, arch.channels, h, w, generator=g),),
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


def spandrel_parity(path: Path, arch: SpandrelArch, source: str = "weights") -> float:
    """Max abs difference of the exported ``path`` against spandrel's own call of the net
    (its ``ImageModelDescriptor``) at sizes that the export trace did not see."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fixed = [d for d in sess.get_inputs()[0].shape[2:] if isinstance(d, int)]
    if fixed:  # the exporter specialised a side (adaptive pooling to a size of it ...)
        raise ModelFileError(
            f"{source}: {arch.name} models cannot be exported to ONNX with a dynamic height and "
            f"width (the export fixed the input to {'x'.join(map(str, fixed))} pixels)"
        )
    g, worst = torch.Generator().manual_seed(11), 0.0
    for h, w in sizes(arch)[1:]:
        x = torch.rand(1, arch.channels, h, w, generator=g)
        with torch.no_grad():
            expected = arch.descriptor(x.clone()).numpy()  # some nets scale x in place
        try:
            got = sess.run(None, {"image": x.numpy()})[0].astype(np.float32)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors are many
            raise ModelFileError(
                f"{source}: the {arch.name} ONNX export fails on a {h}x{w} input "
                f"({one_line(exc).split(' : ')[-1]}); it cannot take any height and width"
            ) from None
        if got.shape != expected.shape:
            raise ModelFileError(
                f"{source}: the {arch.name} ONNX export gives {got.shape} for a {h}x{w} input, "
                f"spandrel {expected.shape}; this architecture cannot be exported"
            )
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def export_net(
    net: torch.nn.Module,
    arch: AnyArch,
    dst: str | Path,
    source: str,
    *,
    fp16: bool = False,
    opset: int = 18,
    atol: float = 1e-3,
) -> ImportResult:
    """Export a loaded net to ``dst`` (.onnx), parity-checked (see :func:`import_weights`)."""
    from ganpipe.export.onnx_export import build_card, export_onnx

    dst = Path(dst)
    spec = export_spec(net, arch, source)
    card = build_card(spec, arch.variant, "super_resolve", 0, arch.channels, ())
    dst.parent.mkdir(parents=True, exist_ok=True)
    # the float32 export is written under dst's own name (which its errors name) in a
    # temporary folder beside dst, then moved (or converted to float16) into place
    folder = Path(tempfile.mkdtemp(prefix=f".{dst.stem}.", dir=dst.parent))
    tmp = folder / dst.name
    try:
        try:
            result = export_onnx(spec, tmp, card, opset=opset, atol=atol)
        except Exception as exc:  # noqa: BLE001 - the exporter's and ONNX Runtime's
            if not isinstance(arch, SpandrelArch):
                raise
            cause: BaseException = exc
            while cause.__cause__ is not None:  # the exporter's own error wraps the reason
                cause = cause.__cause__
            raise ModelFileError(
                f"{source}: {arch.name} models cannot be exported to ONNX "
                f"({type(cause).__name__}: {one_line(cause)})"
            ) from None
        diff = result.max_abs_diff
        if isinstance(arch, SpandrelArch):
            diff = max(diff, spandrel_parity(tmp, arch, source))
            if not diff <= atol:
                raise ModelFileError(
                    f"{source}: the ONNX export of this {arch.name} model differs from "
                    f"spandrel's by {diff:.3g} > {atol:g}; it cannot be imported"
                )
        if not fp16:
            os.replace(tmp, dst)
            return ImportResult(dst, arch, diff)
        half = to_float16(tmp, dst, spec)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return ImportResult(dst, arch, diff, half)


def import_weights(
    src: str | Path,
    dst: str | Path,
    *,
    scale: int | None = None,
    fp16: bool = False,
    opset: int = 18,
    atol: float = 1e-3,
) -> ImportResult:
    """Read ``src`` (.pth / .safetensors), detect the net, export ``dst`` (.onnx): parity
    against torch, and for spandrel's nets against spandrel at two more sizes."""
    src = Path(src)
    net, arch = load_model(src, scale)
    return export_net(net, arch, dst, src.name, fp16=fp16, opset=opset, atol=atol)
