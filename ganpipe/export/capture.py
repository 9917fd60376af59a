"""The graph capture behind every ONNX export: ``torch.export`` with the dynamic axes an
exported model promises (batch; height and width of image inputs), checked.

``torch.onnx.export(dynamo=True)`` on a module falls back to ``torch.export.draft_export``
when the net's Python code specialises a dynamic axis (SwinIR's ``window_reverse`` takes
``int(n / (h * w / ws / ws))``, which fixes the batch at the example's). The ``.onnx``
then still declares a dynamic batch, but silently computes garbage at any other: a model
that is wrong without saying so. Here the capture is ``torch.export.export`` itself, so
such a specialisation is an error (:class:`DynamicShapeError`, naming the guard), and the
ONNX exporter converts the captured program as it is. Conditions that hold at every size
but that the shape solver cannot prove become runtime asserts on a second capture; the
exports are then parity-checked at batches and sizes the capture never saw.

Image inputs of imported nets whose sides must be multiples of ``tile_multiple`` (the
card's) are declared as ``multiple * k`` (``multiples=True``): window-attention nets pad to that multiple themselves,
and with the input known to be a multiple the padding is provably nothing. Models with a
``fixed_tile`` (card field) are captured at that one shape, batch 1.

The capture also says the smallest side the graph is valid for (:func:`min_side`): the
exporter may narrow a declared range (``k >= 2`` where one window of attention is a
special case), and the card's ``min_size`` must say so.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ganpipe.errors import GanpipeError
from ganpipe.variant import ExportSpec

#: the largest side (pixels) and batch a dynamic axis is declared for
MAX_SIDE, MAX_BATCH = 65536, 65536


class DynamicShapeError(GanpipeError):
    """The net's code fixes an axis that the export declares dynamic (``guard``: the
    first condition the capture found, as torch states it)."""

    def __init__(self, what: str, guard: str):
        super().__init__(
            f"{what} cannot be exported with a dynamic height, width and batch ({guard})"
        )
        self.guard = guard


def fixed_tile(spec: ExportSpec) -> int | None:
    """The one input side of a fixed-shape export (``metadata["fixed_tile"]``), or None."""
    value = spec.metadata.get("fixed_tile")
    return int(value) if value else None


def dynamic_shapes(
    spec: ExportSpec, multiples: bool = False, least: int = 1
) -> tuple[dict[int, Any], ...] | None:
    """A dynamic batch axis for every input, dynamic height and width for images (with
    ``multiples``: multiples of the metadata's ``tile_multiple``, else any: ganpipe's own
    SR nets pad inside the graph) of at least ``least`` pixels; None for a fixed-tile
    export."""
    if fixed_tile(spec):
        return None
    Dim = torch.export.Dim
    batch = Dim("batch", min=1, max=MAX_BATCH)
    m = int(spec.metadata.get("tile_multiple", 1) or 1) if multiples else 1
    shapes = []
    for s in spec.inputs:
        dims: dict[int, Any] = {0: batch}
        if s.kind == "image":
            for axis, side in ((2, "h"), (3, "w")):
                if m > 1:
                    low = max(1, -(-least // m))
                    dims[axis] = m * Dim(f"{s.name}_{side}_blocks", min=low, max=MAX_SIDE // m)
                else:
                    dims[axis] = Dim(f"{s.name}_{side}", min=least, max=MAX_SIDE)
        shapes.append(dims)
    return tuple(shapes)


def _guard(exc: BaseException) -> str:
    """The first violated condition of a torch.export constraint error, short."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("- "):
            line = line[2:]
            line = re.sub(r"L\['(\w+)'\]\.size\(\)\[(\d)\]", r"\1.shape[\2]", line)
            return line[:240]
    return text.strip().splitlines()[0][:240] if text.strip() else type(exc).__name__


def capture(
    module: torch.nn.Module, spec: ExportSpec, multiples: bool = False
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``module`` on ``spec``'s example inputs with the declared
    dynamic axes (:func:`dynamic_shapes`); :class:`DynamicShapeError` when the code
    fixes one of them."""
    args = tuple(x.cpu() for x in spec.example_inputs)
    shapes = dynamic_shapes(spec, multiples)
    try:
        return torch.export.export(module, args, dynamic_shapes=shapes, strict=False)
    except torch._dynamo.exc.UserError as exc:  # noqa: SLF001 - the constraint errors' class
        if "Constraints violated" not in str(exc) and "specialized" not in str(exc):
            raise
        first = exc
    # Conditions the shape solver cannot prove (``2 * h <= 4 * ((h + 1) // 2)`` from a pad
    # to even sides) are true at every size; captured once more with them as runtime
    # asserts, the graph stays general. A smallest side the net needs (``3 <= h``: the
    # solver's own 0/1 rule inside the net) is declared and said in the card; a real
    # specialisation still fails here.
    least = 1
    for _ in range(2):
        shapes = dynamic_shapes(spec, multiples, least)
        try:
            return torch.export.export(
                module,
                args,
                dynamic_shapes=shapes,
                strict=False,
                prefer_deferred_runtime_asserts_over_guards=True,
            )
        except torch._dynamo.exc.UserError as exc:  # noqa: SLF001
            text = str(exc)
            if "Constraints violated" not in text and "specializ" not in text.lower():
                raise
            lows = [int(v) for v in re.findall(r"generated guard (\d+) <= \S+ and", text)]
            if not lows or max(lows) <= least or max(lows) > 64:
                raise DynamicShapeError(type(spec.module).__name__, _guard(first)) from exc
            least = max(lows)
    raise DynamicShapeError(type(spec.module).__name__, _guard(first))


def min_side(program: torch.export.ExportedProgram) -> int:
    """The smallest height / width the captured graph holds for (0 when it says nothing):
    the lower bound of the image inputs' symbolic sides under its range constraints."""
    ranges = program.range_constraints
    best = 0
    for node in program.graph.nodes:
        if node.op != "placeholder":
            continue
        val = node.meta.get("val")
        shape = getattr(val, "shape", ())
        if len(shape) != 4:
            continue
        for side in shape[2:]:
            expr = getattr(getattr(side, "node", None), "expr", None)
            if expr is None:
                continue
            lows = {s: ranges[s].lower for s in expr.free_symbols if s in ranges}
            try:
                best = max(best, int(expr.subs(lows)))
            except (TypeError, ValueError):
                continue
    return best
