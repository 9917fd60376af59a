"""ONNX Runtime inference: sessions, provider choice, generation.

Imports numpy, Pillow, onnx and onnxruntime only - never torch - so ``ganpipe generate``
starts fast and runs where torch is not installed.
"""
