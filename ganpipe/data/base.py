"""In-memory image sets and the dataset-source protocol."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ganpipe.errors import DataError
from ganpipe.fsutil import write_bytes


@dataclass
class ImageSet:
    """Decoded images, uint8 NHWC at the training size, with integer class labels."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise ValueError("images must be NHWC with one label per image")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        """True when the images carry class labels (two or more classes)."""
        return len(self.class_names) > 1

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def subset(self, index: np.ndarray) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index], self.class_names, self.skipped)

    def split(self, holdout: float, seed: int) -> tuple[ImageSet, ImageSet]:
        """(train, held-out): a seeded random ``holdout`` fraction is held out."""
        n_hold = int(round(len(self) * holdout)) if holdout > 0 else 0
        if holdout > 0 and len(self) > 1:
            n_hold = min(max(1, n_hold), len(self) - 1)
        perm = np.random.default_rng([seed, 0x5EED]).permutation(len(self))
        return self.subset(np.sort(perm[n_hold:])), self.subset(np.sort(perm[:n_hold]))

    def save(self, path: str | Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, images=self.images, labels=self.labels,
                 class_names=np.array(self.class_names, dtype=str))
        write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> ImageSet:
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["images"], z["labels"], [str(s) for s in z["class_names"]])
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: not a ganpipe image set ({exc}); re-run the stage "
                            f"that made it with --force") from None


class DatasetSource(Protocol):
    """What ``ganpipe_register_datasets`` registers."""

    name: str
    description: str
    Options: type

    def load(self, opts: Any, image_size: int, channels: int, base_dir: Path) -> ImageSet:
        """Decode the data at ``image_size`` with ``channels`` channels."""

    def fingerprint(self, opts: Any, base_dir: Path) -> str:
        """A string that changes when the data changes (cheap: no decoding)."""
