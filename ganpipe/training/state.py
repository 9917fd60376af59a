"""What the loop keeps between steps besides the nets and optimizers: the batch order
(:class:`Sampler`), the EMA of the generator net, the RNG states, the variant's own
``ctx.state`` (packed for the checkpoint), and the names under which the loop finds the
generator and checkpoints its EMA.

The names come from the variant (:attr:`ganpipe.Variant.generator_net`), never from a
hard-coded ``"G"``: a variant whose generator is called ``"gen"`` has its EMA checkpointed
as ``"gen_ema"``; the built-ins keep ``"G"`` / ``"G_ema"``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from ganpipe.errors import TrainingError


def generator_net(variant: Any) -> str:
    """The name of the variant's net that makes images (sampled, EMA'd, exported)."""
    return variant.generator_net


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


#: what a variant's ``ctx.state`` may hold besides tensors and containers (what
#: ``torch.load(weights_only=True)`` reads back)
_PLAIN = (bool, int, float, str, type(None))


def pack_variant_state(state: dict[str, Any], variant: str) -> dict[str, Any]:
    """The variant's ``ctx.state`` as the checkpoint keeps it: tensors detached and on the
    CPU; anything a checkpoint cannot hold is a one-line :class:`TrainingError` naming
    the key and the fix."""

    def pack(value: Any, where: str) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu").clone()
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, list | tuple):
            return type(value)(pack(v, f"{where}[{i}]") for i, v in enumerate(value))
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {k: pack(v, f"{where}[{k!r}]") for k, v in value.items()}
        raise TrainingError(
            f"variant {variant!r}: ctx.state{where} holds a {type(value).__name__}, which a "
            f"checkpoint cannot keep; store tensors, numbers, strings, None, and lists, "
            f"tuples or str-keyed dicts of them"
        )

    return {k: pack(v, f"[{k!r}]") for k, v in state.items()}


def unpack_variant_state(saved: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A checkpoint's variant state for ``ctx.state``: tensors on the training device."""

    def unpack(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, list | tuple):
            return type(value)(unpack(v) for v in value)
        if isinstance(value, dict):
            return {k: unpack(v) for k, v in value.items()}
        return value

    return {k: unpack(v) for k, v in saved.items()}
