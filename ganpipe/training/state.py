"""What the loop keeps between steps besides the nets and optimizers: the batch order
(:class:`Sampler`), the EMA of the generator net and the RNG states, and the names under
which the loop finds the generator and checkpoints its EMA.

The names come from the variant (:attr:`ganpipe.Variant.generator_net`), never from a
hard-coded ``"G"``: a variant whose generator is called ``"gen"`` has its EMA checkpointed
as ``"gen_ema"``; the built-ins keep ``"G"`` / ``"G_ema"``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

#: The default of :attr:`ganpipe.Variant.generator_net`, for plugin variants that are not
#: derived from :class:`ganpipe.Variant` and do not declare one.
DEFAULT_GENERATOR_NET = "G"


def generator_net(variant: Any) -> str:
    """The name of the variant's net that makes images (sampled, EMA'd, exported)."""
    return getattr(variant, "generator_net", DEFAULT_GENERATOR_NET)


def ema_key(variant: Any) -> str:
    """The checkpoint name of the EMA of the variant's generator net (``"G_ema"`` for
    the built-ins)."""
    return f"{generator_net(variant)}_ema"


class Sampler:
    """Stateless batching: the indices of step ``s`` depend only on (seed, s), so resuming
    at any step reproduces the exact batches of an uninterrupted run."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = max(1, n // batch_size)
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, j = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=g)
            if self.n < self.batch_size:
                perm = perm.repeat(math.ceil(self.batch_size / self.n))
            self._epoch, self._perm = epoch, perm
        return self._perm[j * self.batch_size : (j + 1) * self.batch_size]


def make_ema(net: torch.nn.Module) -> torch.nn.Module:
    """A frozen eval-mode copy of ``net`` to average into."""
    return copy.deepcopy(net).eval().requires_grad_(False)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * model`` for the parameters, buffers copied; the
    loop's ``beta`` ramps up to ``train.ema_decay`` (:mod:`ganpipe.training.ema`)."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - beta)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def rng_state() -> dict[str, Any]:
    """This process's torch (and CUDA) RNG states, for the checkpoint."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
