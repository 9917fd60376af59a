"""The upscale stage's fingerprint: a re-run skips the stage only while its input images
(and an explicit ``model`` file) are unchanged; adding, touching or replacing one re-runs it.

Model: the hand-made nearest-neighbour x2 ONNX graph of ``test_upscale`` (torch-free).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import write_toml
from PIL import Image
from test_upscale import OUT_NAME, _hand_model, _resize

from ganpipe.pipeline import run_file

PIPELINE = """
[run]
name = "up"
device = "cpu"

[data]
dataset = "shapes"
image_size = 16
count = 8

[model]
variant = "dcgan"

[upscale]
input = "{input}"
model = "near2.onnx"
device = "cpu"
tile = 0
suffix = "_x2"
recursive = {recursive}
"""


@pytest.fixture
def project(tmp_path):
    """A project folder with a tiny x2 model and photos/a.png; returns a runner that runs
    the pipeline and tells whether the upscale stage ran (True) or was skipped (False)."""
    nodes, inits = _resize("image", OUT_NAME, 2)
    _hand_model(tmp_path / "near2.onnx", nodes, inits, 2)
    (tmp_path / "photos").mkdir()
    save(tmp_path / "photos" / "a.png", 6, 0)

    def run(input: str = "photos", recursive: bool = False) -> bool:
        toml = write_toml(
            tmp_path / "pipeline.toml",
            PIPELINE.format(input=input, recursive=str(recursive).lower()),
        )
        logs: list[str] = []
        run_file(toml, entry_points=False, log=logs.append)
        ran = any(line.startswith("[upscale] running") for line in logs)
        assert ran or any(line.startswith("[upscale] up to date, skipped") for line in logs)
        return ran

    return run


def save(path: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def shift_mtime(path: Path, ns: int = 10**9) -> None:
    """A later mtime set explicitly: no sleeping, whatever the filesystem's resolution."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + ns))


def test_upscale_stage_reruns_when_input_images_change(project, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "runs" / "up" / "upscale"
    assert project() is True
    assert project() is False  # nothing changed
    save(photos / "b.png", 5, 1)  # an added image
    assert project() is True and Image.open(out / "b_x2.png").size == (10, 10)
    assert project() is False
    shift_mtime(photos / "a.png")  # touched
    assert project() is True
    save(photos / "a.png", 7, 2)  # replaced by another image (another size in bytes)
    assert project() is True and Image.open(out / "a_x2.png").size == (14, 14)
    (photos / "b.png").unlink()  # a removed image
    assert project() is True
    # files the upscaler does not read do not re-run it
    (photos / "notes.txt").write_text("not an image")
    save(photos / ".hidden.png", 4, 3)
    (photos / "sub").mkdir()
    save(photos / "sub" / "c.png", 4, 4)  # not recursive
    assert project() is False


def test_upscale_stage_fingerprint_respects_recursive_and_the_model_file(project, tmp_path):
    assert project(recursive=True) is True
    assert project(recursive=True) is False
    (tmp_path / "photos" / "sub").mkdir()
    save(tmp_path / "photos" / "sub" / "c.png", 4, 4)
    assert project(recursive=True) is True
    assert (tmp_path / "runs" / "up" / "upscale" / "sub" / "c_x2.png").is_file()
    assert project(recursive=True) is False
    shift_mtime(tmp_path / "near2.onnx")  # e.g. a re-exported model
    assert project(recursive=True) is True


def test_upscale_stage_single_file_input(project, tmp_path):
    assert project("photos/a.png") is True
    assert project("photos/a.png") is False
    save(tmp_path / "photos" / "b.png", 5, 1)  # another file of the folder: not the input
    assert project("photos/a.png") is False
    shift_mtime(tmp_path / "photos" / "a.png")
    assert project("photos/a.png") is True


def test_upscale_stage_passes_quality_compression_and_alpha_on(tmp_path):
    """The stage's quality, png_compression and alpha options reach the upscaler."""
    nodes, inits = _resize("image", OUT_NAME, 2)
    _hand_model(tmp_path / "near2.onnx", nodes, inits, 2)
    (tmp_path / "photos").mkdir()
    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 4, 0), 4, 1)
    Image.fromarray(smooth).save(tmp_path / "photos" / "a.png")
    sizes = {}
    for name, extra in (
        ("low", 'format = "jpg"\nquality = 10'),
        ("high", 'format = "jpg"\nquality = 100'),
        ("flat", "png_compression = 0"),
        ("small", "png_compression = 9"),
    ):
        text = PIPELINE.format(input="photos", recursive="false").replace(
            'suffix = "_x2"', f'suffix = "_{name}"\n{extra}'
        )
        run_file(
            write_toml(tmp_path / "pipeline.toml", text), entry_points=False, log=lambda m: None
        )
        out = next((tmp_path / "runs" / "up" / "upscale").glob(f"a_{name}.*"))
        sizes[name] = out.stat().st_size
    assert sizes["low"] * 3 < sizes["high"]
    assert sizes["small"] * 3 < sizes["flat"]


def test_upscale_stage_with_an_ensemble_and_tta(tmp_path):
    """model = [a, b] and tta = true reach the upscaler; both files are fingerprinted."""
    nodes, inits = _resize("image", OUT_NAME, 2)
    _hand_model(tmp_path / "near2.onnx", nodes, inits, 2)
    _hand_model(tmp_path / "near2b.onnx", nodes, inits, 2)
    (tmp_path / "photos").mkdir()
    save(tmp_path / "photos" / "a.png", 6, 0)
    text = PIPELINE.format(input="photos", recursive="false").replace(
        'model = "near2.onnx"', 'model = ["near2.onnx", "near2b.onnx"]\ntta = true'
    )
    toml = write_toml(tmp_path / "pipeline.toml", text)
    logs: list[str] = []
    run_file(toml, entry_points=False, log=logs.append)
    out = tmp_path / "runs" / "up" / "upscale" / "a_x2.png"
    src = np.asarray(Image.open(tmp_path / "photos" / "a.png"))
    np.testing.assert_array_equal(
        np.asarray(Image.open(out)), src.repeat(2, 0).repeat(2, 1)
    )  # nearest: TTA-invariant
    shift_mtime(tmp_path / "near2b.onnx")
    logs.clear()
    run_file(toml, entry_points=False, log=logs.append)
    assert any(line.startswith("[upscale] running") for line in logs)
