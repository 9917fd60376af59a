"""Image IO and dataset sources. Torch-free: arrays are numpy uint8."""
