"""Progress bars of the long steps (training, evaluation, export, upscaling, tuning): tqdm
bars with rate and ETA on stderr, shown when stderr is a terminal, and none at all after
:func:`set_quiet` (``ganpipe run --quiet``). The stage summary lines are not affected.

Torch-free; child processes (data-parallel training) inherit the choice through
``GANPIPE_QUIET``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "GANPIPE_QUIET"


def set_quiet(quiet: bool = True) -> None:
    """Turn every progress bar of this process (and of its children) off, or back on."""
    if quiet:
        os.environ[ENV] = "1"
    else:
        os.environ.pop(ENV, None)


def quiet() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def drawn(enabled: bool | None = None) -> bool:
    """Whether a bar made with ``enabled`` would show (tqdm's own rule, see :func:`bar`):
    callers that only count can skip importing tqdm (15 ms: it makes a multiprocessing
    lock) when it would not."""
    if quiet() or enabled is False:
        return False
    return enabled is True or bool(getattr(sys.stderr, "isatty", lambda: False)())


def bar(total: int | None, desc: str, unit: str = "it", enabled: bool | None = None, **kw: Any):
    """A tqdm bar: ``enabled`` None shows it when stderr is a terminal, False never; quiet
    mode wins over both."""
    from tqdm import tqdm

    disable = True if quiet() or enabled is False else (None if enabled is None else False)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=disable,
        dynamic_ncols=True,
        file=sys.stderr,
        **kw,
    )


def track(items: Iterable[T], total: int | None, desc: str, unit: str = "it") -> Iterator[T]:
    """``items``, advancing a bar by one per item."""
    with bar(total, desc, unit) as b:
        for item in items:
            yield item
            b.update(1)
