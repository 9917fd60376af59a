"""Import released super-resolution weights (Real-ESRGAN / BasicSR, and through spandrel the
community's SwinIR, HAT, SPAN, ...) and export them to ONNX.

One concern per module:

* :mod:`~ganpipe.weights.read`: safe reading (``torch.load(..., weights_only=True)`` only,
  ``.safetensors`` with safetensors) and unwrapping (``params_ema`` / ``params``, a
  ``module.`` prefix);
* :mod:`~ganpipe.weights.detect`: the architecture and its sizes from the keys and shapes
  (RRDBNet or SRVGGNetCompact), after renaming the original ESRGAN layouts to BasicSR's;
* :mod:`~ganpipe.weights.spandrel_arch`: every other architecture (SwinIR, HAT, DAT, SPAN,
  RealCUGAN, ...) detected and built by spandrel (optional: ``ganpipe[spandrel]``);
* :mod:`~ganpipe.weights.convert`: the net loaded strictly, exported to ONNX (parity-checked,
  with a model card) and optionally converted to float16;
* :mod:`~ganpipe.weights.interpolate`: denoise strength, Real-ESRGAN's interpolation of two
  weights of one net (``S * a + (1 - S) * b``).

The names below are the public API (``from ganpipe.weights import import_weights``).
"""

from __future__ import annotations

from ganpipe.weights.convert import (
    AnyArch,
    ImportResult,
    export_net,
    export_spec,
    import_weights,
    load_model,
    model_from_state,
    to_float16,
)
from ganpipe.weights.detect import (
    COMPACT_KEYS,
    RRDB_KEYS,
    Architecture,
    detect_architecture,
    is_realesrgan,
    to_basicsr_layout,
)
from ganpipe.weights.interpolate import import_interpolated, load_interpolated, mix_states
from ganpipe.weights.read import PTH_SUFFIXES, read_state_dict, unwrap
from ganpipe.weights.spandrel_arch import SpandrelArch, load_spandrel, spandrel_version

__all__ = [
    "COMPACT_KEYS",
    "PTH_SUFFIXES",
    "RRDB_KEYS",
    "AnyArch",
    "Architecture",
    "ImportResult",
    "SpandrelArch",
    "detect_architecture",
    "export_net",
    "export_spec",
    "import_interpolated",
    "import_weights",
    "is_realesrgan",
    "load_interpolated",
    "load_model",
    "load_spandrel",
    "mix_states",
    "model_from_state",
    "read_state_dict",
    "spandrel_version",
    "to_basicsr_layout",
    "to_float16",
    "unwrap",
]
