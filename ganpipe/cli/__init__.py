"""The ``ganpipe`` command: one module per command, each thin (parse, call the library,
print), loaded only when it runs (:data:`ganpipe.cli.main.COMMANDS`). Heavy modules (torch,
onnxruntime) are imported inside the commands that need them, so ``ganpipe --help``
starts fast and the ONNX commands never import torch."""

from ganpipe.cli.main import main

__all__ = ["main"]
