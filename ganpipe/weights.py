"""Import released super-resolution weights (Real-ESRGAN / BasicSR) and export them to ONNX.

* ``.pth`` / ``.pt`` files are read with ``torch.load(..., weights_only=True)`` only (no
  arbitrary code runs while unpickling), ``.safetensors`` with safetensors;
* ``params_ema`` (preferred) or ``params`` wrappers are unwrapped, a ``module.`` prefix
  (DataParallel) is stripped;
* the architecture and its sizes are read from the keys and shapes: RRDBNet (ESRGAN,
  Real-ESRGAN x4plus / x2plus) or SRVGGNetCompact (realesr-general / animevideo);
* the two layouts of the original ESRGAN repository are renamed to BasicSR's first: the
  old ``model.0`` / ``model.1.sub.N.RDBk.convm.0`` one (``RRDB_ESRGAN_x4.pth`` and most
  community x4 models built on it) and the later ``RRDB_trunk`` / ``trunk_conv`` /
  ``upconv1`` / ``HRconv`` one. They are the same net as BasicSR's RRDBNet at x4;
* the net is loaded strictly, exported with the same ONNX contract as trained ``esrgan`` /
  ``compact`` models (parity-checked), and optionally converted to float16.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ganpipe.errors import ModelFileError

RRDB_KEYS = (
    "conv_first.weight",
    "body.0.rdb1.conv1.weight",
    "conv_body.weight",
    "conv_up1.weight",
    "conv_up2.weight",
    "conv_hr.weight",
    "conv_last.weight",
)
COMPACT_KEYS = ("body.0.weight", "body.1.weight (PReLU)", "body.N.weight (last conv)")
PTH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file, unwrapped from ``params_ema`` / ``params``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"weights file {path} does not exist or is not a file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelFileError(
                f"{path}: not a readable .safetensors file ({_one_line(exc)})"
            ) from None
    elif path.suffix.lower() in PTH_SUFFIXES:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle raises many kinds
            text = str(exc)
            if "weights_only" in text or "Unsupported global" in text:
                m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
                what = f" ({m.group(1)})" if m else ""
                raise ModelFileError(
                    f"{path}: refusing to load: the file holds Python objects besides "
                    f"tensors{what}, which could run code when unpickled; only plain state "
                    f"dicts (or .safetensors) can be imported"
                ) from None
            raise ModelFileError(
                f"{path}: not a readable PyTorch weights file "
                f"({type(exc).__name__}: {_one_line(exc)})"
            ) from None
    else:
        raise ModelFileError(
            f"{path}: unknown weights format {path.suffix!r}; use .pth or .safetensors"
        )
    return unwrap(raw, path)


def unwrap(raw: Any, path: str | Path = "weights") -> dict[str, torch.Tensor]:
    """The state dict inside ``raw``: ``params_ema`` first, then ``params``, else ``raw``;
    non-tensor entries are dropped and a common ``module.`` prefix is stripped."""
    if isinstance(raw, dict):
        for key in ("params_ema", "params", "state_dict"):
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict):
        raise ModelFileError(
            f"{path}: expected a state dict (a mapping of names to tensors), "
            f"found {type(raw).__name__}"
        )
    state = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ModelFileError(
            f"{path}: no tensors found (keys: {', '.join(map(str, list(raw)[:5])) or 'none'})"
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


@dataclass
class Architecture:
    variant: str  # "esrgan" (RRDBNet) or "compact" (SRVGGNetCompact)
    scale: int
    channels: int
    kwargs: dict[str, int] = field(default_factory=dict)

    @property
    def tile_multiple(self) -> int:
        from ganpipe.nn.sr import RRDB_UNSHUFFLE

        return RRDB_UNSHUFFLE[self.scale] if self.variant == "esrgan" else 1

    def build(self) -> torch.nn.Module:
        from ganpipe.nn.sr import RRDBNet, SRVGGNetCompact

        if self.variant == "esrgan":
            return RRDBNet(self.channels, self.channels, self.scale, **self.kwargs)
        return SRVGGNetCompact(self.channels, self.channels, upscale=self.scale, **self.kwargs)


def _expected() -> str:
    return (
        f"expected RRDBNet keys ({', '.join(RRDB_KEYS[:2])}, ...; or ESRGAN's model.0, "
        f"model.1.sub... or RRDB_trunk...) or SRVGGNetCompact keys "
        f"({', '.join(COMPACT_KEYS)})"
    )


#: the later ESRGAN-repository RRDBNet names -> BasicSR's
_ESRGAN_NAMES = {
    "RRDB_trunk.": "body.",
    "trunk_conv.": "conv_body.",
    "upconv1.": "conv_up1.",
    "upconv2.": "conv_up2.",
    "HRconv.": "conv_hr.",
}
#: the old ESRGAN ``model.N`` sequential at x4 -> BasicSR's names
_OLD_ESRGAN_X4 = {
    "0": "conv_first",
    "3": "conv_up1",
    "6": "conv_up2",
    "8": "conv_hr",
    "10": "conv_last",
}


def to_basicsr_layout(
    state: dict[str, torch.Tensor], path: str | Path = "weights"
) -> dict[str, torch.Tensor]:
    """``state`` with the original ESRGAN repository's RRDBNet names renamed to BasicSR's
    (``state`` itself when it uses neither)."""
    if "RRDB_trunk.0.RDB1.conv1.weight" in state:
        out = {}
        for key, value in state.items():
            for old, new in _ESRGAN_NAMES.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
            out[re.sub(r"\.RDB(\d)\.", r".rdb\1.", key)] = value
        return out
    if "model.0.weight" not in state or "model.1.sub.0.RDB1.conv1.0.weight" not in state:
        return state
    tops = {k.split(".")[1] for k in state if re.match(r"^model\.\d+\.weight$", k)}
    if tops != set(_OLD_ESRGAN_X4):
        ups = len([t for t in tops if t not in ("0", "1")]) - 2
        raise ModelFileError(
            f"{path}: old-layout ESRGAN weights with {max(ups, 0)} upsampling "
            f"stage(s) (layers model.{', model.'.join(sorted(tops, key=int))})"
            f"; only the x4 layout (model.0, 3, 6, 8, 10) can be imported"
        )
    out = {}
    for key, value in state.items():
        if m := re.match(r"^model\.(\d+)\.(weight|bias)$", key):
            out[f"{_OLD_ESRGAN_X4[m.group(1)]}.{m.group(2)}"] = value
        elif m := re.match(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", key):
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif m := re.match(r"^model\.1\.sub\.(\d+)\.(weight|bias)$", key):  # the trunk conv
            out[f"conv_body.{m.group(2)}"] = value
        else:
            out[key] = value  # unknown: load_state_dict(strict=True) names it
    return out


def detect_architecture(
    state: dict[str, torch.Tensor], path: str | Path = "weights", scale: int | None = None
) -> Architecture:
    """Architecture, scale and sizes from the keys and shapes of ``state`` (in BasicSR's
    layout: see :func:`to_basicsr_layout`)."""
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        first = state["conv_first.weight"]
        channels = int(state["conv_last.weight"].shape[0]) if "conv_last.weight" in state else 3
        ratio, rem = divmod(int(first.shape[1]), channels)
        found = {1: 4, 4: 2, 16: 1}.get(ratio) if rem == 0 else None
        if found is None:
            raise ModelFileError(
                f"{path}: RRDBNet conv_first takes {first.shape[1]} channels "
                f"for {channels}-channel images; expected {channels} (x4), "
                f"{4 * channels} (x2) or {16 * channels} (x1)"
            )
        blocks = {
            int(m.group(1))
            for k in state
            if (m := re.match(r"^body\.(\d+)\.rdb1\.conv1\.weight$", k))
        }
        arch = Architecture(
            "esrgan",
            found,
            channels,
            {
                "num_feat": int(first.shape[0]),
                "num_block": len(blocks),
                "num_grow_ch": int(state["body.0.rdb1.conv1.weight"].shape[0]),
            },
        )
    elif "body.0.weight" in state and getattr(state.get("body.1.weight"), "ndim", 0) == 1:
        convs = sorted(
            int(m.group(1))
            for k, v in state.items()
            if (m := re.match(r"^body\.(\d+)\.weight$", k)) and v.ndim == 4
        )
        if len(convs) < 2 or convs[0] != 0:
            raise ModelFileError(
                f"{path}: SRVGGNetCompact needs 4-D conv weights body.0.weight "
                f"... body.N.weight; found {len(convs)} conv weight(s)"
            )
        first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
        channels = int(first.shape[1])
        s2, rem = divmod(int(last.shape[0]), channels)
        found = math.isqrt(s2) if rem == 0 else 0
        if found < 1 or found * found != s2:
            raise ModelFileError(
                f"{path}: SRVGGNetCompact's last conv has {last.shape[0]} "
                f"output channels, not {channels} x scale^2"
            )
        arch = Architecture(
            "compact",
            found,
            channels,
            {"num_feat": int(first.shape[0]), "num_conv": len(convs) - 2},
        )
    else:
        keys = ", ".join(list(state)[:3])
        raise ModelFileError(f"{path}: unknown weight layout (first keys: {keys}); {_expected()}")
    if scale is not None and scale != arch.scale:
        raise ModelFileError(
            f"{path}: these {arch.variant} weights are x{arch.scale}, "
            f"not x{scale}; drop --scale or pass --scale {arch.scale}"
        )
    return arch


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
    path: Path
    arch: Architecture
    max_abs_diff: float
    fp16_max_abs_diff: float | None = None


def export_spec(net: torch.nn.Module, arch: Architecture, source: str = ""):
    from ganpipe.nn.sr import SRExport
    from ganpipe.variant import ExportSpec, InputSpec

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


def to_float16(src: Path, dst: Path, spec, atol: float = 0.05) -> float:
    """Convert the float32 ONNX ``src`` to float16 weights and activations (inputs and
    outputs stay float32), keep its metadata, check it against torch; write ``dst``."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from ganpipe.fsutil import atomic_path

    model = onnx.load_model(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    _unshare_float_inputs(model.graph)
    try:
        half = convert_float_to_float16(model, keep_io_types=True)
        _toposort(half.graph)
        del half.metadata_props[:]
        for key, value in {**meta, "ganpipe.precision": "float16"}.items():
            entry = half.metadata_props.add()
            entry.key, entry.value = key, value
        half.producer_name = "ganpipe"
        onnx.checker.check_model(half)
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - converter / checker errors are many
        raise ModelFileError(
            f"float16 conversion of {dst.name} failed ({type(exc).__name__}: "
            f"{_one_line(exc)}); use float32 (drop --fp16)"
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
    meta = build_card(spec, arch.variant, "super_resolve", 0, arch.channels, ())
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not fp16:
        result = export_onnx(spec, dst, meta, opset=opset, atol=atol)
        return ImportResult(dst, arch, result.max_abs_diff)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=".fp32.onnx", dir=dst.parent)
    os.close(fd)
    try:
        result = export_onnx(spec, tmp, meta, opset=opset, atol=atol)
        half = to_float16(Path(tmp), dst, spec)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return ImportResult(dst, arch, result.max_abs_diff, half)
