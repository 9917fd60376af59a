"""Shared fixtures: tiny pipelines, real image folders, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


#: the longest test files, started first: under pytest-xdist (``--dist loadfile``) they then
#: run beside the others instead of after them, on an otherwise idle worker
LONG_FIRST = (
    "test_variant_floors.py",
    "test_spandrel.py",
    "test_torchrun.py",
    "test_preemption.py",
    "test_denoise.py",
    "test_scale_out.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "cuda: needs an NVIDIA GPU (torch CUDA and/or ONNX Runtime's CUDA provider); skips "
        "at once without one (bench/gpu_check.sh runs these on a GPU machine)",
    )


def write_toml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


TINY_PIPELINE = """
[run]
name = "tiny"
out_dir = "runs"
seed = 0
device = "cpu"

[data]
dataset = "shapes"
image_size = 16
channels = 3
count = 64
classes = 2

[model]
variant = "{variant}"
latent_dim = 8
g_width = 4
d_width = 4

[train]
steps = {steps}
batch_size = 8
log_every = 2
sample_every = 0
checkpoint_every = 0
num_samples = 4
progress = false

[export]

[generate]
count = 5
"""


@pytest.fixture
def tiny_pipeline(tmp_path):
    """Writes a tiny pipeline.toml (seconds on 2 cores) and returns its path."""

    def make(variant: str = "dcgan", steps: int = 4, extra: str = "") -> Path:
        return write_toml(
            tmp_path / "pipeline.toml", TINY_PIPELINE.format(variant=variant, steps=steps) + extra
        )

    return make


@pytest.fixture
def image_folder(tmp_path):
    """A real folder of PNG/JPEG/WebP/TIFF images in two class subfolders."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    formats = [("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"), ("tif", "TIFF")]
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            ext, fmt = formats[i % len(formats)]
            arr = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / label / f"{i}.{ext}", format=fmt)
    return root


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Runs ``python -m ganpipe.cli ARGS`` in a real subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ganpipe", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def dp_reference(tmp_path_factory):
    """The final weights, optimizers and metrics of one uninterrupted ``devices = 2`` run
    (:func:`_dist_helpers.reference_run`), shared by the data-parallel tests."""
    from _dist_helpers import reference_run

    return reference_run(tmp_path_factory.mktemp("devices2"))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny nets: one intra-op thread is fastest, and far faster on a busy
    machine. CLI subprocesses are not affected."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def compact_x2_onnx(tmp_path_factory):
    """A tiny randomly initialised Real-ESRGAN compact x2 net (seed 0) in its released
    ``{"params": ...}`` layout, imported to ONNX as a user's weights would be."""
    import torch

    from ganpipe.nn.sr import SRVGGNetCompact
    from ganpipe.weights import import_weights

    folder = tmp_path_factory.mktemp("compact-x2")
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=2).eval()
    torch.save({"params": net.state_dict()}, folder / "x2.pth")
    import_weights(folder / "x2.pth", folder / "x2.onnx")
    return folder / "x2.onnx"


@pytest.fixture
def small_disk(tmp_path):
    """A factory for a real small file system: ``small_disk(kib)`` mounts a tmpfs of that
    size on a fresh folder and returns it (unmounted after the test), so a write that
    does not fit fails with ENOSPC as on a full disk. Skipped where mounting is not
    allowed (not root, or no tmpfs)."""
    mounted: list[Path] = []

    def make(kib: int) -> Path:
        if os.geteuid() != 0 or sys.platform != "linux":
            pytest.skip("a small tmpfs needs root on Linux")
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder: Path, leave: int = 0) -> None:
    """Fill the file system of ``folder`` until at most ``leave`` bytes are free."""
    block = b"\0" * 4096
    with open(folder / ".filler", "wb") as fh:
        try:
            while True:
                free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
                if free <= leave:
                    break
                fh.write(block[: max(1, min(len(block), free - leave))])
                fh.flush()
        except OSError:
            pass
