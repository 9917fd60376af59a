"""The augment stage: materialises an augmented copy of the training set.

The stage decodes the dataset once at the training size, then writes the originals plus
``copies`` randomly transformed variants of each image (flips, rotation, colour jitter,
random resized crop) into ``augment/dataset.npz`` with a ``preview.png`` grid. The train
stage reads that set when the pipeline has an augment stage. Materialising makes the
augmented data inspectable, fingerprinted and exactly reproducible from the seed; on-the-fly
augmentation of D's inputs (DiffAugment) belongs to the training loop.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance
from pydantic import Field

from ganpipe.data.base import ImageSet
from ganpipe.data.imageio import from_array, make_grid, save_image, to_array
from ganpipe.options import Options
from ganpipe.outputs import AugmentOutput
from ganpipe.stage import Stage, StageContext, StageResult


class AugmentOptions(Options):
    copies: int = Field(1, ge=0, le=100, description="augmented variants per image")
    keep_original: bool = Field(True, description="keep each image as it is besides its copies")
    hflip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    vflip: float = Field(0.0, ge=0, le=1, description="probability of a vertical flip")
    rotate: float = Field(0.0, ge=0, le=180, description="max rotation in degrees")
    brightness: float = Field(0.0, ge=0, le=1, description="max relative change")
    contrast: float = Field(0.0, ge=0, le=1, description="max relative change")
    saturation: float = Field(0.0, ge=0, le=1, description="max relative change")
    crop_scale: float = Field(1.0, gt=0, le=1, description="min area of a random crop; 1=off")


def augment_image(arr: np.ndarray, opts: AugmentOptions, rng: np.random.Generator) -> np.ndarray:
    im = from_array(arr)
    size = im.size
    if opts.crop_scale < 1.0:
        area = rng.uniform(opts.crop_scale, 1.0)
        side = max(1, int(round(size[0] * np.sqrt(area))))
        x, y = (int(rng.integers(0, s - side + 1)) for s in size)
        im = im.resize(size, Image.Resampling.BICUBIC, box=(x, y, x + side, y + side))
    if rng.random() < opts.hflip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < opts.vflip:
        im = im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if opts.rotate > 0:
        im = im.rotate(
            rng.uniform(-opts.rotate, opts.rotate), Image.Resampling.BILINEAR, fillcolor=None
        )
    for amount, enhancer in (
        (opts.brightness, ImageEnhance.Brightness),
        (opts.contrast, ImageEnhance.Contrast),
        (opts.saturation, ImageEnhance.Color),
    ):
        if amount > 0 and (enhancer is not ImageEnhance.Color or im.mode == "RGB"):
            im = enhancer(im).enhance(rng.uniform(1 - amount, 1 + amount))
    return to_array(im)


def augment_set(data: ImageSet, opts: AugmentOptions, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    if opts.keep_original:
        images.append(data.images)
        labels.append(data.labels)
    for _ in range(opts.copies):
        images.append(np.stack([augment_image(a, opts, rng) for a in data.images]))
        labels.append(data.labels)
    if not images:
        images, labels = [data.images], [data.labels]
    return ImageSet(
        np.concatenate(images),
        np.concatenate(labels),
        data.class_names,
        data.skipped,
        patch_size=data.patch_size,  # patches: training still crops its patches of them
    )


class AugmentStage(Stage):
    name = "augment"
    description = "decode the dataset and add augmented copies (flip, rotate, jitter, crop)"
    Options = AugmentOptions
    uses = ("data", "seed")

    def run(self, ctx: StageContext, opts: AugmentOptions) -> StageResult:
        cfg = ctx.config
        source = ctx.load_source("train")
        out = augment_set(source, opts, cfg.run.seed)
        folder = ctx.stage_dir(self.name)
        out.save(folder / "dataset.npz")
        rng = np.random.default_rng(0)
        pick = rng.choice(len(out), size=min(64, len(out)), replace=False)
        save_image(make_grid(out.images[np.sort(pick)]), folder / "preview.png")
        skipped = f", {len(source.skipped)} unreadable skipped" if source.skipped else ""
        return ctx.result(
            AugmentOutput(
                dataset=folder / "dataset.npz",
                preview=folder / "preview.png",
                images=len(out),
                source_images=len(source),
                skipped=len(source.skipped),
            ),
            f"{len(source)} images{skipped} -> {len(out)} ({len(out.class_names)} class(es))",
        )
