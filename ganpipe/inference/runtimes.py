"""Runtimes for one ``.onnx``: ONNX Runtime (always), OpenVINO (the ``openvino`` extra)
and ncnn (the ``ncnn`` extra; :mod:`ganpipe.inference.ncnn_runtime`).

The same exported file runs on any of them; :func:`open_model` picks the runtime and wraps
an OpenVINO compiled model in :class:`OpenVINOSession` (an ncnn net in
:class:`~ganpipe.inference.ncnn_runtime.NcnnSession`), which answer the few calls the rest
of ganpipe makes of an ONNX Runtime session (``get_inputs``, ``get_outputs``, ``run``,
``get_providers``), so the tiling, blending and value-range code above them is shared.

``runtime``:

* ``onnxruntime`` - ONNX Runtime with the providers of :func:`choose_providers` (CUDA and
  TensorRT on NVIDIA GPUs, else the CPU);
* ``openvino`` - OpenVINO on its ``CPU`` device;
* ``ncnn`` - ncnn on the CPU or a Vulkan GPU (``--device vulkan[:N]``, which implies it),
  the model converted once with pnnx and checked against ONNX Runtime
  (:mod:`ganpipe.inference.ncnn_convert`);
* ``auto`` - :func:`auto_runtime`: ONNX Runtime where CUDA is usable (or a CUDA/TensorRT
  device is asked for); ncnn on Vulkan devices; else OpenVINO when it is installed, else
  ONNX Runtime (measured on a CPU: OpenVINO fastest per image, ncnn slowest;
  ``docs/runtimes.md``, ``bench/results/ncnn-speed-*.md``, ``runtimes*.md``).

``precision``: ``fp32`` (default; OpenVINO is told to keep f32 - its CPU plugin would
otherwise pick bf16 by itself on CPUs with bf16 units), ``bf16`` or ``fp16`` (OpenVINO
only, where the device executes them: checked after compiling, refused in one line where
the device would silently run another precision; ncnn: ``fp16`` storage, its difference
measured). Outputs at fp32 are within 1/255 of ONNX Runtime's; bf16 trades about 0.03 (in
[0, 1]) for speed.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ganpipe.cpus import threads_for
from ganpipe.errors import ConfigError, ModelFileError

Runtime = Literal["auto", "onnxruntime", "openvino", "ncnn"]
Precision = Literal["fp32", "bf16", "fp16"]
RUNTIMES: tuple[str, ...] = ("auto", "onnxruntime", "openvino", "ncnn")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")

#: ganpipe's precision names -> OpenVINO's element types (INFERENCE_PRECISION_HINT)
_OV_TYPES = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_INSTALL = "pip install 'ganpipe[openvino]'"


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_runtime(runtime: str, device_kind: str, cuda_usable: bool, precision: str) -> str:
    """The runtime ``auto`` means here (see the module docstring); others are checked."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if runtime == "auto" or (device_kind == "vulkan" and runtime == "onnxruntime"):
        runtime = auto_runtime(device_kind, cuda_usable)  # --device vulkan: ncnn, its one
    if device_kind == "vulkan" and runtime != "ncnn":
        raise ConfigError(
            f"--device vulkan runs on ncnn, not {runtime}; use --runtime ncnn (or auto)"
        )
    if runtime == "ncnn":
        return _checked_ncnn(device_kind, precision)
    if runtime == "openvino" and not openvino_installed():
        raise ConfigError(f"--runtime openvino: OpenVINO is not installed; {_INSTALL}")
    if runtime == "openvino" and device_kind in ("cuda", "tensorrt"):
        raise ConfigError(
            f"--runtime openvino runs on CPUs and Intel GPUs, not --device {device_kind}; "
            f"use --runtime onnxruntime for NVIDIA GPUs"
        )
    if runtime == "onnxruntime" and precision != "fp32":
        raise ConfigError(
            f"--precision {precision} runs on OpenVINO (--runtime openvino, {_INSTALL}); "
            f"for fp16 on NVIDIA GPUs import the model with `ganpipe import --fp16`"
        )
    return runtime


def auto_runtime(device_kind: str, cuda_usable: bool) -> str:
    """What ``--runtime auto`` runs on ``device_kind`` (docs/runtimes.md has the table)."""
    if device_kind == "vulkan":
        return "ncnn"
    if device_kind in ("cuda", "tensorrt") or (device_kind == "auto" and cuda_usable):
        return "onnxruntime"
    return "openvino" if openvino_installed() else "onnxruntime"


def next_to_ncnn() -> str:
    """What ``auto`` runs on a CPU when ncnn cannot take the model."""
    return "openvino" if openvino_installed() else "onnxruntime"


def _checked_ncnn(device_kind: str, precision: str) -> str:
    from ganpipe.inference.ncnn_runtime import INSTALL, ncnn_installed

    if not ncnn_installed():
        raise ConfigError(f"--runtime ncnn: ncnn is not installed; {INSTALL}")
    if device_kind in ("cuda", "tensorrt", "mps"):
        raise ConfigError(
            f"--runtime ncnn runs on CPUs and Vulkan GPUs (--device cpu, vulkan or "
            f"vulkan:N), not --device {device_kind}"
        )
    if precision == "bf16":
        raise ConfigError("--precision bf16 runs on OpenVINO; ncnn runs fp32 or fp16")
    return "ncnn"


class _Port:
    """What ganpipe reads of an ONNX Runtime ``NodeArg``: the name and the element type."""

    _TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "bf16": "tensor(bfloat16)"}

    def __init__(self, port: Any):
        self.name: str = port.get_any_name()
        self.type: str = self._TYPES.get(port.get_element_type().get_type_name(), "tensor(?)")
        self.shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]


class OpenVINOSession:
    """An OpenVINO compiled model behind the part of ONNX Runtime's session API ganpipe
    uses. One inference runs at a time (an infer request is not thread-safe)."""

    def __init__(self, path: Path, device: str = "CPU", precision: str = "fp32"):
        import openvino as ov

        core = ov.Core()
        if device not in core.available_devices:
            raise ConfigError(
                f"OpenVINO has no {device} device here (devices: "
                f"{', '.join(core.available_devices)}); use --device cpu"
            )
        try:
            model = core.read_model(str(path))
            compiled = core.compile_model(
                model,
                device,
                {
                    "INFERENCE_PRECISION_HINT": _OV_TYPES[precision],
                    "PERFORMANCE_HINT": "LATENCY",
                    # the CPUs this process may use (OpenVINO counts the machine's cores)
                    **({"INFERENCE_NUM_THREADS": threads_for()} if device == "CPU" else {}),
                },
            )
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise ModelFileError(f"{path}: OpenVINO cannot load it ({first})") from None
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        actual = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        if actual != _OV_TYPES[precision]:
            raise ConfigError(
                f"--precision {precision}: OpenVINO's {device} here runs {actual}, not "
                f"{_OV_TYPES[precision]} (this CPU lacks the units); use --precision fp32"
            )
        self.device, self.precision = device, precision
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def get_inputs(self) -> list[_Port]:
        return [_Port(p) for p in self._compiled.inputs]

    def get_outputs(self) -> list[_Port]:
        return [_Port(p) for p in self._compiled.outputs]

    def get_providers(self) -> list[str]:
        return [f"OpenVINO:{self.device}:{self.precision}"]

    def cancel(self) -> None:
        """Stop the inference in flight (the watchdog's stop: :mod:`ganpipe.inference.watchdog`);
        its ``run`` then raises."""
        self._request.cancel()

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            result = self._request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
            by_name = {p.get_any_name(): result[p] for p in self._compiled.outputs}
        wanted = names or [p.get_any_name() for p in self._compiled.outputs]
        return [np.array(by_name[n]) for n in wanted]
