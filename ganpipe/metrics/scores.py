"""Scores between real and generated feature sets.

FID and KID come from torchmetrics (fed our precomputed features through its custom
feature-extractor interface). FID from N samples is biased upward (the bias falls roughly
as 1/N), so it is comparable only at the same N and feature extractor; KID is unbiased and
comes with its std over random subsets. Precision/recall (Kynkäänniemi et al. 2019) and
density/coverage (Naeem et al. 2020) are k-nearest-neighbour statistics on the same
features, on equal numbers of real and generated samples (:mod:`ganpipe.metrics.prdc`);
diversity is the mean pairwise feature distance of generated images relative to that of
real ones.
"""

from __future__ import annotations

import torch
from torch import nn

from ganpipe.metrics.prdc import equal_subsets, mean_pairwise_distance, prdc


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


def all_scores(
    real: torch.Tensor,
    fake: torch.Tensor,
    k: int = 5,
    kid_subset_size: int = 1000,
    seed: int = 0,
    kid_subsets: int = 50,
) -> dict[str, float]:
    """Every score for one pair of feature sets (float64 [N, D]), with the sample counts
    each score used: FID on all ``n_real`` and ``n_fake`` (biased upward at small N, see
    :func:`ganpipe.metrics.notes.fid_note`),
    KID over ``kid_subsets`` subsets of ``kid_subset_size`` (clipped to the set sizes),
    precision/recall/density/coverage and diversity on ``prdc_n`` of each set (equal N,
    :mod:`ganpipe.metrics.prdc`)."""
    size = max(2, min(kid_subset_size, len(real), len(fake)))
    kid_mean, kid_std = kid(real, fake, size, kid_subsets, seed)
    sub_real, sub_fake = equal_subsets(real, fake, seed)
    return {
        "fid": fid(real, fake),
        "kid": kid_mean,
        "kid_std": kid_std,
        **prdc(sub_real, sub_fake, k),
        # mean pairwise distances are unbiased at any N: the equal subsets bound the cost
        "diversity": mean_pairwise_distance(sub_fake)
        / max(mean_pairwise_distance(sub_real), 1e-12),
        "n_real": len(real),
        "n_fake": len(fake),
        "kid_subsets": kid_subsets,
        "kid_subset_size": size,
    }
