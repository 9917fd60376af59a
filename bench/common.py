"""Small helpers shared by the GPU check's benchmarks (``bench/gpu_bench_*.py``): timing
with a device sync, medians, procedural test images, the JSON rows the check collects.

Stdlib, numpy and Pillow only at import; torch is imported by the callers that need it.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python bench/x.py`` without an install
    sys.path.insert(0, str(ROOT))


def torch_sync(device: str) -> Callable[[], None]:
    """A function that waits for ``device``'s queued work (a no-op on the CPU)."""
    if not device.startswith("cuda"):
        return lambda: None
    import torch

    return torch.cuda.synchronize


def time_once(fn: Callable[[], Any], sync: Callable[[], None] = lambda: None) -> float:
    """Seconds of one call of ``fn``, synchronised before and after."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def alternate(
    sides: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Times each side ``repeats`` times, round-robin (the order reversed every other
    round, so neither side always runs first) after ``warmup`` untimed calls of each."""
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for i in range(repeats):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(time_once(sides[name], sync))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(ganpipe: float, baseline: float) -> float | None:
    """ganpipe / baseline throughput (> 1: ganpipe is faster); None without a baseline."""
    return ganpipe / baseline if baseline > 0 else None


def num(x: float) -> str:
    """A figure with three significant digits, never in exponent form."""
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def row(what: str, baseline: str, ganpipe: str, ratio: float | None, note: str = "") -> dict:
    """One line of the results table."""
    return {"what": what, "baseline": baseline, "ganpipe": ganpipe, "ratio": ratio, "note": note}


def write_result(path: str | Path | None, part: str, rows: list[dict], notes: list[str]) -> None:
    """Prints the rows and writes them as JSON to ``path`` for ``gpu_check.py``."""
    for r in rows:
        shown = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(f"{part}: {r['what']}: {r['baseline']} | {r['ganpipe']} | {shown} {r['note']}")
    for note in notes:
        print(f"{part}: note: {note}")
    if path:
        Path(path).write_text(json.dumps({"part": part, "rows": rows, "notes": notes}, indent=1))


def make_images(folder: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """``count`` seeded RGB PNGs of ``size`` px: smooth colour waves, noise and boxes."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    paths = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        waves = [
            np.sin(2 * np.pi * (a * xx + b * yy) + p) for a, b, p in rng.uniform(-3, 3, (3, 3))
        ]
        arr = 128 + 60 * np.stack(waves, axis=2) + rng.normal(0, 10, (size, size, 3))
        for _ in range(8):
            y0, x0 = rng.integers(0, size, 2)
            h, w = rng.integers(size // 16 + 1, size // 3 + 2, 2)
            arr[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(path)
        paths.append(path)
    return paths


def print_markdown(lines: list[str], out: Path | None) -> str:
    """Join a result's Markdown lines, print them, and write them to ``out`` if given."""
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return text
