"""``ganpipe upscale``, the upscale stage and the torch-free ONNX super-resolution path.

Models: a 3x3 conv + PixelShuffle x2 and a nearest-neighbour x2 upsampler exported with
torch through ``export_onnx`` (once per module), and small hand-made graphs (onnx.helper)
for what needs a special shape: float16, tile_multiple, value range, a blur, a non-SR task.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import imagecodecs
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from ganpipe.errors import ConfigError, GanpipeError
from ganpipe.imaging.decode import decode_image
from ganpipe.inference.session import cuda_driver_usable
from ganpipe.upscale import batch, upscale_path, worker
from ganpipe.upscale.ensemble import Ensemble
from ganpipe.upscale.model import open_sr_model
from ganpipe.upscale.plan import parse_shard, plan_jobs
from ganpipe.upscale.tiling import Upscaler, axis_weights, tile_windows, upscale_plane

OUT_NAME = "upscaled"  # ONNX forbids an output with the input's name ("image")


# -- models ----------------------------------------------------------------------------
def _torch_model(path: Path, module, scale: int) -> Path:
    import torch

    from ganpipe.export.onnx_export import build_card, export_onnx
    from ganpipe.variant import ExportSpec, InputSpec

    spec = ExportSpec(
        module,
        inputs=[InputSpec("image", "image", (3,))],
        example_inputs=(torch.rand(2, 3, 8, 8),),
        output_name=OUT_NAME,
        value_range=(0.0, 1.0),
        metadata={"scale": scale},
    )
    export_onnx(spec, path, build_card(spec, "test", "super_resolve", 8, 3, ()))
    return path


def _resize(src: str, dst: str, scale: int) -> tuple[list, list]:
    scales = numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), f"scales_{dst}")
    node = helper.make_node(
        "Resize",
        [src, "", scales.name],
        [dst],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    return [node], [scales]


def _hand_model(path: Path, nodes, inits, scale: int, *, dtype=TensorProto.FLOAT, **meta) -> Path:
    graph = helper.make_graph(
        nodes,
        "sr",
        [helper.make_tensor_value_info("image", dtype, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info(OUT_NAME, dtype, ["n", 3, "H", "W"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    full = {
        "task": "super_resolve",
        "scale": scale,
        "channels": 3,
        "value_range": [0.0, 1.0],
        "inputs": [{"name": "image", "kind": "image", "shape": [3]}],
        "output": OUT_NAME,
        **meta,
    }
    for key, value in full.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = "ganpipe." + key, json.dumps(value)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import torch
    from torch import nn

    class Nearest(nn.Module):
        def forward(self, x):
            return x.repeat_interleave(2, 2).repeat_interleave(2, 3)

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    with torch.no_grad():
        conv[0].weight.mul_(0.5)
        conv[0].bias.fill_(0.3)
    out = {
        "conv2": _torch_model(d / "conv2.onnx", conv, 2),
        "near2": _torch_model(d / "near2.onnx", Nearest(), 2),
    }
    # x4 nearest that only accepts multiples of 4 (SpaceToDepth) -> needs tile_multiple
    nodes, inits = _resize("d2s", OUT_NAME, 4)
    out["near4m4"] = _hand_model(
        d / "near4m4.onnx",
        [
            helper.make_node("SpaceToDepth", ["image"], ["s2d"], blocksize=4),
            helper.make_node("DepthToSpace", ["s2d"], ["d2s"], blocksize=4, mode="DCR"),
            *nodes,
        ],
        inits,
        4,
        tile_multiple=4,
    )
    # float16 in and out
    nodes, inits = _resize("f32", "r32", 2)
    out["near2fp16"] = _hand_model(
        d / "near2fp16.onnx",
        [
            helper.make_node("Cast", ["image"], ["f32"], to=TensorProto.FLOAT),
            *nodes,
            helper.make_node("Cast", ["r32"], [OUT_NAME], to=TensorProto.FLOAT16),
        ],
        inits,
        2,
        dtype=TensorProto.FLOAT16,
    )
    # value range [-1, 1] with a negation: the output must be 1 - input
    nodes, inits = _resize("neg", OUT_NAME, 2)
    out["neg2"] = _hand_model(
        d / "neg2.onnx",
        [helper.make_node("Neg", ["image"], ["neg"]), *nodes],
        inits,
        2,
        value_range=[-1.0, 1.0],
    )
    # 3x3 box blur, then nearest x2: mixes each pixel with its neighbours
    box = numpy_helper.from_array(np.full((3, 1, 3, 3), 1 / 9, np.float32), "box")
    nodes, inits = _resize("blur", OUT_NAME, 2)
    out["blur2"] = _hand_model(
        d / "blur2.onnx",
        [helper.make_node("Conv", ["image", "box"], ["blur"], group=3, pads=[1, 1, 1, 1]), *nodes],
        [box, *inits],
        2,
    )
    # not a super-resolution model
    out["generate"] = _hand_model(
        d / "gen.onnx",
        [helper.make_node("Identity", ["image"], [OUT_NAME])],
        [],
        1,
        task="generate",
    )
    return out


# -- helpers ---------------------------------------------------------------------------
def rand_rgb(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def nearest(arr: np.ndarray, s: int) -> np.ndarray:
    return arr.repeat(s, 0).repeat(s, 1)


def opened(path: Path) -> Image.Image:
    im = Image.open(path)
    im.load()
    return im


def run(src, out, model, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return upscale_path(src, out, model, **kw)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str):
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class Recorder:
    """Wraps an ONNX Runtime session: records input shapes, can fail or sleep."""

    def __init__(self, session, fail_above: int | None = None, error: str = "", sleep: float = 0.0):
        self.session, self.fail_above, self.error, self.sleep = session, fail_above, error, sleep
        self.shapes: list[tuple[int, ...]] = []
        self.intervals: list[tuple[float, float]] = []

    def run(self, names, feeds):
        x = next(iter(feeds.values()))
        self.shapes.append(x.shape)
        if self.fail_above is not None and max(x.shape[2:]) > self.fail_above:
            raise RuntimeError(self.error)
        t0 = time.perf_counter()
        if self.sleep:
            time.sleep(self.sleep)
        result = self.session.run(names, feeds)
        self.intervals.append((t0, time.perf_counter()))
        return result


# -- the model contract ----------------------------------------------------------------
def test_scale_and_tile_multiple_come_from_the_onnx_alone(models, tmp_path):
    arr = rand_rgb(10, 7)
    Image.fromarray(arr).save(tmp_path / "a.png")
    summary = run(tmp_path / "a.png", tmp_path / "out", models["near4m4"], tile=0)
    assert summary.ok and summary.scale == 4
    got = np.asarray(opened(tmp_path / "out" / "a.png"))
    assert got.shape == (40, 28, 3)  # 10x7 is no multiple of 4: padded, then cropped
    np.testing.assert_array_equal(got, nearest(arr, 4))


def test_value_range_from_metadata(models, tmp_path):
    arr = rand_rgb(6, 5)
    Image.fromarray(arr).save(tmp_path / "a.png")
    run(tmp_path / "a.png", tmp_path / "out", models["neg2"])
    got = np.asarray(opened(tmp_path / "out" / "a.png")).astype(int)
    np.testing.assert_array_equal(got, 255 - nearest(arr, 2).astype(int))


def test_fp16_model_gets_float16_input(models, tmp_path):
    sr = open_sr_model(models["near2fp16"], "cpu")
    assert sr.dtype == np.float16
    arr = rand_rgb(9, 11)
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert run(tmp_path / "a.png", tmp_path / "out", models["near2fp16"]).ok
    np.testing.assert_array_equal(np.asarray(opened(tmp_path / "out" / "a.png")), nearest(arr, 2))


def test_device_goes_to_choose_providers(models, monkeypatch):
    import ganpipe.inference.session as session

    seen = []
    monkeypatch.setattr(
        session, "choose_providers", lambda device: seen.append(device) or ["CPUExecutionProvider"]
    )
    assert open_sr_model(models["near2"], "cuda:1").providers == ["CPUExecutionProvider"]
    assert seen == ["cuda:1"]
    with pytest.raises(ConfigError, match="unknown device"):
        open_sr_model(models["near2"], "gpu")


def test_non_sr_model_and_bad_device_are_one_line_errors(models, tmp_path, cli):
    Image.fromarray(rand_rgb(4, 4)).save(tmp_path / "a.png")
    base = ["upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]
    assert_one_line_error(cli(*base, "-m", str(models["generate"])), 2, "super_resolve", "generate")
    assert_one_line_error(cli(*base, "-m", str(tmp_path / "missing.onnx")), 2, "does not exist")
    assert_one_line_error(
        cli(*base, "-m", str(models["near2"]), "--device", "gpu"), 2, "unknown device"
    )
    if not cuda_driver_usable():
        assert_one_line_error(
            cli(*base, "-m", str(models["near2"]), "--device", "cuda"), 2, "no usable CUDA GPU"
        )
    assert not (tmp_path / "out").exists()


# -- tiling ----------------------------------------------------------------------------
def test_tile_windows_make_the_tile_grid_with_the_overlap_added():
    cases = [
        (70, 24, 6, 1),
        (100, 32, 8, 1),
        (33, 32, 4, 1),
        (500, 64, 31, 1),
        (256, 128, 32, 1),
        (1000, 128, 16, 4),
        (257, 64, 0, 8),
        (131, 64, 16, 1),
    ]
    for length, tile, overlap, multiple in cases:
        size, starts = tile_windows(length, tile, overlap, multiple)
        n = len(starts)
        assert n == -(-length // tile)  # Real-ESRGAN's grid: ceil(length / tile)
        assert starts[0] == 0 and starts[-1] == length - size and size % multiple == 0
        assert all(a + size - b >= overlap for a, b in zip(starts, starts[1:], strict=False))
        # the smallest window for that: about tile + overlap, not more
        assert (size - multiple) * n < length + (n - 1) * overlap
        assert size <= tile + overlap + multiple
        total = np.zeros(length * 2)
        for s, w in zip(starts, axis_weights(starts, size, length, 2), strict=True):
            total[s * 2 : (s + size) * 2] += w
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
    # a 256 px side in 128 px tiles with overlap 32: two 144 px windows (1.125x the side
    # through the model), not three 128 px ones (1.5x)
    assert tile_windows(256, 128, 32) == (144, [0, 112])
    assert tile_windows(100, 128, 32) == (100, [0])


def test_integer_output_is_rounded_band_by_band(models):
    """uint8 / uint16 outputs are the rounded float output, row bands included."""
    sr = open_sr_model(models["conv2"], "cpu")
    for arr in (rand_rgb(70, 53, seed=3), rand_rgb(70, 53, seed=3).astype(np.uint16) * 257):
        ref = upscale_plane(sr, arr, 2, 24, 6)
        assert ref.dtype == np.float32 and ref.shape == (140, 106, 3)
        for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
            got = upscale_plane(sr, arr, 2, 24, 6, dtype=dtype)
            expected = np.clip(np.floor(ref.astype(np.float64) * top + 0.5), 0, top)
            assert got.dtype == dtype
            assert np.abs(got.astype(np.float64) - expected).max() <= 1
            assert (got == expected).mean() > 0.999


def test_small_tiles_shrink_an_overlap_that_does_not_fit(models, tmp_path, cli):
    """--tile 64 works with the default overlap of 32: the overlap becomes 16."""
    Image.fromarray(rand_rgb(150, 90, seed=4)).save(tmp_path / "a.png")
    proc = cli(
        "upscale",
        "-i",
        str(tmp_path / "a.png"),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(models["conv2"]),
        "--device",
        "cpu",
        "--tile",
        "64",
    )
    assert proc.returncode == 0, proc.stderr
    assert "tile overlap 32 is too large for 64x64 tiles; using 16" in proc.stderr
    whole = run(tmp_path / "a.png", tmp_path / "whole", models["conv2"], tile=0)
    assert whole.ok
    a = np.asarray(opened(tmp_path / "out" / "a.png")).astype(int)
    b = np.asarray(opened(tmp_path / "whole" / "a.png")).astype(int)
    assert a.shape == b.shape == (300, 180, 3) and np.abs(a - b).max() <= 1


def test_png_compression_level(models, tmp_path, cli):
    arr = np.repeat(np.repeat(rand_rgb(16, 16, seed=5), 4, 0), 4, 1)
    Image.fromarray(arr).save(tmp_path / "a.png")
    sizes = {}
    for level in (0, 9):
        out = tmp_path / f"out{level}"
        proc = cli(
            "upscale",
            "-i",
            str(tmp_path / "a.png"),
            "-o",
            str(out),
            "-m",
            str(models["near2"]),
            "--device",
            "cpu",
            "--png-compression",
            str(level),
        )
        assert proc.returncode == 0, proc.stderr
        sizes[level] = (out / "a.png").stat().st_size
        np.testing.assert_array_equal(np.asarray(opened(out / "a.png")), nearest(arr, 2))
    assert sizes[0] > 3 * sizes[9]
    assert_one_line_error(
        cli(
            "upscale",
            "-i",
            str(tmp_path / "a.png"),
            "-o",
            str(tmp_path / "bad"),
            "-m",
            str(models["near2"]),
            "--png-compression",
            "10",
        ),
        2,
        "png-compression",
    )


def test_tiled_equals_untiled_and_only_tiles_reach_the_model(models, tmp_path):
    arr = rand_rgb(70, 53, seed=1)
    Image.fromarray(arr).save(tmp_path / "a.png")
    whole = run(tmp_path / "a.png", tmp_path / "whole", models["conv2"], tile=0)
    assert whole.ok
    sr = open_sr_model(models["conv2"], "cpu")
    rec = Recorder(sr.session)
    sr.session = rec
    upscaler = Upscaler(sr, tile=24, overlap=6)
    pic = decode_image(tmp_path / "a.png")
    tiled = upscaler.upscale(pic).color
    assert len(rec.shapes) > 4 and all(max(s[2:]) <= 24 + 6 for s in rec.shapes)
    untiled = Upscaler(open_sr_model(models["conv2"], "cpu"), tile=0).upscale(pic).color
    assert tiled.shape == untiled.shape == (140, 106, 3)
    assert np.abs(tiled - untiled).max() < 1e-4
    assert 0.05 < untiled.mean() < 0.95  # the test model really draws something
    run(tmp_path / "a.png", tmp_path / "tiled", models["conv2"], tile=24, overlap=6)
    a = np.asarray(opened(tmp_path / "whole" / "a.png")).astype(int)
    b = np.asarray(opened(tmp_path / "tiled" / "a.png")).astype(int)
    assert np.abs(a - b).max() <= 1


def test_out_of_memory_halves_the_tile(models, tmp_path):
    pic = decode_image_from(tmp_path, rand_rgb(100, 90, seed=2))
    expected = Upscaler(open_sr_model(models["conv2"], "cpu"), tile=0).upscale(pic).color
    sr = open_sr_model(models["conv2"], "cpu")
    sr.session = Recorder(
        sr.session,
        fail_above=32,
        error="[ONNXRuntimeError] : 6 : "
        "RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer",
    )
    logs: list[str] = []
    upscaler = Upscaler(sr, tile=128, overlap=8, log=logs.append)
    got = upscaler.upscale(pic).color
    # 128 is more than the image: halving starts from its 100 pixels, 50 still fails
    assert upscaler.tile == 25 and len(logs) == 2 and "out of memory" in logs[0]
    assert np.abs(got - expected).max() < 1e-4
    # the smaller tile is kept for the next image
    n = len(sr.session.shapes)
    upscaler.upscale(pic)
    assert all(max(s[2:]) <= 25 + 8 for s in sr.session.shapes[n:])
    # other errors are not retried; out of memory at the smallest tile gives up
    sr.session = Recorder(sr.session.session, fail_above=0, error="Invalid rank")
    with pytest.raises(RuntimeError, match="Invalid rank"):
        Upscaler(sr, tile=64, overlap=8).upscale(pic)
    sr.session = Recorder(sr.session.session, fail_above=0, error="CUDA out of memory")
    with pytest.raises(GanpipeError, match="out of memory even with 16x16 tiles"):
        Upscaler(sr, tile=64, overlap=8).upscale(pic)


def decode_image_from(tmp_path: Path, arr: np.ndarray):
    Image.fromarray(arr).save(tmp_path / "src.png")
    return decode_image(tmp_path / "src.png")


# -- alpha, palette, gray ----------------------------------------------------------------
def test_rgba_keeps_alpha_without_dark_fringes(models, tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)  # transparent black everywhere...
    rgba[10:22, 10:22] = (255, 0, 0, 255)  # ...but an opaque red square
    Image.fromarray(rgba).save(tmp_path / "a.png")
    for mode in ("model", "bicubic"):
        out = tmp_path / mode
        assert run(tmp_path / "a.png", out, models["blur2"], alpha=mode).ok
        im = opened(out / "a.png")
        assert im.mode == "RGBA" and im.size == (64, 64)
        got = np.asarray(im).astype(int)
        visible = got[:, :, 3] >= 128
        assert visible.sum() > 400
        assert got[visible, 0].min() >= 250 and got[visible, 1:3].max() <= 5  # no dark edge
        assert got[28:36, 28:36, 3].min() == 255 and got[:6, :6, 3].max() == 0


def test_gray_palette_and_la_modes(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    gray = rand_rgb(6, 7, channels=1)
    Image.fromarray(gray).save(src / "gray.png")
    Image.fromarray(gray > 127).save(src / "bits.png")  # mode "1"
    la = np.dstack([gray, np.full_like(gray, 200)])
    Image.fromarray(la, "LA").save(src / "la.png")
    pal = Image.fromarray(rand_rgb(6, 7, seed=3)).quantize(16)
    pal.save(src / "pal.png")
    pal_t = pal.copy()
    pal_t.info["transparency"] = int(np.asarray(pal)[0, 0])
    pal_t.save(src / "pal_t.png", transparency=pal_t.info["transparency"])
    assert run(src, tmp_path / "out", models["near2"]).ok
    out = tmp_path / "out"
    im = opened(out / "gray.png")
    assert im.mode == "L"
    np.testing.assert_array_equal(np.asarray(im), nearest(gray, 2))
    assert opened(out / "bits.png").mode == "L"
    im = opened(out / "la.png")
    assert im.mode == "LA" and np.asarray(im)[:, :, 1].min() == 200
    np.testing.assert_array_equal(np.asarray(im)[:, :, 0], nearest(gray, 2))
    im = opened(out / "pal.png")
    assert im.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(im), nearest(np.asarray(pal.convert("RGB")), 2))
    im = opened(out / "pal_t.png")
    assert im.mode == "RGBA" and np.asarray(im)[0, 0, 3] == 0
    assert np.asarray(im)[:, :, 3].max() == 255


# -- 16 bits ---------------------------------------------------------------------------
def test_16bit_gray_png_and_tiff_keep_16_bits(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    ramp = np.linspace(0, 65535, 600).astype(np.uint16)[None].repeat(3, 0)
    Image.fromarray(ramp).save(src / "g.png")  # I;16
    Image.fromarray(ramp.astype(">u2")).save(src / "g.tif")  # I;16B
    assert opened(src / "g.tif").mode == "I;16B"
    assert run(src, tmp_path / "out", models["near2"], tile=64, overlap=8).ok
    for name in ("g.png", "g.tif"):
        im = opened(tmp_path / "out" / name)
        got = np.asarray(im).astype(np.int64)
        assert im.mode.startswith("I;16"), (name, im.mode)
        assert len(np.unique(got)) > 256
        np.testing.assert_array_equal(got, nearest(ramp, 2).astype(np.int64))


def test_48bit_rgb_and_64bit_rgba_png_keep_16_bits(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    ramp = np.linspace(0, 65535, 400).astype(np.uint16)
    rgb = np.stack(
        [np.tile(ramp, (4, 1)), np.tile(ramp[::-1], (4, 1)), np.full((4, 400), 12345, np.uint16)],
        axis=2,
    )
    (src / "rgb.png").write_bytes(imagecodecs.png_encode(rgb))
    rgba = np.dstack([rgb, np.tile(ramp, (4, 1))])
    (src / "rgba.png").write_bytes(imagecodecs.png_encode(rgba))
    assert opened(src / "rgb.png").mode == "RGB"  # what Pillow alone would keep
    assert run(src, tmp_path / "out", models["near2"]).ok
    for name, ref in (("rgb.png", rgb), ("rgba.png", rgba)):
        got = imagecodecs.png_decode((tmp_path / "out" / name).read_bytes())
        assert len(np.unique(got[:, :, 0])) > 256
        visible = nearest(ref, 2)[:, :, -1] > 0 if name == "rgba.png" else slice(None)
        np.testing.assert_array_equal(got[visible][..., :3], nearest(ref, 2)[visible][..., :3])
    got = imagecodecs.png_decode((tmp_path / "out" / "rgba.png").read_bytes())
    np.testing.assert_array_equal(got[:, :, 3], nearest(rgba[:, :, 3], 2))


def test_48bit_rgb_64bit_rgba_and_gray_alpha_tiff_keep_16_bits(models, tmp_path):
    """16-bit colour TIFFs, which Pillow reads at 8 bits (or not at all for gray+alpha),
    come out 16-bit as TIFF and as PNG; orientation and ICC profile are kept."""
    import tifffile
    from PIL import ImageCms

    from ganpipe.imaging import tiff16

    src = tmp_path / "in"
    src.mkdir()
    ramp = np.linspace(0, 65535, 300).astype(np.uint16)
    rgb = np.stack(
        [np.tile(ramp, (5, 1)), np.tile(ramp[::-1], (5, 1)), np.full((5, 300), 12345, np.uint16)],
        axis=2,
    )
    rgba = np.dstack([rgb, np.tile(ramp, (5, 1))])
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    (src / "rgb.tif").write_bytes(tiff16.encode_tiff16(rgb, icc=icc))
    (src / "rgba.tif").write_bytes(tiff16.encode_tiff16(rgba))
    (src / "ga.tif").write_bytes(tiff16.encode_tiff16(rgba[:, :, [0, 3]]))
    # big-endian, planar, rotated by the Orientation tag (6: 90 degrees clockwise)
    tifffile.imwrite(
        src / "rot.tif",
        np.moveaxis(rgb, 2, 0),
        byteorder=">",
        planarconfig="separate",
        photometric="rgb",
        extratags=[(274, "H", 1, 6, True)],
    )
    assert opened(src / "rgb.tif").mode == "RGB"  # what Pillow alone would keep
    assert run(src, tmp_path / "out", models["near2"], tile=64, overlap=8).ok
    assert run(src, tmp_path / "png", models["near2"], format="png").ok

    def alpha_visible(ref):
        return nearest(ref, 2)[:, :, -1] > 0

    for name, ref in (
        ("rgb", rgb),
        ("rgba", rgba),
        ("ga", rgba[:, :, [0, 3]]),
        ("rot", np.rot90(rgb, -1)),
    ):
        for got in (
            tifffile.imread(tmp_path / "out" / f"{name}.tif"),
            imagecodecs.png_decode((tmp_path / "png" / f"{name}.png").read_bytes()),
        ):
            got = got if got.ndim == 3 else got[:, :, None]
            assert got.dtype == np.uint16 and len(np.unique(got[..., 0])) > 256, name
            expected = nearest(ref, 2)
            if ref.shape[2] in (2, 4):  # colour under alpha 0 is free; alpha itself exact
                np.testing.assert_array_equal(got[..., -1], expected[..., -1])
                mask = alpha_visible(ref)
                np.testing.assert_array_equal(got[mask][..., :-1], expected[mask][..., :-1])
            else:
                np.testing.assert_array_equal(got, expected)
    with tifffile.TiffFile(tmp_path / "out" / "rgb.tif") as tif:
        assert tif.pages.first.tags[34675].value == icc


def test_16bit_tiff_with_a_codec_tifffile_lacks_falls_back_to_pillow(models, tmp_path, monkeypatch):
    """An LZW 16-bit TIFF without imagecodecs is still upscaled (at 8 bits, as Pillow
    reads it), not reported as failed."""
    from ganpipe.imaging import tiff16

    rgb = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (6, 1))[:, :, None].repeat(3, 2)
    (tmp_path / "a.tif").write_bytes(tiff16.encode_tiff16(rgb))

    def lacking(path):
        raise tiff16.MissingCodec(
            "TIFF compression LZW is not supported (it needs the imagecodecs package)"
        )

    monkeypatch.setattr(tiff16, "read_tiff16", lacking)
    summary = run(tmp_path / "a.tif", tmp_path / "out", models["near2"])
    assert summary.ok and len(summary.written) == 1
    got = np.asarray(opened(tmp_path / "out" / "a.tif"))
    assert got.dtype == np.uint8 and got.shape == (12, 80, 3)
    expected = nearest(rgb / 257.0, 2)  # Pillow's own reduction: within a level
    assert np.abs(got - expected).max() <= 1


def _reference_png16(arr: np.ndarray, kinds: list[int]) -> bytes:
    """A 16-bit RGB PNG filtered row by row with ``kinds`` (plain Python, the spec's way)."""
    import struct
    import zlib

    h, w, c = arr.shape
    bpp = 2 * c
    rows = arr.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(int)
    raw, prev = b"", [0] * (w * bpp)
    for r in range(h):
        kind, row, out = kinds[r % len(kinds)], list(rows[r]), []
        for x, v in enumerate(row):
            a = row[x - bpp] if x >= bpp else 0
            b, cc = prev[x], prev[x - bpp] if x >= bpp else 0
            p = a + b - cc
            paeth = (
                a
                if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - cc)
                else b
                if abs(p - b) <= abs(p - cc)
                else cc
            )
            pred = [0, a, b, (a + b) // 2, paeth][kind]
            out.append((v - pred) & 255)
        raw += bytes([kind, *out])
        prev = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("kinds", [[0, 1, 2, 3, 4], [1, 2], [3], [4]])
def test_png16_reader_handles_every_filter(tmp_path, kinds):
    arr = np.random.default_rng(4).integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    arr[2:4] = 777
    (tmp_path / "a.png").write_bytes(_reference_png16(arr, kinds))
    pic = decode_image(tmp_path / "a.png")
    assert pic.bits == 16 and pic.alpha is None
    np.testing.assert_array_equal(pic.color, arr)
    # Pillow agrees on the high bytes, so the reference file is a valid PNG
    np.testing.assert_array_equal(np.asarray(opened(tmp_path / "a.png")), arr >> 8)


# -- EXIF orientation, ICC ---------------------------------------------------------------
def test_exif_orientation_applied_and_icc_kept(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    ImageCms = pytest.importorskip("PIL.ImageCms")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:4, :4] = (255, 0, 0)  # a red top-left corner
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    im.save(src / "r.png", exif=exif.tobytes(), icc_profile=icc)
    im.save(src / "r.jpg", exif=exif.tobytes(), icc_profile=icc, quality=100)
    assert run(src, tmp_path / "out", models["near2"]).ok
    for name in ("r.png", "r.jpg"):
        out = opened(tmp_path / "out" / name)
        assert out.size == (20, 40), name  # 10 wide x 20 tall after rotation, then x2
        got = np.asarray(out).astype(int)
        assert got[2:6, 14:18, 0].min() > 200 and got[:, :8, 0].max() < 60  # now top-right
        assert out.info.get("icc_profile") == icc
        assert out.getexif().get(0x0112, 1) == 1  # viewers must not rotate it again


# -- formats, names, folders ---------------------------------------------------------------
def test_formats_by_content_names_and_recursive_tree(models, tmp_path):
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(rand_rgb(8, 8)).save(src / "png_named.jpg", format="PNG")
    Image.fromarray(rand_rgb(8, 8)).save(src / "photo.jpeg", format="JPEG")
    Image.fromarray(rand_rgb(8, 8)).save(src / "w.webp", format="WEBP")
    Image.fromarray(rand_rgb(8, 8)).save(src / "sub" / "t.tiff", format="TIFF")
    Image.fromarray(rand_rgb(8, 8)).save(src / "sub" / "deeper" / "noext", format="PNG")
    (src / "notes.txt").write_text("not an image")
    s = run(src, tmp_path / "flat", models["near2"], suffix="_x2")
    assert sorted(p.name for p in s.written) == ["photo_x2.jpeg", "png_named_x2.png", "w_x2.webp"]
    assert s.ok and s.ignored == 1
    s = run(src, tmp_path / "by_name", models["near2"], recursive=True)
    assert s.ignored == 2  # notes.txt, and noext: not an image by name
    s = run(src, tmp_path / "tree", models["near2"], recursive=True, all_files=True)
    assert s.ignored == 1  # notes.txt: not an image by content
    formats = {p.relative_to(tmp_path / "tree").as_posix(): opened(p).format for p in s.written}
    assert formats == {
        "png_named.png": "PNG",
        "photo.jpeg": "JPEG",
        "w.webp": "WEBP",
        "sub/t.tiff": "TIFF",
        "sub/deeper/noext.png": "PNG",
    }
    s = run(src, tmp_path / "as_png", models["near2"], recursive=True, format="png", all_files=True)
    assert {opened(p).format for p in s.written} == {"PNG"} and len(s.written) == 5
    assert {p.suffix for p in s.written} == {".png"}
    # a single file, into a folder or to a file name
    s = run(src / "w.webp", tmp_path / "one", models["near2"], format="jpg")
    assert [p.name for p in s.written] == ["w.jpg"] and opened(s.written[0]).format == "JPEG"
    s = run(src / "w.webp", tmp_path / "named" / "big.png", models["near2"])
    assert s.written == [tmp_path / "named" / "big.png"]
    assert opened(s.written[0]).size == (16, 16)


def test_outputs_never_overwrite_inputs(models, tmp_path, cli):
    arr = rand_rgb(6, 6)
    Image.fromarray(arr).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    proc = cli(
        "upscale",
        "-i",
        str(tmp_path / "a.png"),
        "-o",
        str(tmp_path),
        "-m",
        str(models["near2"]),
        "--device",
        "cpu",
    )
    assert proc.returncode == 1 and "would overwrite an input" in proc.stderr
    assert "Traceback" not in proc.stderr and (tmp_path / "a.png").read_bytes() == before
    s = run(tmp_path / "a.png", tmp_path, models["near2"], suffix="_x2")
    assert s.ok and (tmp_path / "a_x2.png").exists()
    (tmp_path / "in").mkdir()
    Image.fromarray(arr).save(tmp_path / "in" / "b.png")
    for out in ("in", "in/out"):
        proc = cli(
            "upscale",
            "-i",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / out),
            "-m",
            str(models["near2"]),
        )
        assert_one_line_error(proc, 2, "inside the input folder")


def test_writes_are_atomic(models, tmp_path, monkeypatch):
    Image.fromarray(rand_rgb(6, 6)).save(tmp_path / "a.png")
    real_save = Image.Image.save

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    s = run(tmp_path / "a.png", tmp_path / "out", models["near2"])
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert len(s.failures) == 1 and "No space left" in s.failures[0][1]
    assert list((tmp_path / "out").iterdir()) == []  # no half file, no temporary file


def test_skip_existing_resumes(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(rand_rgb(5, 5, seed=i)).save(src / f"{i}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "1.png").write_bytes(b"from an interrupted run")
    s = run(src, out, models["near2"], skip_existing=True)
    assert [p.name for p in s.skipped] == ["1.png"] and len(s.written) == 2
    assert (out / "1.png").read_bytes() == b"from an interrupted run"
    s = run(src, out, models["near2"])
    assert len(s.written) == 3 and opened(out / "1.png").size == (10, 10)


def test_bad_files_are_reported_and_the_batch_goes_on(models, tmp_path, cli):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("good1.png", "good2.jpg"):
        Image.fromarray(rand_rgb(6, 6)).save(src / name)
    good = (src / "good1.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "corrupt.png").write_bytes(os.urandom(300))
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.webp").write_text("hello")
    proc = cli(
        "upscale",
        "-i",
        str(src),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(models["near2"]),
        "--device",
        "cpu",
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("ganpipe: failed: ")]
    assert len(failed) == 4
    for name in ("truncated.png", "corrupt.png", "empty.jpg", "text.webp"):
        assert any(name in ln for ln in failed), name
    assert "upscaled 2 images" in proc.stdout and "4 failed" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good1.png", "good2.jpg"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_limit_stays_on(models, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rand_rgb(40, 40)).save(src / "big.png")
    (src / "big16.png").write_bytes(imagecodecs.png_encode(np.zeros((40, 40, 3), np.uint16)))
    Image.fromarray(rand_rgb(20, 20)).save(src / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: Pillow only warns
    s = run(src, tmp_path / "out", models["near2"])
    assert [p.name for p in s.written] == ["small.png"]
    assert sorted(p.name for p, _ in s.failures) == ["big.png", "big16.png"]
    assert all("decompression bomb" in reason for _, reason in s.failures)


# -- throughput: overlap, bounded queues, progress ---------------------------------------
def test_decode_infer_encode_overlap_with_bounded_queues(models, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(8):
        Image.fromarray(rand_rgb(8, 8, seed=i)).save(src / f"{i}.png")
    lock = threading.Lock()
    state = {"decoded": 0, "consumed": 0, "max_ahead": 0}
    encodes: list[tuple[float, float]] = []
    real_decode, real_encode = worker.decode_image, worker.encode_image

    def decode(path, *args):
        pic = real_decode(path, *args)
        with lock:
            state["decoded"] += 1
            state["max_ahead"] = max(state["max_ahead"], state["decoded"] - state["consumed"])
        return pic

    def encode(pic, path, fmt, *args):
        t0 = time.perf_counter()
        time.sleep(0.15)
        real_encode(pic, path, fmt, *args)
        with lock:
            encodes.append((t0, time.perf_counter()))

    monkeypatch.setattr(worker, "decode_image", decode)
    monkeypatch.setattr(worker, "encode_image", encode)
    sr = open_sr_model(models["near2"], "cpu")
    rec = Recorder(sr.session, sleep=0.05)
    sr.session = rec
    upscaler = Upscaler(sr, tile=0)
    real_upscale = upscaler.upscale

    def counted(pic, *args):
        with lock:
            state["consumed"] += 1
        return real_upscale(pic, *args)

    upscaler.upscale = counted
    plan = plan_jobs(src, tmp_path / "out")
    written, failures, _ = batch.run_jobs(upscaler, plan.jobs, workers=2, progress=False)
    assert len(written) == 8 and not failures
    overlapping = sum(1 for a0, a1 in rec.intervals for b0, b1 in encodes if a0 < b1 and b0 < a1)
    assert overlapping >= 3  # the model ran while earlier images were being written
    assert state["max_ahead"] <= 2 + 2  # decoded images waiting: bounded


def test_progress_bar_shows_images_and_megapixels_per_second(models, tmp_path, cli):
    for i in range(3):
        Image.fromarray(rand_rgb(8, 8, seed=i)).save(tmp_path / f"{i}.png")
    proc = cli(
        "upscale",
        "-i",
        str(tmp_path),
        "-o",
        str(tmp_path.parent / "prog_out"),
        "-m",
        str(models["near2"]),
        "--progress",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    assert "img/s" in proc.stderr and "MP/s" in proc.stderr and "3/3" in proc.stderr
    assert "upscaled 3 images (x2)" in proc.stdout


# -- sharding ----------------------------------------------------------------------------
def test_shards_split_the_sorted_list(models, tmp_path, cli):
    names = [f"{i:02d}.png" for i in range(7)]
    for i, name in enumerate(names):
        Image.fromarray(rand_rgb(4, 4, seed=i)).save(tmp_path / name)
    seen = []
    for i in range(3):
        plan = plan_jobs(tmp_path, tmp_path.parent / "shard_out", shard=(i, 3))
        got = [j.src.name for j in plan.jobs]
        assert got == names[i::3]
        seen += got
    assert sorted(seen) == names
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    for bad in ("4/4", "x", "1/0", "-1/2"):
        proc = cli(
            "upscale",
            "-i",
            str(tmp_path),
            "-o",
            str(tmp_path.parent / "s"),
            "-m",
            str(models["near2"]),
            "--shard",
            bad,
        )
        assert_one_line_error(proc, 2, "--shard")


# -- torch-free ------------------------------------------------------------------------
def run_cli_without_torch(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """``ganpipe ARGS`` in a subprocess where importing torch raises; it prints
    TORCH-FREE when the command succeeded and neither torch nor onnx was imported."""
    code = textwrap.dedent(f"""
        import sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")

        sys.meta_path.insert(0, NoTorch())
        from ganpipe.cli import main
        sys.argv = ["ganpipe", *{args!r}]
        try:
            main(prog_name="ganpipe")
        except SystemExit as exc:
            assert not exc.code, exc.code
        assert "torch" not in sys.modules and "onnxruntime" in sys.modules
        # nor the onnx package: its import (ml_dtypes) was 0.7 s of a short upscale
        assert "onnx" not in sys.modules, "onnx imported"
        print("TORCH-FREE")
    """)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_upscale_never_imports_torch(models, tmp_path):
    Image.fromarray(rand_rgb(6, 6)).save(tmp_path / "a.png")
    proc = run_cli_without_torch(
        [
            "upscale",
            "-i",
            str(tmp_path / "a.png"),
            "-o",
            str(tmp_path / "out"),
            "-m",
            str(models["near2"]),
        ]
    )
    assert proc.returncode == 0 and "TORCH-FREE" in proc.stdout, proc.stderr
    assert opened(tmp_path / "out" / "a.png").size == (12, 12)


def test_released_weights_are_converted_once_and_cached(tmp_path):
    """-m RealESRGAN.pth works: converted with torch once, then opened from the cache
    without torch; the result is what `ganpipe import` + the .onnx give."""
    import torch

    from ganpipe.nn.sr import SRVGGNetCompact
    from ganpipe.weights import import_weights

    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=2)
    torch.save({"params": net.state_dict()}, tmp_path / "tiny-x2.pth")
    Image.fromarray(rand_rgb(9, 7, seed=8)).save(tmp_path / "a.png")
    env = {**os.environ, "GANPIPE_CACHE_DIR": str(tmp_path / "cache")}
    args = [
        sys.executable,
        "-m",
        "ganpipe.cli",
        "upscale",
        "-i",
        str(tmp_path / "a.png"),
        "-m",
        str(tmp_path / "tiny-x2.pth"),
        "--device",
        "cpu",
        "-o",
    ]
    proc = subprocess.run(
        [*args, str(tmp_path / "first")], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "converting tiny-x2.pth (compact x2) to ONNX" in proc.stderr
    cached = list((tmp_path / "cache" / "imported").glob("tiny-x2-*.onnx"))
    assert len(cached) == 1
    import_weights(tmp_path / "tiny-x2.pth", tmp_path / "ref.onnx")
    assert run(tmp_path / "a.png", tmp_path / "ref", tmp_path / "ref.onnx").ok
    np.testing.assert_array_equal(
        np.asarray(opened(tmp_path / "first" / "a.png")),
        np.asarray(opened(tmp_path / "ref" / "a.png")),
    )
    # second time: from the cache, with torch blocked
    proc = run_cli_without_torch([*args[3:], str(tmp_path / "second")], env)
    assert proc.returncode == 0 and "TORCH-FREE" in proc.stdout, proc.stderr
    assert "converting" not in proc.stderr
    np.testing.assert_array_equal(
        np.asarray(opened(tmp_path / "second" / "a.png")),
        np.asarray(opened(tmp_path / "ref" / "a.png")),
    )
    # a file holding Python objects is refused before anything is written
    torch.save({"params": net.state_dict(), "x": Path("x")}, tmp_path / "evil.pth")
    proc = subprocess.run(
        [*args[:7], str(tmp_path / "evil.pth"), *args[8:], str(tmp_path / "evil-out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert_one_line_error(proc, 2, "refusing to load")
    assert not (tmp_path / "evil-out").exists()


def test_model_ensemble_and_self_ensemble(models, tmp_path, cli):
    """Several models: outputs averaged; --tta: the 8 flips/rotations, turned back and
    averaged (computed here by hand on whole images)."""
    arr = rand_rgb(13, 10, seed=9)
    pic = decode_image_from(tmp_path, arr)

    def plain(name, image=arr):
        p = decode_image_from(tmp_path, np.ascontiguousarray(image))
        return Upscaler(open_sr_model(models[name], "cpu"), tile=0).upscale(p).color

    both = Upscaler(
        Ensemble([open_sr_model(models["conv2"], "cpu"), open_sr_model(models["blur2"], "cpu")]),
        tile=0,
    )
    np.testing.assert_allclose(
        both.upscale(pic).color, (plain("conv2") + plain("blur2")) / 2, atol=1e-5
    )
    expected = np.zeros_like(plain("conv2"))
    for flip in (False, True):
        for rot in range(4):
            image = np.rot90(arr[:, ::-1] if flip else arr, rot)
            out = np.rot90(plain("conv2", image), -rot)
            expected += out[:, ::-1] if flip else out
    expected /= 8
    tta = Upscaler(Ensemble([open_sr_model(models["conv2"], "cpu")], tta=True), tile=0)
    got = tta.upscale(pic).color
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - plain("conv2")).max() > 1e-3  # the model is not flip-invariant
    # tiled, the self-ensemble still matches the whole-image one
    tiled = (
        Upscaler(Ensemble([open_sr_model(models["conv2"], "cpu")], tta=True), tile=16, overlap=6)
        .upscale(pic)
        .color
    )
    assert np.abs(tiled - got).max() < 1e-4
    with pytest.raises(ConfigError, match="one scale"):
        Ensemble([open_sr_model(models["near2"], "cpu"), open_sr_model(models["near4m4"], "cpu")])
    proc = cli(
        "upscale",
        "-i",
        str(tmp_path / "src.png"),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(models["conv2"]),
        "-m",
        str(models["blur2"]),
        "--tta",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    assert opened(tmp_path / "out" / "src.png").size == (20, 26)


# -- the stage ---------------------------------------------------------------------------
STAGE_PIPELINE = """
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
input = "photos"
{model}tile = 16
overlap = 4
suffix = "_x2"
"""


def test_upscale_stage_in_a_pipeline(models, tmp_path, cli):
    (tmp_path / "photos").mkdir()
    Image.fromarray(rand_rgb(20, 20)).save(tmp_path / "photos" / "a.png")
    toml = tmp_path / "pipeline.toml"
    toml.write_text(STAGE_PIPELINE.format(model=f"model = {str(models['conv2'])!r}\n"))
    proc = cli("run", str(toml), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "up" / "upscale" / "a_x2.png"
    assert opened(out).size == (40, 40)
    manifest = json.loads((tmp_path / "runs" / "up" / "manifest.json").read_text())
    assert manifest["stages"]["upscale"]["outputs"] == {"images": "upscale"}
    toml.write_text(STAGE_PIPELINE.format(model=""))  # no model and no [export]
    assert_one_line_error(cli("run", str(toml), cwd=tmp_path), 2, "[upscale] needs a model")


def test_upscale_stage_defaults_to_the_export_model(models, tmp_path):
    import shutil
    from types import SimpleNamespace

    from ganpipe.pipeline import Manifest
    from ganpipe.stage import StageContext
    from ganpipe.stages.upscale import UpscaleStage

    run_dir = tmp_path / "runs" / "x"
    (run_dir / "export").mkdir(parents=True)
    shutil.copy(models["near2"], run_dir / "export" / "model.onnx")
    (tmp_path / "photos").mkdir()
    Image.fromarray(rand_rgb(5, 6)).save(tmp_path / "photos" / "a.png")
    manifest = Manifest(
        run_dir / "manifest.json", {"export": {"outputs": {"model": "export/model.onnx"}}}
    )
    config = SimpleNamespace(base_dir=tmp_path, path=tmp_path / "pipeline.toml")
    ctx = StageContext(config, run_dir, manifest, {}, log=lambda m: None)
    opts = UpscaleStage.Options(input="photos", device="cpu", format="webp")
    result = UpscaleStage().run(ctx, opts)
    assert result.outputs == {"images": "upscale"} and result.info["written"] == 1
    assert opened(run_dir / "upscale" / "a.webp").size == (12, 10)


# -- quiet, accountable batches ----------------------------------------------------------
def _malformed_exif_jpeg(path: Path, orientation: int | None = None) -> None:
    """A valid JPEG whose EXIF XResolution (0x011A, a rational) holds a string: Pillow
    refuses to set that, so the string goes in under an unused tag and is renamed."""
    exif = Image.Exif()
    exif[0x9999] = "abc"
    exif[0x0128] = 2  # ResolutionUnit: inches, with no usable X resolution
    if orientation is not None:
        exif[0x0112] = orientation
    raw = exif.tobytes()
    assert raw.startswith(b"Exif\0\0MM") and raw.count(b"\x99\x99\x00\x02") == 1
    raw = raw.replace(b"\x99\x99\x00\x02", b"\x01\x1a\x00\x02")
    Image.fromarray(rand_rgb(6, 8)).save(path, exif=raw)
    assert Image.open(path).getexif()[0x011A] == "abc"


def test_metadata_never_fails_an_image(models, tmp_path, cli):
    src = tmp_path / "in"
    src.mkdir()
    _malformed_exif_jpeg(src / "exif.jpg")
    _malformed_exif_jpeg(src / "turned.jpg", orientation=6)
    Image.fromarray(rand_rgb(6, 8)).save(src / "icc.png", icc_profile=os.urandom(300))
    rgb_icc = bytearray(os.urandom(300))
    rgb_icc[16:20] = b"RGB "  # a profile header's colour space, the rest garbage
    Image.fromarray(rand_rgb(6, 8)).save(src / "icc2.jpg", icc_profile=bytes(rgb_icc))
    Image.fromarray(rand_rgb(6, 8)).save(src / "plain.png")
    s = run(src, tmp_path / "out", models["near2"])
    assert s.ok, s.failures
    assert sorted(p.name for p in s.written) == [
        "exif.jpg",
        "icc.png",
        "icc2.jpg",
        "plain.png",
        "turned.jpg",
    ]
    assert opened(tmp_path / "out" / "turned.jpg").size == (12, 16)  # turned upright
    assert opened(tmp_path / "out" / "exif.jpg").size == (16, 12)
    assert {p.name for p, _ in s.warnings} == {"exif.jpg", "turned.jpg", "icc.png"}
    notes = {p.name: n for p, n in s.warnings}
    assert notes["icc.png"].startswith("ICC profile dropped: ")
    assert all("EXIF" in n for p, n in s.warnings if p.name != "icc.png")
    assert "; 3 with warnings" in s.line()
    # verbose: each warning on a line of its own, prefixed with the file
    args = ["upscale", "-i", str(src), "-m", str(models["near2"]), "--device", "cpu"]
    proc = cli(*args, "-o", str(tmp_path / "quiet"))
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    assert "3 with warnings" in proc.stdout
    proc = cli(*args, "-o", str(tmp_path / "loud"), "--verbose")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert len(lines) == 4 and all(ln.startswith("ganpipe: warning: ") for ln in lines)
    assert str(src / "exif.jpg") in lines[0] and str(src / "icc.png") in lines[1]
    assert str(src / "turned.jpg") in lines[3]


def test_a_write_that_fails_on_metadata_is_retried_without_it(models, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "camera"
    icc = bytearray(os.urandom(300))
    icc[16:20] = b"RGB "
    Image.fromarray(rand_rgb(6, 8)).save(src / "both.jpg", exif=exif, icc_profile=bytes(icc))
    Image.fromarray(rand_rgb(6, 8)).save(src / "icc.jpg", icc_profile=bytes(icc))
    real_save = Image.Image.save

    def picky_save(self, fp, *args, **kwargs):
        if kwargs.get("icc_profile") or kwargs.get("exif"):
            raise ValueError("broken profile")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", picky_save)
    s = run(src, tmp_path / "out", models["near2"])
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert s.ok and len(s.written) == 2, s.failures
    notes = dict(s.warnings)
    assert notes[src / "both.jpg"].startswith("EXIF and ICC profile dropped")
    assert notes[src / "icc.jpg"].startswith("ICC profile dropped: cannot be written")
    assert "broken profile" in notes[src / "icc.jpg"]

    # a file that cannot be written at all still fails, with the first error
    def full_disk(self, fp, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    s = run(src, tmp_path / "out2", models["near2"])
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert len(s.failures) == 2 and not s.warnings
    assert all("No space left" in r for _, r in s.failures)


def test_name_collisions_are_resolved_deterministically(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for ext, fmt in (("gif", "GIF"), ("bmp", "BMP"), ("png", "PNG")):
        Image.fromarray(rand_rgb(4, 4)).save(src / f"hopper.{ext}", format=fmt)
    for ext, fmt in (("gif", "GIF"), ("bmp", "BMP")):  # no PNG: the first sorted keeps it
        Image.fromarray(rand_rgb(4, 4)).save(src / f"lena.{ext}", format=fmt)
    s = run(src, tmp_path / "out", models["near2"])
    assert s.ok, s.failures
    names = sorted(p.name for p in s.written)
    assert names == [
        "hopper.bmp.png",
        "hopper.gif.png",
        "hopper.png",
        "lena.gif.png",
        "lena.png",
    ]
    plan = plan_jobs(src, tmp_path / "out2", suffix="_x2")
    assert {j.src.name: j.dst.name for j in plan.jobs} == {
        "hopper.bmp": "hopper.bmp_x2.png",
        "hopper.gif": "hopper.gif_x2.png",
        "hopper.png": "hopper_x2.png",
        "lena.bmp": "lena_x2.png",
        "lena.gif": "lena.gif_x2.png",
    }
    # the same every time, and never an overwrite of an input
    assert plan_jobs(src, tmp_path / "out2", suffix="_x2").jobs == plan.jobs
    Image.fromarray(rand_rgb(4, 4)).save(src / "lena.gif.png")  # what lena.gif would get
    plan = plan_jobs(src, src.parent / "in_out", on_collision="rename")
    dsts = [j.dst for j in plan.jobs]
    assert len(set(dsts)) == len(dsts) and not set(dsts) & set(src.iterdir())
    # lena.gif, renamed, claims lena.gif.png first in sorted order: the later one fails
    failed = [(p.name, "also the output" in r) for p, r in plan.failures]
    assert failed == [("lena.gif.png", True)]
    # refuse: today's behaviour, the first sorted keeps the name, the others fail
    plan = plan_jobs(src, tmp_path / "out3", on_collision="refuse")
    assert sorted(p.name for p, _ in plan.failures) == ["hopper.gif", "hopper.png", "lena.gif"]
    assert all("rename one of them" in r for _, r in plan.failures)


def test_summary_accounts_for_every_entry(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rand_rgb(4, 4)).save(src / name)
    (src / "d.png").write_bytes(b"not really")
    (src / "notes.txt").write_text("x")
    (src / "data.csv").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(rand_rgb(8, 8)).save(out / "a.png")
    s = run(src, out, models["near2"], skip_existing=True)
    assert (len(s.written), len(s.skipped), len(s.failures), s.ignored) == (2, 1, 1, 2)
    line = s.line()
    assert line.startswith("upscaled 2 images (x2)")
    for part in ("skipped 1 existing", "1 failed", "ignored 2 non-image files"):
        assert f"; {part}" in line, line
    (src / "data.csv").unlink()
    assert "; ignored 1 non-image file [" in run(src, tmp_path / "o2", models["near2"]).line()
