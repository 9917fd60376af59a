"""A model held to its card: what the card declares is checked before the model runs, and
what the model returns is checked before anything is written.

A model file can lie: a card that declares a latent of 2^40 values, an output of 7
channels against a card of 3, an output that is no image at all. Unchecked, such a model
ends in a traceback far from its cause (NumPy failing to allocate terabytes, Pillow
refusing an array). Here each is one :class:`~ganpipe.errors.ModelFileError` naming the
model, what is wrong and the fix:

* **declared sizes** against :func:`memory_budget` (half this machine's memory): a
  generator's inputs and output per image, an image model's smallest input (its
  ``fixed_tile``, ``min_size`` or ``tile_multiple``); refused before anything runs;
* **the card against the graph**: a generator's inputs by name and fixed dimensions;
* **outputs**: float, ``(batch, channels, height, width)`` with the card's channels
  (:func:`check_images`); non-finite values are found per image (:func:`finite_items`)
  and the caller decides (``generate`` skips those images; an image model's output is a
  failure of that file). Values outside the card's ``value_range`` are clipped, which is
  what the range means for an image (generators' ``tanh`` and SR nets overshoot a
  little).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganpipe.errors import ModelFileError

#: bytes assumed where the machine's memory cannot be read
FALLBACK_MEMORY = 8 << 30
#: bytes per value of the tensors ganpipe feeds and reads (float32)
VALUE_BYTES = 4
REEXPORT = "re-export it with ganpipe (or fix the card)"


def memory_budget() -> int:
    """Bytes one batch's inputs and outputs may take: half the memory of this machine,
    or of the cgroup (container) limit where that is smaller."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = FALLBACK_MEMORY
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return max(total, 1 << 20) // 2


def size_text(n: float) -> str:
    """``4.0 TiB``, ``512 MiB``, ``12 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover - the loop returns


def _over_budget(name: str, what: str, per_item: int, batch: int, budget: int) -> None:
    """Refuse ``per_item`` bytes (one image) or ``per_item * batch`` over ``budget``."""
    room = f"this machine's budget of {size_text(budget)} (half its memory)"
    if per_item > budget:
        raise ModelFileError(
            f"{name}: its model card declares {what}: {size_text(per_item)} for one image, "
            f"more than {room}; the card is wrong or the model too large for this "
            f"machine: {REEXPORT}"
        )
    if per_item * batch > budget:
        fits = max(1, budget // per_item)
        raise ModelFileError(
            f"{name}: a batch of {batch} needs {size_text(per_item * batch)} for {what}, "
            f"more than {room}; use --batch-size {fits} or less"
        )


def check_generator(
    name: str, card: Any, graph_inputs: Sequence[Any], batch: int, count: int | None = None
) -> None:
    """A generator's card against its graph and the memory budget, before it runs:
    every declared input exists in the graph with the declared fixed dimensions (batch
    first), every graph input is declared, and one ``batch`` of inputs and outputs fits
    :func:`memory_budget`, as do the inputs of all ``count`` images (drawn at once, so
    that a seed gives the same images at any batch size). ``graph_inputs``: the
    session's ``get_inputs()``."""
    graph = {i.name: list(i.shape or []) for i in graph_inputs}
    declared = {s.name for s in card.inputs}
    for spec in card.inputs:
        if any(not isinstance(d, int) or d < 1 for d in spec.shape):
            raise ModelFileError(
                f"{name}: its model card declares input {spec.name!r} of shape "
                f"{list(spec.shape)}, which has an empty or negative side; {REEXPORT}"
            )
        if spec.name not in graph:
            raise ModelFileError(
                f"{name}: its model card declares input {spec.name!r}, which the graph does "
                f"not have (graph inputs: {', '.join(graph) or 'none'}); {REEXPORT}"
            )
        dims = graph[spec.name]
        want = [None, *spec.shape]
        if dims and (
            len(dims) != len(want)
            or any(
                isinstance(d, int) and w is not None and d != w
                for d, w in zip(dims, want, strict=True)
            )
        ):
            shown = "x".join(str(d) if isinstance(d, int) else "?" for d in dims)
            raise ModelFileError(
                f"{name}: its model card declares input {spec.name!r} as "
                f"batch x {'x'.join(map(str, spec.shape)) or '1'}, but the graph takes "
                f"{shown}; {REEXPORT}"
            )
    missing = [n for n in graph if n not in declared]
    if missing:
        raise ModelFileError(
            f"{name}: graph input {missing[0]!r} is not in its model card, so ganpipe "
            f"cannot feed it; {REEXPORT}"
        )
    budget = memory_budget()
    for spec in card.inputs:
        what = f"input {spec.name!r} of {math.prod(spec.shape):,} values"
        _over_budget(name, what, math.prod(spec.shape) * VALUE_BYTES, batch, budget)
    per_image = sum(math.prod(s.shape) for s in card.inputs) * VALUE_BYTES
    if count is not None and per_image * count > budget:
        raise ModelFileError(
            f"{name}: the inputs of {count:,} images need {size_text(per_image * count)}, "
            f"more than this machine's budget of {size_text(budget)} (half its memory); "
            f"generate fewer per run (-n {max(1, budget // per_image):,} or less) and "
            f"use another --seed for each run"
        )
    if card.image_size:
        side = card.image_size
        _over_budget(
            name,
            f"{side}x{side} images of {card.channels} channels",
            card.channels * side * side * VALUE_BYTES,
            batch,
            budget,
        )


def check_images(name: str, y: Any, batch: int, channels: int) -> np.ndarray:
    """A generator's output as float32 ``(batch, channels, height, width)``; anything
    else is a one-line :class:`ModelFileError` (the model or its card is wrong)."""
    shape = tuple(getattr(y, "shape", ()))
    dtype = getattr(y, "dtype", None)
    if dtype is None or not np.issubdtype(dtype, np.floating):
        raise ModelFileError(f"{name}: its output is of type {dtype}, not float images; {REEXPORT}")
    if len(shape) != 4 or shape[0] != batch or min(shape) < 1:
        raise ModelFileError(
            f"{name}: its output has shape {shape} for a batch of {batch}, not images "
            f"(batch, channels, height, width); {REEXPORT}"
        )
    if shape[1] != channels:
        raise ModelFileError(
            f"{name}: its output has {shape[1]} channels (shape {shape}) where its model "
            f"card says channels = {channels}; {REEXPORT}"
        )
    return np.asarray(y, dtype=np.float32)


def finite_items(y: np.ndarray) -> np.ndarray:
    """Per item of the batch ``y``: True when all its values are finite. One sum per item
    first (cheap); only items whose sum is not finite are looked at closely (large
    finite values can overflow the sum)."""
    sums = y.reshape(len(y), -1).sum(axis=1, dtype=np.float64)
    ok = np.isfinite(sums)
    for i in np.flatnonzero(~ok):
        ok[i] = bool(np.isfinite(y[i]).all())
    return ok


def check_image_model(name: str, card: Any) -> None:
    """An image model's smallest input (every input is padded up to its ``fixed_tile``,
    ``min_size`` and ``tile_multiple``) and that input's output against the budget."""
    fields = {"fixed_tile": card.fixed_tile or 0, "min_size": card.min_size}
    fields["tile_multiple"] = card.tile_multiple
    field, side = max(fields.items(), key=lambda kv: kv[1])
    scale = card.scale or 1
    per_item = 3 * side * side * (1 + scale * scale) * VALUE_BYTES
    budget = memory_budget()
    if per_item > budget:
        raise ModelFileError(
            f"{name}: its model card makes every input at least {side}x{side} ({field}): "
            f"{size_text(per_item)} for one tile and its x{scale} output, more than this "
            f"machine's budget of {size_text(budget)} (half its memory); the card is "
            f"wrong: re-import or re-export the model"
        )
