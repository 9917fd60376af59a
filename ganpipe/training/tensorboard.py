"""TensorBoard logging of the training loop (``[train] tensorboard = true``).

The losses, the sample diversity and the throughput of each metrics-log line, and every
sample grid, go to ``train/tensorboard/`` (``tensorboard --logdir runs/<name>/train``).
Only process 0 of a data-parallel run writes. It needs the ``tensorboard`` package
(``pip install "ganpipe[tensorboard]"``); the pipeline checks for it when it is loaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from ganpipe.errors import ConfigError

#: the folder under the train stage's folder
FOLDER = "tensorboard"
#: metrics-log keys that are not losses, and their TensorBoard tags
TAGS = {"diversity": "diversity", "images_per_s": "perf/images_per_s"}
MISSING = (
    "train.tensorboard = true needs the tensorboard package; install it with "
    "pip install 'ganpipe[tensorboard]' (or set tensorboard = false)"
)


def check_available() -> None:
    """A one-line :class:`ConfigError` when the ``tensorboard`` package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(MISSING)


class TensorBoardLog:
    """A ``SummaryWriter`` on ``folder``; ``start``: the step a resumed run continues from
    (events of the interrupted run after it are discarded, as the metrics log's are)."""

    def __init__(self, folder: Path, start: int = 0):
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(str(self.folder), purge_step=start or None)

    def scalars(self, record: dict[str, float]) -> None:
        """A metrics-log line: its losses as ``loss/<name>``, diversity and throughput."""
        step = int(record["step"])
        for key, value in record.items():
            if key != "step":
                self.writer.add_scalar(TAGS.get(key, f"loss/{key}"), float(value), step)

    def grid(self, step: int, path: Path) -> None:
        """The sample grid written at ``step`` (a PNG), as image ``samples``."""
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        self.writer.add_image("samples", arr, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_log(enabled: bool, train_dir: Path, start: int) -> TensorBoardLog | None:
    """The log of a run (``None`` when ``enabled`` is false)."""
    return TensorBoardLog(Path(train_dir) / FOLDER, start) if enabled else None
