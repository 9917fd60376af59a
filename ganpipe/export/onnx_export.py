"""Export a variant's generator (or an imported SR net) to ONNX.

* dynamic batch axis (and dynamic height/width for image inputs);
* ``onnx.checker`` validation;
* parity against PyTorch on fresh random inputs (max abs diff reported);
* the model card (:class:`ganpipe.modelcard.ModelCard`, made by :func:`build_card`)
  written into the file's ``metadata_props`` with :meth:`~ganpipe.modelcard.ModelCard.to_props`,
  so inference needs only the ``.onnx`` file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from ganpipe import progress
from ganpipe.errors import GanpipeError
from ganpipe.fsutil import atomic_path
from ganpipe.modelcard import ModelCard, Task
from ganpipe.variant import ExportSpec


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote: the file, the ONNX-vs-torch parity and its card."""

    path: Path
    max_abs_diff: float
    card: ModelCard


def build_card(
    spec: ExportSpec,
    variant: str,
    task: Task,
    image_size: int,
    channels: int,
    class_names: tuple[str, ...],
) -> ModelCard:
    """The model card of an export: what the loop knows (variant, task, data size and
    classes) plus the variant's ``spec`` (inputs, output, value range, and
    ``spec.metadata``: keys that are card fields set them, the others go to ``extra``)."""
    fields = set(ModelCard.model_fields) - {"extra"}
    given = dict(spec.metadata)
    return ModelCard(
        variant=variant,
        task=task,
        image_size=image_size,
        channels=channels,
        class_names=tuple(class_names),
        value_range=spec.value_range,
        inputs=tuple(spec.inputs),
        output=spec.output_name,
        **{k: v for k, v in given.items() if k in fields},
        extra={k: v for k, v in given.items() if k not in fields},
    )


def _dynamic_shapes(spec: ExportSpec) -> tuple[dict[int, Any], ...]:
    """A dynamic batch axis for every input, dynamic height and width for images."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    shapes = []
    for s in spec.inputs:
        dims = {0: batch}
        if s.kind == "image":
            dims.update(
                {
                    2: torch.export.Dim(f"{s.name}_h", min=1, max=65536),
                    3: torch.export.Dim(f"{s.name}_w", min=1, max=65536),
                }
            )
        shapes.append(dims)
    return tuple(shapes)


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress and warnings; keep the user's console readable."""
    loggers = [
        logging.getLogger(n)
        for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo", "torch.fx")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def _first_line(exc: BaseException) -> str:
    """First line of an exception message without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0][:300] if text else ""


def export_onnx(
    spec: ExportSpec,
    path: str | Path,
    card: ModelCard,
    opset: int = 18,
    atol: float = 1e-3,
    parity_batch: int = 3,
    seed: int = 1234,
) -> ExportResult:
    """Export ``spec.module`` to ``path`` atomically, with ``card`` in its metadata;
    nothing is written if the export, the checker or the parity check (max abs diff
    against torch on ``parity_batch`` fresh inputs drawn with ``seed``, within ``atol``)
    fails: a one-line :class:`GanpipeError`."""
    import onnxruntime as ort

    path = Path(path)
    module = spec.module.eval().to("cpu")
    names = [s.name for s in spec.inputs]
    # the bar is made before _quiet() takes stderr over: export, check, parity
    with progress.bar(3, f"export {path.name}", "step") as bar, atomic_path(path) as tmp, _quiet():
        try:
            program = torch.onnx.export(
                module,
                tuple(x.cpu() for x in spec.example_inputs),
                input_names=names,
                output_names=[spec.output_name],
                dynamic_shapes=_dynamic_shapes(spec),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:  # noqa: BLE001 - exporter errors are many and deep
            raise GanpipeError(
                f"ONNX export of {type(module).__name__} failed: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        bar.update(1)
        model = program.model_proto
        for key, value in card.to_props().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.producer_name = "ganpipe"
        onnx.checker.check_model(model, full_check=True)
        onnx.save_model(model, str(tmp))
        bar.update(1)
        # Parity on fresh random inputs of another batch size than the example.
        g = torch.Generator().manual_seed(seed)
        feeds, tensors = {}, []
        for s, x in zip(spec.inputs, spec.example_inputs, strict=True):
            shape = (parity_batch, *x.shape[1:])
            if s.kind == "label":
                t = torch.randint(0, max(1, int(x.max()) + 1), shape, generator=g)
            else:
                t = torch.randn(shape, generator=g, dtype=x.dtype)
            tensors.append(t)
            feeds[s.name] = t.numpy()
        with torch.no_grad():
            expected = module(*tensors).float().numpy()
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = sess.run(None, feeds)[0]
        bar.update(1)
        diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        if got.shape != expected.shape or not diff <= atol:
            raise GanpipeError(
                f"ONNX parity check failed for {path.name}: max abs diff "
                f"{diff:.3g} > {atol:g} (shapes {got.shape} vs "
                f"{expected.shape}); nothing was written"
            )
    return ExportResult(path, diff, card)
