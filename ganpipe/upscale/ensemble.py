"""Several models used as one, and test-time augmentation.

* **Model ensembling**: several models of one scale, their outputs averaged.
* **Self-ensemble** (``tta``, as in EDSR / RCAN): each model also runs on the 8 flips and
  rotations of its input, the results are turned back and averaged - usually a little
  sharper and cleaner, 8x the compute.

Both work per tile, so tiling and memory are unchanged. Models exported at one fixed shape
(``fixed_tile`` in the model card) mix with any others: the ensemble's ``fixed_tile`` is the
smallest of theirs, so every window fits every model (each pads a smaller one up to its own).
"""

from __future__ import annotations

import math

import numpy as np

from ganpipe.errors import ConfigError
from ganpipe.upscale.model import SRModel


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """Transform ``k`` (0..7) of the 8 flips / rotations of NCHW ``x``."""
    if k >= 4:
        x = x[..., ::-1]
    return np.ascontiguousarray(np.rot90(x, k % 4, axes=(2, 3)))


def undo_dihedral(y: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`dihedral` ``k``."""
    y = np.rot90(y, -(k % 4), axes=(2, 3))
    return y[..., ::-1] if k >= 4 else y


class Ensemble:
    """Several models of one scale used as one (their outputs are averaged), and/or each
    run on the 8 flips and rotations of its input with the results turned back and
    averaged (``tta``). Quacks like :class:`SRModel` for
    :class:`~ganpipe.upscale.tiling.Upscaler`."""

    def __init__(self, models: list[SRModel], tta: bool = False):
        scales = {m.scale for m in models}
        if len(scales) > 1:
            listing = ", ".join(f"{m.path.name} x{m.scale}" for m in models)
            raise ConfigError(f"models of an ensemble must have one scale; got {listing}")
        self.models, self.tta = models, tta
        self.scale = models[0].scale
        self.multiple = math.lcm(*(m.multiple for m in models))
        fixed = [m.fixed_tile for m in models if m.fixed_tile is not None]
        #: the smallest fixed tile of the models (None: none has one)
        self.fixed_tile: int | None = min(fixed) if fixed else None
        self.path = models[0].path

    @property
    def providers(self) -> list[str]:
        return self.models[0].providers

    def __call__(self, x: np.ndarray) -> np.ndarray:
        total, count = None, 0
        for model in self.models:
            for k in range(8) if self.tta else (0,):
                y = undo_dihedral(model(dihedral(x, k)), k) if k else model(x)
                total = y.astype(np.float32, copy=True) if total is None else total + y
                count += 1
        return total / count


def combine(models: list[SRModel], tta: bool) -> SRModel | Ensemble:
    """One model as it is, or the :class:`Ensemble` of several (or of one, with ``tta``)."""
    if not models:
        raise ConfigError("no model given; pass -m MODEL (repeat it for an ensemble)")
    return models[0] if len(models) == 1 and not tta else Ensemble(models, tta)
