"""The evaluate stage and its metrics: scores move the right way, offline by default."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ganpipe.config import load_config
from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.errors import ConfigError
from ganpipe.metrics.features import OnnxFeatures, RandomFeatures, extract
from ganpipe.metrics.scores import all_scores, prdc
from ganpipe.pipeline import run_file
from ganpipe.registry import load_registry


def shapes(seed: int, count: int = 200) -> np.ndarray:
    return (
        ShapesDataset().load(ShapesOptions(count=count, classes=4, seed=seed), 16, 3, None).images
    )


@pytest.fixture(scope="module")
def feats():
    ex = RandomFeatures(size=32)
    noise = np.random.default_rng(0).integers(0, 256, (200, 16, 16, 3), dtype=np.uint8)
    return {"a": extract(ex, shapes(0)), "b": extract(ex, shapes(1)), "noise": extract(ex, noise)}


def test_real_vs_real_near_zero_and_real_vs_noise_large(feats):
    same = all_scores(feats["a"], feats["b"], kid_subset_size=100)
    noise = all_scores(feats["a"], feats["noise"], kid_subset_size=100)
    assert same["fid"] < 0.1 * noise["fid"]
    assert abs(same["kid"]) < 0.01 < noise["kid"]
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and same["coverage"] > 0.8
    assert noise["precision"] < 0.1 and noise["coverage"] < 0.1
    assert 0.8 < same["diversity"] < 1.25
    identical = all_scores(feats["a"], feats["a"], kid_subset_size=100)
    assert identical["fid"] == pytest.approx(0, abs=1e-3)


def test_diversity_and_recall_detect_collapse(feats):
    collapsed = feats["b"][:1].repeat(200, 1)  # one image 200 times
    s = all_scores(feats["a"], collapsed + 1e-6 * torch.randn_like(collapsed), kid_subset_size=100)
    assert s["diversity"] < 0.05
    assert s["recall"] < 0.2


def test_prdc_by_hand():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    fake = torch.tensor([[0.5], [10.0]], dtype=torch.float64)
    s = prdc(real, fake, k=1)  # real radii are 1; fake radius is 9.5
    assert s["precision"] == 0.5  # 0.5 is inside, 10 is not
    assert s["coverage"] == 0.5  # reals 0 and 1 have the fake 0.5 within their radius
    assert s["recall"] == 1.0  # every real is within 9.5 of some fake


def test_random_features_deterministic():
    x = torch.from_numpy(shapes(0, 8).transpose(0, 3, 1, 2).copy())
    assert torch.equal(RandomFeatures(seed=3)(x), RandomFeatures(seed=3)(x))
    assert not torch.equal(RandomFeatures(seed=3)(x), RandomFeatures(seed=4)(x))
    gray = x[:, :1]
    assert RandomFeatures()(gray).shape == (8, RandomFeatures().num_features)


def test_onnx_feature_extractor_from_a_local_file(tmp_path):
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, 2, 1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    ).eval()
    path = tmp_path / "features.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(2, 3, 24, 24),),
        str(path),
        input_names=["x"],
        dynamo=True,
        external_data=False,
    )
    ex = OnnxFeatures(path, value_range=(0.0, 1.0))
    assert ex.size == 24 and ex.num_features == 8
    imgs = shapes(0, 5)
    got = extract(ex, imgs)
    with torch.no_grad():
        x = torch.nn.functional.interpolate(
            torch.from_numpy(imgs.transpose(0, 3, 1, 2).copy()).float() / 255,
            size=(24, 24),
            mode="bilinear",
            align_corners=False,
        )
        want = net(x).double()
    assert torch.allclose(got, want, atol=1e-4)


EVAL_PIPELINE = """
[run]
name = "ev"
device = "cpu"
[data]
dataset = "shapes"
image_size = 16
count = 96
classes = 2
holdout = 0.25
[model]
variant = "cgan"
latent_dim = 8
g_width = 4
d_width = 4
[train]
steps = 4
batch_size = 8
progress = false
[export]
[evaluate]
count = 48
kid_subset_size = 16
{extra}
"""


@pytest.mark.slow
def test_evaluate_stage_writes_scores_overall_and_per_class(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text(EVAL_PIPELINE.format(extra=""))
    log: list[str] = []
    run_file(toml, entry_points=False, log=log.append)
    out = json.loads((tmp_path / "runs/ev/evaluate/metrics.json").read_text())
    assert out["real"] == "holdout" and out["features"] == "random"
    assert out["scores"]["n_real"] == 24 and out["scores"]["n_fake"] == 48
    assert set(out["per_class"]) == {"circle", "square"}
    assert all(np.isfinite(out["scores"][k]) for k in ("fid", "kid", "precision", "recall"))
    text = "\n".join(log)
    assert "fid" in text and "circle" in text and "FID" in text


def test_holdout_images_are_not_trained_on(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text(EVAL_PIPELINE.format(extra=""))
    cfg = load_config(toml, load_registry(entry_points=False))
    data = cfg.dataset.load(cfg.data_options, 16, 3, tmp_path)
    train, held = data.split(cfg.data.holdout, cfg.run.seed)
    assert len(train) == 72 and len(held) == 24
    t = {a.tobytes() for a in train.images}
    assert not any(a.tobytes() in t for a in held.images)
    again, _ = data.split(cfg.data.holdout, cfg.run.seed)
    assert np.array_equal(again.images, train.images)


def test_evaluate_options_checked_at_load(tmp_path):
    reg = load_registry(entry_points=False)
    toml = tmp_path / "p.toml"
    toml.write_text(EVAL_PIPELINE.format(extra='features = "missing/inception.onnx"'))
    with pytest.raises(ConfigError, match="inception.onnx is not a file"):
        load_config(toml, reg)
    toml.write_text(EVAL_PIPELINE.replace("holdout = 0.25", "").format(extra='real = "holdout"'))
    with pytest.raises(ConfigError, match="data.holdout"):
        load_config(toml, reg)
