"""The EMA's schedule, in generator updates (torch-free: the train stage checks it when a
pipeline loads; the averaging itself is :func:`ganpipe.training.state.update_ema`).

StyleGAN2-ADA's rule (``training_loop.py``): the EMA keeps ``beta = 0.5 ** (batch /
ema_nimg)`` of itself at each generator update, where the half-life ``ema_nimg`` (images)
is capped by ``ema_rampup`` times the images seen so far. With a fixed batch that is, in
generator updates,

* ``train.ema_decay`` - the target: ``decay = 0.5 ** (1 / half_life)``, a window of about
  ``1 / (1 - decay)`` updates;
* ``train.ema_rampup`` - the half-life is at most ``ema_rampup * done``, ``done`` the
  updates before this one: the first update copies the live weights (``beta = 0``, no
  random init left), the window then widens with the run until it reaches ``decay``;
  0 turns the ramp off (plain ``decay`` from the first update).

The EMA is updated once per generator update (not per ``train_step`` call: variants with
several D updates per G update would otherwise get ``decay ** n``). ``beta`` depends only
on ``done``, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ganpipe.training.options import TrainOptions

#: readable decays, for the value the load-time warning suggests
READABLE = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999)
#: a window longer than this share of ``train.steps`` cannot average over the run: with a
#: window of steps/4 a plain EMA still holds e^-4 (2 %) of its start at the end, longer
#: ones more (steps/2: 14 %, steps: 37 %), and the ramp never reaches such a window
WARN_SHARE = 0.25
#: the share of ``train.steps`` the suggested window takes (a tenth: the start is e^-10)
SUGGEST_SHARE = 0.1


def beta(decay: float, rampup: float, done: int) -> float:
    """The share of itself the EMA keeps at the generator update after ``done`` others:
    ``decay``, or less while the ramp caps the half-life at ``rampup * done`` updates."""
    if decay <= 0.0:
        return 0.0
    if rampup <= 0.0:
        return decay
    half_life = min(math.log(0.5) / math.log(decay), rampup * done)
    return 0.5 ** (1.0 / half_life) if half_life > 0 else 0.0


def ema_beta(opts: TrainOptions, done: int) -> float:
    """:func:`beta` for the ``[train]`` options ``opts`` (the loop's call)."""
    return beta(opts.ema_decay, opts.ema_rampup, done)


def window(decay: float) -> float:
    """The number of updates an EMA with ``decay`` averages over, ``1 / (1 - decay)``."""
    return 1.0 / (1.0 - decay)


def suggested_decay(steps: int) -> float:
    """The largest readable decay whose window is at most a tenth of ``steps`` (0: off,
    when even 0.5 is too long)."""
    fits = [d for d in READABLE if round(window(d), 6) <= SUGGEST_SHARE * steps]
    return max(fits) if fits else 0.0


def window_warning(decay: float, rampup: float, steps: int) -> str | None:
    """One loud line when ``decay``'s window is longer than a quarter of ``steps``
    generator updates (it cannot average over the run), naming a value that fits; None
    otherwise (and without an EMA)."""
    if decay <= 0.0 or window(decay) <= WARN_SHARE * steps:
        return None
    if rampup > 0:
        last = window(beta(decay, rampup, steps - 1)) if steps > 1 else 1.0
        effect = (
            f"train.ema_rampup = {rampup:g} keeps it to the last ~{last:.0f} update(s) at "
            f"the end, so the decay set is never reached"
        )
    else:
        effect = f"{decay**steps:.0%} of the exported G is still its random init at the end"
    fit = suggested_decay(steps)
    fix = (
        f"set train.ema_decay = {fit:g} (a window of {window(fit):.0f}, at most a tenth of "
        f"the steps)"
        if fit > 0
        else "set train.ema_decay = 0 (off) for so short a run"
    )
    return (
        f"warning: train.ema_decay = {decay:g} averages over ~{window(decay):.0f} generator "
        f"updates, more than a quarter of train.steps = {steps}: {effect}; {fix}"
    )


def warnings(opts: TrainOptions) -> list[str]:
    """:func:`window_warning` for the ``[train]`` options ``opts``, as a list (the train
    stage prints these with the other load-time warnings)."""
    line = window_warning(opts.ema_decay, opts.ema_rampup, opts.steps)
    return [line] if line else []
