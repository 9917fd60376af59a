"""The dataset-source contract: what ``[data] dataset = "name"`` loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ganpipe.contract import Declared, hook
from ganpipe.data.base import ImageSet
from ganpipe.options import Options

__all__ = ["DatasetSource", "ImageSet"]


class DatasetSource:
    """Base class of dataset sources.

    Required: ``name`` (the ``data.dataset`` value), ``Options`` (a subclass of
    :class:`ganpipe.Options` for the source's own keys of ``[data]``), :meth:`load` and
    :meth:`fingerprint`. :meth:`class_names` is optional (the default says "unknown").
    """

    name: ClassVar[str] = Declared()  # type: ignore[assignment]
    description: ClassVar[str] = Declared("")  # type: ignore[assignment]
    Options: ClassVar[type[Options]]

    @hook(
        required=True,
        fix="load(opts, image_size, channels, base_dir) must return a ganpipe.ImageSet",
    )
    def load(self, opts: Any, image_size: int, channels: int, base_dir: Path) -> ImageSet:
        """Decode the data at ``image_size`` x ``image_size`` with ``channels`` (1 or 3)
        channels; ``base_dir`` is the pipeline.toml's folder (relative paths start there).
        Unreadable files are skipped and listed in ``ImageSet.skipped``; no usable image at
        all is a :class:`ganpipe.DataError`."""
        raise NotImplementedError

    @hook(required=True, fix="fingerprint(opts, base_dir) must return a str")
    def fingerprint(self, opts: Any, base_dir: Path) -> str:
        """A string that changes when the data changes (cheap: names, sizes, mtimes; no
        decoding), so that a re-run does not skip stages trained on old data."""
        raise NotImplementedError

    @hook(fix="class_names(opts, base_dir) must return a list of str or None")
    def class_names(self, opts: Any, base_dir: Path) -> list[str] | None:
        """The class names :meth:`load` will give, found without decoding (a folder
        listing), so that a variant's data checks (conditional variants need labels) run
        when pipeline.toml is loaded; ``None``: unknown until the data is loaded."""
        return None
