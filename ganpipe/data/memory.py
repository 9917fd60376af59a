"""Memory estimates made before training starts (torch-free).

The training loop keeps the whole image set in memory twice (the uint8 set and its
tensor copy on the training device) and makes float32 batches: the real images, the
generated ones and their gradients, about 16 bytes per pixel and channel of one batch.
That is a lower bound (the nets' activations come on top), so a request refused here
could never have run: ``batch_size = 100000000`` is one line at load time, naming the key
to change, instead of an allocation failure with a traceback.

Available memory: ``MemAvailable`` of ``/proc/meminfo``, lowered to a cgroup's limit
(containers), else ``os.sysconf``, else psutil when it is installed; unknown: no check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: bytes per pixel and channel of one training batch (see the module docstring)
BATCH_BYTES_PER_VALUE = 16
#: copies of the uint8 image set the loop holds (the set, its tensor)
DATA_COPIES = 2


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What the cgroup (v2, then v1) still lets this process take, if it is limited."""
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 1 << 60:
            return max(0, cap - used)
    return None


def available_bytes() -> int | None:
    """Memory a new allocation may take now (bytes), or None when it cannot be told."""
    found = _meminfo_available()
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            found = None
    if found is None:
        try:
            import psutil  # only when already installed; not a dependency

            found = int(psutil.virtual_memory().available)
        except Exception:  # noqa: BLE001 - not installed, or no answer
            found = None
    room = _cgroup_room()
    if room is not None:
        found = room if found is None else min(found, room)
    return found


def image_count(opts: Any, base_dir: Path) -> int | None:
    """How many images a built-in source will load, without decoding: ``count``
    (procedural sets) or the image files of ``path`` (times ``per_image`` crops); None
    when it cannot be told (a plugin's source, a folder that cannot be listed)."""
    count = getattr(opts, "count", None)
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    path = getattr(opts, "path", None)
    if not isinstance(path, str | Path):
        return None
    from ganpipe.data.sources import scan_folder

    root = Path(path) if Path(path).is_absolute() else base_dir / path
    try:
        files = scan_folder(root, bool(getattr(opts, "recursive", True)))
    except Exception:  # noqa: BLE001 - DataError, OSError: said when the data loads
        return None
    per_image = getattr(opts, "per_image", 1)
    return len(files) * (per_image if isinstance(per_image, int) else 1)


def kept_size(opts: Any, image_size: int) -> int:
    """The side of the images a built-in source keeps: ``image_size``, or the regions of
    ``patches`` that training crops patches from (at most this; 0: 4 x image_size)."""
    region = getattr(opts, "region", None)
    if isinstance(region, int) and not isinstance(region, bool) and hasattr(opts, "per_image"):
        return max(region or 4 * image_size, image_size)
    return image_size


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n < 2**40 else f"{n / 2**40:.1f} TiB"


@dataclass(frozen=True)
class Estimate:
    data: int  # bytes of the image set (all copies)
    batch: int  # bytes of one batch


def estimate(
    images: int | None,
    image_size: int,
    channels: int,
    batch_size: int,
    processes: int = 1,
    kept: int | None = None,
) -> Estimate:
    """The memory of training on ``images`` images (None: unknown, counted as 0) of
    ``image_size`` px and ``channels`` with ``batch_size``; ``processes`` data-parallel
    CPU processes each hold the image set; ``kept``: the side of the images held when
    larger than the training size (:func:`kept_size`)."""
    values = image_size * image_size * channels
    held = (kept or image_size) ** 2 * channels
    data = (images or 0) * held * DATA_COPIES * max(1, processes)
    return Estimate(data, batch_size * values * BATCH_BYTES_PER_VALUE)


def refusal(
    need: Estimate, available: int | None, batch_size: int, image_size: int, where: str
) -> str | None:
    """A one-line reason, starting with the key path to change, when ``need`` exceeds ``available`` bytes of
    ``where`` ("memory", "GPU memory"); None when it fits or ``available`` is unknown."""
    if available is None or need.data + need.batch <= available:
        return None
    room = f"the {gib(available)} of {where} available"
    if need.batch > available:
        return (
            f"train.batch_size = {batch_size}: one batch of {image_size} px images takes "
            f"about {gib(need.batch)}, more than {room}; lower train.batch_size"
        )
    if need.data > available:
        return (
            f"data.image_size = {image_size}: the training images take about "
            f"{gib(need.data)} in memory, more than {room}; lower data.image_size or use "
            f"fewer images (data; patches: lower data.per_image or data.region)"
        )
    return (
        f"train.batch_size = {batch_size}: the training images ({gib(need.data)}) and one "
        f"batch ({gib(need.batch)}) take more than {room}; lower train.batch_size or "
        f"data.image_size"
    )
