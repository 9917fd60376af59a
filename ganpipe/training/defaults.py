"""The loop's side of defaults scaled to the data and the device, of what a step is and of
schedules that finish (torch-free: the train stage calls it when a pipeline loads).

* :func:`resolve` - the variant's options with the defaults the user did not set filled in
  (:meth:`ganpipe.Variant.resolve_options`; variants not derived from
  :class:`ganpipe.Variant` have the base class's rule from the registry's adapter,
  :mod:`ganpipe.variant_adapter`);
* :func:`updates_per_step` - ``train_step`` calls per step (one generator update);
* :func:`check_schedule` - schedules that cannot complete within ``train.steps``: refused
  (a :class:`~ganpipe.errors.ConfigError` naming the key) when the value is a default, one
  warning each when the user set it;
* :func:`describe` - the one line the run prints: which values were scaled, and to what.
"""

from __future__ import annotations

from typing import Any

from ganpipe.errors import ConfigError
from ganpipe.variant import DataInfo, Variant


def resolve(variant: Variant, opts: Any, info: DataInfo, device: str, steps: int) -> Any:
    """``opts`` resolved for ``info`` on ``device`` (a kind: cpu, cuda, mps) for ``steps``
    generator updates; idempotent."""
    return variant.resolve_options(opts, info, device, steps)


def updates_per_step(variant: Variant, opts: Any) -> int:
    """``train_step`` calls per generator update."""
    n = variant.updates_per_step(opts)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(
            f"variant {variant.name!r}: updates_per_step returned {n!r}; it must be an "
            f"int >= 1 (a bug in the variant)"
        )
    return n


def check_schedule(
    variant: Variant, user: Any, resolved: Any, info: DataInfo, steps: int
) -> list[str]:
    """Schedules of ``resolved`` that cannot complete within ``steps``: a ConfigError for
    the first whose key the user did not set (``user``: the options as written), else the
    warnings (one line each) for those the user set on purpose."""
    problems = variant.schedule_problems(resolved, info, steps)
    warnings = []
    for key, text in problems.items():
        if key in user.model_fields_set:
            warnings.append(f"warning: model.{key} (set in [model]): {text}")
        else:
            raise ConfigError(f"model.{key}: {text}")
    return warnings


def scaled_values(user: Any, resolved: Any) -> dict[str, Any]:
    """The options whose value resolution changed (key -> resolved value)."""
    return {
        k: getattr(resolved, k)
        for k in type(resolved).model_fields
        if k not in user.model_fields_set and getattr(user, k) != getattr(resolved, k)
    }


def describe(user: Any, resolved: Any, info: DataInfo, device: str) -> str | None:
    """``model: g_width 64 -> 16, ... (defaults scaled to 32 px, 1 channel, cpu)``, or
    None when nothing was scaled."""
    changed = scaled_values(user, resolved)
    if not changed:
        return None
    parts = ", ".join(f"{k} {getattr(user, k)} -> {v}" for k, v in changed.items())
    chan = "1 channel" if info.channels == 1 else f"{info.channels} channels"
    return (
        f"model: {parts} (defaults scaled to {info.image_size} px, {chan}, {device}, "
        f"train.steps; set them in [model] to choose)"
    )


def describe_train(applied: dict[str, Any], variant: str) -> str | None:
    """``train: batch_size 16, ema_decay 0.999 (recommended by variant 'x'; ...)`` for the
    ``[train]`` values the variant's ``train_defaults`` gave (:mod:`ganpipe.config`), or
    None when it gave none."""
    if not applied:
        return None
    parts = ", ".join(f"{k} {v}" for k, v in applied.items())
    return (
        f"train: {parts} (recommended by variant {variant!r} for keys not set; set them "
        f"in [train] to choose)"
    )
