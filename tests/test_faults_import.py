"""Writing converted models where the disk is full or the folder cannot be written:
``ganpipe import``, and the conversion cache that ``ganpipe upscale -m weights.pth``
fills. Real ``ganpipe`` subprocesses, a real small tmpfs (``small_disk``, root only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import fill_disk
from PIL import Image

FULL = "No space left on device (the disk is full; free space on it or choose another folder)"


@pytest.fixture(scope="module")
def x2_weights(tmp_path_factory) -> Path:
    """A tiny Real-ESRGAN compact x2 net (seed 0) in its released ``{"params": ...}``
    layout: its float32 ONNX is 24 KB, its float16 one 20 KB."""
    import torch

    from ganpipe.nn.sr import SRVGGNetCompact

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=2).eval()
    torch.save({"params": net.state_dict()}, folder / "x2.pth")
    return folder / "x2.pth"


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one error line of a failed command (progress notes may come before it)."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0] == proc.stderr.splitlines()[-1], proc.stderr
    return errors[0]


@pytest.mark.parametrize(
    "fp16, free_kib",
    # float32: the export itself does not fit; float16: the float32 export (24 KB, in a
    # temporary folder) fits, the float16 file written beside it (20 KB) does not
    [(False, 8), (True, 32)],
    ids=["float32", "float16"],
)
def test_import_on_a_full_disk_is_one_line_and_leaves_the_old_model(
    cli, small_disk, x2_weights, fp16, free_kib
):
    disk = small_disk(64)
    dst = disk / "x2.onnx"
    dst.write_bytes(b"the model imported yesterday")
    fill_disk(disk, leave=free_kib * 1024)
    proc = cli("import", str(x2_weights), "-o", str(dst), *(["--fp16"] if fp16 else []))
    assert proc.returncode == 1, proc.stderr
    assert error_line(proc) == f"ganpipe: error: cannot write ONNX model {dst}: {FULL}"
    assert proc.stdout == ""
    # nothing half-written under the final name, no temporary file or folder left
    assert dst.read_bytes() == b"the model imported yesterday"
    assert sorted(p.name for p in disk.iterdir()) == [".filler", "x2.onnx"]


def test_import_into_a_new_folder_on_a_full_disk(cli, small_disk, x2_weights):
    disk = small_disk(64)
    fill_disk(disk)
    dst = disk / "models" / "x2.onnx"
    proc = cli("import", str(x2_weights), "-o", str(dst))
    line = error_line(proc)
    assert line.startswith("ganpipe: error: cannot write ONNX model "), line
    assert "No space left on device" in line and str(disk) in line, line
    assert not dst.exists()


def png(folder: Path) -> Path:
    path = folder / "in.png"
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(path)
    return path


def test_conversion_cache_on_a_full_disk_names_it_and_ganpipe_cache_dir(
    cli, small_disk, x2_weights, tmp_path
):
    disk = small_disk(64)
    fill_disk(disk, leave=8 * 1024)
    out = tmp_path / "out.png"
    proc = cli(
        "upscale", "-i", str(png(tmp_path)), "-o", str(out), "-m", str(x2_weights),
        env={"GANPIPE_CACHE_DIR": str(disk)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # a full disk, not a usage error (2)
    line = error_line(proc)
    assert line.startswith(f"ganpipe: error: cannot write conversion cache file {disk}/"), line
    assert FULL in line and "set GANPIPE_CACHE_DIR to a writable folder" in line, line
    assert not out.exists()
    assert list((disk / "imported").iterdir()) == []  # nothing half-written in the cache


@pytest.mark.parametrize("case", ["not-a-folder", "read-only"])
def test_unwritable_conversion_cache_names_it_and_ganpipe_cache_dir(
    cli, small_disk, x2_weights, tmp_path, case
):
    """Was: "output folder ... is not writable", about a folder the user never named."""
    if case == "not-a-folder":
        cache = tmp_path / "cache-is-a-file"
        cache.write_text("")
        reason = "Not a directory"
    else:
        cache = small_disk(64)
        subprocess.run(["mount", "-o", "remount,ro", str(cache)], check=True)
        reason = "Read-only file system"
    proc = cli(
        "upscale", "-i", str(png(tmp_path)), "-o", str(tmp_path / "out.png"),
        "-m", str(x2_weights), env={"GANPIPE_CACHE_DIR": str(cache)},
    )  # fmt: skip
    assert error_line(proc) == (
        f"ganpipe: error: conversion cache {cache / 'imported'} is not writable ({reason}); "
        f"set GANPIPE_CACHE_DIR to a writable folder with free space, or fix its permissions"
    )
    # checked before the conversion starts: nothing converted, nothing said about it
    assert "converting" not in proc.stderr
