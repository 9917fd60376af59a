"""OpenVINO as a second runtime for the same .onnx: real sessions of both runtimes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganpipe.errors import ConfigError
from ganpipe.inference import runtimes
from ganpipe.inference.runtimes import resolve_runtime
from ganpipe.inference.session import open_model
from ganpipe.nn.sr import RRDBNet, SRVGGNetCompact
from ganpipe.upscale.model import open_sr_model
from ganpipe.weights import import_weights

pytest.importorskip("openvino")


def _model(tmp_path, kind: str):
    torch.manual_seed(3)
    if kind == "compact":
        net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=4)
    else:
        net = RRDBNet(3, 3, 2, num_feat=8, num_block=1, num_grow_ch=4)  # x2: pixel-unshuffle
    pth = tmp_path / f"{kind}.pth"
    torch.save({"params": net.eval().state_dict()}, pth)
    onnx = tmp_path / f"{kind}.onnx"
    import_weights(pth, onnx)
    return onnx


@pytest.mark.parametrize("kind", ["compact", "rrdb"])
def test_openvino_fp32_matches_onnxruntime(tmp_path, kind):
    onnx = _model(tmp_path, kind)
    x = np.random.default_rng(0).random((1, 3, 20, 28), dtype=np.float32)
    ort_model = open_sr_model(onnx, "cpu")
    ov_model = open_sr_model(onnx, "cpu", runtime="openvino")
    assert ov_model.providers == ["OpenVINO:CPU:fp32"]
    a, b = ort_model(x), ov_model(x)
    assert a.shape == b.shape == (1, 3, 20 * ort_model.scale, 28 * ort_model.scale)
    assert np.abs(a - b).max() < 1 / 255
    # a second, differently shaped input: the compiled model is dynamic in H and W
    y = np.random.default_rng(1).random((2, 3, 16, 12), dtype=np.float32)
    assert np.abs(ort_model(y) - ov_model(y)).max() < 1 / 255


def test_bf16_is_close_or_refused_in_one_line(tmp_path):
    onnx = _model(tmp_path, "compact")
    x = np.random.default_rng(0).random((1, 3, 24, 24), dtype=np.float32)
    try:
        ov = open_sr_model(onnx, "cpu", runtime="openvino", precision="bf16")
    except ConfigError as exc:  # a CPU without bf16 units: refused, never a silent fp32
        assert "--precision bf16" in str(exc) and "\n" not in str(exc)
        return
    assert ov.providers == ["OpenVINO:CPU:bf16"]
    assert np.abs(open_sr_model(onnx, "cpu")(x) - ov(x)).max() < 0.05


def test_auto_prefers_openvino_on_cpu_and_onnxruntime_on_cuda():
    assert resolve_runtime("auto", "cpu", False, "fp32") == "openvino"
    assert resolve_runtime("auto", "auto", False, "bf16") == "openvino"
    assert resolve_runtime("auto", "auto", True, "fp32") == "onnxruntime"
    assert resolve_runtime("auto", "cuda", False, "fp32") == "onnxruntime"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("onnxruntime", "cpu", False, "bf16"), "--precision bf16 runs on OpenVINO"),
        (("openvino", "cuda", True, "fp32"), "not --device cuda"),
        (("tflite", "cpu", False, "fp32"), "--runtime 'tflite'"),
        (("openvino", "cpu", False, "int4"), "--precision 'int4'"),
    ],
)
def test_runtime_mistakes_are_one_line(args, words):
    with pytest.raises(ConfigError, match=words) as info:
        resolve_runtime(*args)
    assert "\n" not in str(info.value)


def test_missing_openvino_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: False)
    assert resolve_runtime("auto", "cpu", False, "fp32") == "onnxruntime"
    with pytest.raises(ConfigError, match=r"pip install 'ganpipe\[openvino\]'"):
        open_model(_model(tmp_path, "compact"), "cpu", runtime="openvino")


# -- GPU speed paths, checked where they can be: the provider settings and the I/O binding --


def test_gpu_tuning_sets_cudnn_search_and_tensorrt_caches_and_profile(tmp_path):
    from ganpipe.inference.session import GpuTuning

    tuning = GpuTuning("EXHAUSTIVE", "image", 16, 160, 160, tmp_path / "trt")
    assert tuning.cuda_options() == {"cudnn_conv_algo_search": "EXHAUSTIVE"}
    trt = tuning.tensorrt_options()
    assert trt["trt_engine_cache_enable"] and trt["trt_timing_cache_enable"]
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert trt["trt_profile_min_shapes"] == "image:1x3x16x16"
    assert trt["trt_profile_opt_shapes"] == trt["trt_profile_max_shapes"] == "image:1x3x160x160"
    assert GpuTuning().tensorrt_options() == {}  # no cache, no profile: TensorRT's defaults


def test_io_binding_gives_the_same_output(tmp_path):
    onnx = _model(tmp_path, "compact")
    x = np.random.default_rng(0).random((1, 3, 20, 12), dtype=np.float32)
    model = open_sr_model(onnx, "cpu")
    assert not model.io_binding  # on the CPU, plain runs (no copies to save)
    plain = model(x)
    model.io_binding = True
    np.testing.assert_array_equal(model(x), plain)
    model.warm_up(32)
