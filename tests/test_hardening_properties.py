"""Property tests (hypothesis) of tiling geometry and output naming (issue 11): any size,
tile and overlap give full coverage, blending weights that sum to 1 and a tiled result
equal to the untiled one (tiny pure-numpy models); any set of file names, suffix and
format gives outputs that never collide and never hit an input.

Example counts are modest and deadlines off: the suite runs on 2 shared cores. The
config-parsing and model-card properties are in ``test_properties.py``.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image
from test_properties import fast

from ganpipe.errors import ConfigError
from ganpipe.imaging.encode import SUFFIXES
from ganpipe.upscale.plan import plan_jobs
from ganpipe.upscale.tiling import axis_weights, tile_windows, upscale_plane


# -- tiling geometry -------------------------------------------------------------------------
@st.composite
def grids(draw):
    tile = draw(st.integers(16, 96))
    return draw(st.integers(1, 700)), tile, draw(st.integers(0, tile // 2 - 1))


@fast(150)
@given(grid=grids(), multiple=st.sampled_from([1, 2, 4, 8]), scale=st.integers(1, 4))
def test_tile_windows_cover_and_weights_sum_to_one(grid, multiple, scale):
    length, tile, overlap = grid
    size, starts = tile_windows(length, tile, overlap, multiple)
    assert starts[0] == 0 and starts[-1] + size == length and size <= length
    assert starts == sorted(starts) and len(starts) == max(1, math.ceil(length / tile))
    assert size == length or size % multiple == 0
    for a, b in zip(starts, starts[1:], strict=False):
        assert a + size - b >= overlap  # neighbours share at least the overlap
    total = np.zeros(length * scale)
    for s, w in zip(starts, axis_weights(starts, size, length, scale), strict=True):
        assert w.shape == (size * scale,) and (w >= 0).all()
        total[s * scale : (s + size) * scale] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


def pointwise(scale: int):
    def run(x: np.ndarray) -> np.ndarray:
        y = x.repeat(scale, axis=2).repeat(scale, axis=3)
        return y * np.float32(0.8) + np.float32(0.1) * y[:, ::-1]  # mixes the channels

    return run


def blur(scale: int):
    """3x3 box blur (edge-padded), then nearest x ``scale``: a receptive field of 1 px."""

    def run(x: np.ndarray) -> np.ndarray:
        p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        h, w = x.shape[2:]
        y = sum(p[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9
        return y.repeat(scale, axis=2).repeat(scale, axis=3).astype(np.float32)

    return run


@fast(40)
@given(
    h=st.integers(1, 90),
    w=st.integers(1, 90),
    grid=grids(),
    scale=st.integers(1, 3),
    channels=st.sampled_from([1, 3]),
    local=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_tiled_equals_untiled(h, w, grid, scale, channels, local, seed):
    _, tile, overlap = grid
    if local:  # a 1-px receptive field needs context: the overlap's dropped margins
        overlap = max(overlap, 8)
        assume(overlap < tile // 2)
    image = np.random.default_rng(seed).random((h, w, channels), dtype=np.float32)
    run = (blur if local else pointwise)(scale)
    whole = upscale_plane(run, image, scale, 0, 0)
    tiled = upscale_plane(run, image, scale, tile, overlap)
    assert tiled.shape == (h * scale, w * scale, channels)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    as_bytes = upscale_plane(run, image, scale, tile, overlap, dtype=np.uint8)
    assert np.abs(as_bytes.astype(int) - np.round(np.clip(whole, 0, 1) * 255)).max() <= 1


# -- output naming ---------------------------------------------------------------------------
STEM = st.text(st.sampled_from("aAbB0._- é漢"), min_size=1, max_size=8).filter(
    lambda s: not s.startswith(".") and s.strip(" ") == s
)
EXT = st.sampled_from([".png", ".PNG", ".jpg", ".jpeg", ".JPG", ".webp", ".tif", ".tiff",
                       ".bmp", ".gif", ".jfif", ""])  # fmt: skip
_CONTENT: dict[str, bytes] = {}


def content(fmt: str) -> bytes:
    if fmt not in _CONTENT:
        buf = io.BytesIO()
        Image.new("RGB", (1, 1)).save(buf, format=fmt)
        _CONTENT[fmt] = buf.getvalue()
    return _CONTENT[fmt]


@fast(60)
@given(
    names=st.lists(st.tuples(st.sampled_from(["", "sub/", "Sub/"]), STEM, EXT), max_size=8),
    kinds=st.lists(st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "WEBP"]), min_size=8),
    suffix=st.sampled_from(["", "_x4", ".up", " copy"]),
    fmt=st.sampled_from([None, "png", "jpg", "webp", "tiff"]),
    recursive=st.booleans(),
)
def test_output_names_never_collide_nor_hit_an_input(names, kinds, suffix, fmt, recursive):
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        inputs = set()
        for (folder, stem, ext), kind in zip(names, kinds, strict=False):
            path = src / f"{folder}{stem}{ext}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(content(kind))
            inputs.add(path.resolve())
        png_file = src / "z.png"
        png_file.write_bytes(content("PNG"))
        inputs.add(png_file.resolve())
        plan = plan_jobs(src, out, recursive=recursive, suffix=suffix, format=fmt)
        listed = [j.src for j in plan.jobs] + [p for p, _ in plan.failures] + plan.skipped
        assert len(listed) == len(set(listed))  # each input once
        dsts = [os.path.normcase(str(j.dst.resolve())) for j in plan.jobs]
        assert len(dsts) == len(set(dsts)), "two inputs share an output"
        for job in plan.jobs:
            assert job.dst.resolve() not in inputs and out.resolve() in job.dst.resolve().parents
            assert job.dst.suffix.lower() in SUFFIXES[job.fmt]
        # a single file into its own folder, same format, no suffix: refused, not overwritten
        same = plan_jobs(png_file, src, format="png")
        assert not same.jobs and len(same.failures) == 1
        with pytest.raises(ConfigError):
            plan_jobs(src, src / "out")
