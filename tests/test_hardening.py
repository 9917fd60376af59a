"""Hostile and careless input (issue 11), part 1: formats that would start an external
program, configuration values that used to fail late, and refusals of unsafe weights.

Each test fails without its fix: PostScript reached Ghostscript, ``image_size = 24`` with
dcgan and ``batch_size = 100000000`` died at training time with a traceback, and a
malicious ``state.pt`` was refused in three lines that repeated torch's advice to turn
the safety check off.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_toml
from onnx import TensorProto, helper, numpy_helper
from PIL import EpsImagePlugin, Image

from ganpipe.config import load_config
from ganpipe.data.sources import FolderDataset, FolderOptions
from ganpipe.errors import ConfigError
from ganpipe.imaging.decode import decode_image
from ganpipe.imaging.formats import UnsupportedFormat
from ganpipe.registry import load_registry

PS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke\n"


def dos_eps() -> bytes:
    """A DOS-binary EPS: a 30-byte header (magic, PostScript offset and length, no WMF or
    TIFF preview, checksum 0xFFFF), then the PostScript."""
    return struct.pack("<IIIIIIIH", 0xC6D3D0C5, 30, len(PS), 0, 0, 0, 0, 0xFFFF) + PS


#: content that must never reach Pillow's EPS plugin (or any other), under image names
HOSTILE = {
    "eps.png": PS,
    "dos_eps.jpg": dos_eps(),
    "doc.png": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n",
    "vector.png": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>\n',
    "bare.webp": b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>',
}


@pytest.fixture
def fake_gs(tmp_path, monkeypatch):
    """A ``gs`` first on PATH that records every call, and Pillow's cached look-up of
    Ghostscript reset, so that anything handing a file to Ghostscript is seen."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "gs-was-called"
    script = bin_dir / "gs"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\nexit 0\n')
    script.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    monkeypatch.setenv("PATH", path)
    if hasattr(EpsImagePlugin, "gs_binary"):
        monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return marker, path


def hostile_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(root / "good.png")
    for name, data in HOSTILE.items():
        (root / name).write_bytes(data)
    return root


def nearest_x2(path: Path) -> Path:
    """A torch-free x2 nearest-neighbour super-resolution model (onnx.helper)."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node(
        "Resize", ["image", "", "scales"], ["out"], mode="nearest", nearest_mode="floor"
    )
    graph = helper.make_graph(
        [node],
        "sr",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, "H", "W"])],
        initializer=[scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    card = {
        "task": "super_resolve",
        "scale": 2,
        "channels": 3,
        "value_range": [0.0, 1.0],
        "inputs": [{"name": "image", "kind": "image", "shape": [3]}],
        "output": "out",
    }
    for key, value in card.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = "ganpipe." + key, json.dumps(value)
    path.write_bytes(model.SerializeToString())
    return path


# -- 1. formats: an allow-list, by content; nothing starts Ghostscript ----------------------
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_decode_refuses_postscript_pdf_svg_in_one_line(tmp_path, fake_gs, name):
    marker, _ = fake_gs
    path = tmp_path / name
    path.write_bytes(HOSTILE[name])
    with pytest.raises(UnsupportedFormat) as info:
        decode_image(path)
    assert str(info.value).startswith("unsupported format") and "\n" not in str(info.value)
    assert not marker.exists(), "Ghostscript was started"


def test_upscale_cli_never_starts_ghostscript(tmp_path, fake_gs):
    marker, path = fake_gs
    src = hostile_folder(tmp_path / "in")
    proc = run_cli(
        "upscale",
        "-i",
        str(src),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(nearest_x2(tmp_path / "x2.onnx")),
        "--device",
        "cpu",
        env={"PATH": path},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("ganpipe: failed: ")]
    assert len(failed) == len(HOSTILE), proc.stderr
    for name in HOSTILE:
        (line,) = [ln for ln in failed if f"/{name}: " in ln]
        assert "unsupported format" in line, line
    assert any("PostScript" in ln for ln in failed) and any("PDF" in ln for ln in failed)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]
    assert not marker.exists(), "Ghostscript was started: " + marker.read_text()


def test_folder_dataset_never_starts_ghostscript(tmp_path, fake_gs, capsys):
    marker, _ = fake_gs
    root = hostile_folder(tmp_path / "data")
    data = FolderDataset().load(FolderOptions(path=root), 8, 3, tmp_path)
    assert len(data) == 1
    assert sorted(Path(p).name for p, _ in data.skipped) == sorted(HOSTILE)
    for _, reason in data.skipped:
        assert reason.startswith("unsupported format") and "\n" not in reason
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "skipped 5 unreadable" in warning[0]
    assert not marker.exists(), "Ghostscript was started"


def test_pillow_is_told_the_sniffed_format_only(tmp_path, monkeypatch):
    """Even a file that passes the sniff is opened with formats=[that format]."""
    seen = []
    real_open = Image.open

    def recording_open(fp, mode="r", formats=None):
        seen.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(Image, "open", recording_open)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.jpg", format="PNG")
    decode_image(tmp_path / "a.jpg")
    assert seen == [["PNG"]]


# -- 2. every constraint checked when pipeline.toml loads --------------------------------------
TINY = """
[run]
name = "t"
device = "cpu"

[data]
dataset = "{dataset}"
image_size = {size}
{data_extra}

[model]
variant = "{variant}"
{model_extra}

[train]
steps = 1
batch_size = {batch}
progress = false
"""


def tiny(tmp_path: Path, variant="dcgan", size=16, batch=4, dataset="shapes", extra="") -> Path:
    text = TINY.format(
        variant=variant,
        size=size,
        batch=batch,
        dataset=dataset,
        data_extra=extra or ("count = 8\nclasses = 2" if dataset == "shapes" else ""),
        model_extra="" if variant == "cyclegan" else "latent_dim = 8",
    )
    return write_toml(tmp_path / "pipeline.toml", text)


def line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


def test_dcgan_size_is_refused_at_load_by_the_cli(tmp_path):
    path = tiny(tmp_path, size=24)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    where = f"{path}:{line_of(path, 'image_size')}"
    assert lines[0].startswith(f"ganpipe: error: {where}: data.image_size = 24:"), lines[0]
    assert "power of two" in lines[0]
    assert not (tmp_path / "runs").exists(), "a run folder was created"


@pytest.fixture(scope="module")
def registries():
    return load_registry(entry_points=False)


@pytest.mark.parametrize("variant", ["dcgan", "cgan", "wgan-gp", "vae", "infogan"])
def test_every_dcgan_net_variant_checks_its_size_at_load(tmp_path, registries, variant):
    with pytest.raises(ConfigError, match=r"pipeline.toml:7: data.image_size = 24: .*power"):
        load_config(tiny(tmp_path, variant, size=24), registries)
    load_config(tiny(tmp_path, variant, size=32), registries)


def test_size_rules_run_when_the_dataset_cannot_list_its_classes(tmp_path, registries):
    # the folder is not there (yet): no class names, yet the size rule is still checked,
    # and a conditional variant is not refused for labels it may well have
    extra = 'path = "later"'
    with pytest.raises(ConfigError, match="data.image_size = 24"):
        load_config(tiny(tmp_path, "cgan", size=24, dataset="folder", extra=extra), registries)
    load_config(tiny(tmp_path, "cgan", size=16, dataset="folder", extra=extra), registries)
    load_config(tiny(tmp_path, "cyclegan", size=32, dataset="folder", extra=extra), registries)
    with pytest.raises(ConfigError, match="multiple of 4"):
        load_config(tiny(tmp_path, "cyclegan", size=18, dataset="folder", extra=extra), registries)


def test_a_batch_beyond_the_machine_is_refused_at_load_by_the_cli(tmp_path):
    path = tiny(tmp_path, batch=100_000_000)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    where = f"{path}:{line_of(path, 'batch_size')}"
    assert lines[0].startswith(f"ganpipe: error: {where}: train.batch_size = 100000000:")
    assert "lower train.batch_size" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_data_beyond_the_machine_names_image_size(tmp_path, registries, monkeypatch):
    from ganpipe.data import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 100 << 20)  # 100 MiB
    path = tiny(tmp_path, size=512, extra="count = 200")  # 200 x 512 x 512 x 3 x 2 bytes
    with pytest.raises(ConfigError, match=r"data.image_size = 512: .*lower data.image_size"):
        load_config(path, registries)
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown: no check
    load_config(path, registries)


@pytest.mark.parametrize("seed", [-1, 2**70])
def test_seeds_numpy_and_torch_cannot_take_are_refused_at_load(tmp_path, registries, seed):
    path = tiny(tmp_path)
    path.write_text(path.read_text().replace('name = "t"', f'name = "t"\nseed = {seed}'))
    with pytest.raises(ConfigError, match="run.seed"):
        load_config(path, registries)


# -- 5. refusals of unsafe weights: one line, never "weights_only=False" -----------------------
class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling would run code: create the marker folder
        return (os.mkdir, (str(self.marker),))


def assert_safe_refusal(message: str, *, unsafe: bool = True) -> None:
    assert "\n" not in message, message
    assert "weights_only" not in message and "False" not in message, message
    assert ("refusing" in message) == unsafe, message


def test_malicious_state_pt_is_refused_in_one_line(tmp_path):
    import torch

    from ganpipe.errors import TrainingError
    from ganpipe.training import checkpoint as ckpt

    marker = tmp_path / "pwned"
    (tmp_path / "step").mkdir()
    torch.save({"step": 1, "x": Payload(marker)}, tmp_path / "step" / "state.pt")
    with pytest.raises(TrainingError) as info:
        ckpt.load_state(tmp_path / "step")
    assert_safe_refusal(str(info.value))
    assert "Python objects" in str(info.value) and not marker.exists()
    (tmp_path / "step" / "state.pt").write_bytes(b"not a pickle at all")
    with pytest.raises(TrainingError) as info:
        ckpt.load_state(tmp_path / "step")
    assert_safe_refusal(str(info.value), unsafe=False)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_malicious_released_weights_and_init_from_are_refused_in_one_line(tmp_path):
    import torch

    from ganpipe.errors import ModelFileError
    from ganpipe.training.transfer import read_init_weights
    from ganpipe.weights import read_state_dict

    marker = tmp_path / "pwned"
    torch.save({"params": {"w": torch.zeros(1)}, "x": Payload(marker)}, tmp_path / "evil.pth")
    for read in (read_state_dict, read_init_weights):
        with pytest.raises(ModelFileError) as info:
            read(tmp_path / "evil.pth")
        assert_safe_refusal(str(info.value))
    (tmp_path / "junk.pth").write_bytes(b"garbage, not a zip")  # torch: "Weights only load failed"
    with pytest.raises(ModelFileError) as info:
        read_state_dict(tmp_path / "junk.pth")
    assert_safe_refusal(str(info.value), unsafe=False)
    assert not marker.exists()
