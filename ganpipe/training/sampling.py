"""What the loop shows of the generator while it trains: sample grids from fixed inputs,
the sample-diversity (mode-collapse) signal and its one-time warning.

The images come from the variant's :meth:`~ganpipe.Variant.generate`, with the EMA of its
generator net (:attr:`~ganpipe.Variant.generator_net`) in that net's place when the run
keeps one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganpipe.data.imageio import make_grid, save_image, to_uint8

#: Below this sample diversity (relative to the data's) the loop warns of mode collapse.
COLLAPSE_THRESHOLD = 0.2
#: ... but not before this many steps (and a fifth of the run): fresh nets look collapsed.
COLLAPSE_WARMUP = 200
#: Fixed inputs used for the diversity signal (the first of the sample-grid inputs).
DIVERSITY_SAMPLES = 32


def pairwise_spread(images: torch.Tensor) -> float:
    """Mean Euclidean distance between all pairs of images, per sqrt(pixel)."""
    flat = images.reshape(images.shape[0], -1).float()
    if flat.shape[0] < 2:
        return 0.0
    d = torch.cdist(flat, flat)
    n = flat.shape[0]
    return float(d.sum() / (n * (n - 1)) / flat.shape[1] ** 0.5)


@torch.no_grad()
def generate_with(
    variant, nets: dict[str, torch.nn.Module], name: str, g: torch.nn.Module, inputs
) -> torch.Tensor:
    """``variant.generate`` with ``g`` (in eval mode) as net ``name``; ``g``'s mode is
    restored afterwards."""
    was_training = g.training
    g.eval()
    try:
        return variant.generate({**nets, name: g}, inputs)
    finally:
        g.train(was_training)


def diversity(variant, nets, name: str, g: torch.nn.Module, inputs, real_spread: float) -> float:
    """Mode-collapse signal: mean pairwise distance of samples from fixed inputs,
    relative to that of real images (about 1 is healthy, near 0 is collapse)."""
    few = tuple(x[:DIVERSITY_SAMPLES] for x in inputs)
    out = generate_with(variant, nets, name, g, few).float()
    return pairwise_spread(out) / max(real_spread, 1e-8)


def save_sample_grid(
    variant, nets, name: str, g: torch.nn.Module, inputs, folder: Path, step: int
) -> Path:
    """The grid of samples from ``inputs`` as ``folder/step_NNNNNNNN.png``."""
    out = generate_with(variant, nets, name, g, inputs)
    grid = make_grid(to_uint8(out.float().cpu().numpy()))
    folder.mkdir(parents=True, exist_ok=True)
    return save_image(grid, folder / f"step_{step:08d}.png")


class CollapseWatch:
    """Warns once per run when the diversity stays below :data:`COLLAPSE_THRESHOLD`
    past the warm-up (:data:`COLLAPSE_WARMUP` steps and a fifth of the run)."""

    def __init__(self, total_steps: int):
        self.total_steps = total_steps
        self.warned = False

    def check(self, step: int, value: float, samples_dir: Path) -> str | None:
        """The warning to print for ``value`` at ``step``, or None."""
        warm = step >= max(COLLAPSE_WARMUP, self.total_steps // 5)
        if self.warned or not warm or value >= COLLAPSE_THRESHOLD:
            return None
        self.warned = True
        return (
            f"train: warning: possible mode collapse at step {step} (sample diversity "
            f"{value:.3f} of the data's); see {samples_dir}"
        )
