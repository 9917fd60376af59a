"""Denoise strength: Real-ESRGAN's network interpolation (dni) of two weights of one net,
``S * a + (1 - S) * b``, as `ganpipe import --interpolate A B --alpha S` and as a cached
conversion for `ganpipe upscale --denoise S -m A -m B`; tiny random nets, no download."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import save_file

from ganpipe.errors import ConfigError, ModelFileError
from ganpipe.nn.sr import SRVGGNetCompact
from ganpipe.upscale.cache import converted_model
from ganpipe.upscale.model import open_models_of, open_sr_model
from ganpipe.weights import import_interpolated, load_interpolated, mix_states


def compact(seed: int, num_conv: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=num_conv, upscale=2).eval()
    with torch.no_grad():  # PReLU slopes as trained nets have them
        for p in net.parameters():
            if p.ndim == 1 and p.shape[0] == 8:
                p.uniform_(0.0, 0.5)
    return net


@pytest.fixture
def pair(tmp_path):
    """realesr-general-x4v3 and its -wdn- twin, in miniature (one .pth, one .safetensors)."""
    a, b = compact(1), compact(2)
    torch.save({"params": a.state_dict()}, tmp_path / "general.pth")
    save_file(
        {k: v.contiguous() for k, v in b.state_dict().items()}, str(tmp_path / "wdn.safetensors")
    )
    return a, b, tmp_path / "general.pth", tmp_path / "wdn.safetensors"


def test_mix_is_s_a_plus_one_minus_s_b():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3), "h": torch.ones(2).half()}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(3), "h": torch.zeros(2).half()}
    mixed = mix_states(a, b, 0.25)
    assert torch.equal(mixed["w"], torch.tensor([2.5, 5.0]))  # 0.25 * a + 0.75 * b
    assert mixed["n"] is a["n"] and mixed["h"].dtype == torch.float16
    assert torch.equal(mixed["h"], torch.full((2,), 0.25).half())
    assert mix_states(a, b, 1.0)["w"].equal(a["w"]) and mix_states(a, b, 0.0)["w"].equal(b["w"])
    with pytest.raises(ModelFileError, match="not the same net"):
        mix_states(a, {"w": a["w"], "n": a["n"]}, 0.5)
    with pytest.raises(ModelFileError, match="differ in size at w"):
        mix_states(a, {**b, "w": torch.zeros(3)}, 0.5)
    with pytest.raises(ModelFileError, match="non-float tensor n"):
        mix_states(a, {**b, "n": torch.tensor(4)}, 0.5)
    with pytest.raises(ConfigError, match=r"outside \[0, 1\]"):
        mix_states(a, b, 1.5)


def test_interpolated_net_and_onnx(pair, tmp_path):
    a, b, pa, pb = pair
    net, arch, source = load_interpolated(pa, pb, 0.3)
    assert (arch.variant, arch.scale) == (
        "compact",
        2,
    ) and source == "general.pth*0.3+wdn.safetensors*0.7"
    want = compact(3)
    want.load_state_dict(
        {k: 0.3 * a.state_dict()[k] + 0.7 * b.state_dict()[k] for k in a.state_dict()}
    )
    x = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(x), want(x), rtol=0, atol=1e-6)
    result = import_interpolated(pa, pb, 0.3, tmp_path / "dni.onnx")
    assert result.max_abs_diff < 1e-4
    model = open_sr_model(result.path, "cpu")
    assert model.card.imported_from == source
    with torch.no_grad():
        expected = want(x).clamp(0, 1).numpy()
    assert np.max(np.abs(model(x.numpy()) - expected)) < 1e-4
    # S = 1 is exactly the first file's net
    net1, _, _ = load_interpolated(pa, pb, 1.0)
    with torch.no_grad():
        assert torch.equal(net1(x), a(x))


def test_nets_that_differ_are_refused(pair, tmp_path):
    _, _, pa, _ = pair
    torch.save(compact(4, num_conv=3).state_dict(), tmp_path / "deeper.pth")
    with pytest.raises(ModelFileError, match="not the same net") as info:
        load_interpolated(pa, tmp_path / "deeper.pth", 0.5)
    assert "\n" not in str(info.value)
    torch.save(
        SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=4).state_dict(), tmp_path / "x4.pth"
    )
    with pytest.raises(ModelFileError, match="one architecture and scale"):
        load_interpolated(pa, tmp_path / "x4.pth", 0.5)


def test_cli_import_interpolate(pair, tmp_path):
    _, _, pa, pb = pair
    proc = run_cli("import", "--interpolate", str(pa), str(pb), "--alpha", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "compact x2" in proc.stdout and (tmp_path / "general-dni0.5.onnx").is_file()
    for args, message in [
        (["--interpolate", str(pa), str(pb), "--alpha", "1.5"], "outside [0, 1]"),
        (["--interpolate", str(pa), str(pb)], "go together"),
        ([str(pa), "--alpha", "0.5"], "go together"),
        ([str(pa), "--interpolate", str(pa), str(pb), "--alpha", "0.5"], "not both"),
    ]:
        proc = run_cli("import", *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr


class _Conversions(list):
    """The "converting ..." lines of a log (the export's own progress lines aside)."""

    def __init__(self, every: list[str]):
        super().__init__()
        self.every = every

    def append(self, msg: str) -> None:
        self.every.append(msg)
        if msg.startswith("converting"):
            super().append(msg)


def test_denoise_conversion_is_cached_by_both_files_and_strength(pair, tmp_path, monkeypatch):
    _, _, pa, pb = pair
    monkeypatch.setenv("GANPIPE_CACHE_DIR", str(tmp_path / "cache"))
    every: list[str] = []
    logs = _Conversions(every)
    first = converted_model(pa, logs.append, denoise=(pb, 0.5))
    assert len(logs) == 1 and "general.pth*0.5+wdn.safetensors*0.5" in logs[0]
    assert converted_model(pa, logs.append, denoise=(pb, 0.5)) == first and len(logs) == 1
    other = converted_model(pa, logs.append, denoise=(pb, 0.25))
    plain = converted_model(pa, logs.append)
    assert len({first, other, plain}) == 3 and len(logs) == 3
    # through the upscale options: -m A -m B --denoise S opens one interpolated model
    opts = SimpleNamespace(
        model=[pa, pb],
        denoise=0.5,
        device="cpu",
        runtime="onnxruntime",
        precision="fp32",
        tile=0,
        overlap=0,
    )
    (model,) = open_models_of(opts, logs.append)
    assert model.path == first and len(logs) == 3
    two = open_models_of(SimpleNamespace(**{**vars(opts), "denoise": None}), logs.append)
    assert len(two) == 2  # without --denoise: an ensemble of the two
    with pytest.raises(ConfigError, match="exactly two weight files"):
        open_models_of(SimpleNamespace(**{**vars(opts), "model": [pa]}))
    with pytest.raises(ConfigError, match="exactly two weight files"):
        open_models_of(SimpleNamespace(**{**vars(opts), "model": [pa, plain]}))


def test_cli_upscale_denoise(pair, tmp_path):
    """`ganpipe upscale -m A -m B --denoise S`: the interpolated model (its conversion
    cached beforehand here, so the command opens the cached .onnx)."""
    from PIL import Image

    a, b, pa, pb = pair
    env = {"GANPIPE_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "in").mkdir()
    pixels = np.random.default_rng(2).integers(0, 256, (9, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in" / "a.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANPIPE_CACHE_DIR", env["GANPIPE_CACHE_DIR"])
        cached = converted_model(pa, denoise=(pb, 0.7))
    args = ["upscale", "-i", str(tmp_path / "in"), "-m", str(pa), "-m", str(pb), "--device", "cpu"]
    proc = run_cli(*args, "-o", str(tmp_path / "out"), "--denoise", "0.7", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "converting" not in proc.stderr
    got = np.asarray(Image.open(tmp_path / "out" / "a.png"), dtype=np.float32) / 255
    want = open_sr_model(cached, "cpu")(pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    assert got.shape == (18, 24, 3)
    assert np.max(np.abs(got - want[0].transpose(1, 2, 0))) <= 1 / 255 + 1e-6
    for extra, message in [
        (["--denoise", "1.5"], "--denoise"),
        (["--denoise", "0.5", "-m", str(pa)], "exactly two"),
    ]:
        proc = run_cli(*args, "-o", str(tmp_path / "bad"), *extra, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and message in lines[-1], proc.stderr
