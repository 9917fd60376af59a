"""Released weights to ONNX: the net loaded strictly (Real-ESRGAN layouts with ganpipe's own
nets, bit-exact; any other architecture through spandrel), exported with the same ONNX
contract as trained ``esrgan`` / ``compact`` models (parity-checked against torch, and
spandrel's nets also against spandrel at further sizes), and optionally converted to
float16 (weights and activations; inputs and outputs stay float32), its model card
rewritten with ``precision = "float16"``."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganpipe.errors import ModelFileError, WriteError, one_line
from ganpipe.fsutil import write_error
from ganpipe.variant import ExportSpec, InputSpec
from ganpipe.weights.detect import (
    Architecture,
    detect_architecture,
    expected_layouts,
    is_realesrgan,
    to_basicsr_layout,
)
from ganpipe.weights.half import to_float16
from ganpipe.weights.read import read_state_dict
from ganpipe.weights.spandrel_arch import (
    INSTALL,
    SpandrelArch,
    SpandrelExport,
    load_spandrel,
    spandrel_version,
    trace_size,
)
from ganpipe.weights.spandrel_fixes import exportable, window_multiple
from ganpipe.weights.spandrel_parity import spandrel_parity

#: the side of the fixed tile a net that cannot take any size is exported at, unless
#: ``--tile`` says otherwise (rounded up to the net's multiple)
DEFAULT_TILE = 256
#: the largest side multiple an export may ask of the input (beyond it: a fixed tile)
MAX_MULTIPLE = 64

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
    tile: int | None = None  # the fixed tile the graph takes (None: any size)
    #: spandrel's nets: max abs diff at an odd size the upscaler pads (None: not checked)
    padded_diff: float | None = None


def export_spec(
    net: torch.nn.Module, arch: AnyArch, source: str = "", tile: int | None = None
) -> ExportSpec:
    """The export of an imported net: one image input, ``upscaled`` output in [0, 1], the
    scale and tile multiple (and ``source``, the file name; for spandrel's nets the
    minimum side, ``min_size``) for its model card. With ``tile`` (a multiple of the tile
    multiple, at least the minimum side), the graph takes that one shape, batch 1, and
    the card's ``fixed_tile`` says so."""
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
        h, w = trace_size(arch)
        if arch.minimum > 1:
            meta["min_size"] = arch.minimum
    else:
        module, (h, w) = SRExport(net, arch.scale, arch.tile_multiple), (16, 12)
    n = 2
    if tile:
        n, h, w = 1, tile, tile
        meta["fixed_tile"] = tile
    return ExportSpec(
        module=module.eval(),
        inputs=[InputSpec("image", "image", (arch.channels,))],
        example_inputs=(torch.rand(n, arch.channels, h, w, generator=g),),
        output_name="upscaled",
        value_range=(0.0, 1.0),
        metadata=meta,
    )


def export_net(
    net: torch.nn.Module,
    arch: AnyArch,
    dst: str | Path,
    source: str,
    *,
    fp16: bool = False,
    opset: int = 18,
    atol: float = 1e-3,
    tile: int | None = None,
    log: Callable[[str], Any] | None = None,
    what: str = "ONNX model",
) -> ImportResult:
    """Export a loaded net to ``dst`` (.onnx), parity-checked (see :func:`import_weights`).
    A spandrel net whose code fixes the input size is exported at a fixed tile instead
    (``tile``, default :data:`DEFAULT_TILE`), said through ``log``. A write that fails
    (disk full, read-only, ...) is a one-line :class:`~ganpipe.errors.WriteError` naming
    ``dst`` as ``what``; nothing is left under ``dst`` nor beside it."""
    dst = Path(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        # the float32 export is written under dst's own name (which its errors name) in
        # a temporary folder beside dst, then moved (or converted to float16) into place
        folder = Path(tempfile.mkdtemp(prefix=f".{dst.stem}.", dir=dst.parent))
    except OSError as exc:
        raise write_error(dst, exc, what) from None
    tmp = folder / dst.name
    try:
        if tile is not None:
            tile = fit_tile(arch, tile, source)
        spec, diff, tile, padded = _export_checked(net, arch, tmp, source, opset, atol, tile, log)
        if not fp16:
            os.replace(tmp, dst)
            return ImportResult(dst, arch, diff, tile=tile, padded_diff=padded)
        half = to_float16(tmp, dst, spec)
    except OSError as exc:
        raise _write_failed(dst, folder, exc, what) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return ImportResult(dst, arch, diff, half, tile=tile, padded_diff=padded)


def _write_failed(dst: Path, folder: Path, exc: OSError, what: str) -> WriteError:
    """The one-line error of a write that failed while exporting to ``dst``: one of the
    temporary copy (in ``folder``; atomic writes raise WriteError) or of ``dst`` itself
    is named as ``dst``, the file the user asked for."""
    where = exc.filename
    ours = where is None or isinstance(exc, WriteError)
    if exc.errno and (ours or Path(os.fsdecode(where)).parent in (folder, dst.parent)):
        exc = OSError(exc.errno, os.strerror(exc.errno))  # no file name: dst is named
    return write_error(dst, exc, what)


def fit_tile(arch: AnyArch, tile: int, source: str) -> int:
    """``tile`` checked against the net's size requirements (a multiple of its tile
    multiple, at least its minimum side): a one-line error saying which tile to use."""
    m = arch.tile_multiple
    least = max(getattr(arch, "minimum", 0), m, 16)
    if tile < least or tile % m:
        ok = max(least, tile - tile % m) if tile >= least else -(-least // m) * m
        raise ModelFileError(
            f"{source}: --tile {tile} does not fit this {arch.variant} net (tiles must be "
            f"multiples of {m} and at least {least} px); try --tile {ok}"
        )
    return tile


def _export_checked(net, arch, tmp, source, opset, atol, tile, log):
    """Export and check; returns the spec, the max abs difference and the fixed tile
    (None: any size). A spandrel net is first captured for any size (OmniSR, SPAN ...
    handle any size themselves); one whose capture needs its sides divisible by some ``k``
    (its attention windows: SwinIR pads to them itself, so spandrel states no multiple) is
    exported again for multiples of ``k``; one whose code fixes the size anyway, or whose
    dynamic graph fails the check, at a fixed tile."""
    from ganpipe.export.capture import DynamicShapeError
    from ganpipe.export.onnx_export import build_card, export_onnx

    spandrel = isinstance(arch, SpandrelArch)
    say = log or (lambda m: None)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    say(
        f"{source}: exporting {arch.name} x{arch.scale} ({params:.1f}M parameters) to ONNX "
        f"and checking it against {'spandrel' if spandrel else 'torch'}"
        + ("; nets this size take minutes on a CPU" if params >= 5 else "")
    )
    tried: set[int] = set()
    window = window_multiple(net) if spandrel else 1
    while True:
        spec = export_spec(net, arch, source, tile)
        card = build_card(spec, arch.variant, "super_resolve", 0, arch.channels, ())
        try:
            with exportable(net) if spandrel else contextlib.nullcontext():
                result = export_onnx(
                    spec, tmp, card, opset=opset, atol=atol, optimize=not spandrel,
                    multiples=spandrel,
                )  # fmt: skip
        except DynamicShapeError as exc:
            if not spandrel or tile is not None:
                raise ModelFileError(f"{source}: {exc}") from None
            moduli = [int(k) for k in re.findall(r"% (\d+)\)", exc.guard)] + [window]
            multiple = math.lcm(arch.multiple, *moduli)
            if moduli and multiple not in tried and multiple <= MAX_MULTIPLE:
                tried.add(multiple)
                arch.multiple = multiple
                continue
            tile = _fixed(arch, source, say, f"its code fixes the input size ({exc.guard})")
            continue
        except OSError:  # the file could not be written (disk full ...): not the net's fault
            raise
        except Exception as exc:  # noqa: BLE001 - the exporter's and ONNX Runtime's
            if not spandrel:
                raise
            multiple = math.lcm(arch.multiple, window)
            if tile is None and multiple not in tried and multiple > arch.multiple:
                tried.add(multiple)  # a window net whose capture fails at any size (HAT)
                arch.multiple = multiple
                continue
            raise _cannot(source, arch, exc) from None
        if not spandrel:
            return spec, result.max_abs_diff, tile, None
        try:  # a graph that runs at the capture's size but not at others: a fixed tile
            parity = spandrel_parity(tmp, arch, source)
            diff = max(result.max_abs_diff, parity.native)
            if not diff <= atol:
                raise ModelFileError(
                    f"{source}: the ONNX export of this {arch.name} model differs from "
                    f"spandrel's by {diff:.3g} > {atol:g}; it cannot be imported"
                )
        except ModelFileError as exc:
            if tile is not None:
                raise
            tile = _fixed(arch, source, say, f"its dynamic export failed the check: {exc}")
            continue
        if parity.padded > atol and tile:
            say(
                f"{source}: images smaller than the {tile} px tile are padded up to it, "
                f"which differs from spandrel's run of {arch.name} at their own size by up "
                f"to {parity.padded:.2g}"
            )
        elif parity.padded > atol:
            say(
                f"{source}: {arch.name} pads inside itself in its own way; ganpipe feeds it "
                f"multiples of {arch.multiple} px (reflect-padded), which differs from "
                f"spandrel's whole-image run of an odd size by up to {parity.padded:.2g} "
                f"near the bottom and right edges"
            )
        return spec, diff, tile, parity.padded


def _fixed(arch: SpandrelArch, source: str, say: Callable[[str], Any], why: str) -> int:
    """The default fixed tile for ``arch``, said with ``why``."""
    tile = fit_tile(arch, _up(DEFAULT_TILE, arch.tile_multiple), source)
    say(
        f"{source}: {arch.name}: {why}; exporting at a fixed {tile}x{tile} tile (exact at "
        f"that size; smaller images are padded to it and larger ones tiled, which can differ "
        f"from spandrel's run at their own size; pick another tile with --tile N)"
    )
    return tile


def _cannot(source: str, arch: AnyArch, exc: BaseException) -> ModelFileError:
    """The one-line refusal of an export the exporter failed on (its innermost reason)."""
    cause: BaseException = exc
    while cause.__cause__ is not None:  # the exporter's own error wraps the reason
        cause = cause.__cause__
    return ModelFileError(
        f"{source}: {arch.name} models cannot be exported to ONNX "
        f"({type(cause).__name__}: {one_line(cause)})"
    )


def _up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def import_weights(
    src: str | Path,
    dst: str | Path,
    *,
    scale: int | None = None,
    fp16: bool = False,
    opset: int = 18,
    atol: float = 1e-3,
    tile: int | None = None,
    log: Callable[[str], Any] | None = None,
) -> ImportResult:
    """Read ``src`` (.pth / .safetensors), detect the net, export ``dst`` (.onnx): parity
    against torch, and for spandrel's nets against spandrel's own model at sizes the
    export never saw (:mod:`ganpipe.weights.spandrel_parity`). ``tile``: export at that
    one input shape (see :func:`export_net`)."""
    src = Path(src)
    net, arch = load_model(src, scale)
    return export_net(
        net, arch, dst, src.name, fp16=fp16, opset=opset, atol=atol, tile=tile, log=log
    )
