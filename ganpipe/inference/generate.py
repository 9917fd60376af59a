"""Latent-to-image generation with ONNX Runtime (no torch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganpipe.data.imageio import make_grid, save_image, to_uint8
from ganpipe.errors import GanpipeError
from ganpipe.fsutil import ensure_writable_dir
from ganpipe.inference.session import OnnxModel, open_model


def resolve_labels(model: OnnxModel, labels: Sequence[str | int] | str | None, n: int
                   ) -> np.ndarray | None:
    """Labels for ``n`` samples from class indices or names, ``"all"`` or ``None``.

    ``None`` on a conditional model cycles through all classes. The labels repeat to ``n``.
    """
    names = [str(c) for c in model.meta.get("class_names", [])]
    conditional = any(s["kind"] == "label" for s in model.meta.get("inputs", []))
    if not conditional:
        if labels not in (None, "all", []):
            raise GanpipeError(f"{model.path.name} is not conditional; drop --label")
        return None
    if not names:
        raise GanpipeError(f"{model.path}: conditional model without class names in its "
                           f"metadata; re-export it with ganpipe")
    if labels in (None, "all", []):
        chosen = list(range(len(names)))
    else:
        if isinstance(labels, str | int):
            labels = [labels]
        chosen = []
        for item in labels:
            text = str(item).strip()
            if text in names:
                chosen.append(names.index(text))
            elif text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
                chosen.append(int(text))
            else:
                listing = ", ".join(f"{i}={c}" for i, c in enumerate(names))
                raise GanpipeError(f"--label {text!r} is not a class of {model.path.name}; "
                                   f"use an index 0..{len(names) - 1} or a name ({listing})")
    return np.resize(np.array(chosen, dtype=np.int64), n)


def sample_inputs(model: OnnxModel, n: int, seed: int, labels: np.ndarray | None
                  ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in model.meta.get("inputs", []):
        if spec["kind"] == "normal":
            feeds[spec["name"]] = rng.standard_normal((n, *spec["shape"]), dtype=np.float32)
        elif spec["kind"] == "label":
            feeds[spec["name"]] = labels if labels is not None else np.zeros(n, np.int64)
        else:
            raise GanpipeError(f"{model.path.name}: input kind {spec['kind']!r} is not "
                               f"supported by this version of ganpipe; upgrade ganpipe")
    return feeds


def generate_batches(model: OnnxModel, n: int, seed: int = 0,
                     labels: np.ndarray | None = None, batch_size: int = 64
                     ) -> Iterator[np.ndarray]:
    """Yield uint8 NHWC batches, ``n`` images in all; the same for any ``batch_size``."""
    feeds = sample_inputs(model, n, seed, labels)
    value_range = tuple(model.meta.get("value_range", (-1.0, 1.0)))
    for start in range(0, n, batch_size):
        batch = {k: v[start:start + batch_size] for k, v in feeds.items()}
        yield to_uint8(model.run(batch), value_range)


@dataclass
class GenerateSummary:
    out_dir: Path
    files: list[Path]
    grid: Path | None
    providers: list[str]


def generate_to_folder(model_path: str | Path, out_dir: str | Path, n: int, *, seed: int = 0,
                       labels: Sequence[str | int] | str | None = None, batch_size: int = 64,
                       device: str = "auto", grid: bool = True, prefix: str = "sample_",
                       on_batch=None) -> GenerateSummary:
    """Write ``n`` PNGs (and ``grid.png``) into ``out_dir``; every file written atomically."""
    if n < 1:
        raise GanpipeError(f"the number of images must be at least 1, got {n}")
    if batch_size < 1:
        raise GanpipeError(f"--batch-size must be at least 1, got {batch_size}")
    model = open_model(model_path, device, task="generate")
    lab = resolve_labels(model, labels, n)
    out = ensure_writable_dir(out_dir)
    files, grid_images = [], []
    width = max(5, len(str(n - 1)))
    for batch in generate_batches(model, n, seed, lab, batch_size):
        for img in batch:
            files.append(save_image(img, out / f"{prefix}{len(files):0{width}d}.png"))
        if grid and sum(len(b) for b in grid_images) < 256:
            grid_images.append(batch)
        if on_batch:
            on_batch(len(batch))
    grid_path = None
    if grid:
        grid_path = save_image(make_grid(np.concatenate(grid_images)[:256]), out / "grid.png")
    return GenerateSummary(out, files, grid_path, model.providers)
