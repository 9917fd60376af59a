"""ONNX Runtime inference: sessions, provider choice, generation.

Imports numpy, Pillow, onnx and onnxruntime only - never torch - so ``ganpipe generate``
starts fast and runs where torch is not installed.

ONNX Runtime's telemetry is off unless the user turns it on (``ORT_DISABLE_TELEMETRY``,
set by :mod:`ganpipe` itself, so that ``import``, the export stage and library users are
covered too).
"""
