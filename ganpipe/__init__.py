"""ganpipe: train GAN variants on image folders, export to ONNX, generate and upscale.

This module is the public API for plugin authors: everything in :data:`__all__` is kept
stable within a major version (documented in ``docs/plugins.md``); shared layers live in
:mod:`ganpipe.nn`, contract checks for a plugin's own tests in :mod:`ganpipe.testing`.
Nothing here imports torch: ``ganpipe --help``, ``ganpipe plugins`` and the ONNX
inference path stay free of it.
"""

import os
from typing import TYPE_CHECKING

# ONNX Runtime's telemetry stays off unless the user turns it on: ONNX Runtime 1.31 on
# Linux writes a device id and an event database under ~/.cache/Microsoft/DeveloperTools
# at import, which a tool for private photos must not do behind its user's back. The
# variable is read when ONNX Runtime loads; set here because every command (generate,
# upscale, import, the export stage) imports this package first.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

#: public name -> the module defining it; imported on first access (PEP 562), so that
#: ``import ganpipe`` (every command starts with it) costs no pydantic, numpy or torch.
_LAZY = {
    # the marker of a plugin's hook functions, with the specs (pluggy: 10 ms of every
    # command that loads no plugin)
    "hookimpl": "ganpipe.hookspecs",
    "ImageSet": "ganpipe.data.base",
    "DatasetSource": "ganpipe.dataset",
    **dict.fromkeys(
        (
            "ConfigError",
            "DataError",
            "GanpipeError",
            "ModelFileError",
            "PluginCodeError",
            "PluginError",
            "TrainingError",
        ),
        "ganpipe.errors",
    ),
    "ModelCard": "ganpipe.modelcard",
    # read from the package metadata on first use (pyproject.toml holds the one number)
    "__version__": "ganpipe._version",
    "open_image": "ganpipe.imaging.formats",
    "Options": "ganpipe.options",
    **dict.fromkeys(("DatasetRegister", "StageRegister", "VariantRegister"), "ganpipe.registry"),
    **dict.fromkeys(("Stage", "StageContext", "StageResult"), "ganpipe.stage"),
    **dict.fromkeys(("SROptions", "SRVariant"), "ganpipe.sr_variant"),
    **dict.fromkeys(
        (
            "TASKS",
            "SMALL_RUN_SCALE",
            "Batch",
            "DataInfo",
            "ExportSpec",
            "GANOptions",
            "InputSpec",
            "StepContext",
            "Variant",
            "default_scale",
            "fill_unset",
            "require_power_of_two",
            "scaled_defaults",
            "scaled_width",
        ),
        "ganpipe.variant",
    ),
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:  # a renamed name warns and still works (ganpipe._deprecation)
        from ganpipe._deprecation import renamed_attribute

        return renamed_attribute(__name__, name)
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from ganpipe._version import __version__
    from ganpipe.data.base import ImageSet
    from ganpipe.dataset import DatasetSource
    from ganpipe.errors import (
        ConfigError,
        DataError,
        GanpipeError,
        ModelFileError,
        PluginCodeError,
        PluginError,
        TrainingError,
    )
    from ganpipe.hookspecs import hookimpl
    from ganpipe.imaging.formats import open_image
    from ganpipe.modelcard import ModelCard
    from ganpipe.options import Options
    from ganpipe.registry import DatasetRegister, StageRegister, VariantRegister
    from ganpipe.sr_variant import SROptions, SRVariant
    from ganpipe.stage import Stage, StageContext, StageResult
    from ganpipe.variant import (
        SMALL_RUN_SCALE,
        TASKS,
        Batch,
        DataInfo,
        ExportSpec,
        GANOptions,
        InputSpec,
        StepContext,
        Variant,
        default_scale,
        fill_unset,
        require_power_of_two,
        scaled_defaults,
        scaled_width,
    )

__all__ = [
    "SMALL_RUN_SCALE",
    "TASKS",
    "Batch",
    "ConfigError",
    "DataError",
    "DataInfo",
    "DatasetRegister",
    "DatasetSource",
    "ExportSpec",
    "GANOptions",
    "GanpipeError",
    "ImageSet",
    "InputSpec",
    "ModelCard",
    "ModelFileError",
    "Options",
    "PluginCodeError",
    "PluginError",
    "SROptions",
    "SRVariant",
    "Stage",
    "StageContext",
    "StageRegister",
    "StageResult",
    "StepContext",
    "TrainingError",
    "Variant",
    "VariantRegister",
    "__version__",
    "default_scale",
    "fill_unset",
    "hookimpl",
    "open_image",
    "require_power_of_two",
    "scaled_defaults",
    "scaled_width",
]
