"""ncnn as a runtime: a model converted once from its ``.onnx`` (:mod:`.ncnn_convert`)
run by ncnn on the CPU or on a Vulkan GPU (AMD, Intel, Apple through MoltenVK, NVIDIA, or
Mesa's software rasteriser), behind the part of ONNX Runtime's session API that ganpipe
uses (``get_inputs``, ``get_outputs``, ``run``, ``get_providers``), like
:class:`~ganpipe.inference.runtimes.OpenVINOSession`, so tiling, padding, alpha, 16-bit and
value ranges are the same code for every runtime.

ncnn has no batch dimension: a batch of N tiles is N extractions of one net (each with its
own :class:`ncnn.Extractor`, which is how ncnn's own tools run a net). Precision: ``fp32``
(default: every fp16/bf16 option of ncnn off, so results match ONNX Runtime's to float
rounding) or ``fp16`` (fp16 storage and packing, fp32 arithmetic; opt-in, its difference is
measured against ONNX Runtime when the model is opened and refused above a bound). ncnn
cannot stop a running extraction: the watchdog waits its grace and goes on without it
(:mod:`ganpipe.inference.watchdog`).
"""

from __future__ import annotations

import importlib.util
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ganpipe.errors import ConfigError, ModelFileError

INSTALL = "pip install 'ganpipe[ncnn]'"
#: ncnn's device listing on stderr ("[0 llvmpipe ...]  queueC=..."): information only
_INFO = re.compile(r"^\[\d+ ")
_GPU_LOCK = threading.Lock()
_GPU_NOTES: list[str] | None = None


def ncnn_installed() -> bool:
    return importlib.util.find_spec("ncnn") is not None


def ncnn_module() -> Any:
    """``ncnn``, imported the first time with OpenMP's idle threads told to sleep at
    barriers when the machine is busy (:func:`ganpipe.cpus.spin_less_when_busy`; ncnn's
    wheel carries its own libgomp, which reads that when it loads). Spinning there is
    ruinous: on 2 cores at a load average of 2, compact x4 at 192 px took 0.91 s on 2
    threads spinning, 0.27-0.33 s sleeping, 0.29 s on one thread."""
    import sys

    if "ncnn" not in sys.modules:
        from ganpipe.cpus import spin_less_when_busy

        spin_less_when_busy()
    import ncnn

    return ncnn


def _gpu_count(notes: list[str] | None = None) -> int:
    """The Vulkan devices ncnn sees; its first call creates ncnn's Vulkan instance, whose
    device listing (printed to fd 2) is kept off the terminal and its other lines (a
    loader's errors) returned as ``notes``."""
    global _GPU_NOTES
    from ganpipe.imaging.capture import collecting, native_stderr

    ncnn = ncnn_module()

    with _GPU_LOCK:
        if _GPU_NOTES is None:
            collected: list[str] = []
            with collecting(collected), native_stderr():
                count = int(ncnn.get_gpu_count())
            _GPU_NOTES = [n for n in collected if not _INFO.match(n)]
        else:
            count = int(ncnn.get_gpu_count())
    if notes is not None:
        notes.extend(_GPU_NOTES)
    return count


def vulkan_devices() -> list[str]:
    """The names of the Vulkan devices ncnn can run on here (``[]`` without ncnn or a
    Vulkan driver)."""
    if not ncnn_installed():
        return []
    ncnn = ncnn_module()
    count = _gpu_count()
    return [ncnn.get_gpu_info(i).device_name() for i in range(count)]


def check_vulkan(index: int) -> str:
    """The name of Vulkan device ``index``, or a one-line :class:`ConfigError`."""
    if not ncnn_installed():
        raise ConfigError(f"--device vulkan runs on ncnn, which is not installed; {INSTALL}")
    names = vulkan_devices()
    if not names:
        raise ConfigError(
            "--device vulkan: no Vulkan device here (ncnn found none); install your GPU's "
            "Vulkan driver (on Debian/Ubuntu: mesa-vulkan-drivers), or use --device cpu"
        )
    if index >= len(names):
        listed = ", ".join(f"vulkan:{i} ({n})" for i, n in enumerate(names))
        raise ConfigError(f"--device vulkan:{index}: no such Vulkan device; here: {listed}")
    return names[index]


class _Port:
    """What ganpipe reads of an ONNX Runtime ``NodeArg``: name, element type and shape."""

    def __init__(self, name: str, channels: int | None):
        self.name = name
        self.type = "tensor(float)"
        self.shape: list[Any] = [None, channels, None, None]


class NcnnSession:
    """An ncnn net behind ONNX Runtime's session calls (see the module docstring).
    ``device``: ``"cpu"`` or a Vulkan device index; ``threads``: ncnn's CPU threads."""

    def __init__(
        self,
        param: Path,
        weights: Path,
        *,
        vulkan: int | None = None,
        precision: str = "fp32",
        threads: int = 1,
        channels: int | None = None,
    ):
        ncnn = ncnn_module()
        if precision not in ("fp32", "fp16"):
            raise ConfigError(
                f"--precision {precision}: ncnn runs fp32 or fp16 (fp16 storage); "
                f"use --precision fp32 or fp16"
            )
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = max(1, int(threads))
        fp16 = precision == "fp16"
        for name in ("use_fp16_packed", "use_fp16_storage"):
            setattr(opt, name, fp16)
        for name in ("use_fp16_arithmetic", "use_bf16_storage", "use_int8_inference"):
            setattr(opt, name, False)
        if vulkan is not None:
            opt.use_vulkan_compute = True
            net.set_vulkan_device(vulkan)
        else:
            opt.use_vulkan_compute = False
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            raise ModelFileError(
                f"{param}: ncnn cannot load this conversion; delete the folder "
                f"{param.parent} (the conversion cache) and run again"
            )
        self._net = net
        self._names = (list(net.input_names()), list(net.output_names()))
        if len(self._names[0]) != 1 or not self._names[1]:
            raise ModelFileError(
                f"{param}: expected one input and an output, the ncnn net has "
                f"{len(self._names[0])} inputs; use --runtime onnxruntime for this model"
            )
        self.device = "cpu" if vulkan is None else f"vulkan:{vulkan}"
        self.precision = precision
        self.channels = channels

    def get_inputs(self) -> list[_Port]:
        return [_Port(n, self.channels) for n in self._names[0]]

    def get_outputs(self) -> list[_Port]:
        return [_Port(n, None) for n in self._names[1]]

    def get_providers(self) -> list[str]:
        return [f"ncnn:{self.device}:{self.precision}"]

    def _one(self, image: np.ndarray, output: str) -> np.ndarray:
        ncnn = ncnn_module()
        ex = self._net.create_extractor()
        ex.input(self._names[0][0], ncnn.Mat(np.ascontiguousarray(image, dtype=np.float32)))
        status, out = ex.extract(output)
        if status != 0:
            raise RuntimeError(f"ncnn could not run the net (status {status})")
        return np.array(out, dtype=np.float32, copy=True)

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feeds.values()
        if x.ndim != 4:
            raise RuntimeError(f"ncnn runs NCHW image batches, got shape {x.shape}")
        wanted = names or self._names[1][:1]
        outs = []
        for name in wanted:
            outs.append(np.stack([self._one(x[i], name) for i in range(x.shape[0])]))
        return outs
