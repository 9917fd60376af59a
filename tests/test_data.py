"""Dataset sources and image IO on real files: formats, labels, broken files, EXIF, limits."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganpipe.data.base import ImageSet
from ganpipe.data.imageio import load_image, save_image
from ganpipe.data.sources import FolderDataset, FolderOptions, ShapesDataset, ShapesOptions
from ganpipe.errors import DataError
from ganpipe.fsutil import atomic_path, write_bytes, write_json


def load_folder(root: Path, image_size: int = 16, channels: int = 3, **opts) -> ImageSet:
    return FolderDataset().load(FolderOptions(path=root, **opts), image_size, channels, root.parent)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


# -- the folder dataset ----------------------------------------------------------------


def test_folder_reads_every_format_with_labels(image_folder):
    files = sorted(p.suffix for p in image_folder.rglob("*.*"))
    assert {".png", ".jpg", ".webp", ".tif"} <= set(files)
    data = load_folder(image_folder)
    assert len(data) == 12 and data.skipped == []
    assert data.class_names == ["cats", "dogs"]
    assert data.labelled
    assert data.images.shape == (12, 16, 16, 3) and data.images.dtype == np.uint8
    assert sorted(data.labels.tolist()) == [0] * 6 + [1] * 6
    assert data.image_size == 16 and data.channels == 3
    # each format decodes to real pixel data (random noise, not a blank fill)
    assert all(img.std() > 10 for img in data.images)


def test_folder_labels_follow_subfolders(tmp_path):
    root = tmp_path / "data"
    for label, value in (("b_dark", 20), ("a_light", 230)):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (10, 10), (value,) * 3).save(root / label / f"{i}.png")
    data = load_folder(root, image_size=8)
    assert data.class_names == ["a_light", "b_dark"]
    for img, label in zip(data.images, data.labels, strict=True):
        assert img.mean() == pytest.approx(230 if label == 0 else 20, abs=2)


def test_folder_without_subfolders_is_unlabelled(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (10, 12), (i * 40, 0, 0)).save(root / f"{i}.png")
    (root / ".hidden.png").write_bytes(b"not an image")  # hidden files are ignored
    (root / "notes.txt").write_text("ignored")
    data = load_folder(root, image_size=8)
    assert len(data) == 3 and data.skipped == []
    assert len(data.class_names) == 1 and not data.labelled


@pytest.mark.parametrize("mode", ["crop", "stretch"])
def test_folder_resizes_to_image_size(image_folder, mode):
    data = load_folder(image_folder, image_size=8, resize=mode)
    assert data.images.shape == (12, 8, 8, 3)


def test_folder_grayscale(image_folder):
    data = load_folder(image_folder, channels=1)
    assert data.images.shape == (12, 16, 16, 1)
    assert data.channels == 1


def test_folder_not_recursive(image_folder):
    for i in range(2):
        Image.new("RGB", (9, 9), "red").save(image_folder / f"top{i}.png")
    assert len(load_folder(image_folder, recursive=True)) == 14
    flat = load_folder(image_folder, recursive=False)
    assert len(flat) == 2


def test_broken_files_are_skipped_and_counted(image_folder, capsys):
    cats = image_folder / "cats"
    rng = np.random.default_rng(1)
    (cats / "corrupt.png").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    (cats / "empty.jpg").write_bytes(b"")
    good = png_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (image_folder / "dogs" / "truncated.png").write_bytes(good[: len(good) // 2])
    data = load_folder(image_folder)
    assert len(data) == 12
    assert data.class_names == ["cats", "dogs"]
    skipped = {Path(p).name: why for p, why in data.skipped}
    assert set(skipped) == {"corrupt.png", "empty.jpg", "truncated.png"}
    assert all(why for why in skipped.values())
    err = capsys.readouterr().err
    assert "warning: skipped 3 unreadable image(s) of 15" in err
    assert str(image_folder) in err


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope")


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(f)
    with pytest.raises(DataError, match="is not a folder"):
        load_folder(f)


def test_empty_folder(tmp_path):
    root = tmp_path / "empty"
    (root / "sub").mkdir(parents=True)
    (root / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="has no images") as info:
        load_folder(root)
    assert str(root) in str(info.value) and ".png" in str(info.value)


def test_folder_with_only_corrupt_files(tmp_path, capsys):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.png").write_bytes(b"garbage" * 20)
    (root / "b.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="none of the 2 image files could be read"):
        load_folder(root)
    assert "skipped 2" in capsys.readouterr().err


def test_dataset_fingerprint_changes_with_files(image_folder):
    ds, opts = FolderDataset(), FolderOptions(path=image_folder)
    before = ds.fingerprint(opts, image_folder.parent)
    assert ds.fingerprint(opts, image_folder.parent) == before
    Image.new("RGB", (9, 9)).save(image_folder / "cats" / "new.png")
    assert ds.fingerprint(opts, image_folder.parent) != before


# -- decoding details ------------------------------------------------------------------


def test_exif_orientation_applied(tmp_path):
    # 32 wide x 16 tall: left half black, right half white
    arr = np.zeros((16, 32, 3), dtype=np.uint8)
    arr[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, format="JPEG", quality=95, exif=exif)
    with Image.open(path) as raw:
        assert raw.getexif()[0x0112] == 6 and raw.size == (32, 16)
    im = load_image(path, 3)
    assert im.size == (16, 32)
    out = np.asarray(im).astype(int)
    expected = np.rot90(arr, k=-1).astype(int)  # 90 degrees clockwise
    assert np.abs(out - expected).mean() < 8
    # the stored left half (black) is now on top
    assert out[:16].mean() < 30 and out[16:].mean() > 225


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((8, 8, 4), dtype=np.uint8)
    arr[..., 0] = 255  # red ...
    arr[:, :4, 3] = 255  # ... opaque on the left, fully transparent on the right
    path = tmp_path / "alpha.png"
    Image.fromarray(arr, "RGBA").save(path)
    im = load_image(path, 3)
    assert im.mode == "RGB"
    out = np.asarray(im)
    assert (out[:, :4] == [255, 0, 0]).all()
    assert (out[:, 4:] == [255, 255, 255]).all()
    gray = load_image(path, 1)
    assert gray.mode == "L"
    root = tmp_path / "folder"
    root.mkdir()
    path.rename(root / "alpha.png")
    data = load_folder(root, image_size=8)
    assert data.images.shape == (1, 8, 8, 3)


def test_16_bit_png(tmp_path):
    arr = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    im = load_image(path, 1)
    assert im.mode == "L"
    out = np.asarray(im).astype(int)
    assert np.abs(out - np.round(arr / 257.0)).max() <= 1
    assert out.min() == 0 and out.max() == 255
    rgb = load_image(path, 3)
    assert np.asarray(rgb).shape == (16, 16, 3)


def test_dark_16_bit_png_stays_dark(tmp_path):
    # 16-bit values up to 200 of 65535: nearly black, not 8-bit values up to 200
    arr = np.linspace(0, 200, 64).reshape(8, 8).astype(np.uint16)
    path = tmp_path / "dark.png"
    Image.fromarray(arr).save(path)
    assert np.asarray(load_image(path, 1)).max() <= 1


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_limit_stays_on(tmp_path, monkeypatch, capsys):
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64), "blue").save(path)  # 4096 pixels
    assert load_image(path, 3).size == (64, 64)  # fine at Pillow's default limit
    # above the limit (Pillow only warns below 2x the limit): an error either way
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    with pytest.raises(Image.DecompressionBombError):
        load_image(path, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError):
        load_image(path, 3)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_folder_loader_skips_decompression_bombs(tmp_path, monkeypatch, capsys):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    # many small images and many between 1x and 2x the limit, decoded by a thread pool
    for i in range(40):
        side = 64 if i % 2 else 16
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            root / f"{i:02d}.png"
        )
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    filters = list(warnings.filters)
    for _ in range(6):
        data = load_folder(root)
        assert len(data) == 20
        assert len(data.skipped) == 20
        assert all("DecompressionBomb" in why for _, why in data.skipped)
        # decoding in threads must not leave changed global warning filters behind
        assert warnings.filters == filters
    assert "skipped 20 unreadable" in capsys.readouterr().err


# -- the shapes dataset ----------------------------------------------------------------


def test_shapes_deterministic_for_a_seed():
    ds = ShapesDataset()
    a = ds.load(ShapesOptions(count=24, classes=3, seed=5), 16, 3, Path("."))
    b = ds.load(ShapesOptions(count=24, classes=3, seed=5), 16, 3, Path("."))
    c = ds.load(ShapesOptions(count=24, classes=3, seed=6), 16, 3, Path("."))
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    opts = ShapesOptions(count=24, classes=3, seed=5)
    assert ds.fingerprint(opts, Path(".")) == ds.fingerprint(opts, Path("."))
    assert ds.fingerprint(opts, Path(".")) != ds.fingerprint(
        ShapesOptions(count=24, classes=3, seed=6), Path(".")
    )


@pytest.mark.parametrize("count,classes", [(30, 3), (31, 4), (8, 1)])
def test_shapes_classes_and_balance(count, classes):
    data = ShapesDataset().load(ShapesOptions(count=count, classes=classes), 16, 3, Path("."))
    assert len(data) == count
    assert data.images.shape == (count, 16, 16, 3)
    assert len(data.class_names) == classes
    assert set(data.labels.tolist()) == set(range(classes))
    per_class = np.bincount(data.labels, minlength=classes)
    assert per_class.max() - per_class.min() <= 1


def test_shapes_grayscale():
    data = ShapesDataset().load(ShapesOptions(count=4, classes=2), 8, 1, Path("."))
    assert data.images.shape == (4, 8, 8, 1)


# -- ImageSet files and atomic writes --------------------------------------------------


def test_imageset_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = ImageSet(
        rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8),
        np.array([0, 1, 2, 1, 0]),
        ["a", "b", "c"],
    )
    path = tmp_path / "set.npz"
    data.save(path)
    back = ImageSet.load(path)
    assert np.array_equal(back.images, data.images) and back.images.dtype == np.uint8
    assert np.array_equal(back.labels, data.labels) and back.labels.dtype == np.int64
    assert back.class_names == ["a", "b", "c"]
    assert [p.name for p in tmp_path.iterdir()] == ["set.npz"]


def test_imageset_load_rejects_foreign_file(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a ganpipe image set"):
        ImageSet.load(path)


def test_imageset_rejects_mismatched_labels():
    with pytest.raises(ValueError):
        ImageSet(np.zeros((2, 4, 4, 3)), np.zeros(3), ["a"])


def test_atomic_writes_leave_no_temp_files(tmp_path):
    write_bytes(tmp_path / "a.bin", b"123")
    write_json(tmp_path / "b.json", {"x": 1})
    save_image(np.zeros((4, 4, 3), dtype=np.uint8), tmp_path / "c.png")
    write_bytes(tmp_path / "a.bin", b"456")  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json", "c.png"]
    assert (tmp_path / "a.bin").read_bytes() == b"456"
    assert (tmp_path / "b.json").read_text() == '{\n  "x": 1\n}\n'
    with Image.open(tmp_path / "c.png") as im:
        assert im.format == "PNG" and im.size == (4, 4)


def test_failed_atomic_write_keeps_old_file(tmp_path):
    final = tmp_path / "keep.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("crash mid-write")
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("x")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
