"""The training health check on the smallest data: a folder of one image trains without
a raw torch warning (the spread of one image is 0, not ``std()`` with no degrees of
freedom left)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image

from ganpipe.training import health

ONE_IMAGE_PIPELINE = """
[run]
name = "one"
out_dir = "runs"
seed = 0
device = "cpu"

[data]
dataset = "folder"
path = "images"
image_size = 16
channels = 3

[model]
variant = "dcgan"
latent_dim = 8
g_width = 4
d_width = 4

[train]
steps = 2
batch_size = 4
log_every = 1
sample_every = 0
checkpoint_every = 0
num_samples = 4
progress = false
"""


def test_one_image_folder_trains_without_a_torch_warning(cli, tmp_path):
    (tmp_path / "images").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "images" / "only.png")
    (tmp_path / "pipeline.toml").write_text(ONE_IMAGE_PIPELINE, encoding="utf-8")
    proc = cli("run", "pipeline.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 steps of dcgan on 1 images" in proc.stdout, proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr


def test_stats_of_one_image_have_no_spread():
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, std = health.image_stats(image)
        gap = health.stats_gap(image, mean, std)
    assert torch.equal(std, torch.zeros(3, 8, 8))
    assert gap == 0.0
