"""Export-time rewrites of spandrel helpers whose Python fixes a dynamic axis.

Window-attention nets (SwinIR, Swin2SR, HAT, DRCT, ATD, GRL, DCTLSA, Uformer) recover the
batch in ``window_reverse`` as ``int(n / (h * w / ws / ws))``: a float division that
``torch.export`` can only evaluate by fixing the batch (and the sides) at the example's.
:func:`exportable` swaps in the same arithmetic in integers (``n // ((h // ws) * (w // ws))``,
exact wherever the original is, since the windows tile the padded image) for the duration
of an export, and puts spandrel's own function back afterwards, so the reference that the
parity checks run is spandrel's untouched code.

Nothing here changes what a net computes: the import compares the export with spandrel's
own model at sizes the capture never saw, and refuses it on any difference.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def _pair(size: Any) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


#: the batch of the net's input during an export (set by :func:`exportable`'s hook): the
#: windows of every block come from images of that batch, so ``window_reverse`` need not
#: recover it by division (which costs the shape solver minutes on deep nets: HAT)
_batch: list[Any] = []


def window_reverse(windows: torch.Tensor, window_size: Any, h: int, w: int) -> torch.Tensor:
    """``(n * b, wh, ww, c)`` windows back to ``(b, h, w, c)``: spandrel's
    ``window_reverse`` with the batch taken from the net's input (or, outside an export,
    found by integer division)."""
    wh, ww = _pair(window_size)
    c = windows.shape[-1]
    b = _batch[-1] if _batch else windows.shape[0] // ((h // wh) * (w // ww))
    x = windows.view(b, h // wh, w // ww, wh, ww, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, c)


def window_multiple(net: nn.Module) -> int:
    """The side multiple that ``net``'s attention windows need (its ``window_size``;
    1 for nets without one). Window nets pad to it themselves, so spandrel states no
    multiple for them; the export declares its sides as multiples of it, and the
    upscaler pads the same way the net would (reflect, bottom and right)."""
    size = getattr(net, "window_size", None)
    try:
        wh, ww = _pair(size)
        return max(1, math.lcm(wh, ww))
    except (TypeError, ValueError):
        pass
    # split attention (DAT, RGT, CRAFT): each block pads to its largest split
    splits = [getattr(m, "split_size", None) for m in net.modules()]
    sides = [max(_pair(s)) for s in splits if isinstance(s, (int, tuple, list)) and s]
    return math.lcm(*sides) if sides else 1


def windows2img(windows: torch.Tensor, h_sp: int, w_sp: int, h: int, w: int) -> torch.Tensor:
    """DAT / RGT / CRAFT's name (and argument order) for :func:`window_reverse`."""
    return window_reverse(windows, (h_sp, w_sp), h, w)


#: module-level function name -> (its export-safe replacement, the original's arity)
REWRITES = {"window_reverse": (window_reverse, 4), "windows2img": (windows2img, 5)}


def _modules_of(net: nn.Module) -> set[Any]:
    """The Python modules that define the classes of ``net``'s submodules."""
    names = {type(m).__module__ for m in net.modules()}
    return {sys.modules[n] for n in names if n in sys.modules}


@contextlib.contextmanager
def exportable(net: nn.Module) -> Iterator[list[str]]:
    """For the ``with`` block, the :data:`REWRITES` in the modules of ``net`` that use
    the float form; yields what was rewritten (``module.function``), restores on exit."""
    swapped: list[tuple[Any, str, Any]] = []
    hook = net.register_forward_pre_hook(lambda _, args: _batch.append(args[0].shape[0]))
    try:
        for module in _modules_of(net):
            for name, (replacement, arity) in REWRITES.items():
                original = getattr(module, name, None)
                code = getattr(original, "__code__", None)
                if code is None or "int" not in code.co_names or code.co_argcount != arity:
                    continue  # absent, already integer, or another signature (Uformer's)
                setattr(module, name, replacement)
                swapped.append((module, name, original))
        yield [f"{m.__name__.rsplit('.', 1)[-1]}.{n}" for m, n, _ in swapped]
    finally:
        hook.remove()
        _batch.clear()
        for module, name, original in reversed(swapped):
            setattr(module, name, original)
