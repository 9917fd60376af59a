"""In-memory image sets: what a dataset source's ``load`` returns."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganpipe.errors import DataError
from ganpipe.fsutil import write_bytes


@dataclass
class ImageSet:
    """Decoded images, uint8 NHWC at the training size, with integer class labels.

    Or larger, with ``patch_size`` set to the training size: training draws a new
    ``patch_size`` window of them at every step (:mod:`ganpipe.training.patches`)."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Source file index of each image, for sources that make several images of one file
    #: (``patches``): :meth:`split` keeps a file's images on one side. ``None``: each image
    #: is its own source. Not written by :meth:`save` (saved sets are already split).
    groups: np.ndarray | None = None
    #: The training size (``data.image_size``) when the images are larger regions that
    #: training crops a window of at every step (``patches``); None: the images' size.
    patch_size: int | None = None

    def __post_init__(self) -> None:
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise ValueError("images must be NHWC with one label per image")
        if self.patch_size is not None:
            self.patch_size = int(self.patch_size)
            if not 1 <= self.patch_size <= min(self.images.shape[1:3]):
                raise ValueError("patch_size must fit in the images")
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=np.int64)
            if self.groups.shape != self.labels.shape:
                raise ValueError("groups must have one source index per image")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        """True when the images carry class labels (two or more classes)."""
        return len(self.class_names) > 1

    @property
    def image_size(self) -> int:
        """The training size: ``patch_size``, else the images' height."""
        return self.patch_size or int(self.images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def subset(self, index: np.ndarray) -> ImageSet:
        groups = None if self.groups is None else self.groups[index]
        return ImageSet(
            self.images[index],
            self.labels[index],
            self.class_names,
            self.skipped,
            groups,
            self.patch_size,
        )

    def split(self, holdout: float, seed: int) -> tuple[ImageSet, ImageSet]:
        """(train, held-out): a seeded random ``holdout`` fraction of the source files is
        held out, with all their images: crops of one photo on both sides would score the
        model on pixels it was trained on. Without ``groups`` each image is a source, and
        the selection is the same as it always was for a given seed."""
        groups = np.arange(len(self)) if self.groups is None else self.groups
        sources, inverse = np.unique(groups, return_inverse=True)
        n = len(sources)
        if holdout > 0 and n == 1 and self.groups is not None and len(self) > 1:
            raise DataError(
                f"data.holdout = {holdout}: all {len(self)} images come from one "
                f"source file, and held-out images must come from other files "
                f"than the training ones; add images or set holdout = 0"
            )
        n_hold = int(round(n * holdout)) if holdout > 0 else 0
        if holdout > 0 and n > 1:
            n_hold = min(max(1, n_hold), n - 1)
        perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
        held = np.zeros(n, dtype=bool)
        held[perm[:n_hold]] = True
        held = held[inverse]
        return self.subset(np.flatnonzero(~held)), self.subset(np.flatnonzero(held))

    def save(self, path: str | Path) -> None:
        buf = io.BytesIO()
        extra = {} if self.patch_size is None else {"patch_size": np.int64(self.patch_size)}
        np.savez(
            buf,
            images=self.images,
            labels=self.labels,
            class_names=np.array(self.class_names, dtype=str),
            **extra,
        )
        write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> ImageSet:
        try:
            with np.load(path, allow_pickle=False) as z:
                patch = int(z["patch_size"]) if "patch_size" in z.files else None
                names = [str(s) for s in z["class_names"]]
                return cls(z["images"], z["labels"], names, patch_size=patch)
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(
                f"{path}: not a ganpipe image set ({exc}); re-run the stage "
                f"that made it with --force"
            ) from None
