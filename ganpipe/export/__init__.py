"""torch -> ONNX export with a parity check and the model card inside the file
(:mod:`ganpipe.export.onnx_export`)."""
