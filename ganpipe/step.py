"""What the loop hands a variant's ``train_step``: the batch and the :class:`StepContext`
(nets, optimizers, options, helpers, and the variant's checkpointed ``state``). Public
through :mod:`ganpipe`; torch-free at import."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ganpipe.variant import DataInfo


@dataclass
class Batch:
    """One training batch on the training device."""

    images: torch.Tensor  # float [B, C, H, W] in [-1, 1]
    labels: torch.Tensor  # int64 [B]; zeros for unlabelled data


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class StepContext:
    """Handed to ``train_step``: nets, optimizers, options and helpers.

    * ``nets``, ``optimizers``: as built by the variant (on the training device);
    * ``opts``: the variant's options; ``info``: the :class:`DataInfo`; ``step``: the
      number of steps done before this one;
    * ``augment(x)``: the run's differentiable augmentation (DiffAugment); variants apply
      it to every image batch they give the discriminator, real and generated alike;
    * ``update(name, loss)``: zero grads, back-propagate (loss-scaled under fp16 AMP),
      average the gradients across processes in data-parallel runs (``reduce_grads``),
      step;
    * ``state`` (since 0.3): the variant's own state that is not a trained net - a running
      statistic, a phase counter, a schedule's position. It is saved in every checkpoint
      and restored before the first step of a resumed run, so resume stays exact. Values:
      tensors (restored on the training device), numbers, strings, ``None``, and lists,
      tuples and str-keyed dicts of them. Start values with ``ctx.state.setdefault``.
    """

    def __init__(
        self,
        nets: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        opts: Any,
        info: DataInfo,
        device: torch.device,
        *,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        scalers: dict[str, torch.amp.GradScaler] | None = None,
    ):
        self.nets = nets
        self.optimizers = optimizers
        self.opts = opts
        self.info = info
        self.device = device
        self.step = 0
        self.augment = augment or _identity
        self.scalers = scalers or {}
        #: set by the loop in data-parallel runs: averages the gradients of a parameter list
        self.reduce_grads: Callable[[list[nn.Parameter]], None] | None = None
        #: the variant's checkpointed state (see the class docstring)
        self.state: dict[str, Any] = {}

    def update(self, name: str, loss: torch.Tensor) -> None:
        """Zero the grads of optimizer ``name``, back-propagate ``loss``, step."""
        opt = self.optimizers.get(name)
        if opt is None:
            raise KeyError(
                f"ctx.update({name!r}, ...): no optimizer {name!r}; optimizers() returned "
                f"{', '.join(map(repr, self.optimizers)) or 'none'}"
            )
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers.get(name)
        scaled = scaler is not None and scaler.is_enabled()
        (scaler.scale(loss) if scaled else loss).backward()
        if self.reduce_grads is not None:
            self.reduce_grads([p for group in opt.param_groups for p in group["params"]])
        if scaled:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
