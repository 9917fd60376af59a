"""torch -> ONNX export with a parity check and metadata inside the file."""
