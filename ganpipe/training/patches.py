"""The training batches of every step, drawn from the image set on the training device.

* Images of the training size (``folder``, ``shapes``): the batch is the images, as the
  :class:`~ganpipe.training.state.Sampler` picks them.
* Larger images (the ``patches`` source keeps regions of each photo, bigger than
  ``data.image_size``; :attr:`ImageSet.patch_size`): each image of the batch gives a new
  random ``image_size`` window at every step, as BasicSR's ``paired_random_crop`` does, so
  a small folder is not learnt as a few fixed crops.
* Variants that ask for it (:meth:`train_flips`; the super-resolution ones by default)
  also get BasicSR's ``augment(hflip=True, rotation=True)`` of each patch: a horizontal
  flip, a vertical flip and a transpose, each with probability 1/2 (the 8 flips and
  rotations by 90 degrees, equally likely).

Windows and flips depend only on (run seed, step) and are drawn for the whole global
batch, of which each data-parallel process takes its share: resuming at any step, with any
number of processes, reproduces the batches of an uninterrupted run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ganpipe.data.base import ImageSet
from ganpipe.training.state import Sampler
from ganpipe.variant import Batch

#: mixed into the seed of the windows and flips (independent of the other streams)
STREAM = 0x9A7C4


def train_flips(variant: Any, opts: Any) -> bool:
    """Whether ``variant`` trains on randomly flipped / rotated patches (its
    :meth:`~ganpipe.Variant.train_flips`)."""
    return bool(variant.train_flips(opts))


def draw(seed: int, step: int, n: int, height: int, width: int, size: int, flips: bool):
    """The windows (tops, lefts) and flips (hflip, vflip, transpose) of step ``step``'s
    ``n`` images of ``height`` x ``width``: numpy arrays of ``n``."""
    rng = np.random.default_rng([seed, step, STREAM])
    tops = rng.integers(0, height - size + 1, n)
    lefts = rng.integers(0, width - size + 1, n)
    coins = rng.random((3, n)) < 0.5
    if not flips:
        coins[:] = False
    return tops, lefts, coins


def dihedral(x: torch.Tensor, hflip, vflip, transpose) -> torch.Tensor:
    """BasicSR's ``augment`` of each image of NCHW ``x`` (square): flip left-right where
    ``hflip``, then top-bottom where ``vflip``, then swap height and width where
    ``transpose`` (boolean arrays of N)."""
    for mask, op in (
        (hflip, lambda t: t.flip(-1)),
        (vflip, lambda t: t.flip(-2)),
        (transpose, lambda t: t.transpose(-1, -2)),
    ):
        pick = np.flatnonzero(mask)
        if len(pick):
            index = torch.from_numpy(pick).to(x.device)
            x[index] = op(x[index])
    return x


class TrainBatches:
    """The image set on ``device`` and the batch of each step (see the module text).
    ``reference``: the images at the training size (a centre window of larger ones), for
    the sample inputs and the health checks."""

    def __init__(
        self,
        data: ImageSet,
        device: torch.device,
        batch_size: int,
        seed: int,
        flips: bool = False,
    ):
        images = torch.from_numpy(data.images).permute(0, 3, 1, 2)
        self.images = images.contiguous().to(device)
        self.labels = torch.from_numpy(data.labels).to(device)
        self.sampler = Sampler(len(data), batch_size, seed)
        self.size, self.seed, self.flips = data.image_size, seed, flips
        self.device = device
        h, w = self.images.shape[-2:]
        self.crops = (h, w) != (self.size, self.size)
        if self.crops:
            top, left = (h - self.size) // 2, (w - self.size) // 2
            window = self.images[..., top : top + self.size, left : left + self.size]
            self.reference = window.contiguous()
        else:
            self.reference = self.images

    def batch(self, step: int, rank: int = 0, world: int = 1) -> Batch:
        """Step ``step``'s batch (images in [-1, 1]): process ``rank``'s share of ``world``."""
        idx = self.sampler.indices(step)
        if self.crops or self.flips:
            return self._patches(idx, step, rank, world)
        if world > 1:  # this process's share of the global batch
            idx = idx[rank::world]
        idx = idx.to(self.device)
        return Batch(self.images[idx].float().div_(127.5).sub_(1.0), self.labels[idx])

    def _patches(self, idx: torch.Tensor, step: int, rank: int, world: int) -> Batch:
        h, w = self.images.shape[-2:]
        tops, lefts, (hflip, vflip, transpose) = draw(
            self.seed, step, len(idx), h, w, self.size, self.flips
        )
        share = slice(rank, None, world)
        p = self.size
        picked = [
            self.images[int(i), :, int(t) : int(t) + p, int(x) : int(x) + p]
            for i, t, x in zip(idx[share].tolist(), tops[share], lefts[share], strict=True)
        ]
        out = dihedral(torch.stack(picked), hflip[share], vflip[share], transpose[share])
        labels = self.labels[idx[share].to(self.device)]
        return Batch(out.float().div_(127.5).sub_(1.0), labels)
