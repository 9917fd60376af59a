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

import numpy as np
import onnx
import torch

from ganpipe import progress
from ganpipe.errors import GanpipeError
from ganpipe.export.capture import DynamicShapeError, capture, fixed_tile, min_side
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


def _parity(module, spec: ExportSpec, sess, batches, seed: int) -> float:
    """Max abs difference ONNX vs torch on fresh random inputs at each of ``batches``
    (inf when a shape differs)."""
    g, worst = torch.Generator().manual_seed(seed), 0.0
    for n in batches:
        feeds, tensors = {}, []
        for s, x in zip(spec.inputs, spec.example_inputs, strict=True):
            shape = (n, *x.shape[1:])
            if s.kind == "label":
                t = torch.randint(0, max(1, int(x.max()) + 1), shape, generator=g)
            else:
                t = torch.randn(shape, generator=g, dtype=x.dtype)
            tensors.append(t)
            feeds[s.name] = t.numpy()
        with torch.no_grad():
            expected = module(*tensors).float().numpy()
        got = sess.run(None, feeds)[0]
        if got.shape != expected.shape:
            return float("inf")
        if expected.size:
            worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def export_onnx(
    spec: ExportSpec,
    path: str | Path,
    card: ModelCard,
    opset: int = 18,
    atol: float = 1e-3,
    parity_batch: int = 3,
    seed: int = 1234,
    optimize: bool = True,
    multiples: bool = False,
) -> ExportResult:
    """Export ``spec.module`` to ``path`` atomically, with ``card`` in its metadata;
    nothing is written if the export, the checker or the parity check (max abs diff
    against torch on ``parity_batch`` fresh inputs drawn with ``seed``, within ``atol``)
    fails: a one-line :class:`GanpipeError`. ``optimize``: run onnxscript's graph optimizer
    (imported transformer nets skip it: on SwinIR-M it runs for more than ten minutes, and
    ONNX Runtime optimizes the graph when it loads it anyway). ``multiples``: image sides
    declared as multiples of the card's ``tile_multiple`` (see :mod:`ganpipe.export.capture`)."""
    import onnxruntime as ort

    path = Path(path)
    module = spec.module.eval().to("cpu")
    names = [s.name for s in spec.inputs]
    # the bar is made before _quiet() takes stderr over: export, check, parity
    with progress.bar(3, f"export {path.name}", "step") as bar, atomic_path(path) as tmp, _quiet():
        try:
            captured = capture(module, spec, multiples)
            program = torch.onnx.export(
                captured,
                input_names=names,
                output_names=[spec.output_name],
                opset_version=opset,
                dynamo=True,
                optimize=optimize,
                external_data=False,
                verbose=False,
            )
        except DynamicShapeError:
            raise
        except Exception as exc:  # noqa: BLE001 - exporter errors are many and deep
            raise GanpipeError(
                f"ONNX export of {type(module).__name__} failed: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        bar.update(1)
        least = min_side(captured)
        if least > max(card.min_size, 1):  # the capture narrowed the sides' range: the card says so
            card = card.model_copy(update={"min_size": least})
        model = program.model_proto
        for key, value in card.to_props().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.producer_name = "ganpipe"
        onnx.checker.check_model(model, full_check=True)
        onnx.save_model(model, str(tmp))
        bar.update(1)
        # Parity on fresh random inputs at batch 1 and at another batch than the example's
        # (a capture that fixed the batch would fail here, not in users' hands).
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        batches = (1,) if fixed_tile(spec) else (1, parity_batch)
        diff = _parity(module, spec, sess, batches, seed)
        bar.update(1)
        if not diff <= atol:
            raise GanpipeError(
                f"ONNX parity check failed for {path.name}: max abs diff "
                f"{diff:.3g} > {atol:g}; nothing was written"
            )
    return ExportResult(path, diff, card)
