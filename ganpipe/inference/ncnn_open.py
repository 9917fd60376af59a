"""``--runtime ncnn`` for :func:`ganpipe.inference.session.open_model`: the device checked,
the model converted and its parity with ONNX Runtime known (:mod:`.ncnn_convert`), and the
session opened (:mod:`.ncnn_runtime`); under ``--runtime auto`` on a CPU, a model ncnn
cannot take falls back to the next runtime with a note instead of failing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganpipe.devices import Device
from ganpipe.errors import ConfigError, ModelFileError

#: the tasks ncnn runs: image to image (NCHW in, NCHW out)
NCNN_TASKS = ("super_resolve", "translate")


def ncnn_threads() -> int:
    """ncnn's CPU threads: ``--threads``, else the cores this process may use, shared
    with the other workers of this host (:func:`ganpipe.cpus.threads_for`); how its idle
    threads wait on a busy machine: :func:`ganpipe.inference.ncnn_runtime.ncnn_module`."""
    from ganpipe.cpus import threads_for

    return threads_for()


def open_ncnn(
    path: Path, card: Any, device: Device, precision: str, *, fallback: bool
) -> tuple[Any | None, list[str]]:
    """The :class:`~ganpipe.inference.ncnn_runtime.NcnnSession` of ``path`` on ``device``
    and the notes to show (the one-time conversion, fp16's measured difference); with
    ``fallback`` (``--runtime auto`` on a CPU), ``(None, notes)`` where ncnn cannot run
    the model, so that the caller opens the next runtime."""
    from ganpipe.inference.ncnn_convert import checked_session
    from ganpipe.inference.ncnn_runtime import check_vulkan

    notes: list[str] = []
    vulkan = None if device.kind != "vulkan" else (device.index or 0)
    if card is None or card.task not in NCNN_TASKS:
        task = "a model without a ganpipe card" if card is None else f"a {card.task!r} model"
        if fallback and vulkan is None:
            return None, notes
        raise ConfigError(
            f"{path.name} is {task}; --runtime ncnn runs image-to-image models "
            f"(upscale); use --runtime onnxruntime"
        )
    if vulkan is not None:
        where = f"vulkan:{check_vulkan(vulkan)}"
    else:
        where = "cpu"
    try:
        session, worst = checked_session(
            path,
            card,
            vulkan=vulkan,
            device_name=where,
            precision=precision,
            threads=ncnn_threads(),
            log=notes.append,
        )
    except ModelFileError as exc:
        if not (fallback and vulkan is None):
            raise
        notes.append(f"ncnn not used ({exc}); running it on the next runtime")
        return None, notes
    if precision != "fp32":
        notes.append(
            f"ncnn {precision} on {where}: outputs differ from ONNX Runtime's fp32 by at most "
            f"{worst:.2g} (measured on a test image when first opened)"
        )
    return session, notes
