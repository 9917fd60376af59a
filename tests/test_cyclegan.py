"""CycleGAN: two image folders -> a translation model that `ganpipe upscale` applies to
whole folders (scale 1, task translate), scored by evaluate; batches missing a domain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, write_toml
from PIL import Image

from ganpipe.errors import ConfigError
from ganpipe.inference.session import open_model
from ganpipe.pipeline import run_file
from ganpipe.variant import Batch, DataInfo, StepContext
from ganpipe.variants.cyclegan import CycleGAN

PIPELINE = """
[run]
name = "cg"
device = "cpu"
[data]
dataset = "folder"
path = "data"
image_size = 16
holdout = 0.25
[model]
variant = "cyclegan"
g_width = 8
d_width = 8
res_blocks = 1
d_layers = 1
lr_g = 1e-3
lr_d = 1e-3
[train]
steps = {steps}
batch_size = 8
sample_every = 0
progress = false
[export]
[evaluate]
[upscale]
input = "data/a_red"
suffix = "_blue"
"""


def disks(root: Path, n: int = 16) -> None:
    """Domain a_red: red disks; domain b_blue: the same disks in blue."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:16, 0:16]
    for name, colour in (("a_red", (230, 40, 30)), ("b_blue", (30, 60, 230))):
        (root / "data" / name).mkdir(parents=True)
        for i in range(n):
            cy, cx = rng.integers(5, 11, 2)
            img = np.full((16, 16, 3), 20, np.uint8)
            img[(y - cy) ** 2 + (x - cx) ** 2 < 16] = colour
            Image.fromarray(img).save(root / "data" / name / f"{i}.png")


@pytest.mark.slow
def test_two_folders_train_a_translation_used_by_upscale(tmp_path):
    disks(tmp_path)
    run_file(
        write_toml(tmp_path / "pipeline.toml", PIPELINE.format(steps=300)),
        entry_points=False,
        log=lambda *_: None,
    )
    run_dir = tmp_path / "runs" / "cg"
    model = open_model(run_dir / "export" / "model.onnx", "cpu")
    assert model.card.task == "translate" and model.card.scale == 1
    assert model.card.direction == "AtoB"
    scores = json.loads((run_dir / "evaluate" / "metrics.json").read_text())["scores"]
    assert np.isfinite(scores["fid"])
    # the stage translated the red folder: the disks came out blue
    src = np.asarray(Image.open(tmp_path / "data" / "a_red" / "0.png")).astype(int)
    out = np.asarray(Image.open(run_dir / "upscale" / "0_blue.png")).astype(int)
    disk = src[..., 0] > 128
    assert out.shape == src.shape
    assert out[disk][:, 2].mean() > out[disk][:, 0].mean() + 40  # blue over red
    # the CLI on a folder with an RGBA image: alpha kept as it was, any size
    (tmp_path / "more").mkdir()
    rgba = np.dstack(
        [
            np.asarray(Image.open(tmp_path / "data" / "a_red" / "1.png").resize((21, 13))),
            np.linspace(0, 255, 21 * 13).astype(np.uint8).reshape(13, 21),
        ]
    )
    Image.fromarray(rgba, "RGBA").save(tmp_path / "more" / "x.png")
    proc = run_cli(
        "upscale",
        "-i",
        str(tmp_path / "more"),
        "-o",
        str(tmp_path / "moreout"),
        "-m",
        str(run_dir / "export" / "model.onnx"),
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    got = np.asarray(Image.open(tmp_path / "moreout" / "x.png"))
    assert got.shape == (13, 21, 4)
    np.testing.assert_array_equal(got[..., 3], rgba[..., 3])


def test_a_batch_with_one_domain_still_steps_and_errors_for_bad_data():
    v = CycleGAN()
    opts = v.Options(**v.tiny_options)
    info = DataInfo(16, 3, ("a", "b"))
    torch.manual_seed(0)
    nets = v.build(opts, info)
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, info, torch.device("cpu"))
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    for labels in ([0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]):
        before = {k: p.detach().clone() for k, p in nets["F"].named_parameters()}
        out = v.train_step(ctx, Batch(images, torch.tensor(labels)))
        assert all(torch.isfinite(t) for t in out.values())
        assert any(not torch.equal(before[k], p) for k, p in nets["F"].named_parameters())
    with pytest.raises(ConfigError, match="exactly two subfolders"):
        v.check_data(opts, DataInfo(16, 3, ("a", "b", "c")))
    with pytest.raises(ConfigError, match="multiple of 4"):
        v.check_data(opts, DataInfo(18, 3, ("a", "b")))
    with pytest.raises(ConfigError, match="d_layers = 3"):
        v.check_data(v.Options(d_layers=3), DataInfo(16, 3, ("a", "b")))


def test_a_folder_without_two_domains_fails_at_load(tmp_path):
    disks(tmp_path)
    (tmp_path / "data" / "c_green").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "data" / "c_green" / "0.png")
    with pytest.raises(ConfigError, match="two domains"):
        run_file(
            write_toml(tmp_path / "pipeline.toml", PIPELINE.format(steps=2)),
            entry_points=False,
            log=lambda *_: None,
        )
    assert not (tmp_path / "runs").exists()
