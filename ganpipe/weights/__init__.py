"""Import released super-resolution weights (Real-ESRGAN / BasicSR) and export them to ONNX.

One concern per module:

* :mod:`~ganpipe.weights.read`: safe reading (``torch.load(..., weights_only=True)`` only,
  ``.safetensors`` with safetensors) and unwrapping (``params_ema`` / ``params``, a
  ``module.`` prefix);
* :mod:`~ganpipe.weights.detect`: the architecture and its sizes from the keys and shapes
  (RRDBNet or SRVGGNetCompact), after renaming the original ESRGAN layouts to BasicSR's;
* :mod:`~ganpipe.weights.convert`: the net loaded strictly, exported to ONNX (parity-checked,
  with a model card) and optionally converted to float16.

The names below are the public API (``from ganpipe.weights import import_weights``).
"""

from __future__ import annotations

from ganpipe.weights.convert import (
    ImportResult,
    export_spec,
    import_weights,
    load_model,
    to_float16,
)
from ganpipe.weights.detect import (
    COMPACT_KEYS,
    RRDB_KEYS,
    Architecture,
    detect_architecture,
    to_basicsr_layout,
)
from ganpipe.weights.read import PTH_SUFFIXES, read_state_dict, unwrap

__all__ = [
    "COMPACT_KEYS",
    "PTH_SUFFIXES",
    "RRDB_KEYS",
    "Architecture",
    "ImportResult",
    "detect_architecture",
    "export_spec",
    "import_weights",
    "load_model",
    "read_state_dict",
    "to_basicsr_layout",
    "to_float16",
    "unwrap",
]
