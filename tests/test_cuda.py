"""The CUDA paths, on a machine with an NVIDIA GPU (``bench/gpu_check.sh`` runs them there).

Every test here is marked ``cuda`` and skips at once where no GPU is usable: the torch
side needs ``torch.cuda.is_available()``, the ONNX Runtime side the
``CUDAExecutionProvider`` and a working driver
(:func:`ganpipe.inference.session.cuda_driver_usable`). Nets are tiny: what is checked is
that the GPU paths run and agree with the CPU, not speed (``bench/gpu_bench_*.py``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.cuda


@cache
def _ort_cuda_missing() -> str:
    """Why ONNX Runtime cannot run on CUDA here ('' when it can)."""
    import onnxruntime as ort

    from ganpipe.inference.session import cuda_driver_usable

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no CUDAExecutionProvider"
    if not cuda_driver_usable():
        return "no usable NVIDIA driver / GPU for ONNX Runtime"
    return ""


@pytest.fixture(scope="session")
def torch_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU for torch")
    return torch.device("cuda")


@pytest.fixture(scope="session")
def ort_cuda():
    missing = _ort_cuda_missing()
    if missing:
        pytest.skip(missing)


# -- models -------------------------------------------------------------------------------


def _export_generator(path: Path) -> Path:
    from ganpipe.export.onnx_export import build_card, export_onnx
    from ganpipe.variant import DataInfo
    from ganpipe.variants.dcgan import DCGAN, DCGANOptions

    variant, opts, info = DCGAN(), DCGANOptions(latent_dim=8, g_width=4), DataInfo(16, 3, ())
    torch.manual_seed(0)
    spec = variant.export_spec(variant.build(opts, info), opts, info)
    export_onnx(spec, path, build_card(spec, "dcgan", "generate", 16, 3, ()))
    return path


def _sr_net(arch: str):
    from ganpipe.nn.sr import RRDBNet, SRVGGNetCompact

    torch.manual_seed(0)
    if arch == "compact":
        return SRVGGNetCompact(3, 3, num_feat=16, num_conv=4, upscale=4).eval()
    net = RRDBNet(3, 3, scale=4, num_feat=16, num_block=1, num_grow_ch=8).eval()
    with torch.no_grad():  # its scaled-down init gives outputs under 0, all clamped away
        net.conv_last.weight.mul_(10.0)
        net.conv_last.bias.add_(0.5)
    return net


def _import(arch: str, folder: Path, fp16: bool):
    """A random net in Real-ESRGAN's layout, saved as .pth, imported like ``ganpipe import``."""
    from ganpipe.weights import import_weights

    net = _sr_net(arch)
    pth = folder / f"{arch}.pth"
    torch.save({"params": net.state_dict()}, pth)
    onnx = folder / f"{arch}{'_fp16' if fp16 else ''}.onnx"
    import_weights(pth, onnx, fp16=fp16)
    return net, onnx


@pytest.fixture(scope="module")
def generator_onnx(ort_cuda, tmp_path_factory):  # ort_cuda first: no export where it skips
    return _export_generator(tmp_path_factory.mktemp("gen") / "G.onnx")


def _feeds(seed: int = 0) -> dict[str, np.ndarray]:
    return {"z": np.random.default_rng(seed).standard_normal((4, 8), dtype=np.float32)}


# -- ONNX Runtime: providers --------------------------------------------------------------


def test_auto_and_cuda0_choose_the_cuda_provider(ort_cuda, generator_onnx):
    from ganpipe.inference.session import choose_providers, open_model

    cuda0 = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert choose_providers("auto") == cuda0
    assert choose_providers("cuda:0") == cuda0
    assert choose_providers("cuda") == cuda0
    gpu = open_model(generator_onnx, "auto", task="generate")
    assert gpu.providers[0] == "CUDAExecutionProvider"
    cpu = open_model(generator_onnx, "cpu", task="generate")
    assert cpu.providers == ["CPUExecutionProvider"]
    np.testing.assert_allclose(gpu.run(_feeds()), cpu.run(_feeds()), atol=5e-3)  # TF32


def test_tensorrt_loads_or_falls_back_to_cuda(ort_cuda, generator_onnx):
    import onnxruntime as ort

    from ganpipe.errors import GanpipeError
    from ganpipe.inference.session import open_model

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(GanpipeError, match="TensorRT"):
            open_model(generator_onnx, "tensorrt", task="generate")
        return
    trt = open_model(generator_onnx, "tensorrt:0", task="generate")
    # TensorRT when its libraries load; ONNX Runtime falls back to CUDA when they do not
    assert trt.providers[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    cpu = open_model(generator_onnx, "cpu", task="generate")
    np.testing.assert_allclose(trt.run(_feeds()), cpu.run(_feeds()), atol=0.05)  # TRT fp16


# -- float16 import parity ----------------------------------------------------------------


@pytest.mark.parametrize("arch", ["compact", "rrdb"])
def test_fp16_import_on_cuda_matches_torch_fp32_on_cuda(ort_cuda, torch_cuda, tmp_path, arch):
    from ganpipe.inference.session import open_model
    from ganpipe.nn.sr import SRExport

    net, onnx = _import(arch, tmp_path, fp16=True)
    model = open_model(onnx, "cuda", task="super_resolve")
    assert model.providers[0] == "CUDAExecutionProvider"
    assert model.card.precision == "float16"
    x = np.random.default_rng(1).random((2, 3, 40, 36), dtype=np.float32)
    with torch.no_grad():  # the exported function: the net, clamped to [0, 1]
        want = SRExport(net.to(torch_cuda), 4)(torch.from_numpy(x).to(torch_cuda)).cpu().numpy()
    assert 0.05 < want.std() and 0.5 < (want > 0).mean() and 0.5 < (want < 1).mean()
    got = model.session.run(None, {model.session.get_inputs()[0].name: x})[0]
    assert got.dtype == np.float32 and got.shape == want.shape == (2, 3, 160, 144)
    assert np.isfinite(got).all()
    assert np.abs(got - want).max() <= 0.05
    assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-2


# -- upscale ------------------------------------------------------------------------------


def test_upscale_on_cuda_equals_cpu(ort_cuda, tmp_path):
    from PIL import Image

    from ganpipe.upscale import upscale_path

    _, onnx = _import("compact", tmp_path, fp16=False)
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(2)
    for i, (h, w) in enumerate([(72, 80), (50, 33)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src / f"{i}.png")
    outs = {}
    for device in ("cuda", "cpu"):
        summary = upscale_path(src, tmp_path / device, onnx, device=device, tile=32, overlap=8)
        assert summary.ok and len(summary.written) == 2
        assert summary.providers[0] == (
            "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
        )
        outs[device] = summary.out_dir
    for name in ("0.png", "1.png"):
        a = np.asarray(Image.open(outs["cuda"] / name), dtype=int)
        b = np.asarray(Image.open(outs["cpu"] / name), dtype=int)
        assert a.shape == b.shape
        diff = np.abs(a - b)
        assert diff.max() <= 4 and diff.mean() <= 0.5, (name, diff.max(), diff.mean())  # TF32


# -- training: AMP + channels_last, exact resume ------------------------------------------


@pytest.fixture
def deterministic_cudnn(torch_cuda):
    flags = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield torch_cuda
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags


def _trainer(out: Path, amp: str, steps: int):
    from ganpipe.data.sources import ShapesDataset, ShapesOptions
    from ganpipe.training.loop import Trainer
    from ganpipe.training.options import TrainOptions
    from ganpipe.variants.dcgan import DCGAN, DCGANOptions

    data = ShapesDataset().load(ShapesOptions(count=36, classes=2, seed=3), 16, 3, Path("."))
    opts = TrainOptions(
        steps=steps,
        batch_size=8,
        ema_decay=0.9,
        log_every=1,
        sample_every=0,
        checkpoint_every=3,
        num_samples=4,
        progress=False,
        amp=amp,
        channels_last=True,
    )
    vopts = DCGANOptions(latent_dim=8, g_width=4, d_width=4)
    return Trainer(DCGAN(), vopts, opts, data, out, device="cuda", log=lambda *_: None)


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_channels_last_training_resumes_exactly(deterministic_cudnn, tmp_path, amp):
    from safetensors.torch import load_file

    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    straight = _trainer(tmp_path / "straight", amp, 6)
    a = straight.run()
    assert straight.amp_dtype == (torch.float16 if amp == "fp16" else torch.bfloat16)
    assert next(straight.nets["D"].parameters()).is_cuda
    conv = next(m for m in straight.nets["D"].modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert _trainer(tmp_path / "split", amp, 3).run().steps == 3
    b = _trainer(tmp_path / "split", amp, 6).run()
    assert b.resumed_from == 3 and a.checkpoint.name == b.checkpoint.name
    for path in (tmp_path / "straight", tmp_path / "split"):
        recs = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in recs] == list(range(1, 7))
        assert all(np.isfinite([r["d_loss"], r["g_loss"]]).all() for r in recs)
    wa, wb = (
        load_file(str(a.checkpoint / "model.safetensors")),
        load_file(str(b.checkpoint / "model.safetensors")),
    )
    assert set(wa) == set(wb)
    for key in wa:
        assert torch.isfinite(wa[key].float()).all(), key
        assert torch.equal(wa[key], wb[key]), key


# -- NCCL ---------------------------------------------------------------------------------


def test_nccl_single_gpu_all_reduce(torch_cuda, monkeypatch):
    import torch.distributed as dist

    from ganpipe.training.distributed import _free_port, average_gradients

    if not dist.is_nccl_available():
        pytest.skip("this torch has no NCCL")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group(
        "nccl", init_method="env://", rank=0, world_size=1, timeout=timedelta(seconds=60)
    )
    try:
        t = torch.arange(6.0, device=torch_cuda)
        dist.all_reduce(t)
        assert t.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        p = torch.nn.Parameter(torch.zeros(3, device=torch_cuda))
        p.grad = torch.full((3,), 2.0, device=torch_cuda)
        average_gradients([p], 1)  # ganpipe's data-parallel gradient averaging, over NCCL
        assert p.grad.tolist() == [2.0, 2.0, 2.0]
        torch.cuda.synchronize()
    finally:
        dist.destroy_process_group()
