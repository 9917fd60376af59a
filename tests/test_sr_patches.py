"""SR training patches as BasicSR draws them: a new random window of each image at every
step (``paired_random_crop``), flipped and rotated at random (``augment(hflip=True,
rotation=True)``), seeded by (run seed, step) so that a resumed run sees the same batches;
the ``patches`` source keeps bounded regions of the photos; a small folder of photos
larger than a patch trains."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from conftest import write_toml
from PIL import Image

from ganpipe.config import load_config
from ganpipe.data import memory
from ganpipe.data.base import ImageSet
from ganpipe.data.sources import PatchesDataset, PatchesOptions
from ganpipe.errors import ConfigError
from ganpipe.pipeline import run_file
from ganpipe.registry import load_registry
from ganpipe.stages.augment import AugmentOptions, augment_set
from ganpipe.training import patches
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.training.state import Sampler

REGISTRY = load_registry(entry_points=False)
CPU = torch.device("cpu")


def coordinates(n: int, h: int, w: int) -> np.ndarray:
    """Images whose pixels name their place: R = row, G = column, B = image number."""
    y, x = np.mgrid[:h, :w]
    out = np.stack([np.stack([y, x, np.full_like(y, i)], -1) for i in range(n)])
    return out.astype(np.uint8)


def basicsr_patch(img: np.ndarray, top, left, size, hflip, vflip, rot90) -> np.ndarray:
    """BasicSR: ``img[top:top+size, left:left+size]``, then ``augment``: cv2.flip(img, 1)
    (left-right), cv2.flip(img, 0) (top-bottom), img.transpose(1, 0, 2)."""
    out = img[top : top + size, left : left + size]
    if hflip:
        out = out[:, ::-1]
    if vflip:
        out = out[::-1]
    if rot90:
        out = out.transpose(1, 0, 2)
    return out


def to_uint8(batch) -> np.ndarray:
    return ((batch.images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def test_each_step_draws_new_windows_that_are_basicsr_patches():
    data = ImageSet(coordinates(3, 40, 56), np.zeros(3), ["_root"], patch_size=16)
    batches = patches.TrainBatches(data, CPU, 6, seed=7, flips=True)
    sampler = Sampler(3, 6, 7)
    seen, windows = set(), set()
    for step in range(40):
        got = to_uint8(batches.batch(step))
        idx = sampler.indices(step).tolist()
        tops, lefts, coins = patches.draw(7, step, len(idx), 40, 56, 16, True)
        for k, i in enumerate(idx):
            flags = tuple(bool(c) for c in coins[:, k])
            want = basicsr_patch(data.images[i], tops[k], lefts[k], 16, *flags)
            assert np.array_equal(got[k], want)  # a window of image i, as BasicSR makes it
            assert got[k, 0, 0, 2] == i
            seen.add(flags)
            windows.add((i, int(tops[k]), int(lefts[k])))
    assert seen == set(itertools.product([False, True], repeat=3))  # all 8 flips / rot90
    assert len(windows) > 200  # 240 patches of 3 images: windows drawn anew every step


def test_two_steps_crop_the_same_image_differently():
    data = ImageSet(coordinates(1, 48, 48), np.zeros(1), ["_root"], patch_size=16)
    batches = patches.TrainBatches(data, CPU, 4, seed=0, flips=False)
    a, b = to_uint8(batches.batch(0)), to_uint8(batches.batch(1))
    assert not np.array_equal(a, b)
    for patch in np.concatenate([a, b]):  # real sub-windows, upright without flips
        top, left = int(patch[0, 0, 0]), int(patch[0, 0, 1])
        assert np.array_equal(patch, data.images[0, top : top + 16, left : left + 16])
    assert len({(int(p[0, 0, 0]), int(p[0, 0, 1])) for p in np.concatenate([a, b])}) > 4


def test_batches_depend_on_seed_and_step_only_and_shard_by_process():
    data = ImageSet(coordinates(5, 30, 30), np.arange(5) % 2, ["a", "b"], patch_size=12)
    first = patches.TrainBatches(data, CPU, 4, seed=3, flips=True)
    late = patches.TrainBatches(data, CPU, 4, seed=3, flips=True)  # a resumed run
    for step in (9, 2, 5):
        whole = first.batch(step)
        assert torch.equal(whole.images, late.batch(step).images)
        assert torch.equal(whole.labels, late.batch(step).labels)
        for world in (2, 4):  # each process's share of the same global batch
            for rank in range(world):
                share = late.batch(step, rank, world)
                assert torch.equal(share.images, whole.images[rank::world])
                assert torch.equal(share.labels, whole.labels[rank::world])
    other = patches.TrainBatches(data, CPU, 4, seed=4, flips=True)
    assert not torch.equal(other.batch(9).images, first.batch(9).images)


def test_images_of_the_training_size_are_batched_as_before():
    rng = np.random.default_rng(0)
    data = ImageSet(rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8), np.arange(10), ["x"])
    batches = patches.TrainBatches(data, CPU, 4, seed=1)
    assert batches.reference is batches.images
    for step in range(5):
        idx = Sampler(10, 4, 1).indices(step)
        want = torch.from_numpy(data.images).permute(0, 3, 1, 2)[idx].float() / 127.5 - 1
        assert torch.equal(batches.batch(step).images, want)
    flipped = patches.TrainBatches(data, CPU, 4, seed=1, flips=True)  # SR on folder/shapes
    assert any(not torch.equal(flipped.batch(s).images, batches.batch(s).images) for s in range(5))


def test_only_sr_variants_flip_and_rotate_unless_told_not_to():
    for name in ("srgan", "esrgan", "compact", "espcn"):
        v = REGISTRY.variants.get(name)
        assert patches.train_flips(v, v.Options())
        assert not patches.train_flips(v, v.Options(flip_rot=False))
    for name in ("dcgan", "cyclegan"):
        v = REGISTRY.variants.get(name)
        assert not patches.train_flips(v, v.Options())


def photos(root, sizes, seed=0):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        y, x = np.mgrid[:h, :w]
        smooth = np.stack([np.sin(y / 7 + i), np.cos(x / 5), np.sin((x + y) / 9)], -1)
        noise = rng.normal(0, 0.05, (h, w, 3))
        arr = ((smooth * 0.4 + 0.5 + noise).clip(0, 1) * 255).astype(np.uint8)
        Image.fromarray(arr).save(root / f"{i}.png")
    return root


def test_kept_memory_is_bounded_by_regions_not_photos(tmp_path):
    root = photos(tmp_path / "big", [(400, 600), (500, 380), (90, 700)])
    opts = PatchesOptions(path=root, per_image=4)
    data = PatchesDataset().load(opts, 16, 3, tmp_path)
    assert data.image_size == 16 and data.images.shape[1:] == (64, 64, 3)  # 4 x 16 px
    bound = 3 * 4 * 64 * 64 * 3  # files x per_image x region^2 x channels
    assert len(data) == 12 and data.images.nbytes == bound
    assert data.images.nbytes < 0.1 * (400 * 600 + 500 * 380 + 90 * 700) * 3  # the photos
    assert memory.kept_size(opts, 16) == 64 and memory.image_count(opts, tmp_path) == 12
    need = memory.estimate(12, 16, 3, 8, kept=64)
    assert need.data == bound * memory.DATA_COPIES
    # saved and split sets keep the patch size; so does the augment stage's copy
    data.save(tmp_path / "set.npz")
    assert ImageSet.load(tmp_path / "set.npz").patch_size == 16
    assert data.split(0.4, 0)[1].patch_size == 16
    assert augment_set(data, AugmentOptions(copies=1), 0).patch_size == 16


PIPELINE = """
[run]
name = "p"
device = "cpu"

[data]
dataset = "patches"
path = "photos"
image_size = 16
per_image = 4
holdout = 0.25

[model]
variant = "compact"
scale = 2
num_feat = 8
num_conv = 2
adv_weight = 0.0

[train]
steps = 6
batch_size = 4
log_every = 1
sample_every = 0
checkpoint_every = 0
num_samples = 4
progress = false
"""


def test_a_small_folder_of_larger_photos_trains(tmp_path):
    photos(tmp_path / "photos", [(120, 150), (96, 128), (140, 100), (100, 100)])
    toml = write_toml(tmp_path / "pipeline.toml", PIPELINE)
    run_file(toml, entry_points=False, log=lambda *_: None)
    lines = (tmp_path / "runs" / "p" / "train" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert all(np.isfinite(r["g_loss"]) for r in records)


def test_regions_beyond_the_machine_are_refused_at_load(tmp_path, monkeypatch):
    photos(tmp_path / "photos", [(64, 64)])
    toml = write_toml(
        tmp_path / "pipeline.toml",
        PIPELINE.replace("per_image = 4", "per_image = 4\nregion = 4096"),
    )
    registries = load_registry(entry_points=False)
    # one region of 4096^2 x 3 bytes, twice: ~96 MiB, more than 64 MiB; 16 px patches fit
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 << 20)
    with pytest.raises(ConfigError, match=r"data.image_size = 16: .*data.per_image or data.region"):
        load_config(toml, registries)


def test_resumed_run_sees_the_same_patches(tmp_path, monkeypatch):
    photos(tmp_path / "photos", [(70, 90), (80, 64)])
    data = PatchesDataset().load(PatchesOptions(path=tmp_path / "photos"), 16, 3, tmp_path)
    assert data.images.shape[1] == 64
    v = REGISTRY.variants.get("compact")
    vopts = v.Options(**v.tiny_options)
    seen: dict[str, dict[int, torch.Tensor]] = {}
    original = v.train_step

    def record(ctx, batch):  # the batches the variant is given, by step
        seen[run][ctx.step] = batch.images.clone()
        return original(ctx, batch)

    monkeypatch.setattr(v, "train_step", record)

    def train(out, steps):
        opts = TrainOptions(
            steps=steps, batch_size=4, sample_every=0, checkpoint_every=2, progress=False
        )
        Trainer(v, vopts, opts, data, out, device="cpu", fingerprint="fp", log=print).run()

    for run, out, steps in (("straight", "a", 4), ("resumed", "b", 2), ("resumed", "b", 4)):
        seen.setdefault(run, {})
        train(tmp_path / out, steps)
    straight, resumed = seen["straight"], seen["resumed"]
    assert sorted(straight) == sorted(resumed) == [0, 1, 2, 3]
    assert all(torch.equal(straight[s], resumed[s]) for s in straight)
    assert straight[0].shape == (4, 3, 16, 16) and not torch.equal(straight[0], straight[1])
