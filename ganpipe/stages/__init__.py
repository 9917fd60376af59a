"""Built-in pipeline stages, one module each."""
