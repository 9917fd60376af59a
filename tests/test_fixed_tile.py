"""Models exported at one fixed input shape (``fixed_tile`` in the model card).

The model: a real torch SR net (two 3x3 convs and a PixelShuffle x2, receptive field 2 px
a side) exported with ``torch.onnx.export(dynamo=True)`` at the one static shape
(1, 3, T, T), its card written into the file as the export stage writes it. It goes
through the real :func:`open_sr_model`, :class:`Upscaler`, the SR metrics and
``ganpipe upscale``, and is compared with the torch net run on the whole image: tiles are
blended so that no pixel within the net's reach of a window edge counts, so away from the
image's bottom and right edges (where a window is padded by reflection up to T instead of
the net's zero padding) the tiled result equals the whole-image one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli
from PIL import Image

from ganpipe.errors import GanpipeError, ModelFileError
from ganpipe.modelcard import PREFIX, InputSpec, ModelCard
from ganpipe.upscale.ensemble import Ensemble
from ganpipe.upscale.model import open_sr_model
from ganpipe.upscale.tiling import Upscaler, tile_windows, whole_image_runner

T = 48  # the one input side the exported graph takes
REACH = 2  # input pixels each side that one output pixel depends on (two 3x3 convs)


def _net():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 12, 3, padding=1),
        torch.nn.PixelShuffle(2),
    )
    return net.eval()


def _card(**fields) -> ModelCard:
    base = {
        "variant": "fixed-test",
        "task": "super_resolve",
        "scale": 2,
        "channels": 3,
        "value_range": (0.0, 1.0),
        "inputs": (InputSpec("image", "image", (3,)),),
        "output": "upscaled",
        "fixed_tile": T,
    }
    return ModelCard(**{**base, **fields})


def _write(model: onnx.ModelProto, card: ModelCard, path: Path) -> Path:
    """``model`` with ``card`` in its metadata_props, as the export stage writes it."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.metadata_props[:]
    for key, value in card.to_props().items():
        entry = copy.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(copy, full_check=True)
    onnx.save_model(copy, str(path))
    return path


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    """``(net, graph, path)``: the torch net, its static-shape ONNX graph and the file."""
    import torch

    torch.set_num_threads(1)
    net = _net()
    program = torch.onnx.export(
        net,
        (torch.rand(1, 3, T, T),),
        input_names=["image"],
        output_names=["upscaled"],
        dynamo=True,
        verbose=False,
    )
    graph = program.model_proto
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, T, T]  # really one static shape
    path = _write(graph, _card(), tmp_path_factory.mktemp("fixed") / "fixed.onnx")
    return net, graph, path


def torch_whole(net, image: np.ndarray) -> np.ndarray:
    """The torch net on a whole HWC float image -> HWC output."""
    import torch

    with torch.no_grad():
        y = net(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None])
    return y[0].numpy().transpose(1, 2, 0)


def rand_image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth-plus-noise float32 HWC image in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(yy[..., None] / 5.0 + xx[..., None] / 7.0 + np.arange(3))
    return np.clip(base + 0.1 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


class Recorder:
    """Wraps an ONNX Runtime session: records the input shapes; can fail as out of memory."""

    def __init__(self, session, oom: bool = False):
        self.session, self.oom, self.shapes = session, oom, []

    def run(self, names, feeds):
        self.shapes.append(next(iter(feeds.values())).shape)
        if self.oom:
            raise RuntimeError("Failed to allocate memory for requested buffer of size 123")
        return self.session.run(names, feeds)


# -- the card ----------------------------------------------------------------------------
def test_card_fields_round_trip_and_legacy_min_size(fixed):
    _, _, path = fixed
    card = ModelCard.from_onnx(onnx.load_model(str(path)), path)
    assert (card.fixed_tile, card.min_size) == (T, 0)
    both = _card(min_size=16)
    assert ModelCard.from_props(both.to_props()) == both
    assert both.to_props()[PREFIX + "fixed_tile"] == str(T)
    assert PREFIX + "fixed_tile" not in _card(fixed_tile=None).to_props()  # unset: not written
    # cards before the field kept min_size among the extra keys: files and callers alike
    legacy = _card(fixed_tile=None).to_props() | {PREFIX + "min_size": "16"}
    assert ModelCard.from_props(legacy).min_size == 16
    old = _card(fixed_tile=None, extra={"min_size": 16, "arch": "x"})
    assert (old.min_size, old.extra) == (16, {"arch": "x"})
    assert _card(min_size=8, extra={"min_size": 16}).min_size == 8  # the field wins
    with pytest.raises(ModelFileError, match="'fixed_tile' is invalid"):
        ModelCard.from_props(both.to_props() | {PREFIX + "fixed_tile": "0"}, "bad.onnx")


# -- SRModel -----------------------------------------------------------------------------
def test_sr_model_pads_to_the_tile_runs_batch_one_and_refuses_larger(fixed):
    import torch

    net, _, path = fixed
    sr = open_sr_model(path, "cpu")
    assert sr.fixed_tile == T and sr.multiple == 1
    sr.session = Recorder(sr.session)
    x = np.stack([rand_image(30, 26, seed).transpose(2, 0, 1) for seed in range(3)])
    got = sr(x)
    assert got.shape == (3, 3, 60, 52)
    assert sr.session.shapes == [(1, 3, T, T)] * 3  # one at a time, each padded to T
    # the padding is a reflection (both sides are shorter than the image reaches)
    padded = torch.nn.functional.pad(torch.from_numpy(x), (0, T - 26, 0, T - 30), "reflect")
    with torch.no_grad():
        expected = net(padded)[:, :, :60, :52].numpy()
    assert np.abs(got - expected).max() < 1e-5
    assert sr(np.zeros((1, 3, T, T), np.float32)).shape == (1, 3, 2 * T, 2 * T)
    with pytest.raises(ModelFileError, match=f"takes at most {T}x{T} inputs") as err:
        sr(np.zeros((1, 3, T + 1, 10), np.float32))
    assert "\n" not in str(err.value) and "fixed.onnx" in str(err.value)


def test_a_card_that_does_not_match_the_graph_is_refused(fixed, tmp_path):
    _, graph, _ = fixed
    wrong = _write(graph, _card(fixed_tile=T + 8), tmp_path / "wrong.onnx")
    with pytest.raises(ModelFileError, match=f"fixed_tile {T + 8}.*is 1x3x{T}x{T}") as err:
        open_sr_model(wrong, "cpu")  # a bad model file: exit 2 like a bad option, not wrapped
    assert "wrong.onnx" in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == 2


# -- tiling ------------------------------------------------------------------------------
def test_tile_windows_never_exceed_the_limit():
    for length in range(1, 400, 7):
        cases = [(36, 12, 1, 48), (16, 6, 8, 24), (18, 6, 8, 24), (40, 8, 1, 48), (64, 32, 1, 48)]
        for tile, overlap, multiple, limit in cases:
            size, starts = tile_windows(length, tile, overlap, multiple, limit)
            assert size <= limit and starts[0] == 0 and starts[-1] + size == length
            if length <= limit:
                assert starts == [0]  # a side that fits goes whole
            fewest = -(-(length - overlap) // (limit - overlap))
            if tile + overlap >= limit and length > limit and multiple == 1:
                assert len(starts) == fewest  # the fewest windows that fit
            elif length > limit:  # the grid, or one window more where rounding needs it
                assert len(starts) >= min(fewest, -(-length // tile))
            assert all(a + size - b >= overlap for a, b in zip(starts, starts[1:], strict=False))
    assert tile_windows(100, 40, 8) == tile_windows(100, 40, 8, limit=None)  # unchanged


@pytest.mark.parametrize("tile", [0, 64, 24])
@pytest.mark.parametrize("size", [(30, 20), (T, T), (70, 53), (161, 97)])
def test_upscaler_tiles_within_the_fixed_shape_and_matches_the_whole_image(fixed, tile, size):
    net, _, path = fixed
    sr = open_sr_model(path, "cpu")
    sr.session = Recorder(sr.session)
    logs: list[str] = []
    upscaler = Upscaler(sr, tile=tile, overlap=8 if tile == 24 else 32, log=logs.append)
    if tile == 24:  # 24 + 8 fits in 48: kept, nothing said
        assert (upscaler.tile, upscaler.overlap, logs) == (24, 8, [])
    else:  # whole image or 64 + 32: the largest that fits, said once
        assert (upscaler.tile, upscaler.overlap) == (T - T // 4, T // 4)
        assert len(logs) == 1 and f"takes only {T}x{T} inputs" in logs[0]
    h, w = size
    image = rand_image(h, w, seed=h + w)
    got = upscaler.plane(image)
    assert got.shape == (2 * h, 2 * w, 3)
    assert all(s == (1, 3, T, T) for s in sr.session.shapes)
    if h <= T and w <= T:
        assert len(sr.session.shapes) == 1  # small images go through whole
    else:
        assert len(sr.session.shapes) > 1
    expected = torch_whole(net, image)
    # the tile edges blend away exactly; the image's own bottom/right edge saw the
    # reflection padding to T instead of the net's zeros
    inner = 2 * (h - REACH), 2 * (w - REACH)
    diff = np.abs(got - expected)
    assert diff[: inner[0], : inner[1]].max() < 1e-5
    assert diff.max() < 0.5 and got.std() > 0.05  # the net really draws something


def test_ensemble_takes_the_smallest_fixed_tile(fixed, tmp_path):
    """The same net exported at 48 and at 40: every window fits both (40 a side at most),
    the 48 one pads it, and the average is still the net's whole-image output."""
    import torch

    net, _, path = fixed
    program = torch.onnx.export(
        net,
        (torch.rand(1, 3, 40, 40),),
        input_names=["image"],
        output_names=["upscaled"],
        dynamo=True,
        verbose=False,
    )
    small = _write(program.model_proto, _card(fixed_tile=40), tmp_path / "fixed40.onnx")
    a, b = open_sr_model(path, "cpu"), open_sr_model(small, "cpu")
    a.session, b.session = Recorder(a.session), Recorder(b.session)
    ensemble = Ensemble([a, b])
    assert ensemble.fixed_tile == 40
    upscaler = Upscaler(ensemble, tile=0)
    assert upscaler.tile + upscaler.overlap <= 40
    image = rand_image(70, 53, seed=3)
    got = upscaler.plane(image)
    assert set(a.session.shapes) == {(1, 3, T, T)} and set(b.session.shapes) == {(1, 3, 40, 40)}
    # the fewest windows of at most 40 overlapping by 10: 2 x 2 (70 = 40 + 40 - 10)
    assert len(a.session.shapes) == len(b.session.shapes) == 4
    expected = torch_whole(net, image)
    assert np.abs(got - expected)[: 2 * (70 - REACH), : 2 * (53 - REACH)].max() < 1e-5


def test_out_of_memory_with_a_fixed_tile_fails_at_once(fixed):
    _, _, path = fixed
    sr = open_sr_model(path, "cpu")
    sr.session = Recorder(sr.session, oom=True)
    with pytest.raises(GanpipeError, match=f"fixed {T}x{T} input.*do not help") as err:
        Upscaler(sr, tile=0).plane(rand_image(70, 53, seed=1))
    assert len(sr.session.shapes) == 1 and "\n" not in str(err.value)


# -- whole-image callers -----------------------------------------------------------------
def test_whole_image_callers_tile_a_fixed_model(fixed, tmp_path):
    from ganpipe.metrics.sr import sr_validation

    net, graph, path = fixed
    sr = open_sr_model(path, "cpu")
    x = np.stack([rand_image(70, 53, s).transpose(2, 0, 1) for s in (1, 2)])
    got = whole_image_runner(sr)(x)
    expected = np.stack([torch_whole(net, i.transpose(1, 2, 0)).transpose(2, 0, 1) for i in x])
    assert got.shape == (2, 3, 140, 106)
    assert np.abs(got - expected)[:, :, : 2 * (70 - REACH), : 2 * (53 - REACH)].max() < 1e-5
    # the SR metrics (and so the evaluate stage) on images larger than the tile
    hr = (np.stack([rand_image(140, 106, s) for s in (4, 5)]) * 255).astype(np.uint8)
    onnx_scores = sr_validation(str(path), hr, 2)
    torch_scores = sr_validation(net, hr, 2)
    assert onnx_scores["count"] == 2  # only the bottom/right edge pixels differ
    assert abs(onnx_scores["psnr"] - torch_scores["psnr"]) < 0.01
    assert abs(onnx_scores["ssim"] - torch_scores["ssim"]) < 1e-3
    # a model without a fixed tile runs as it is
    plain = open_sr_model(_write(graph, _card(fixed_tile=None), tmp_path / "p.onnx"), "cpu")
    assert whole_image_runner(plain) is plain


def test_cli_upscales_a_folder_with_a_fixed_tile_model(fixed, tmp_path):
    net, _, path = fixed
    src = tmp_path / "in"
    src.mkdir()
    sizes = {"small.png": (30, 20), "big.png": (70, 53)}
    for name, (h, w) in sizes.items():
        Image.fromarray((rand_image(h, w, seed=h) * 255).astype(np.uint8)).save(src / name)
    proc = run_cli(
        "upscale", "-i", str(src), "-o", str(tmp_path / "out"), "-m", str(path), "--device", "cpu"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"takes only {T}x{T} inputs (fixed_tile)" in proc.stderr
    for name, (h, w) in sizes.items():
        out = np.asarray(Image.open(tmp_path / "out" / name)).astype(int)
        assert out.shape == (2 * h, 2 * w, 3)
        lr = np.asarray(Image.open(src / name)).astype(np.float32) / 255.0
        expected = np.clip(torch_whole(net, lr), 0, 1) * 255.0 + 0.5
        inner = slice(0, 2 * (h - REACH)), slice(0, 2 * (w - REACH))
        assert np.abs(out - expected.astype(int))[inner].max() <= 1
