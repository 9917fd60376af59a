"""Layers and networks shared by variants (built-in and third-party)."""
