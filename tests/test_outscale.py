"""--outscale: any final scale from a fixed-scale model, 8 and 16 bits, alpha kept."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from ganpipe.upscale.batch import upscale_path
from ganpipe.upscale.outscale import final_size, resize_plane


@pytest.fixture(scope="module")
def x2(compact_x2_onnx):
    return compact_x2_onnx


def test_final_size_rounds_each_side():
    assert final_size(32, 24, 3.5) == (112, 84)
    assert final_size(33, 7, 0.5) == (16, 4)  # round half to even, never below 1
    assert final_size(1, 1, 0.1) == (1, 1)


def test_resize_keeps_16_bit_precision_and_type():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    out = resize_plane(np.stack([ramp] * 3, -1), (96, 96))
    assert out.dtype == np.uint16 and out.shape == (96, 96, 3)
    assert len(np.unique(out)) > 4096  # far more levels than 8 bits could hold
    flat = resize_plane(np.full((10, 10), 200, np.uint8), (25, 25))
    assert flat.dtype == np.uint8 and (flat == 200).all()  # Lanczos keeps a flat image


@pytest.mark.parametrize("outscale", [3.5, 1.5, 2.0])
def test_outscale_with_an_x2_model(tmp_path, x2, outscale):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(src / "a.png")
    gray16 = (rng.integers(0, 65536, (16, 12))).astype(np.uint16)
    Image.fromarray(gray16).save(src / "b.png")  # I;16
    out = tmp_path / "out"
    summary = upscale_path(src, out, x2, device="cpu", outscale=outscale, progress=False)
    assert summary.ok and f"(x{outscale:g})" in summary.line()
    a, b = Image.open(out / "a.png"), Image.open(out / "b.png")
    assert a.size == final_size(30, 20, outscale) and a.mode == "RGBA"
    assert b.size == final_size(12, 16, outscale) and b.mode.startswith("I")
    plain = tmp_path / "plain"
    upscale_path(src, plain, x2, device="cpu", progress=False)
    if outscale == 2.0:  # the model's own scale: the same bytes as without --outscale
        assert (out / "a.png").read_bytes() == (plain / "a.png").read_bytes()


def test_outscale_on_the_command_line(tmp_path, x2):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    proc = run_cli("upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2  # no model
    ok = run_cli(
        "upscale",
        "-i",
        str(tmp_path / "a.png"),
        "-o",
        str(tmp_path / "o"),
        "-m",
        str(x2),
        "--outscale",
        "3",
        "--device",
        "cpu",
    )
    assert ok.returncode == 0, ok.stderr
    assert Image.open(tmp_path / "o" / "a.png").size == (24, 24)
    bad = run_cli(
        "upscale",
        "-i",
        str(tmp_path / "a.png"),
        "-o",
        str(tmp_path / "o2"),
        "-m",
        str(x2),
        "--outscale",
        "0",
    )
    assert bad.returncode == 2 and "outscale" in bad.stderr and "Traceback" not in bad.stderr
