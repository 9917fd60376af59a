"""ganpipe: train GAN variants on image folders, export to ONNX, generate and upscale.

The public API for plugin authors is small:

* :data:`hookimpl` marks the functions of a plugin module;
* :mod:`ganpipe.hookspecs` documents the hooks;
* :mod:`ganpipe.variants.base` and :mod:`ganpipe.stages.base` hold the protocols a
  variant or stage implements.

Nothing heavy is imported here: ``ganpipe --help`` and the ONNX inference path stay
free of torch.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("ganpipe")

__all__ = ["__version__", "hookimpl"]
