"""The dataset-source contract: what ``[data] dataset = "name"`` loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ganpipe.data.base import ImageSet
from ganpipe.options import Options

__all__ = ["DatasetSource", "ImageSet"]


class DatasetSource:
    """Base class of dataset sources.

    Required: ``name`` (the ``data.dataset`` value), ``Options`` (a subclass of
    :class:`ganpipe.Options` for the source's own keys of ``[data]``), :meth:`load` and
    :meth:`fingerprint`. :meth:`class_names` is optional (the default says "unknown").
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]]

    def load(self, opts: Any, image_size: int, channels: int, base_dir: Path) -> ImageSet:
        """Decode the data at ``image_size`` x ``image_size`` with ``channels`` (1 or 3)
        channels; ``base_dir`` is the pipeline.toml's folder (relative paths start there).
        Unreadable files are skipped and listed in ``ImageSet.skipped``; no usable image at
        all is a :class:`ganpipe.DataError`."""
        raise NotImplementedError

    def fingerprint(self, opts: Any, base_dir: Path) -> str:
        """A string that changes when the data changes (cheap: names, sizes, mtimes; no
        decoding), so that a re-run does not skip stages trained on old data."""
        raise NotImplementedError

    def class_names(self, opts: Any, base_dir: Path) -> list[str] | None:
        """The class names :meth:`load` will give, found without decoding (a folder
        listing), so that a variant's data checks (conditional variants need labels) run
        when pipeline.toml is loaded; ``None``: unknown until the data is loaded."""
        return None
