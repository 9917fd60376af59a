"""Scores between real and generated feature sets.

FID and KID come from torchmetrics (fed our precomputed features through its custom
feature-extractor interface); precision/recall (Kynkäänniemi et al. 2019) and
density/coverage (Naeem et al. 2020) are k-nearest-neighbour statistics on the same
features; diversity is the mean pairwise feature distance of generated images relative to
that of real ones.
"""

from __future__ import annotations

import torch
from torch import nn


class _Precomputed(nn.Module):
    """A "feature extractor" for torchmetrics that receives features already."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]), normalize=False)
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    return float(metric.compute())


def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    subset_size: int = 1000,
    subsets: int = 50,
    seed: int = 0,
) -> tuple[float, float]:
    from torchmetrics.image.kid import KernelInceptionDistance

    size = max(2, min(subset_size, len(real), len(fake)))
    metric = KernelInceptionDistance(
        feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size, normalize=False
    )
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    k = min(k, len(x) - 1)
    return d.kthvalue(k + 1, dim=1).values  # +1: the distance to itself is the smallest


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    if len(real) < 2 or len(fake) < 2:
        return {
            "precision": float("nan"),
            "recall": float("nan"),
            "density": float("nan"),
            "coverage": float("nan"),
        }
    r_real, r_fake = _kth_radius(real, k), _kth_radius(fake, k)
    d = torch.cdist(real, fake)  # [R, F]
    inside = d <= r_real[:, None]
    return {
        "precision": float(inside.any(dim=0).float().mean()),
        "recall": float((d <= r_fake[None, :]).any(dim=1).float().mean()),
        "density": float(inside.float().sum(dim=0).mean() / min(k, len(real) - 1)),
        "coverage": float((d.min(dim=1).values <= r_real).float().mean()),
    }


def spread(x: torch.Tensor) -> float:
    if len(x) < 2:
        return 0.0
    d = torch.cdist(x, x)
    return float(d.sum() / (len(x) * (len(x) - 1)))


def all_scores(
    real: torch.Tensor, fake: torch.Tensor, k: int = 5, kid_subset_size: int = 1000
) -> dict[str, float]:
    """Every score for one pair of feature sets (float64 [N, D])."""
    kid_mean, kid_std = kid(real, fake, kid_subset_size)
    return {
        "fid": fid(real, fake),
        "kid": kid_mean,
        "kid_std": kid_std,
        **prdc(real, fake, k),
        "diversity": spread(fake) / max(spread(real), 1e-12),
        "n_real": len(real),
        "n_fake": len(fake),
    }
