"""What ``bench/variant_quality.py`` and ``tests/test_variant_floors.py`` share: the data
sets, the pipeline file a run gets (only ``variant`` and ``steps`` chosen), the judge,
and the scores of an exported generator.

**The judge** is an independent classifier, not the GAN's discriminator: an RBF support
vector machine (scikit-learn ``SVC``, Platt-calibrated probabilities) on the images reduced to 16x16
grayscale by area averaging and stretched to [0, 1] per image (so the colours of
``shapes`` and the brightness of a generator's background do not matter, only the
drawing). It learns the real classes plus one "not a class" class made from real images
of the same set: blends of two classes, heavy blurs, smooth and pixel noise, blank
backgrounds, and images cut into 8x8 tiles and shuffled (strokes, but no figure).
Generated images are reduced the same way and judged:

* **judged** - the most probable class, "not a class" included;
* **confident** - the share judged as a real class with probability > ``CONFIDENT``:
  recognisable;
* **accuracy** (conditional models) - the share judged as the class asked for ("not a
  class" counts as wrong);
* **entropy** - the entropy of the confident images' classes over ``log(classes)``:
  1.0 = spread evenly over all classes, 0 = one class (or none confident);
* **FID** - Fréchet distance of :class:`ganpipe.metrics.features.RandomFeatures` (the
  offline features, seed 0) between the generated images and the real set.

numpy, Pillow and scikit-learn at import; ganpipe's data and inference modules (no torch)
inside the functions, and torch only for FID.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python bench/x.py`` without an install
    sys.path.insert(0, str(ROOT))

DATASETS = ("digits", "shapes")
IMAGE_SIZE = 32
#: a generated image is "confident" when the judge gives a real class more than this
CONFIDENT = 0.5
#: side of the judge's grayscale input
JUDGE_SIDE = 16
JUDGE_SEED = 20261202
SHAPES_CLASSES = 4
SHAPES_COUNT = 1024


def generative_variants() -> list[str]:
    """Every installed variant with task ``generate`` (built in and from plugins, such as
    lsgan), by name; nothing is imported but the registry."""
    from ganpipe.registry import load_registry

    variants = load_registry(entry_points=True).variants
    return [name for name in variants if variants.entries[name].task == "generate"]


# -- data -----------------------------------------------------------------------------------
@dataclass
class DataSet:
    """A data set the variants train on: its ``[data]`` table and its real images."""

    name: str
    table: dict[str, Any]
    images: np.ndarray  # uint8 NHWC, the training images
    labels: np.ndarray
    class_names: list[str]


def load_dataset(name: str, work: Path) -> DataSet:
    """``digits`` (class folders built under ``work`` by ``bench/digits.py``) or the bundled
    procedural ``shapes`` (4 classes, 1024 images, as ``examples/quickstart.toml``)."""
    if name == "digits":
        from bench.digits import build_digits_folder, digits_arrays

        folder = build_digits_folder(work / "data" / "digits", IMAGE_SIZE)
        images, labels = digits_arrays(IMAGE_SIZE)
        table = {"dataset": "folder", "path": str(folder), "image_size": IMAGE_SIZE}
        table["channels"] = 1
        return DataSet(name, table, images[..., None], labels, [str(d) for d in range(10)])
    if name == "shapes":
        from ganpipe.data.sources import ShapesDataset, ShapesOptions

        opts = ShapesOptions(count=SHAPES_COUNT, classes=SHAPES_CLASSES)
        data = ShapesDataset().load(opts, IMAGE_SIZE, 3, work)
        table = {"dataset": "shapes", "count": opts.count, "classes": opts.classes}
        table |= {"image_size": IMAGE_SIZE, "channels": 3}
        return DataSet(name, table, data.images, data.labels, data.class_names)
    raise SystemExit(f"unknown data set {name!r}; use one of {', '.join(DATASETS)}")


def judge_images(data: DataSet) -> tuple[np.ndarray, np.ndarray]:
    """Real images for the judge: the digits themselves (a quarter is held out to score
    the judge), or shapes drawn with another seed than the training set's."""
    if data.name != "shapes":
        return data.images, data.labels
    from ganpipe.data.sources import ShapesDataset, ShapesOptions

    opts = ShapesOptions(count=2 * SHAPES_COUNT, classes=SHAPES_CLASSES, seed=JUDGE_SEED)
    fresh = ShapesDataset().load(opts, IMAGE_SIZE, 3, Path("."))
    return fresh.images, fresh.labels


# -- the pipeline file ------------------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a basic TOML string: JSON escapes are valid TOML


def pipeline_toml(
    name: str,
    variant: str,
    steps: int,
    data: dict[str, Any],
    export: bool,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> str:
    """A pipeline with ``[model] variant`` and ``[train] steps`` only; the rest of
    ``[train]`` sets output and logging (no progress bar, a checkpoint and a sample grid
    at the end only), which does not change what is learnt. ``overrides`` (table -> key
    -> value, e.g. ``{"model": {"d_width": 16}}``) sets more keys, for comparing a recipe
    with the defaults (``bench/variant_quality.py --set``)."""
    tables = {
        "run": {"name": name, "out_dir": "runs", "seed": 0, "device": "cpu"},
        "data": data,
        "model": {"variant": variant},
        "train": {"steps": steps, "progress": False, "sample_every": 0, "checkpoint_every": 0},
    }
    for table, values in (overrides or {}).items():
        tables.setdefault(table, {}).update(values)
    if export:
        tables["export"] = {}
    text = "\n\n".join(
        "\n".join([f"[{t}]", *(f"{k} = {toml_value(v)}" for k, v in values.items())])
        for t, values in tables.items()
    )
    return "# written by bench/quality.py\n" + text + "\n"


def train_info(run_dir: Path) -> dict[str, Any]:
    """The train stage's manifest entry: seconds, resolved model options, scaled defaults."""
    return json.loads((run_dir / "manifest.json").read_text())["stages"]["train"]


def exported_model(run_dir: Path) -> Path:
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    return run_dir / stages["export"]["outputs"]["model"]


# -- the judge --------------------------------------------------------------------------------
def reduce(images: np.ndarray, side: int = JUDGE_SIDE) -> np.ndarray:
    """uint8 NHWC (or NHW) -> float [N, side * side]: grayscale, area-averaged to ``side``,
    stretched to [0, 1] per image."""
    x = images.astype(np.float32)
    if x.ndim == 4:
        x = x[..., 0] if x.shape[3] == 1 else x[..., :3] @ np.array([0.299, 0.587, 0.114])
    n, h, w = x.shape
    if h % side or w % side:
        x = np.stack(
            [
                np.asarray(Image.fromarray(a, "F").resize((side, side), Image.Resampling.BOX))
                for a in x
            ]
        )
    else:
        x = x.reshape(n, side, h // side, side, w // side).mean(axis=(2, 4))
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    return ((x - lo) / np.maximum(hi - lo, 1.0)).reshape(n, -1)


def junk(images: np.ndarray, labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` "not a class" images made from real ``images`` (uint8 NHWC)."""
    rng = np.random.default_rng(seed)
    n, h, w, c = images.shape
    out = []
    for i in range(count):
        a = int(rng.integers(n))
        kind = i % 6
        if kind == 0:  # two classes on top of each other
            others = np.flatnonzero(labels != labels[a])
            img = images[a] / 2 + images[int(rng.choice(others))] / 2
        elif kind == 1:  # far too blurred to tell
            pic = Image.fromarray(images[a].squeeze(-1) if c == 1 else images[a])
            img = np.asarray(pic.filter(ImageFilter.GaussianBlur(h / 8)), np.float64)
            img = img.reshape(h, w, c)
        elif kind == 2:  # smooth noise
            cells = int(rng.choice([2, 4, 8]))
            small = rng.integers(0, 256, (cells, cells, c)).astype(np.uint8)
            pic = Image.fromarray(small.squeeze(-1) if c == 1 else small)
            img = np.asarray(pic.resize((w, h), Image.Resampling.BICUBIC), np.float64)
            img = img.reshape(h, w, c)
        elif kind == 3:  # pixel noise
            img = rng.integers(0, 256, (h, w, c)).astype(np.float64)
        elif kind == 4:  # background only
            img = rng.integers(0, 120, (1, 1, c)) + rng.normal(0, 6, (h, w, c))
        else:  # strokes without a figure: 8x8 tiles shuffled
            t = h // 4
            tiles = images[a].reshape(4, t, 4, t, c).swapaxes(1, 2).reshape(16, t, t, c)
            tiles = tiles[rng.permutation(16)]
            img = tiles.reshape(4, 4, t, t, c).swapaxes(1, 2).reshape(h, w, c).astype(np.float64)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


@dataclass
class Judge:
    """The fitted classifier, with its scores on held-out real and junk images."""

    classes: int
    model: Any
    real_accuracy: float
    junk_rejected: float
    notes: list[str] = field(default_factory=list)

    def probs(self, images: np.ndarray) -> np.ndarray:
        """[N, classes + 1] probabilities (the last column: not a class)."""
        return self.model.predict_proba(reduce(images))


def train_judge(data: DataSet) -> Judge:
    """The judge of ``data``: fitted on 3/4 of its real images (and junk made from them),
    scored on the other quarter (and junk made from that)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    images, labels = judge_images(data)
    classes = len(data.class_names)
    order = np.random.default_rng(JUDGE_SEED).permutation(len(images))
    cut = len(images) * 3 // 4
    fit, held = order[:cut], order[cut:]
    x_junk = junk(images[fit], labels[fit], cut // 2, JUDGE_SEED)
    x = np.concatenate([reduce(images[fit]), reduce(x_junk)])
    y = np.concatenate([labels[fit], np.full(len(x_junk), classes)])
    svm = SVC(C=10.0, gamma="scale", random_state=JUDGE_SEED)
    model = CalibratedClassifierCV(svm, method="sigmoid", ensemble=False).fit(x, y)
    judge = Judge(classes, model, 0.0, 0.0)
    real = judge.probs(images[held]).argmax(1)
    bad = judge.probs(junk(images[held], labels[held], len(held) // 2, JUDGE_SEED + 1))
    judge.real_accuracy = float((real == labels[held]).mean())
    judge.junk_rejected = float((bad.argmax(1) == classes).mean())
    return judge


# -- scores -----------------------------------------------------------------------------------
def generate(model_path: Path, count: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """``count`` images from the exported ONNX model (ONNX Runtime, CPU); a conditional
    model is asked for every class in turn (the asked labels are returned)."""
    from ganpipe.inference.generate import generate_batches
    from ganpipe.inference.session import open_model

    model = open_model(model_path, "cpu")
    asked = np.arange(count) % model.card.num_classes if model.card.conditional else None
    return np.concatenate(list(generate_batches(model, count, seed, asked, 100))), asked


def judge_scores(judge: Judge, images: np.ndarray, asked: np.ndarray | None) -> dict[str, Any]:
    probs = judge.probs(images)
    judged = probs.argmax(1)
    sure = (judged < judge.classes) & (probs[np.arange(len(probs)), judged] > CONFIDENT)
    counts = np.bincount(judged[sure], minlength=judge.classes + 1)[: judge.classes]
    shares = counts / max(1, counts.sum())
    nz = shares[shares > 0]
    entropy = (
        max(0.0, float(-(nz * np.log(nz)).sum() / np.log(judge.classes))) if sure.any() else 0.0
    )
    out: dict[str, Any] = {
        "conditional": asked is not None,
        "confident": float(sure.mean()),
        "entropy": entropy,
        "not_a_class": float((judged == judge.classes).mean()),
        "class_shares": shares.round(3).tolist(),
    }
    if asked is not None:
        out["accuracy"] = float((judged == asked).mean())
    return out


class FID:
    """FID against one real set, its features computed once."""

    def __init__(self, real: np.ndarray):
        from ganpipe.metrics.features import RandomFeatures, extract

        self.extractor = RandomFeatures()
        self.real = extract(self.extractor, real)

    def __call__(self, images: np.ndarray) -> float:
        from ganpipe.metrics.features import extract
        from ganpipe.metrics.scores import fid

        return fid(self.real, extract(self.extractor, images))


def save_grid(images: np.ndarray, path: Path, columns: int = 20) -> None:
    """The first images as one PNG, for a person to look at."""
    from ganpipe.data.imageio import make_grid, save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(images[: columns * 10], columns), path)
