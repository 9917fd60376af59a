"""Import of released SR weights: files built here from randomly initialised nets with the
exact Real-ESRGAN / BasicSR key layouts (no download), in every wrapping and format."""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import run_cli
from safetensors.torch import save_file

from ganpipe.errors import ModelFileError
from ganpipe.inference.session import open_model
from ganpipe.nn.sr import RRDBNet, SRExport, SRVGGNetCompact
from ganpipe.weights import (
    detect_architecture,
    import_weights,
    load_model,
    read_state_dict,
    spandrel_version,
)


def rrdb(scale: int) -> torch.nn.Module:
    torch.manual_seed(scale)
    return RRDBNet(3, 3, scale, num_feat=8, num_block=2, num_grow_ch=4).eval()


def compact(scale: int) -> torch.nn.Module:
    torch.manual_seed(10 + scale)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=scale).eval()
    with torch.no_grad():  # PReLU slopes as trained nets have them, not all 0.25
        for p in net.parameters():
            if p.ndim == 1 and p.shape[0] == 8:
                p.uniform_(0.0, 0.5)
    return net


def save(net: torch.nn.Module, path, wrap: str):
    state = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))  # released .safetensors are bare
    elif wrap == "bare":
        torch.save(state, path)
    elif wrap == "params":
        torch.save({"params": state}, path)
    else:  # Real-ESRGAN's releases: params_ema (and sometimes params too)
        decoy = {k: torch.zeros_like(v) for k, v in state.items()}
        torch.save({"params_ema": state, "params": decoy}, path)
    return path


CASES = [
    ("esrgan", 4, ".pth", "params_ema"),
    ("esrgan", 2, ".pth", "params"),
    ("esrgan", 1, ".safetensors", "bare"),
    ("esrgan", 4, ".pth", "bare"),
    ("compact", 4, ".pth", "params"),
    ("compact", 2, ".safetensors", "bare"),
    ("compact", 1, ".pth", "params_ema"),
    ("compact", 3, ".pth", "bare"),
]


@pytest.mark.parametrize(
    "kind,scale,suffix,wrap", CASES, ids=[f"{k}-x{s}-{w}{x}" for k, s, x, w in CASES]
)
def test_detects_and_loads_exactly(tmp_path, kind, scale, suffix, wrap):
    net = rrdb(scale) if kind == "esrgan" else compact(scale)
    path = save(net, tmp_path / f"model{suffix}", wrap)
    loaded, arch = load_model(path)
    assert (arch.variant, arch.scale, arch.channels) == (kind, scale, 3)
    want = (
        {"num_feat": 8, "num_block": 2, "num_grow_ch": 4}
        if kind == "esrgan"
        else {"num_feat": 8, "num_conv": 2}
    )
    assert arch.kwargs == want
    assert arch.tile_multiple == ({4: 1, 2: 2, 1: 4}[scale] if kind == "esrgan" else 1)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))  # params_ema preferred over params


def test_full_size_defaults_are_detected():
    arch = detect_architecture(RRDBNet().state_dict())  # Real-ESRGAN x4plus layout
    assert (arch.variant, arch.scale, arch.kwargs) == (
        "esrgan",
        4,
        {"num_feat": 64, "num_block": 23, "num_grow_ch": 32},
    )
    arch = detect_architecture(SRVGGNetCompact(num_feat=64, num_conv=32).state_dict())
    assert (arch.variant, arch.scale, arch.kwargs) == (
        "compact",
        4,
        {"num_feat": 64, "num_conv": 32},
    )


@pytest.mark.parametrize("kind,scale", [("esrgan", 2), ("compact", 4)])
def test_import_exports_onnx_matching_torch(tmp_path, kind, scale):
    net = rrdb(scale) if kind == "esrgan" else compact(scale)
    src = save(net, tmp_path / "weights.pth", "params_ema")
    result = import_weights(src, tmp_path / "out.onnx")
    assert result.max_abs_diff < 1e-4
    model = open_model(result.path, "cpu", task="super_resolve")
    assert model.card.scale == scale and model.card.variant == kind
    assert model.card.tile_multiple == (2 if kind == "esrgan" else 1)
    assert model.card.imported_from == "weights.pth"
    x = torch.rand(1, 3, 11, 7, generator=torch.Generator().manual_seed(3))  # odd: padded
    with torch.no_grad():
        expected = SRExport(net, scale, result.arch.tile_multiple)(x).numpy()
    got = model.run({"image": x.numpy()})
    assert got.shape == (1, 3, 11 * scale, 7 * scale)
    assert np.max(np.abs(got - expected)) < 1e-4
    if kind == "esrgan":  # even sizes need no padding: the net itself, clamped
        x = torch.rand(2, 3, 6, 10)
        with torch.no_grad():
            expected = net(x).clamp(0, 1).numpy()
        assert np.max(np.abs(model.run({"image": x.numpy()}) - expected)) < 1e-4


def test_fp16_import_stays_close_and_keeps_float32_io(tmp_path):
    net = rrdb(4)  # both Resize nodes share one scales constant: the converter's trap
    src = save(net, tmp_path / "w.safetensors", "bare")
    half = import_weights(src, tmp_path / "fp16.onnx", fp16=True)
    assert half.fp16_max_abs_diff is not None and half.fp16_max_abs_diff < 1e-2
    graph = onnx.load(str(half.path)).graph
    weights = [t for t in graph.initializer if len(t.dims) == 4]  # conv kernels
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    sess = ort.InferenceSession(str(half.path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == sess.get_outputs()[0].type == "tensor(float)"
    model = open_model(half.path, "cpu", task="super_resolve")
    assert model.card.precision == "float16" and model.card.scale == 4
    # the card is the float32 export's, precision aside (written through ModelCard)
    full = import_weights(src, tmp_path / "fp32.onnx")
    card32 = open_model(full.path, "cpu", task="super_resolve").card
    assert card32.precision == "float32" and card32.extra["arch"]["variant"] == "esrgan"
    assert model.card == card32.model_copy(update={"precision": "float16"})
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        expected = net(x).clamp(0, 1).numpy()
    assert np.max(np.abs(model.run({"image": x.numpy()}) - expected)) < 1e-2
    assert not list(tmp_path.glob(".*"))  # no temporary files left


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling would run code: create the marker file
        return (os.mkdir, (str(self.marker),))


def test_pickle_bomb_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    state = {k: v for k, v in compact(2).state_dict().items()}
    torch.save({"params": state, "extra": Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(ModelFileError) as info:
        read_state_dict(tmp_path / "evil.pth")
    msg = str(info.value)
    assert "refusing" in msg and "\n" not in msg
    assert not marker.exists()


def test_errors_are_one_line(tmp_path):
    torch.save({"params": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(ModelFileError, match="conv_first.weight") as info:
        load_model(tmp_path / "other.pth")
    assert "body.0.weight" in str(info.value) and "\n" not in str(info.value)
    src = save(rrdb(4), tmp_path / "x4.pth", "bare")
    with pytest.raises(ModelFileError, match="x4, not x2"):
        load_model(src, scale=2)
    state = rrdb(4).state_dict()
    state["conv_hr.weight"] = torch.zeros(8, 8, 1, 1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ModelFileError, match="do not fit") as info:
        load_model(tmp_path / "broken.pth")
    assert "\n" not in str(info.value)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")
    with pytest.raises(ModelFileError, match="format"):
        read_state_dict(src.rename(tmp_path / "x4.onnx"))


def test_cli_import(tmp_path):
    src = save(compact(4), tmp_path / "realesr-tiny.pth", "params")
    proc = run_cli("import", str(src), "--scale", "4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "compact x4" in proc.stdout and (tmp_path / "realesr-tiny.onnx").is_file()
    torch.save(
        {"params": {"w": torch.zeros(1)}, "x": Payload(tmp_path / "m")}, tmp_path / "evil.pth"
    )
    proc = run_cli("import", str(tmp_path / "evil.pth"), "-o", str(tmp_path / "e.onnx"))
    assert proc.returncode == 2  # bad input, as for `upscale -m`
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: error:") and "refusing" in lines[0]
    assert not (tmp_path / "e.onnx").exists() and not (tmp_path / "m").exists()


# -- the original ESRGAN repository's layouts ---------------------------------------------
class _OldRDB(torch.nn.Module):
    """ESRGAN's ResidualDenseBlock_5C: conv_block(...) is Sequential(conv, act), so its
    weights are ``convK.0.weight``."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        for k in range(1, 6):
            setattr(
                self,
                f"conv{k}",
                torch.nn.Sequential(
                    torch.nn.Conv2d(nf + (k - 1) * gc, nf if k == 5 else gc, 3, padding=1)
                ),
            )

    def forward(self, x):
        feats = [x]
        for k in range(1, 6):
            y = getattr(self, f"conv{k}")(torch.cat(feats, 1))
            if k < 5:
                y = torch.nn.functional.leaky_relu(y, 0.2)
            feats.append(y)
        return feats[-1] * 0.2 + x


class _OldRRDB(torch.nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = _OldRDB(nf, gc), _OldRDB(nf, gc), _OldRDB(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class _Shortcut(torch.nn.Module):
    def __init__(self, sub):
        super().__init__()
        self.sub = sub

    def forward(self, x):
        return x + self.sub(x)


def old_esrgan(nf: int = 8, nb: int = 2, gc: int = 4, ups: int = 2) -> torch.nn.Module:
    """The old ESRGAN architecture (``model.N`` keys) written out independently of
    ganpipe's RRDBNet: conv, shortcut(RRDBs + conv), (upsample, conv, lrelu) x ups,
    conv, lrelu, conv."""
    torch.manual_seed(7)
    lrelu = torch.nn.LeakyReLU(0.2)
    layers = [
        torch.nn.Conv2d(3, nf, 3, padding=1),
        _Shortcut(
            torch.nn.Sequential(
                *[_OldRRDB(nf, gc) for _ in range(nb)], torch.nn.Conv2d(nf, nf, 3, padding=1)
            )
        ),
    ]
    for _ in range(ups):
        layers += [
            torch.nn.Upsample(scale_factor=2, mode="nearest"),
            torch.nn.Conv2d(nf, nf, 3, padding=1),
            lrelu,
        ]
    layers += [torch.nn.Conv2d(nf, nf, 3, padding=1), lrelu, torch.nn.Conv2d(nf, 3, 3, padding=1)]
    net = torch.nn.Module()
    net.model = torch.nn.Sequential(*layers)
    net.forward = net.model.forward
    return net.eval()


def test_old_esrgan_layouts_are_imported(tmp_path):
    """``RRDB_ESRGAN_x4.pth``-style ``model.N`` weights and the later ``RRDB_trunk`` names
    load into the same net and give the original architecture's output."""
    old = old_esrgan()
    state = {k: v.clone() for k, v in old.state_dict().items()}
    assert "model.1.sub.0.RDB1.conv1.0.weight" in state and "model.10.weight" in state
    torch.save(state, tmp_path / "old.pth")
    later = {}
    for key, value in state.items():  # the later repository's names for the same tensors
        key = key.replace("model.1.sub.2.", "trunk_conv.").replace("model.1.sub.", "RRDB_trunk.")
        key = (
            key.replace(".0.weight", ".weight").replace(".0.bias", ".bias")
            if "RRDB_trunk." in key
            else key
        )
        for a, b in (
            ("model.0.", "conv_first."),
            ("model.3.", "upconv1."),
            ("model.6.", "upconv2."),
            ("model.8.", "HRconv."),
            ("model.10.", "conv_last."),
        ):
            key = key.replace(a, b)
        later[key] = value
    save_file(later, str(tmp_path / "later.safetensors"))
    x = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = old(x)
        for name in ("old.pth", "later.safetensors"):
            net, arch = load_model(tmp_path / name)
            assert (arch.variant, arch.scale, arch.kwargs) == (
                "esrgan",
                4,
                {"num_feat": 8, "num_block": 2, "num_grow_ch": 4},
            )
            torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)
    result = import_weights(tmp_path / "old.pth", tmp_path / "old.onnx")
    assert result.max_abs_diff < 1e-4
    got = open_model(result.path, "cpu", task="super_resolve").run({"image": x.numpy()})
    assert np.max(np.abs(got - expected.clamp(0, 1).numpy())) < 1e-4  # exported: clamped
    # x2 / x8 old layouts have other layer numbers: spandrel's ESRGAN reads them (it
    # assumes the usual growth channels, 32), else a one-line error, not a wrong net
    x2 = old_esrgan(nf=16, nb=1, gc=32, ups=1)
    torch.save(x2.state_dict(), tmp_path / "old_x2.pth")
    if spandrel_version() is None:
        with pytest.raises(ModelFileError, match="only the x4 layout") as info:
            load_model(tmp_path / "old_x2.pth")
        assert "\n" not in str(info.value)
    else:
        net, arch = load_model(tmp_path / "old_x2.pth")
        assert (arch.variant, arch.scale) == ("spandrel:ESRGAN", 2)
        with torch.no_grad():
            torch.testing.assert_close(net(x), x2(x), rtol=1e-5, atol=1e-5)
    with pytest.MonkeyPatch.context() as mp:  # without spandrel
        mp.setitem(sys.modules, "spandrel", None)
        with pytest.raises(ModelFileError, match="only the x4 layout") as info:
            load_model(tmp_path / "old_x2.pth")
        assert "\n" not in str(info.value)
