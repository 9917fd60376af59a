"""The bundled quickstart makes images a person recognises as the training shapes.

``examples/quickstart.toml`` is trained as it is (only its run folder moves into
``tmp_path``), images are generated from the exported ONNX model, and an independent judge
scores them: a small CNN trained here, with its own seed, on real ``shapes`` images drawn
with another seed than the quickstart's, plus a "not a shape" class (heavily blurred shapes,
blends of two shapes, colour noise, empty backgrounds) so that soft blobs are not forced
into a shape class. It is not the GAN's discriminator and shares no weights with the run.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from torch import nn

from ganpipe.data.sources import SHAPES, draw_shape

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.toml"

#: a generated image counts as recognised when the judge gives its shape class >= this
CONFIDENCE = 0.8
#: share of recognised images the quickstart must reach (measured: see the issue note)
MIN_RECOGNISED = 0.7
#: no class may get less than this fraction of its fair share of the recognised images
MIN_CLASS_SHARE = 0.5
#: conditional models: share of recognised images of the class they were asked for
MIN_LABEL_AGREEMENT = 0.8
#: images judged
COUNT = 256
JUDGE_SEED = 20240611


# -- the judge ----------------------------------------------------------------------------
def _blurred(img: np.ndarray, radius: float) -> np.ndarray:
    out = Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(out, dtype=np.uint8)


def _noise(size: int, rng: np.random.Generator) -> np.ndarray:
    cells = int(rng.choice([2, 4, 8]))
    small = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def judge_data(size: int, classes: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real shapes (lightly degraded, as a small GAN's images are) with labels
    ``0..classes-1``, and "not a shape" images with label ``classes``."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(count):
        k = i % classes
        img = draw_shape(SHAPES[k], size, rng, 3)
        if rng.random() < 0.5:
            img = _blurred(img, rng.uniform(0.0, 1.0))
        if rng.random() < 0.5:
            img = np.clip(img + rng.normal(0, rng.uniform(2, 10), img.shape), 0, 255)
        images.append(img.astype(np.uint8))
        labels.append(k)
    for _ in range(count // 2):
        kind = rng.integers(4)
        if kind == 0:  # soft blob: a shape far too blurred to tell which
            img = _blurred(draw_shape(SHAPES[rng.integers(classes)], size, rng, 3), 2.5)
            img = _blurred(img, rng.uniform(0.0, 1.5))
        elif kind == 1:  # two different shapes on top of each other
            a, b = rng.choice(classes, 2, replace=False)
            img = draw_shape(SHAPES[a], size, rng, 3) / 2 + draw_shape(SHAPES[b], size, rng, 3) / 2
        elif kind == 2:  # colour noise
            img = _noise(size, rng)
        else:  # background only
            img = np.full((size, size, 3), rng.integers(0, 120, 3), dtype=np.float64)
            img = img + rng.normal(0, 6, img.shape)
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(classes)
    return np.stack(images), np.array(labels)


class Judge(nn.Module):
    def __init__(self, classes: int):
        super().__init__()

        def block(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2)]

        self.net = nn.Sequential(
            *block(3, 16),
            *block(16, 32),
            *block(32, 64),
            nn.Flatten(),
            nn.LazyLinear(classes + 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def train_judge(size: int, classes: int, *, count: int = 2000, steps: int = 500) -> Judge:
    torch.manual_seed(JUDGE_SEED)
    images, labels = judge_data(size, classes, count, JUDGE_SEED)
    x, y = _tensor(images), torch.from_numpy(labels)
    model = Judge(classes)
    model(x[:2])  # sizes the lazy head
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(JUDGE_SEED)
    for _ in range(steps):
        idx = torch.randint(len(x), (64,), generator=g)
        xb = x[idx]
        if torch.rand((), generator=g) < 0.5:
            xb = xb.flip(3)
        loss = nn.functional.cross_entropy(model(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def judge_probs(model: Judge, images: np.ndarray) -> np.ndarray:
    """Class probabilities [N, classes + 1] (the last column: not a shape)."""
    return torch.softmax(model(_tensor(images)), dim=1).numpy()


def verdict(probs: np.ndarray, classes: int, asked: np.ndarray | None = None) -> dict:
    """Share of images recognised (a shape class with p >= CONFIDENCE), the share of each
    class among them and, for conditional models, how many are the class asked for."""
    best = probs[:, :classes].argmax(1)
    sure = probs[np.arange(len(probs)), best] >= CONFIDENCE
    counts = np.bincount(best[sure], minlength=classes)
    out = {
        "recognised": float(sure.mean()),
        "mean_confidence": float(probs[np.arange(len(probs)), best].mean()),
        "not_a_shape": float((probs.argmax(1) == classes).mean()),
        "class_shares": (counts / max(1, counts.sum())).round(3).tolist(),
    }
    if asked is not None:
        out["label_agreement"] = float((best[sure] == asked[sure]).mean()) if sure.any() else 0.0
    return out


# -- the test -------------------------------------------------------------------------------
def quickstart_copy(tmp_path: Path) -> Path:
    """The quickstart recipe with its run folder in ``tmp_path`` (nothing else changed)."""
    text = QUICKSTART.read_text(encoding="utf-8")
    text, n = re.subn(r'(?m)^out_dir\s*=\s*"[^"]*"', f'out_dir = "{tmp_path.as_posix()}"', text)
    assert n == 1, "examples/quickstart.toml must set [run] out_dir"
    path = tmp_path / "quickstart.toml"
    path.write_text(text, encoding="utf-8")
    return path


def generated(model_path: Path, count: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    from ganpipe.inference.generate import generate_batches
    from ganpipe.inference.session import open_model

    model = open_model(model_path, "cpu")
    labels = None
    if model.card.conditional:
        labels = np.arange(count) % model.card.num_classes
    images = np.concatenate(list(generate_batches(model, count, seed, labels, 64)))
    return images, labels


def quickstart_data() -> dict:
    return tomllib.loads(QUICKSTART.read_text(encoding="utf-8"))["data"]


@pytest.fixture(scope="module")
def judge() -> Judge:
    data = quickstart_data()
    return train_judge(data["image_size"], data["classes"])


def test_judge_tells_shapes_from_blobs(judge):
    """The judge itself: real shapes (another seed) are recognised, blobs are not."""
    data = quickstart_data()
    size, classes = data["image_size"], data["classes"]
    images, labels = judge_data(size, classes, 400, JUDGE_SEED + 1)
    probs = judge_probs(judge, images)
    real = verdict(probs[labels < classes], classes, labels[labels < classes])
    junk = verdict(probs[labels == classes], classes)
    assert real["recognised"] >= 0.95 and real["label_agreement"] >= 0.98, real
    assert junk["recognised"] <= 0.1, junk


@pytest.mark.slow
def test_quickstart_images_are_recognisable_shapes(tmp_path, judge):
    from ganpipe.pipeline import run_file

    t0 = time.perf_counter()
    manifest = run_file(quickstart_copy(tmp_path), entry_points=False, log=lambda *a: None)
    seconds = time.perf_counter() - t0
    train = manifest.stages["train"]
    run_dir = manifest.path.parent
    model_path = run_dir / manifest.stages["export"]["outputs"]["model"]
    classes = quickstart_data()["classes"]
    assert len(train["info"]["data"]["class_names"]) == classes
    images, asked = generated(model_path, COUNT, seed=123)
    result = verdict(judge_probs(judge, images), classes, asked)
    result["train_seconds"] = train["seconds"]
    result["run_seconds"] = round(seconds, 1)
    print("quickstart judged:", json.dumps(result))
    assert result["recognised"] >= MIN_RECOGNISED, result
    assert min(result["class_shares"]) >= MIN_CLASS_SHARE / classes, result
    if asked is not None:
        assert result["label_agreement"] >= MIN_LABEL_AGREEMENT, result
