"""Opening a ganpipe ``.onnx`` safely and choosing execution providers."""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ganpipe.devices import INFERENCE_KINDS, ORT_KINDS, Device, parse_device
from ganpipe.errors import ConfigError, ModelFileError
from ganpipe.inference.onnxfile import check_external_data, read_header
from ganpipe.inference.ortlog import captured, session_options
from ganpipe.inference.watchdog import run_session
from ganpipe.modelcard import PREFIX, ModelCard


def cuda_driver_usable() -> bool:
    """True when an NVIDIA driver is loaded and reports at least one device. Checked with
    the driver library itself so that a CPU-only machine with onnxruntime-gpu installed
    never tries the CUDA provider (and never prints its load errors)."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            if lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0:
                return count.value > 0
        except (AttributeError, OSError):
            return False
    return False


@dataclass(frozen=True)
class GpuTuning:
    """Settings of the CUDA and TensorRT providers for a model run on one tile shape.

    ``conv_algo_search``: cuDNN's convolution algorithm search (``EXHAUSTIVE`` pays a
    benchmark per new input shape, which a fixed tile shape pays once; ``HEURISTIC`` is
    free; ``DEFAULT`` takes cuDNN's default algorithm). ``input_name`` and
    ``min_side``/``opt_side``/``max_side`` (pixels, batch 1): the TensorRT optimisation
    profile, so TensorRT builds one engine for every tile instead of one per shape.
    ``cache_dir``: where TensorRT keeps its engine and timing caches between runs (the
    first run builds the engine, minutes for a large net; later runs load it)."""

    conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "HEURISTIC"
    input_name: str = "image"
    min_side: int = 16
    opt_side: int = 0
    max_side: int = 0
    cache_dir: Path | None = None

    def cuda_options(self) -> dict[str, Any]:
        return {"cudnn_conv_algo_search": self.conv_algo_search}

    def tensorrt_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cache_dir is not None:
            out |= {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(self.cache_dir),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(self.cache_dir),
            }
        if self.opt_side and self.max_side:
            shape = f"{self.input_name}:1x3x{{0}}x{{0}}".format
            out |= {
                "trt_profile_min_shapes": shape(self.min_side),
                "trt_profile_opt_shapes": shape(self.opt_side),
                "trt_profile_max_shapes": shape(self.max_side),
            }
        return out


def choose_providers(device: str | Device = "auto", tuning: GpuTuning | None = None) -> list[Any]:
    """Execution providers for ``device`` (:func:`ganpipe.devices.parse_device`, ONNX
    Runtime's kinds): ``auto`` (CUDA when usable, else CPU), ``cpu``, ``cuda`` or
    ``cuda:N``, ``tensorrt`` or ``tensorrt:N`` (TensorRT, then CUDA, then CPU), with the
    provider settings of ``tuning`` (:class:`GpuTuning`) when given."""
    try:
        parsed = parse_device(device, ORT_KINDS, where="--device")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    kind, index, name = parsed.kind, parsed.index or 0, str(parsed)
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    has_cuda = "CUDAExecutionProvider" in available and cuda_driver_usable()
    if not has_cuda:
        if kind == "auto":
            return ["CPUExecutionProvider"]
        raise ConfigError(  # a device that is not here: as run.device = "cuda" (exit 2)
            f"--device {name}: no usable CUDA GPU for ONNX Runtime here "
            f"(providers: {', '.join(sorted(available))}); install "
            f"onnxruntime-gpu with a CUDA driver, or use --device cpu"
        )
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - best effort; the session reports what fails
            pass
    cuda = (
        "CUDAExecutionProvider",
        {"device_id": index} | (tuning.cuda_options() if tuning else {}),
    )
    if kind == "tensorrt":
        if "TensorrtExecutionProvider" not in available:
            raise ConfigError(
                f"--device {name}: this onnxruntime has no TensorRT provider; use --device cuda"
            )
        return [
            (
                "TensorrtExecutionProvider",
                {"device_id": index, "trt_fp16_enable": True}
                | (tuning.tensorrt_options() if tuning else {}),
            ),
            cuda,
            "CPUExecutionProvider",
        ]
    return [cuda, "CPUExecutionProvider"]


def _runtime_for(device: str | Device, runtime: str, precision: str) -> str:
    """``runtime`` resolved (``auto``) and checked against ``device`` and ``precision``."""
    if runtime == "onnxruntime" and precision == "fp32" and "vulkan" not in str(device):
        return runtime
    from ganpipe.inference.runtimes import resolve_runtime

    try:
        kind = parse_device(device, INFERENCE_KINDS, where="--device").kind
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    cuda = False
    if kind == "auto" and runtime == "auto":
        import onnxruntime as ort

        has_provider = "CUDAExecutionProvider" in ort.get_available_providers()
        cuda = has_provider and cuda_driver_usable()
    return resolve_runtime(runtime, kind, cuda, precision)


@dataclass
class OnnxModel:
    """An ONNX Runtime session and the model card read from the file (``None`` only for a
    file without one, opened with ``task=None``: e.g. a feature extractor). ``notes``:
    what ONNX Runtime logged while loading it, one plain line each
    (:mod:`ganpipe.inference.ortlog`), for the caller to show as its own lines."""

    path: Path
    session: Any
    card: ModelCard | None
    notes: list[str] = field(default_factory=list)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The first output for ``feeds``; bounded by the thread's deadline and stopped by
        SIGTERM / Ctrl-C (:mod:`ganpipe.inference.watchdog`)."""
        return run_session(self.session, None, feeds)[0]


def open_model(
    path: str | Path,
    device: str | Device = "auto",
    *,
    task: str | tuple[str, ...] | None = None,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
    tuning: GpuTuning | None = None,
) -> OnnxModel:
    """Open ``path`` in an ONNX Runtime session (or, with ``runtime``, an OpenVINO one:
    :mod:`ganpipe.inference.runtimes`); one-line errors for user mistakes.
    ``task``: the ganpipe task (or tasks) the model must have."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(
            f"model file {path} does not exist; pass the .onnx written by "
            f"the export stage (runs/<name>/export/model.onnx)"
        )
    if not path.is_file():
        raise ModelFileError(f"model path {path} is not a file; pass an .onnx file")
    try:  # the card and the checks without the onnx package (ganpipe.inference.onnxfile)
        header = read_header(path)
        if header.may_have_external_data:
            check_external_data(path)
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf raises many kinds
        raise ModelFileError(
            f"{path} is not a valid ONNX model ({type(exc).__name__}); pass "
            f"an .onnx file exported by ganpipe"
        ) from None
    has_card = any(key.startswith(PREFIX) for key in header.props)
    card = ModelCard.from_props(header.props, path) if has_card or task is not None else None
    tasks = (task,) if isinstance(task, str) else task
    if tasks is not None and card is not None and card.task not in tasks:
        wanted = " or ".join(repr(t) for t in tasks)
        raise ModelFileError(
            f"{path} is a {card.task!r} model; this command needs a {wanted} model"
        )
    try:  # parsed once (a Device is taken as it is); the runtime and providers get it
        device = parse_device(device, INFERENCE_KINDS, where="--device")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    notes: list[str] = []  # for the caller to show: ncnn's, then ONNX Runtime's
    asked = runtime
    runtime = _runtime_for(device, runtime, precision)
    if runtime == "ncnn":
        from ganpipe.inference.ncnn_open import open_ncnn

        ncnn, notes = open_ncnn(path, card, device, precision, fallback=asked == "auto")
        if ncnn is not None:
            return OnnxModel(path, ncnn, card, notes)
        from ganpipe.inference.runtimes import next_to_ncnn

        runtime = next_to_ncnn()  # auto on a CPU: a model ncnn cannot take
    if runtime == "openvino":
        from ganpipe.inference.runtimes import OpenVINOSession

        return OnnxModel(path, OpenVINOSession(path, "CPU", precision), card, notes)
    import onnxruntime as ort  # here: ncnn and OpenVINO runs do without it (25 ms)

    providers = choose_providers(device) if tuning is None else choose_providers(device, tuning)
    try:
        with captured(notes):  # ONNX Runtime's log lines: notes, never raw on stderr
            session = ort.InferenceSession(
                str(path), sess_options=session_options(), providers=providers
            )
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ModelFileError(f"{path}: ONNX Runtime cannot load it ({first})") from None
    return OnnxModel(path, session, card, notes)
