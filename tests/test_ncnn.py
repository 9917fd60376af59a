"""``--runtime ncnn``: real pnnx conversions, real ncnn nets on the CPU and on a Vulkan
device (Mesa's software rasteriser in CI), compared with real ONNX Runtime sessions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganpipe.errors import ConfigError, ModelFileError
from ganpipe.inference.ncnn_runtime import vulkan_devices
from ganpipe.nn.sr import RRDBNet, SRVGGNetCompact
from ganpipe.upscale.model import open_sr_model
from ganpipe.weights import import_weights

pytest.importorskip("ncnn")
pytest.importorskip("pnnx")

needs_vulkan = pytest.mark.skipif(not vulkan_devices(), reason="no Vulkan device here")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GANPIPE_CACHE_DIR", str(folder))
    return folder


def _model(folder, kind: str, name: str = "", **kw):
    torch.manual_seed(3)
    if kind == "compact":
        net = SRVGGNetCompact(3, 3, **({"num_feat": 8, "num_conv": 2, "upscale": 4} | kw))
    else:
        net = RRDBNet(3, 3, kw.get("scale", 2), num_feat=8, num_block=1, num_grow_ch=4)
    pth = folder / f"{name or kind}.pth"
    torch.save({"params": net.eval().state_dict()}, pth)
    onnx = folder / f"{name or kind}.onnx"
    import_weights(pth, onnx)
    return onnx


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ncnn-models")
    return {
        "compact": _model(folder, "compact"),
        "rrdb4": _model(folder, "rrdb", "rrdb4", scale=4),
        "rrdb2": _model(folder, "rrdb", "rrdb2", scale=2),  # pixel-unshuffle in front
        # realesr-animevideov3's size: the configuration users run
        "animevideo": _model(folder, "compact", "animevideo", num_feat=64, num_conv=16, upscale=4),
    }


@pytest.mark.parametrize("kind", ["compact", "rrdb4", "animevideo"])
def test_ncnn_matches_onnxruntime_at_sizes_it_was_not_traced_at(models, kind):
    x = np.random.default_rng(0).random((2, 3, 36, 44), dtype=np.float32)
    want = open_sr_model(models[kind], "cpu")(x)
    model = open_sr_model(models[kind], "cpu", runtime="ncnn")
    assert model.providers == ["ncnn:cpu:fp32"]
    got = model(x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


def test_conversion_is_cached_by_content_and_redone_for_a_changed_model(models, cache, tmp_path):
    logs: list[str] = []
    open_sr_model(models["compact"], "cpu", logs.append, runtime="ncnn")
    assert any("converting compact.onnx to ncnn" in line for line in logs)
    (folder,) = (cache / "ncnn").iterdir()
    stamp = (folder / "model.ncnn.param").stat().st_mtime_ns
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["cpu/fp32"] < 1e-4
    logs.clear()
    open_sr_model(models["compact"], "cpu", logs.append, runtime="ncnn")
    assert not any("converting" in line for line in logs)
    assert (folder / "model.ncnn.param").stat().st_mtime_ns == stamp
    other = _model(tmp_path, "compact", num_feat=4)  # same name, other weights
    open_sr_model(other, "cpu", runtime="ncnn")
    assert len(list((cache / "ncnn").iterdir())) == 2
    assert not list((cache / "ncnn").glob(".convert-*"))  # no temporary folder left


def _break_conversion(cache) -> None:
    """The cached conversion made wrong the way a converter bug would: the residual's
    nearest upsampling (ncnn's Interp, 0=1) made bilinear (0=2); its parity forgotten."""
    (folder,) = (cache / "ncnn").iterdir()
    param = folder / "model.ncnn.param"
    lines = param.read_text().splitlines()
    (i,) = [i for i, line in enumerate(lines) if line.startswith("Interp ")]
    assert " 0=1 " in lines[i]
    lines[i] = lines[i].replace(" 0=1 ", " 0=2 ")
    param.write_text("\n".join(lines) + "\n")
    (folder / "parity.json").write_text("{}")


def test_a_conversion_that_differs_is_refused_with_the_difference(models, cache):
    open_sr_model(models["compact"], "cpu", runtime="ncnn")
    _break_conversion(cache)
    with pytest.raises(ModelFileError, match=r"differs from ONNX Runtime by [\d.e-]+ on cpu"):
        open_sr_model(models["compact"], "cpu", runtime="ncnn")


def test_auto_falls_back_where_ncnn_cannot_take_the_model(models, cache):
    from ganpipe.devices import Device
    from ganpipe.inference.ncnn_open import open_ncnn
    from ganpipe.inference.session import open_model

    card = open_model(models["compact"], "cpu", task="super_resolve").card
    open_sr_model(models["compact"], "cpu", runtime="ncnn")
    _break_conversion(cache)
    session, notes = open_ncnn(models["compact"], card, Device("cpu"), "fp32", fallback=True)
    assert session is None
    assert len(notes) == 1 and notes[0].startswith("ncnn not used (compact.onnx: its ncnn")
    with pytest.raises(ModelFileError):  # asked for by name: no fallback
        open_ncnn(models["compact"], card, Device("cpu"), "fp32", fallback=False)


def test_a_net_ncnn_has_no_layers_for_is_refused_or_run_elsewhere_under_auto(models):
    from ganpipe.devices import Device
    from ganpipe.inference.ncnn_open import open_ncnn

    # RRDBNet x2's pixel-unshuffle, exported as shape arithmetic, is left to pnnx.Expression
    with pytest.raises(ModelFileError, match=r"rrdb2\.onnx: ncnn has no layer for part of"):
        open_sr_model(models["rrdb2"], "cpu", runtime="ncnn")
    card = open_sr_model(models["rrdb2"], "cpu").card
    session, notes = open_ncnn(models["rrdb2"], card, Device("cpu"), "fp32", fallback=True)
    assert session is None and "pnnx.Expression" in notes[0]


def test_pnnx_is_held_to_a_memory_limit_and_its_failure_remembered(models, cache, monkeypatch):
    from ganpipe.inference import ncnn_convert

    budget = ncnn_convert.pnnx_memory_budget
    monkeypatch.setattr(ncnn_convert, "pnnx_memory_budget", lambda: 64 << 20)
    with pytest.raises(ModelFileError, match=r"compact\.onnx: pnnx cannot convert it to ncnn \("):
        open_sr_model(models["compact"], "cpu", runtime="ncnn")
    (failed,) = (cache / "ncnn").glob("*.failed")
    monkeypatch.setattr(ncnn_convert, "pnnx_memory_budget", budget)
    # the next open does not try again, and says how to make it
    with pytest.raises(ModelFileError, match=r"\.failed; delete it to try again\)$"):
        open_sr_model(models["compact"], "cpu", runtime="ncnn")
    failed.unlink()
    assert open_sr_model(models["compact"], "cpu", runtime="ncnn").providers == ["ncnn:cpu:fp32"]


def test_mistakes_are_one_line(models):
    with pytest.raises(ConfigError, match="bf16 runs on OpenVINO; ncnn runs fp32 or fp16"):
        open_sr_model(models["compact"], "cpu", runtime="ncnn", precision="bf16")
    with pytest.raises(ConfigError, match="--device vulkan runs on ncnn, not openvino"):
        open_sr_model(models["compact"], "vulkan", runtime="openvino")
    with pytest.raises(ConfigError, match="not --device cuda"):
        open_sr_model(models["compact"], "cuda", runtime="ncnn")


def test_cli_without_vulkan_is_one_line_and_ncnn_path_never_imports_torch(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(src / "a.png")
    base = [
        sys.executable,
        "-m",
        "ganpipe",
        "upscale",
        "-i",
        str(src),
        "-m",
        str(models["compact"]),
    ]
    env = {
        "VK_ICD_FILENAMES": str(tmp_path / "none.json"),
        "VK_DRIVER_FILES": str(tmp_path / "none.json"),
    }
    import os

    proc = subprocess.run(
        [*base, "-o", str(tmp_path / "o1"), "--device", "vulkan"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "ganpipe: error: --device vulkan: no Vulkan device here (ncnn found none); install your "
        "GPU's Vulkan driver (on Debian/Ubuntu: mesa-vulkan-drivers), or use --device cpu"
    ]
    code = (
        "import sys; sys.argv[0] = 'ganpipe'; "
        "import ganpipe.cli.main as m\n"
        "code = 0\ntry:\n    m.main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('torch' in sys.modules, code)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *base[3:], "-o", str(tmp_path / "o2"), "--runtime", "ncnn"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout.strip().splitlines()[-1] == "False 0", proc.stderr
    assert "[ncnn:cpu:fp32]" in proc.stdout


@needs_vulkan
def test_vulkan_matches_onnxruntime_and_fp16_says_its_difference(models):
    x = np.random.default_rng(1).random((1, 3, 28, 20), dtype=np.float32)
    want = open_sr_model(models["compact"], "cpu")(x)
    model = open_sr_model(models["compact"], "vulkan", runtime="ncnn")
    assert model.providers == ["ncnn:vulkan:0:fp32"]
    assert np.abs(model(x) - want).max() < 1e-4
    logs: list[str] = []
    half = open_sr_model(
        models["compact"], "vulkan:0", logs.append, precision="fp16", runtime="auto"
    )
    assert half.providers == ["ncnn:vulkan:0:fp16"]
    (said,) = [line for line in logs if "fp16 on vulkan" in line]
    bound = float(said.split("at most ")[1].split()[0])
    assert np.abs(half(x) - want).max() <= max(bound * 4, 1e-3)
    with pytest.raises(ConfigError, match=r"vulkan:7: no such Vulkan device; here: vulkan:0 \("):
        open_sr_model(models["compact"], "vulkan:7", runtime="ncnn")


def test_tiles_alpha_and_16_bits_come_out_as_on_onnxruntime(models, tmp_path):
    import tifffile

    from ganpipe.upscale import upscale_path

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (30, 41, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((30, 41)) < 0.3, 0, 255)
    Image.fromarray(rgba, "RGBA").save(src / "alpha.png")
    tifffile.imwrite(src / "deep.tif", rng.integers(0, 65536, (26, 33, 3), dtype=np.uint16))
    outs = {}
    for runtime in ("onnxruntime", "ncnn"):
        summary = upscale_path(
            src, tmp_path / runtime, models["compact"], runtime=runtime, tile=16, device="cpu"
        )
        assert summary.ok and len(summary.written) == 2
        assert summary.providers == (
            ["ncnn:cpu:fp32"] if runtime == "ncnn" else ["CPUExecutionProvider"]
        )
        outs[runtime] = tmp_path / runtime
    a = np.asarray(Image.open(outs["ncnn"] / "alpha.png")).astype(int)
    b = np.asarray(Image.open(outs["onnxruntime"] / "alpha.png")).astype(int)
    assert a.shape == (120, 164, 4) and np.abs(a - b).max() <= 1
    c = tifffile.imread(outs["ncnn"] / "deep.tif").astype(int)
    d = tifffile.imread(outs["onnxruntime"] / "deep.tif").astype(int)
    assert c.dtype == d.dtype and c.shape == (104, 132, 3) and np.abs(c - d).max() <= 2


def test_import_converts_for_ncnn_ahead_so_the_first_upscale_starts_at_once(tmp_path, cache):
    from conftest import run_cli

    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=2).eval()
    torch.save({"params": net.state_dict()}, tmp_path / "x2.pth")
    env = {"GANPIPE_CACHE_DIR": str(cache)}
    proc = run_cli("import", str(tmp_path / "x2.pth"), "--ncnn", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "ncnn: converted and checked, max abs diff" in proc.stdout
    assert "converting x2.onnx to ncnn with pnnx, once" in proc.stderr
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((16, 20, 3), 40, np.uint8)).save(src / "a.png")
    model = str(tmp_path / "x2.onnx")
    proc = run_cli(
        "upscale",
        "-i",
        str(src),
        "-o",
        str(tmp_path / "o"),
        "-m",
        model,
        "--runtime",
        "ncnn",
        env=env,
    )
    assert proc.returncode == 0 and "[ncnn:cpu:fp32]" in proc.stdout, proc.stderr
    assert "converting" not in proc.stderr
