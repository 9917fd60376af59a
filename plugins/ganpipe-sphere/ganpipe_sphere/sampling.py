"""The numpy sampler of the ``sphere`` input kind: points uniform on the sphere of radius
``sqrt(d)`` in ``d`` dimensions (the last axis of the input's shape), where a standard
normal ``z`` concentrates, so a generator sees codes of one norm (White 2016, *Sampling
Generative Networks*). ``ganpipe generate`` draws it without torch; training draws it the
same way, from a seed of the run's torch generator."""

from __future__ import annotations

import numpy as np


def sphere(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """``n`` points of shape ``shape``, each uniform on the sphere of radius
    ``sqrt(shape[-1])`` (normal draws scaled to that norm: uniform by symmetry)."""
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12) * np.float32(np.sqrt(shape[-1]))
