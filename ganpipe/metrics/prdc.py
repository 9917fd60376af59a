"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020),
as the papers define them: on EQUAL numbers of real and generated samples, with memory
bounded by a block of distances rather than an N x N matrix. Torch-free (numpy).

Why equal N: every one of the four scores compares k-nearest-neighbour balls of one set
with points of the other, and a ball's radius shrinks as its set grows. Scoring 10,000
reals against 1,000 fakes therefore measures the set sizes as much as the model: for
identical distributions Naeem et al.'s Lemma 2 gives an expected coverage of
``1 - prod_{i=1..k} (N - i) / (N + M - i)`` (N reals, M fakes), 0.97 at N = M and 0.38 at
N = 10 M for k = 5. The larger of the two sets is therefore cut to the size of the
smaller by a seeded random subset (without replacement). Reals are subsampled rather than
more fakes generated: the generated count is the user's evaluation budget, and matching a
large real set would multiply that cost by the ratio (50x for 50k reals).

Memory: squared distances are computed a block of rows at a time (float64, on data
centred at the real mean, which keeps ``|a|^2 + |b|^2 - 2ab`` accurate), so beyond the
features themselves the working memory is one centred copy (O(N * D)) and a few blocks of
:data:`BLOCK_BYTES`, instead of the 8 * N^2 bytes (20 GB at 50k) of a full matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

#: bytes of float64 distances computed at once (a block of rows against all columns)
BLOCK_BYTES = 4 << 20

NAMES = ("precision", "recall", "density", "coverage")


def _features(x: Any) -> np.ndarray:
    """[N, D] float64 features from a numpy array or a (CPU) torch tensor."""
    arr = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"features must be [N, D]; got shape {arr.shape}")
    return arr


def _row_blocks(rows: int, cols: int) -> Iterator[slice]:
    step = max(1, BLOCK_BYTES // (8 * max(cols, 1)))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def _sq_dists(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances [len(a), len(b)], in one allocation."""
    d = a @ b.T
    d *= -2.0
    d += a_sq[:, None]
    d += b_sq[None, :]
    return np.maximum(d, 0.0, out=d)


def _kth_sq_radius(x: np.ndarray, x_sq: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each point to its k-th nearest other point."""
    out = np.empty(len(x))
    for rows in _row_blocks(len(x), len(x)):
        d = _sq_dists(x[rows], x_sq[rows], x, x_sq)
        # index k of the sorted row: index 0 is the point itself (distance 0)
        out[rows] = np.partition(d, k, axis=1)[:, k]
    return out


def equal_subsets(real: Any, fake: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``real`` and ``fake`` cut to the size of the smaller one by a seeded random subset
    of the larger (kept in its original order)."""
    real, fake = _features(real), _features(fake)
    n = min(len(real), len(fake))
    rng = np.random.default_rng(seed)

    def cut(x: np.ndarray) -> np.ndarray:
        return x if len(x) == n else x[np.sort(rng.choice(len(x), n, replace=False))]

    return cut(real), cut(fake)


def prdc(real: Any, fake: Any, k: int = 5, *, seed: int = 0) -> dict[str, float]:
    """Precision, recall, density and coverage with ``k`` neighbours, on ``prdc_n`` =
    min(len(real), len(fake)) samples of each set (see the module notes)."""
    real, fake = equal_subsets(real, fake, seed)
    n = len(real)
    if n < 2:
        return {**dict.fromkeys(NAMES, float("nan")), "prdc_n": n}
    k = min(k, n - 1)
    centre = real.mean(axis=0)
    real, fake = real - centre, fake - centre
    r_sq, f_sq = np.einsum("ij,ij->i", real, real), np.einsum("ij,ij->i", fake, fake)
    real_radius, fake_radius = _kth_sq_radius(real, r_sq, k), _kth_sq_radius(fake, f_sq, k)
    fake_in_some_real_ball = np.zeros(n, dtype=bool)
    real_balls_per_fake = np.zeros(n, dtype=np.int64)
    covered = recalled = 0
    for rows in _row_blocks(n, n):
        d = _sq_dists(real[rows], r_sq[rows], fake, f_sq)  # [block of reals, fakes]
        inside = d <= real_radius[rows, None]  # fake j inside the ball of real i
        fake_in_some_real_ball |= inside.any(axis=0)
        real_balls_per_fake += inside.sum(axis=0)
        covered += int(inside.any(axis=1).sum())
        recalled += int((d <= fake_radius[None, :]).any(axis=1).sum())
    return {
        "precision": float(fake_in_some_real_ball.mean()),
        "recall": recalled / n,
        "density": float(real_balls_per_fake.sum()) / (k * n),
        "coverage": covered / n,
        "prdc_n": n,
    }


def mean_pairwise_distance(x: Any) -> float:
    """Mean Euclidean distance between distinct points of ``x`` (0 below two points),
    a block of rows at a time."""
    x = _features(x)
    n = len(x)
    if n < 2:
        return 0.0
    x = x - x.mean(axis=0)
    sq = np.einsum("ij,ij->i", x, x)
    total = 0.0
    for rows in _row_blocks(n, n):
        d = _sq_dists(x[rows], sq[rows], x, sq)
        d[np.arange(d.shape[0]), np.arange(rows.start, rows.stop)] = 0.0  # self: exactly 0
        total += float(np.sqrt(d, out=d).sum())
    return total / (n * (n - 1))
