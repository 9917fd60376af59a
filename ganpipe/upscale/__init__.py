"""Batch super-resolution (and CycleGAN translation) of image files and folders with an
exported ``.onnx`` - ONNX Runtime, numpy and Pillow; never torch.

The library entry is :func:`upscale_path`, which takes the same :class:`UpscaleOptions`
as ``ganpipe upscale`` and the ``[upscale]`` stage, and returns an :class:`UpscaleSummary`.
One concern per module: :mod:`~ganpipe.upscale.options` (the options, defined once),
:mod:`~ganpipe.upscale.model` (the image-to-image runner and its model contract),
:mod:`~ganpipe.upscale.cache` (released weights, converted once),
:mod:`~ganpipe.upscale.ensemble` (ensembles, self-ensemble),
:mod:`~ganpipe.upscale.tiling` (tiles, out-of-memory back-off),
:mod:`~ganpipe.upscale.alpha` (transparency), :mod:`~ganpipe.upscale.plan` (which file
goes where) and :mod:`~ganpipe.upscale.batch` (the overlapped decode -> upscale -> encode
loop). Reading and writing images is :mod:`ganpipe.imaging`'s.

The names below load on first access (PEP 562), so that importing the options alone (the
stage registry, ``ganpipe upscale --help``) stays light.
"""

from typing import TYPE_CHECKING

__all__ = ["UpscaleOptions", "UpscaleSummary", "upscale_path"]

_LAZY = {
    "UpscaleOptions": "ganpipe.upscale.options",
    "UpscaleSummary": "ganpipe.upscale.batch",
    "upscale_path": "ganpipe.upscale.batch",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ganpipe.upscale' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from ganpipe.upscale.batch import UpscaleSummary, upscale_path
    from ganpipe.upscale.options import UpscaleOptions
