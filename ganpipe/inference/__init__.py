"""ONNX Runtime inference: sessions, provider choice, generation.

Imports numpy, Pillow, onnx and onnxruntime only - never torch - so ``ganpipe generate``
starts fast and runs where torch is not installed.

ONNX Runtime's telemetry is off unless the user turns it on. In ONNX Runtime 1.31 on Linux
``import onnxruntime`` writes a device id and an event database under
``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` on every run, which a tool
for private photos should not do behind its user's back. ``ORT_DISABLE_TELEMETRY=1``,
read when ONNX Runtime loads, prevents it; set here (every ganpipe session is made in
this package) unless the environment already says otherwise.
"""

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
