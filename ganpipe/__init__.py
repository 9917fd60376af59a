"""ganpipe: train GAN variants on image folders, export to ONNX, generate and upscale.

This module is the public API for plugin authors: everything in :data:`__all__` is kept
stable within a major version (documented in ``docs/plugins.md``); shared layers live in
:mod:`ganpipe.nn`, contract checks for a plugin's own tests in :mod:`ganpipe.testing`.
Nothing here imports torch: ``ganpipe --help``, ``ganpipe plugins`` and the ONNX
inference path stay free of it.
"""

import pluggy

__version__ = "0.2.0"

#: Marks the hook functions of a plugin module (see :mod:`ganpipe.hookspecs`).
hookimpl = pluggy.HookimplMarker("ganpipe")

from ganpipe.data.base import ImageSet  # noqa: E402
from ganpipe.dataset import DatasetSource  # noqa: E402
from ganpipe.errors import (  # noqa: E402
    ConfigError,
    DataError,
    GanpipeError,
    ModelFileError,
    PluginError,
    TrainingError,
)
from ganpipe.modelcard import ModelCard  # noqa: E402
from ganpipe.options import Options  # noqa: E402
from ganpipe.registry import DatasetRegister, StageRegister, VariantRegister  # noqa: E402
from ganpipe.stage import Stage, StageContext, StageResult  # noqa: E402
from ganpipe.variant import (  # noqa: E402
    TASKS,
    Batch,
    DataInfo,
    ExportSpec,
    GANOptions,
    InputSpec,
    StepContext,
    Variant,
)

__all__ = [
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
    "PluginError",
    "Stage",
    "StageContext",
    "StageRegister",
    "StageResult",
    "StepContext",
    "TrainingError",
    "Variant",
    "VariantRegister",
    "__version__",
    "hookimpl",
]
