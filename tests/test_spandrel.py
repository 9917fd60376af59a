"""spandrel's architectures: tiny randomly initialised nets built with spandrel's own
constructors, saved in their native key layouts (in the wrappings and formats releases
use), imported, exported to ONNX with dynamic height and width and parity-checked against
spandrel's own call of the net; no download."""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import save_file

pytest.importorskip("spandrel", reason="spandrel is installed by the test extra")

from ganpipe.errors import ModelFileError  # noqa: E402
from ganpipe.upscale.cache import converted_model  # noqa: E402
from ganpipe.upscale.model import open_sr_model  # noqa: E402
from ganpipe.weights import export_spec, import_weights, load_model, to_float16  # noqa: E402
from ganpipe.weights.spandrel_arch import TESTED  # noqa: E402
from ganpipe.weights.spandrel_parity import _diff  # noqa: E402


def arch(module: str, cls: str):
    return getattr(importlib.import_module(f"spandrel.architectures.{module}"), cls)


SWIN = {"img_size": 16, "embed_dim": 12, "num_heads": [2], "window_size": 4, "mlp_ratio": 2.0}
#: spandrel id -> (constructor of a tiny x2 net, file name, wrapping)
NETS = {
    "SPAN": (
        lambda: arch("SPAN", "SPAN")(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2),
        "2x_span.safetensors",
        "bare",
    ),
    "SwinIR": (
        lambda: arch("SwinIR", "SwinIR")(**SWIN, depths=[1], upscale=2, upsampler="pixelshuffle"),
        "002_SwinIR_SR.pth",
        "params",
    ),
    "HAT": (
        lambda: arch("HAT", "HAT")(
            **SWIN,
            depths=[1],
            compress_ratio=3,
            squeeze_factor=2,
            upscale=2,
            upsampler="pixelshuffle",
        ),
        "HAT_SRx2.pth",
        "params_ema",
    ),
    "DAT": (
        lambda: arch("DAT", "DAT")(
            img_size=16,
            embed_dim=32,  # its position bias MLP is embed_dim // 32 wide
            split_size=[2, 4],
            depth=[2],
            num_heads=[2],
            expansion_factor=2.0,
            upscale=2,
        ),
        "DAT_x2.safetensors",
        "bare",
    ),
    "RealCUGAN": (
        lambda: arch("RealCUGAN", "UpCunet2x")(in_channels=3, out_channels=3),
        "up2x-latest-conservative.pth",
        "bare",
    ),
    "OmniSR": (
        lambda: arch("OmniSR", "OmniSR")(
            num_feat=16, block_num=1, window_size=4, res_num=1, up_scale=2
        ),
        "OmniSR_X2.pth",
        "state_dict",
    ),
    "PLKSR": (
        lambda: arch("PLKSR", "PLKSR")(dim=16, n_blocks=2, upscaling_factor=2, kernel_size=7),
        "2x_PLKSR.pth",
        "params_ema",
    ),
    "RCAN": (
        lambda: arch("RCAN", "RCAN")(
            scale=2, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4
        ),
        "RCAN_BIX2.pt",
        "bare",
    ),
    "SwiftSRGAN": (
        lambda: arch("SwiftSRGAN", "SwiftSRGAN")(
            in_channels=3, num_channels=8, num_blocks=1, upscale_factor=2
        ),
        "2x_SwiftSRGAN.pth",
        "model",
    ),
    "MoSR": (
        lambda: arch("MoSR", "MoSR")(upscale=2, n_block=1, dim=16),
        "2x_MoSR.safetensors",
        "bare",
    ),
}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(sum(map(ord, name)))
    return NETS[name][0]().eval()


def save(net: torch.nn.Module, path, wrap: str):
    state = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state if wrap == "bare" else {wrap: state}, path)
    return path


def test_the_tested_table_is_these_tests():
    assert sorted(NETS) == sorted(TESTED) and len(NETS) >= 10


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Each architecture imported once (the export is the slow part), on first use."""
    done = {}

    def get(name: str):
        if name not in done:
            folder = tmp_path_factory.mktemp(name)
            src = save(build(name), folder / NETS[name][1], NETS[name][2])
            done[name] = src, import_weights(src, folder / "model.onnx")
        return done[name]

    return get


#: architectures whose import takes minutes on 2 cores (OmniSR: about 4), checked with
#: GANPIPE_SPANDREL_ALL=1 like the released rows of test_spandrel_released.py, so that the
#: suite stays within its 20 minutes
SLOW = {"OmniSR"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            n,
            marks=pytest.mark.skipif(
                n in SLOW and not os.environ.get("GANPIPE_SPANDREL_ALL"),
                reason="GANPIPE_SPANDREL_ALL=1",
            ),
        )
        for n in sorted(NETS)
    ],
)
def test_import_and_parity_with_spandrel(imported, name):
    """Each architecture: detected from its native layout, exported with dynamic height
    and width, parity-checked by the import (against spandrel at three sizes) and again
    here through the upscaler at a size that needs padding."""
    src, result = imported(name)
    found = result.arch
    assert (found.name, found.variant, found.scale) == (name, f"spandrel:{name}", 2)
    assert result.max_abs_diff < 1e-3
    model = open_sr_model(result.path, "cpu")
    card = model.card
    assert card.variant == f"spandrel:{name}" and card.imported_from == src.name
    assert card.tile_multiple == found.multiple and model.minimum >= found.minimum
    # an odd size: the upscaler pads (reflect) to the multiple, as spandrel does; below
    # the smallest side the export holds for (its card's min_size) the upscaler pads
    # further than spandrel would, so the comparison starts there
    h, w = max(13, model.minimum + 1), max(10, model.minimum + 3)
    if result.padded_diff and result.padded_diff > 1e-3:
        # a net that pads inside itself its own way (the import said so): at multiples
        assert found.multiple > 1
        h, w = 2 * found.multiple + found.multiple, 2 * found.multiple
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = found.descriptor(x.clone()).numpy()
    got = model(x.numpy())
    assert got.shape == (1, 3, 2 * h, 2 * w)
    diff = _diff(got, expected, name)
    print(f"{name}: fp32 parity {result.max_abs_diff:.2e} (import), {diff:.2e} ({h}x{w}, padded)")
    assert diff < 1e-3


@pytest.mark.parametrize("name", ["SwinIR", "HAT", "SPAN"])
def test_fp16_export_close_to_fp32(imported, tmp_path, name):
    """The float16 conversion that `import --fp16` runs after the float32 export,
    checked against torch by the conversion and against the float32 model here."""
    src, full = imported(name)
    net = full.arch.descriptor.model
    dst = tmp_path / "fp16.onnx"
    half = to_float16(full.path, dst, export_spec(net, full.arch, src.name))
    assert half < 2e-2
    m32, m16 = open_sr_model(full.path, "cpu"), open_sr_model(dst, "cpu")
    assert m16.card.precision == "float16" and m32.card.precision == "float32"
    assert m16.card == m32.card.model_copy(update={"precision": "float16"})
    x = np.random.default_rng(0).random((1, 3, 20, 17), dtype=np.float32)
    diff = float(np.max(np.abs(m16(x) - m32(x))))
    print(f"{name}: fp16 vs torch {half:.2e}, vs fp32 ONNX {diff:.2e}")
    assert 0 < diff < 2e-2


def test_upscale_converts_once_and_runs_without_torch(tmp_path, monkeypatch):
    """`upscale -m 2x_PLKSR.pth`: converted to ONNX once, cached by content hash; the CLI run
    then opens the cached .onnx (no conversion, no torch import on that path)."""
    from PIL import Image

    monkeypatch.setenv("GANPIPE_CACHE_DIR", str(tmp_path / "cache"))
    src = save(build("PLKSR"), tmp_path / "2x_PLKSR.pth", "params_ema")
    cached = converted_model(src)
    assert cached.parent == tmp_path / "cache" / "imported" and cached.is_file()
    assert converted_model(src) == cached  # by content hash: not converted again
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (11, 14, 3), dtype=np.uint8)).save(tmp_path / "in/a.png")
    proc = run_cli(
        "upscale",
        "-i",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(src),
        "--device",
        "cpu",
        env={"GANPIPE_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "converting" not in proc.stderr
    assert Image.open(tmp_path / "out/a.png").size == (28, 22)


def test_unknown_and_unsupported_files_are_one_line_errors(tmp_path, monkeypatch):
    torch.save({"params": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(ModelFileError, match="unknown weight layout") as info:
        load_model(tmp_path / "other.pth")
    msg = str(info.value)
    assert "encoder.weight" in msg and "conv_first.weight" in msg and "--list" in msg
    assert "\n" not in msg
    state = build("SPAN").state_dict()
    torch.save(state, tmp_path / "span.pth")
    with pytest.raises(ModelFileError, match="SPAN weights are x2, not x4"):
        load_model(tmp_path / "span.pth", scale=4)
    # without spandrel: the Real-ESRGAN layouts only, and the install command
    monkeypatch.setitem(sys.modules, "spandrel", None)
    with pytest.raises(ModelFileError, match=r"ganpipe\[spandrel\]") as info:
        load_model(tmp_path / "span.pth")
    assert "\n" not in str(info.value)


def test_cli_list_and_import(tmp_path):
    proc = run_cli("import", "--list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in ("SwinIR", "HAT", "DAT", "SPAN", "RealCUGAN"):
        assert any(ln.split()[:2] == [name, "tested"] for ln in lines), name
    assert "SRVGGNetCompact" in proc.stdout and "CodeFormer" in proc.stdout
    torch.save({"params": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    proc = run_cli("import", str(tmp_path / "other.pth"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "other.pth" in lines[0]
