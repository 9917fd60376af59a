"""The augment stage: copies, deterministic transforms, preview, broken inputs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganpipe.data.base import ImageSet
from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.errors import TrainingError
from ganpipe.pipeline import run_file
from ganpipe.stages.augment import AugmentOptions, augment_set


@pytest.fixture(scope="module")
def shapes():
    return ShapesDataset().load(ShapesOptions(count=6, classes=3, seed=1), 16, 3, Path("."))


def run(path: Path, **kw) -> list[str]:
    logs: list[str] = []
    run_file(path, entry_points=False, log=logs.append, **kw)
    return logs


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.mark.parametrize("copies", [0, 1, 3])
def test_copies_count_and_labels(shapes, copies):
    out = augment_set(shapes, AugmentOptions(copies=copies), seed=0)
    assert len(out) == len(shapes) * (1 + copies)
    assert out.images.shape[1:] == shapes.images.shape[1:]
    assert out.class_names == shapes.class_names
    assert np.array_equal(out.labels, np.tile(shapes.labels, 1 + copies))
    assert np.array_equal(out.images[: len(shapes)], shapes.images)  # originals first


def test_without_originals(shapes):
    out = augment_set(shapes, AugmentOptions(copies=2, keep_original=False, hflip=1.0), 0)
    assert len(out) == 2 * len(shapes)
    assert np.array_equal(out.images[: len(shapes)], shapes.images[:, :, ::-1])


def test_transforms_deterministic_for_a_seed(shapes):
    opts = AugmentOptions(
        copies=2,
        hflip=0.5,
        vflip=0.5,
        rotate=30,
        brightness=0.3,
        contrast=0.3,
        saturation=0.3,
        crop_scale=0.6,
    )
    a = augment_set(shapes, opts, seed=11)
    b = augment_set(shapes, opts, seed=11)
    c = augment_set(shapes, opts, seed=12)
    assert np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    # the copies really are transformed
    n = len(shapes)
    assert not np.array_equal(a.images[n : 2 * n], shapes.images)
    assert not np.array_equal(a.images[n : 2 * n], a.images[2 * n :])


def test_hflip_one_flips_exactly(shapes):
    n = len(shapes)
    out = augment_set(shapes, AugmentOptions(copies=1, hflip=1.0), seed=0)
    assert np.array_equal(out.images[n:], shapes.images[:, :, ::-1])
    out = augment_set(shapes, AugmentOptions(copies=1, hflip=0.0, vflip=1.0), seed=0)
    assert np.array_equal(out.images[n:], shapes.images[:, ::-1])
    out = augment_set(shapes, AugmentOptions(copies=1, hflip=0.0), seed=0)
    assert np.array_equal(out.images[n:], shapes.images)  # every transform off


def test_grayscale_augment():
    gray = ShapesDataset().load(ShapesOptions(count=4, classes=2), 16, 1, Path("."))
    opts = AugmentOptions(
        copies=1, rotate=10, brightness=0.2, contrast=0.2, saturation=0.5, crop_scale=0.7
    )
    out = augment_set(gray, opts, seed=0)
    assert out.images.shape == (8, 16, 16, 1)


def test_augment_options_validated():
    with pytest.raises(ValueError):
        AugmentOptions(hflip=1.5)
    with pytest.raises(ValueError):
        AugmentOptions(crop_scale=0)


def test_augment_stage_writes_dataset_and_preview(tiny_pipeline):
    path = tiny_pipeline(steps=2)
    text = path.read_text()
    text = text.replace("[train]", "[augment]\ncopies = 2\nhflip = 1.0\n\n[train]")
    path.write_text(text[: text.index("[export]")])
    logs = run(path)
    folder = path.parent / "runs" / "tiny" / "augment"
    data = ImageSet.load(folder / "dataset.npz")
    assert len(data) == 64 * (1 + 2)
    assert data.class_names == ["circle", "square"]
    assert np.array_equal(data.images[64:128], data.images[:64, :, ::-1])
    with Image.open(folder / "preview.png") as im:
        im.verify()
    with Image.open(folder / "preview.png") as im:
        # 64 of the images in an 8x8 grid of 16px tiles with 2px padding
        assert im.format == "PNG" and im.size == (8 * 18 + 2, 8 * 18 + 2)
    assert any(line.startswith("[augment] done") and "64 images -> 192" in line for line in logs)
    # the train stage reads the augmented set
    assert any(line.startswith("[train] done") and "on 192 images" in line for line in logs)
    manifest = json.loads((folder.parent / "manifest.json").read_text())
    assert manifest["stages"]["augment"]["outputs"] == {
        "dataset": "augment/dataset.npz",
        "preview": "augment/preview.png",
    }
    assert manifest["stages"]["augment"]["info"]["images"] == 192

    # same seed: a forced re-run rewrites the identical set
    mtime = (folder / "dataset.npz").stat().st_mtime_ns
    logs = run(path, force=True)
    assert any(line.startswith("[augment] running") for line in logs)
    assert (folder / "dataset.npz").stat().st_mtime_ns != mtime
    again = ImageSet.load(folder / "dataset.npz")
    assert np.array_equal(again.images, data.images)
    assert np.array_equal(again.labels, data.labels)

    # changing an augment option reruns augment and the train stage that reads it; the
    # training data changed, so the old checkpoints cannot be resumed without --force
    path.write_text(path.read_text().replace("copies = 2", "copies = 1"))
    logs: list[str] = []
    with pytest.raises(TrainingError, match="--force"):
        run_file(path, entry_points=False, log=logs.append)
    assert any(line.startswith("[augment] running") for line in logs)
    assert any(line.startswith("[train] running") for line in logs)
    assert len(ImageSet.load(folder / "dataset.npz")) == 128
    logs = run(path, from_stage="augment")
    assert any(line.startswith("[train] done") and "on 128 images" in line for line in logs)


def test_folder_with_corrupt_file_through_augment(tmp_path, image_folder, capsys):
    (image_folder / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    path = write(
        tmp_path / "pipeline.toml",
        f"""
        [run]
        name = "aug"
        [data]
        dataset = "folder"
        path = "{image_folder.name}"
        image_size = 16
        [model]
        variant = "dcgan"
        latent_dim = 8
        [augment]
        copies = 1
    """,
    )
    logs = run(path)
    done = [line for line in logs if line.startswith("[augment] done")]
    assert len(done) == 1
    assert "12 images, 1 unreadable skipped -> 24" in done[0]
    assert "broken.png" in capsys.readouterr().err
    run_dir = tmp_path / "runs" / "aug"
    info = json.loads((run_dir / "manifest.json").read_text())["stages"]["augment"]["info"]
    assert info == {"images": 24, "source_images": 12, "skipped": 1}
    data = ImageSet.load(run_dir / "augment" / "dataset.npz")
    assert len(data) == 24 and data.class_names == ["cats", "dogs"]
    assert (run_dir / "augment" / "preview.png").is_file()
