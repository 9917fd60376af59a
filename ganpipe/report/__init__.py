"""The run report: ``RUN_DIR/report.html``, one self-contained page (images inlined as
``data:`` URIs, plots as inline SVG, no network, no external JS or CSS) with the recorded
pipeline.toml, each stage's status, time and outputs, the sample grids across training, the
loss and diversity curves, the evaluation scores, the model card of the exported ``.onnx``,
before/after crops of super-resolution models and the upscale summary.

Torch-free: numpy, Pillow, onnx / ONNX Runtime and the standard library.
"""

from __future__ import annotations

from ganpipe.report.page import REPORT, render, write_report
from ganpipe.report.run import RunFolderError, RunRecord, load_run

__all__ = ["REPORT", "RunFolderError", "RunRecord", "load_run", "render", "write_report"]
