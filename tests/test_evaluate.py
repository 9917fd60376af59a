"""The evaluate stage and its metrics: scores move the right way, offline by default."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from ganpipe.config import load_config
from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.errors import ConfigError
from ganpipe.metrics import prdc as prdc_module
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
    fake = torch.tensor([[0.5], [10.0], [2.9], [7.0]], dtype=torch.float64)
    s = prdc(real, fake, k=1)  # real radii are 1; fake radii 2.4, 3, 2.4, 3
    assert s["precision"] == 0.5  # 0.5 and 2.9 are inside a real ball, 7 and 10 are not
    assert s["density"] == 1.0  # 0.5 in the balls of 0 and 1, 2.9 in those of 2 and 3: 4 / 4
    assert s["coverage"] == 1.0  # every real has a fake within its radius
    assert s["recall"] == 1.0  # every real is within 2.4 of the fake 0.5 or 2.9
    assert s["prdc_n"] == 4


def _brute_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The papers' formulas on full distance matrices (exact differences, no tricks)."""

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    r_real = np.sort(dist(real, real), axis=1)[:, k]  # column 0: the point itself
    r_fake = np.sort(dist(fake, fake), axis=1)[:, k]
    d = dist(real, fake)
    return {
        "precision": (d <= r_real[:, None]).any(axis=0).mean(),
        "recall": (d <= r_fake[None, :]).any(axis=1).mean(),
        "density": (d <= r_real[:, None]).sum(axis=0).mean() / k,
        "coverage": (d.min(axis=1) <= r_real).mean(),
    }


def test_prdc_in_blocks_equals_the_brute_force_formulas(monkeypatch):
    rng = np.random.default_rng(1)
    real = rng.normal(size=(150, 6)) + 40.0  # an offset: the centring keeps |a-b|^2 exact
    fake = rng.normal(0.3, 1.2, size=(90, 6)) + 40.0
    monkeypatch.setattr(prdc_module, "BLOCK_BYTES", 8 * 90 * 7)  # 7 rows a block
    for k in (1, 3, 5):
        got = prdc_module.prdc(real, fake, k, seed=3)
        sub_real, sub_fake = prdc_module.equal_subsets(real, fake, seed=3)
        assert len(sub_real) == len(sub_fake) == got["prdc_n"] == 90
        assert not np.array_equal(sub_real, real[:90])  # a random subset, not the head
        want = _brute_prdc(sub_real, sub_fake, k)
        for name, value in want.items():
            assert got[name] == pytest.approx(value, abs=1e-12), (k, name)
    d = np.sqrt(((fake[:, None] - fake[None]) ** 2).sum(-1))
    assert prdc_module.mean_pairwise_distance(fake) == pytest.approx(d.sum() / (90 * 89))


def _naeem_expected_coverage(n_real: int, n_fake: int, k: int) -> float:
    """Naeem et al. 2020, Lemma 2: E[coverage] for identical real and fake distributions."""
    return 1.0 - np.prod([(n_real - i) / (n_real + n_fake - i) for i in range(1, k + 1)])


def test_prdc_does_not_depend_on_the_size_of_the_real_set():
    """Identical Gaussians: the four scores stay the same within noise when the real set
    grows 10x (before equal N: coverage 0.97 -> 0.40 at 600 -> 6,000 reals). Tolerances:
    about 4 standard deviations of the difference (measured over 20 seeds at this size)."""
    rng = np.random.default_rng(0)
    fake = torch.from_numpy(rng.normal(size=(600, 8)))
    small = prdc(torch.from_numpy(rng.normal(size=(600, 8))), fake)
    large = prdc(torch.from_numpy(rng.normal(size=(6000, 8))), fake)
    tolerance = {"precision": 0.05, "recall": 0.05, "density": 0.15, "coverage": 0.05}
    for name, tol in tolerance.items():
        assert large[name] == pytest.approx(small[name], abs=tol), name
    # the paper's expectations at equal N (density 1 for identical distributions), not at
    # 10x the reals (coverage 0.38)
    equal = _naeem_expected_coverage(600, 600, 5)  # 0.969
    assert small["coverage"] == pytest.approx(equal, abs=0.04)
    assert large["coverage"] == pytest.approx(equal, abs=0.04)
    assert large["density"] == pytest.approx(1.0, abs=0.15)
    assert _naeem_expected_coverage(6000, 600, 5) < 0.4
    assert large["prdc_n"] == 600


MEMORY_PROBE = """
    import resource, sys
    import numpy as np
    import torch
    from ganpipe.metrics.scores import prdc
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(6000, 8)))
    fake = torch.from_numpy(rng.normal(size=(6000, 8)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    prdc(real, fake)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)  # ru_maxrss is in KiB on Linux
"""


def test_prdc_memory_is_bounded_by_blocks_not_n_squared():
    """6,000 points a side: a full float64 distance matrix is 288 MB; the blocks need a
    few tens of MB at most (measured as the growth of the process's peak RSS)."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEMORY_PROBE)],
        capture_output=True,
        text=True,
        check=True,
        env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )
    grew = int(out.stdout.split()[-1])
    assert grew < 6000**2 * 8 / 6, f"peak memory grew by {grew / 1e6:.0f} MB"


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
    assert out["scores"]["prdc_n"] == 24  # equal N: 24 of the 48 generated images
    assert out["scores"]["kid_subset_size"] == 16 and out["scores"]["kid_subsets"] == 50
    assert "RandomFeatures" in out["features_detail"]
    # the FID's sample counts and its bias are stated in the record and the printed line
    assert "48 generated vs 24 real" in out["note"] and "biased upward" in out["note"]
    done = next(line for line in log if line.startswith("[evaluate] done"))
    assert "from 48 generated vs 24 holdout images" in done and "biased upward" in done
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
