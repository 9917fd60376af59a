"""Defaults scaled to the data, the device and the run length: the shared rule
(:func:`default_scale`) and the helpers a variant's :meth:`ganpipe.Variant.resolve_options`
builds on (all public, re-exported by :mod:`ganpipe.variant` and :mod:`ganpipe`).
Torch-free."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ganpipe.errors import ConfigError

if TYPE_CHECKING:
    from ganpipe.options import Options
    from ganpipe.variant import DataInfo

#: The image size (px) at which CPU defaults reach full size (see :func:`default_scale`).
FULL_SIZE_ON_CPU = 128

#: Below this :func:`default_scale` (a small CPU run: 32 px grayscale gets 1/8) a variant's
#: :meth:`Variant.resolve_options` may switch to a cheaper small-run recipe (fewer D steps
#: per G update, other learning rates); at or above it the papers' values stay.
SMALL_RUN_SCALE = 0.5


def default_scale(info: DataInfo, device: str) -> float:
    """The shared rule of defaults scaled to the data and the device: the fraction of its
    full size a net gets when the user sets none. 1.0 on CUDA (full size at any image size);
    on the CPU (and MPS) ``image_size / 128`` capped at 1, halved for one-channel images,
    at least 1/8: a 32 px grayscale CPU run gets 1/8 (DCGAN widths 64 -> 16, the floor of
    :func:`scaled_width`), a 64 px RGB one 1/2, 128 px and more full size."""
    if device == "cuda":
        return 1.0
    scale = min(1.0, info.image_size / FULL_SIZE_ON_CPU)
    if info.channels == 1:
        scale /= 2
    return max(scale, 1 / 8)


def scaled_width(full: int, scale: float, minimum: int = 16) -> int:
    """``full * scale`` rounded to a multiple of 8 (4 below 16), at least ``minimum``
    (never more than ``full``)."""
    value = full * scale
    step = 8 if value >= 16 else 4
    return min(full, max(minimum, int(round(value / step)) * step))


def scaled_defaults(options: type[Options], scale: float, **minimums: int) -> dict[str, int]:
    """``{key: scaled_width(declared default of key, scale, minimum)}`` for each keyword:
    the widths of a variant's :meth:`Variant.resolve_options`, e.g.
    ``scaled_defaults(MyOptions, scale, g_width=16, d_width=16, max_width=64)``."""
    fields = options.model_fields
    return {k: scaled_width(int(fields[k].default), scale, m) for k, m in minimums.items()}


def require_power_of_two(variant: str, image_size: int, minimum: int = 8) -> None:
    """A one-line :class:`ConfigError` unless ``image_size`` is a power of two
    >= ``minimum`` (for nets that grow or shrink by 2x from 4x4)."""
    n = int(math.log2(image_size)) if image_size > 0 else 0
    if 2**n != image_size or image_size < minimum:
        sizes = ", ".join(str(minimum * 2**i) for i in range(3))
        raise ConfigError(
            f"{variant} needs data.image_size a power of two >= {minimum}, got "
            f"{image_size}; set it to {sizes}, ..."
        )


def fill_unset(opts: Options, values: dict[str, Any]) -> Options:
    """A copy of ``opts`` with ``values`` for the keys the user did not set (those not in
    ``opts.model_fields_set``) that ``opts`` has; the filled keys then count as set, so
    filling twice changes nothing. ``opts`` itself when nothing changes."""
    fields = type(opts).model_fields
    update = {
        k: v
        for k, v in values.items()
        if k in fields and k not in opts.model_fields_set and getattr(opts, k) != v
    }
    return opts.model_copy(update=update) if update else opts
