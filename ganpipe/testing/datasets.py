"""The dataset-source contract, checked on one source object (torch-free)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ganpipe.conformance import dataset_problems
from ganpipe.testing._checker import (
    Checker,
    CheckReport,
    check_conformance,
    check_options,
    scratch,
)

#: What ``change`` may be: option keys that select other data, or a function that changes
#: the files under ``base_dir`` (it receives ``base_dir``).
Change = dict[str, Any] | Callable[[Path], Any]


def _listing(base_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``base_dir`` with its size and mtime."""
    out = {}
    for path in sorted(base_dir.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(base_dir))] = (st.st_size, st.st_mtime_ns)
    return out


def check_dataset(
    source: Any,
    *,
    tmp_path: str | Path | None = None,
    options: dict[str, Any] | None = None,
    base_dir: str | Path | None = None,
    image_size: int = 16,
    channels: tuple[int, ...] = (3, 1),
    change: Change | None = None,
) -> CheckReport:
    """Check the contract of dataset source ``source`` (an object, not a name); raise
    :class:`~ganpipe.testing.ContractError` naming the source and the step that broke.

    ``options``: the source's keys of ``[data]`` (say, the ``path`` of test data);
    ``base_dir``: the folder relative paths start from, as the pipeline.toml's folder
    (default: ``tmp_path``); ``change``: a way to ask for other data, to check that the
    fingerprint follows it: option keys (``{"seed": 1}``), or a function that changes the
    files under ``base_dir`` (called with it, after the other checks).

    Checked: the structure (:func:`ganpipe.conformance.dataset_problems`); the options
    (valid, round-trip, unknown keys refused); ``load`` at ``image_size`` for each of
    ``channels`` returns an :class:`ganpipe.ImageSet` of that size (or larger images with
    ``patch_size`` = ``image_size``, which training crops patches of) and channels with
    labels naming its classes, the same arrays twice (runs must be reproducible) and a
    set that ``split`` can hold images out of; ``class_names`` (when it knows them) equals
    what ``load`` gives; ``fingerprint`` is a non-empty string, the same on every call,
    different for changed data; and nothing under ``base_dir`` is written.
    """
    c = Checker("dataset", source)
    check_conformance(c, dataset_problems(source))
    given = dict(options or {})
    opts = check_options(c, source.Options, given)
    with scratch(tmp_path, "dataset") as tmp:
        base = Path(base_dir) if base_dir is not None else tmp
        before = _listing(base)
        first = None
        for ch in channels:
            data = _check_load(c, source, opts, image_size, ch, base)
            first = first or data
        _check_class_names(c, source, opts, base, first)
        fingerprint = _check_fingerprint(c, source, opts, base, given)
        with c.step("read only"):
            after = _listing(base)
            c.expect(
                after == before,
                f"load or fingerprint changed files under {base}: "
                f"{sorted(set(after.items()) ^ set(before.items()))[:3]}; sources must only read",
            )
        if change is not None:
            _check_change(c, source, given, base, fingerprint, change)
    return c.report


def _check_load(c: Checker, source, opts, size: int, channels: int, base: Path):
    from ganpipe.data.base import ImageSet

    with c.step(f"load {size}px {channels}ch"):
        data = source.load(opts, size, channels, base)
        c.expect(isinstance(data, ImageSet), f"load returned {type(data).__name__}, not ImageSet")
        n, h, w, ch = data.images.shape
        fits = (h, w) == (size, size) if data.patch_size is None else min(h, w) >= size
        c.expect(
            fits and ch == channels and data.image_size == size and n >= 1,
            f"load(image_size={size}, channels={channels}) gave images of shape "
            f"{data.images.shape} (patch_size {data.patch_size}), expected (n >= 1, "
            f"{size}, {size}, {channels}), or larger with patch_size = {size}",
        )
        c.expect(data.images.dtype == np.uint8, f"images are {data.images.dtype}, not uint8")
        names = data.class_names
        c.expect(
            isinstance(names, list) and names and all(isinstance(n, str) for n in names),
            f"class_names must be a non-empty list of str, got {names!r}",
        )
        c.expect(len(set(names)) == len(names), f"class_names repeat: {names}")
        c.expect(
            len(data.labels) == len(data)
            and (data.labels >= 0).all()
            and (data.labels < len(names)).all(),
            f"labels must index class_names ({len(names)} classes), got "
            f"{np.unique(data.labels).tolist()}",
        )
        c.expect(
            all(isinstance(s, tuple) and len(s) == 2 for s in data.skipped),
            f"skipped must list (file, reason) pairs, got {data.skipped[:2]!r}",
        )
        again = source.load(opts, size, channels, base)
        c.expect(
            np.array_equal(again.images, data.images)
            and np.array_equal(again.labels, data.labels)
            and again.class_names == data.class_names,
            "two loads with the same options gave different images or labels; seed "
            "every random choice from the options",
        )
        if len(data) > 1:
            train, held = data.split(0.25, 0)
            c.expect(
                len(train) + len(held) == len(data) and len(train) >= 1,
                f"split(0.25) gave {len(train)} + {len(held)} of {len(data)} images",
            )
    return data


def _check_class_names(c: Checker, source, opts, base: Path, data) -> None:
    with c.step("class_names"):
        lister = getattr(source, "class_names", None)
        names = lister(opts, base) if callable(lister) else None
        if names is not None:
            c.expect(
                list(names) == data.class_names,
                f"class_names() = {list(names)} but load gives {data.class_names}; the "
                f"variants' data checks run on the former before anything is loaded",
            )


def _check_fingerprint(c: Checker, source, opts, base: Path, given: dict) -> str:
    with c.step("fingerprint"):
        fp = source.fingerprint(opts, base)
        c.expect(isinstance(fp, str) and fp, f"fingerprint must be a non-empty str, got {fp!r}")
        same = source.fingerprint(source.Options(**given), base)
        c.expect(
            same == fp,
            f"fingerprint is not stable: {fp!r}, then {same!r} for the same options "
            f"and files; it must not depend on time, random numbers or object ids",
        )
    return fp


def _check_change(c: Checker, source, given: dict, base: Path, fp: str, change: Change) -> None:
    with c.step("fingerprint follows the data"):
        if callable(change):
            change(base)
            opts, what = source.Options(**given), "after the files changed"
        else:
            opts, what = source.Options(**{**given, **change}), f"with {change!r}"
        new = source.fingerprint(opts, base)
        c.expect(
            new != fp,
            f"fingerprint is unchanged {what}; a re-run would reuse stages trained on the old data",
        )
