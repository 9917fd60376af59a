"""Super-resolution PSNR / SSIM as BasicSR computes them by default (Y channel of BT.601
YCbCr, ``crop_border = scale``, uint8 outputs, 11x11 Gaussian SSIM with sigma 1.5), checked
against an independent implementation (scikit-image) on real photographs that ship with
scikit-image, through ``sr_validation``, the evaluate stage and the run report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ganpipe.errors import ConfigError
from ganpipe.metrics.sr import sr_validation
from ganpipe.metrics.sr_scores import label, psnr, ssim, to_y
from ganpipe.nn import upscale_bicubic
from ganpipe.pipeline import run_file
from ganpipe.report import write_report


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Crops of three photographs of different sizes (uint8 RGB)."""
    return [
        skdata.astronaut()[60:156, 180:276],  # 96 x 96, a face
        skdata.chelsea()[40:120, 150:250],  # 80 x 100, fur
        skdata.coffee()[100:190, 200:264],  # 90 x 64
    ]


def _degraded(hr: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic down and up with Pillow, then a little noise: an SR-like output."""
    h, w = hr.shape[:2]
    lr = Image.fromarray(hr).resize((w // scale, h // scale), Image.Resampling.BICUBIC)
    up = np.asarray(lr.resize((w, h), Image.Resampling.BICUBIC)).astype(np.float64)
    noise = np.random.default_rng(0).normal(0, 3, up.shape)
    return np.clip(up + noise, 0, 255).round().astype(np.uint8)


def _skimage_scores(sr: np.ndarray, hr: np.ndarray, space: str, border: int):
    if space == "y":
        a, b, axis = rgb2ycbcr(sr)[..., 0], rgb2ycbcr(hr)[..., 0], None
    else:
        a, b, axis = sr.astype(np.float64), hr.astype(np.float64), 2
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    p = peak_signal_noise_ratio(b, a, data_range=255)
    s = structural_similarity(
        b,
        a,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=axis,
    )
    return p, s


def test_y_channel_is_matlab_rgb2ycbcr(photos):
    for img in photos:
        assert np.allclose(to_y(img), rgb2ycbcr(img)[..., 0], atol=1e-9)
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    assert to_y(pixels)[0] == pytest.approx([16.0, 235.0, 16.0 + 65.481])


@pytest.mark.parametrize("space", ["y", "rgb"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_psnr_and_ssim_match_scikit_image(photos, space, scale):
    for hr in photos:
        sr = _degraded(hr, scale)
        want_p, want_s = _skimage_scores(sr, hr, space, scale)
        assert psnr(sr, hr, space, scale) == pytest.approx(want_p, abs=1e-3)
        assert ssim(sr, hr, space, scale) == pytest.approx(want_s, abs=1e-4)


def test_sr_validation_scores_as_basicsr_by_default(photos):
    """The default of sr_validation: Y, border = scale, the model's output rounded to
    uint8; both the model's and the bicubic baseline's numbers equal scikit-image's on
    the same images (the old RGB, border 0 scores differ by whole dB)."""
    scale = 2
    seen: list[np.ndarray] = []

    def up(lr: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(lr, scale, axis=2), scale, axis=3)

    def nearest(lr: np.ndarray) -> np.ndarray:  # a numpy "model": nearest-neighbour x2
        seen.append(lr.copy())
        return up(lr)

    got = sr_validation(nearest, photos, scale)
    assert got["count"] == 3 and len(seen) == 3
    seen = seen[:3]
    want: dict[str, list[float]] = {k: [] for k in ("psnr", "ssim", "bicubic_psnr", "rgb")}
    for hr, lr in zip(photos, seen, strict=True):
        h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
        hr = hr[:h, :w]
        outs = {"": up(lr)[0], "bicubic_": upscale_bicubic(torch.from_numpy(lr), scale)[0]}
        for prefix, out in outs.items():
            out = np.asarray(out).transpose(1, 2, 0)
            out_u8 = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
            p, s = _skimage_scores(out_u8, hr, "y", scale)
            want[f"{prefix}psnr"].append(p)
            if not prefix:
                want["ssim"].append(s)
                want["rgb"].append(_skimage_scores(out_u8, hr, "rgb", 0)[0])
    assert got["psnr"] == pytest.approx(np.mean(want["psnr"]), abs=1e-3)
    assert got["ssim"] == pytest.approx(np.mean(want["ssim"]), abs=1e-4)
    assert got["bicubic_psnr"] == pytest.approx(np.mean(want["bicubic_psnr"]), abs=1e-3)
    rgb = sr_validation(nearest, photos, scale, space="rgb", crop_border=0)
    assert rgb["psnr"] == pytest.approx(np.mean(want["rgb"]), abs=1e-3)
    assert abs(rgb["psnr"] - got["psnr"]) > 0.5


def test_labels_say_how_the_numbers_were_made():
    assert label("y", 4) == "Y, border 4"
    assert label("rgb", 0, 11) == "RGB, border 0"
    assert label("y", 2, 7) == "Y, border 2, SSIM window 7"
    assert label(None, None) == "RGB, no border crop"  # records from before the option


def test_small_images_and_bad_borders():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 12, 14, 3), dtype=np.uint8)
    # 12 x 14 less a border of 2 is 8 x 10: the largest window that fits is 7
    x, y = to_y(a)[2:-2, 2:-2], to_y(b)[2:-2, 2:-2]
    want = structural_similarity(
        y, x, win_size=7, gaussian_weights=False, use_sample_covariance=False, data_range=255
    )
    assert -1 <= ssim(a, b, "y", 2) <= 1 and np.isfinite(want)
    with pytest.raises(ValueError, match="crop_border 7 leaves no pixels"):
        psnr(a, b, "y", 7)
    assert psnr(a, a, "y", 2) == float("inf")


SR_PIPELINE = """
[run]
name = "srm"
seed = 0
device = "cpu"
[data]
dataset = "shapes"
image_size = 24
count = 24
holdout = 0.25
[model]
variant = "espcn"
scale = 2
feat1 = 4
feat2 = 4
[train]
steps = 2
batch_size = 4
sample_every = 0
checkpoint_every = 0
progress = false
[export]
[evaluate]
{extra}
"""


@pytest.mark.slow
def test_evaluate_stage_and_report_label_the_sr_numbers(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text(SR_PIPELINE.format(extra=""))
    log: list[str] = []
    run_file(toml, entry_points=False, log=log.append)
    metrics = tmp_path / "runs/srm/evaluate/metrics.json"
    y = json.loads(metrics.read_text())
    assert (y["metric_space"], y["crop_border"], y["metric"]) == ("y", 2, "Y, border 2")
    text = "\n".join(log)
    assert "PSNR (Y, border 2)" in text and "PSNR / SSIM (Y, border 2" in text
    html = write_report(tmp_path / "runs/srm").read_text(encoding="utf-8")
    assert "PSNR dB (Y, border 2)" in html and "PSNR on Y, border 2" in html

    toml.write_text(SR_PIPELINE.format(extra='sr_metric_space = "rgb"\ncrop_border = 0'))
    run_file(toml, entry_points=False, log=log.append)  # only evaluate runs again
    rgb = json.loads(metrics.read_text())
    assert rgb["metric"] == "RGB, border 0" and rgb["scores"]["psnr"] != y["scores"]["psnr"]
    assert "PSNR dB (RGB, border 0)" in write_report(tmp_path / "runs/srm").read_text("utf-8")

    toml.write_text(SR_PIPELINE.format(extra="crop_border = 12"))
    with pytest.raises(ConfigError, match=r"crop_border 12 .* leaves no pixels of the 24x24"):
        run_file(toml, entry_points=False, log=log.append)


def test_report_states_the_fid_bias_and_old_sr_records(tmp_path):
    """Records written by the evaluate stage before these notes existed still say what
    their numbers are: SR ones were RGB with no border crop; FID ones get the N note."""
    (tmp_path / "evaluate").mkdir()
    manifest = {"stages": {"evaluate": {"outputs": {"metrics": "evaluate/metrics.json"}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    record = tmp_path / "evaluate" / "metrics.json"
    record.write_text(json.dumps({"real": "holdout", "scale": 2, "scores": {"psnr": 30.0}}))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert "PSNR dB (RGB, no border crop)" in html
    scores = {"fid": 3.0, "kid": 0.01, "n_real": 24, "n_fake": 1000}
    record.write_text(json.dumps({"real": "holdout", "features": "random", "scores": scores}))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert "FID from 1000 generated vs 24 real images" in html and "biased upward" in html


def test_the_score_modules_are_torch_free():
    code = (
        "import sys\n"
        "import ganpipe.metrics.sr_scores, ganpipe.metrics.prdc, ganpipe.metrics.notes\n"
        "import ganpipe.report.results, ganpipe.report.sr\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
