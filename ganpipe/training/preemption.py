"""Preemption of training: on SIGTERM / SIGINT the loop finishes the current step, writes
a checkpoint and raises :class:`ganpipe.signals.Interrupted` naming it; the same command
resumes from it exactly (the checkpoint is an ordinary one: step, optimizers, EMA, RNG).

With ``devices = N`` the signal may reach any of the processes (the parent passes what it
gets on to all of them): after every step they agree on it with one tiny ``all_reduce``
(the largest signal number wins), so all of them stop after the same step and take part
in the one checkpoint.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ganpipe import signals


def agreed_stop(world: int, device: torch.device) -> int | None:
    """The signal to stop on after this step, the same in every process (None: go on)."""
    local = signals.requested() or 0
    if world > 1:
        flag = torch.tensor([local], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        local = int(flag.item())
    return local or None


def stop(trainer, step: int, signum: int, last_ckpt, saved_at: int | None):
    """Write the checkpoint of ``step`` (unless it was just written) and raise
    :class:`~ganpipe.signals.Interrupted`. Signals that come meanwhile are ignored."""
    signals.consume()  # later signals: ignored (the handler only records, and not now)
    path = last_ckpt if saved_at == step else trainer.save(step)
    raise signals.Interrupted(signum, step=step, checkpoint=path)
