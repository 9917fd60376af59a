"""Built-in variant plugins, one module each."""
