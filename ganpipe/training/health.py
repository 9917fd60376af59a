"""Early warnings that mean something: one line, once per run and kind, with the likely
fix - rather than a wall of numbers.

* **D saturates**: ``d_loss`` at 0 (hinge, least squares), or the same value, for
  :data:`SATURATION_CHECKS` log lines in a row: D wins outright and G learns nothing;
* **mode collapse**: sample diversity (:func:`ganpipe.training.sampling.diversity`) below
  ``sampling.COLLAPSE_THRESHOLD`` past the warm-up;
* **no progress**: the stats gap (:func:`stats_gap`) - how far the samples' low-resolution per-pixel mean and
  spread are from the data's - stops improving for :data:`STALL_CHECKS` checks in the
  second half of the run while still far from the data.

:class:`HealthWatch` reads the records the loop writes to ``metrics.jsonl``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ganpipe.training import sampling

#: log lines in a row with ``d_loss`` at 0 or constant before the saturation warning
SATURATION_CHECKS = 4
#: ``|d_loss|`` below this counts as 0
SATURATED_BELOW = 1e-4
#: sample checks without improvement of ``stats_gap`` before the no-progress warning
STALL_CHECKS = 6
#: ... and only while the gap is this many times that of real images (samples still
#: unlike the data; 32 real images are about 0.14 from the stats of 256 on digits)
STALL_FACTOR = 3.0
#: side (px) the images are pooled to for ``stats_gap``
STATS_SIDE = 8

FIX_D = (
    "lower model.lr_d (or raise model.lr_g), add train.diffaugment = "
    '["translation", "color"], or make D narrower (model.d_width)'
)
FIX_COLLAPSE = (
    'add train.diffaugment = ["translation", "color"], lower the learning rates '
    "(model.lr_g, model.lr_d), or widen the nets (model.g_width, model.d_width)"
)
FIX_STALL = (
    "train longer (train.steps), raise the learning rates a little, or widen the nets "
    "(model.g_width, model.d_width)"
)


def _pooled(images: torch.Tensor) -> torch.Tensor:
    side = min(STATS_SIDE, images.shape[-1])
    return F.adaptive_avg_pool2d(images.float(), side)


def image_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and standard deviation of ``images`` pooled to 8x8 (the reference
    of :func:`stats_gap`), on the CPU. One image has no spread: 0 (the sample standard
    deviation of one value is undefined)."""
    return _stats(_pooled(images).cpu())


def _stats(pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = pooled.mean(0)
    return mean, pooled.std(0) if len(pooled) > 1 else torch.zeros_like(mean)


def reference(images: torch.Tensor, seed: int) -> tuple[tuple[torch.Tensor, torch.Tensor], float]:
    """The data's :func:`image_stats` from up to 256 images drawn at random (folders come
    sorted by class) and the gap of 32 other real images from them (the noise floor);
    ``images``: uint8 NCHW."""
    g = torch.Generator().manual_seed(seed + 17)
    idx = torch.randperm(len(images), generator=g)[:288].to(images.device)
    real = images[idx].float().div(127.5).sub(1.0)
    ref = real[32:] if len(real) > 64 else real
    stats = image_stats(ref)
    return stats, stats_gap(real[:32], *stats)


def stats_gap(samples: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> float:
    """RMS distance of the samples' pooled per-pixel mean and spread from the data's
    (``image_stats``), in units of the [-1, 1] pixel range: 0 is the data's, a blank or
    wrong-shaped set is 0.3 and more."""
    pooled = _pooled(samples).cpu()
    if pooled.shape[1:] != mean.shape:  # image-to-image outputs of other sizes
        return float("nan")
    m, s = _stats(pooled)
    return float((m - mean).pow(2).mean().sqrt() + (s - std).pow(2).mean().sqrt())


def options_hint(state: dict[str, Any], resolved: Any) -> str:
    """What a checkpoint's model options (saved since options were resolved) differ in
    from the run's, for the resume error; a hint about scaled defaults without them."""
    saved = state.get("model_options")
    if not isinstance(saved, dict):
        return (
            " (model defaults such as g_width and d_width now scale with the image size "
            "and the device: set the values it was trained with in [model])"
        )
    now = resolved.model_dump(mode="json")
    diff = [
        f"model.{k} = {saved[k]!r} (now {now[k]!r})"
        for k in now
        if k in saved and saved[k] != now[k]
    ]
    if not diff:
        return ""
    return f" (it was trained with {', '.join(diff[:4])}: set them in [model] to resume)"


def postfix(rec: dict[str, Any]) -> dict[str, str]:
    """The progress bar's postfix from a metrics record."""
    out = {"it": str(rec["iteration"])} if "iteration" in rec else {}
    skip = ("step", "iteration", "images_per_s")
    out.update({k: f"{v:.3f}" for k, v in rec.items() if k not in skip})
    return out


class HealthWatch:
    """Reads each metrics record (:meth:`check`) and returns the warnings to print."""

    def __init__(self, total_steps: int, samples_dir: Path, gap_floor: float = 0.1):
        self.total_steps, self.samples_dir = total_steps, samples_dir
        self.stall_gap = STALL_FACTOR * max(gap_floor, 0.05)
        self.warned: set[str] = set()
        self.d_losses: list[float] = []
        self.gaps: list[float] = []

    def _once(self, kind: str, text: str) -> list[str]:
        if kind in self.warned:
            return []
        self.warned.add(kind)
        return [f"train: warning: {text}"]

    def check(self, step: int, rec: dict[str, Any], gap: float | None = None) -> list[str]:
        """The warnings due at ``step`` for the metrics record ``rec`` and the samples'
        :func:`stats_gap` (None: not measured at this step)."""
        out: list[str] = []
        d = rec.get("d_loss")
        if isinstance(d, int | float) and math.isfinite(d):
            self.d_losses = [*self.d_losses[-(SATURATION_CHECKS - 1) :], float(d)]
            last = self.d_losses
            if len(last) == SATURATION_CHECKS:
                zero = all(abs(v) < SATURATED_BELOW for v in last)
                flat = max(last) - min(last) <= 1e-6 * max(1.0, abs(last[0]))
                if zero or flat:
                    what = "at 0" if zero else f"stuck at {last[0]:.4g}"
                    out += self._once(
                        "saturated",
                        f"the discriminator saturated at step {step} (d_loss {what} for "
                        f"{SATURATION_CHECKS} log lines): G gets no signal; {FIX_D}",
                    )
        div = rec.get("diversity")
        warm = step >= max(sampling.COLLAPSE_WARMUP, self.total_steps // 5)
        if isinstance(div, int | float) and warm and div < sampling.COLLAPSE_THRESHOLD:
            out += self._once(
                "collapse",
                f"possible mode collapse at step {step} (sample diversity {div:.3f} of the "
                f"data's); see {self.samples_dir}; {FIX_COLLAPSE}",
            )
        if gap is not None and math.isfinite(gap):
            self.gaps.append(float(gap))
            recent, before = self.gaps[-STALL_CHECKS:], self.gaps[:-STALL_CHECKS]
            late = step >= self.total_steps // 2
            if (
                late
                and before
                and min(recent) > 0.98 * min(before)
                and min(recent) > self.stall_gap
            ):
                out += self._once(
                    "stall",
                    f"samples stopped getting closer to the data at step {step} (stats "
                    f"gap {gap:.3f}, best {min(self.gaps):.3f}); see {self.samples_dir}; "
                    f"{FIX_STALL}",
                )
        return out
