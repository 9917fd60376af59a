"""Hostile and careless input (issue 11), part 2: paths, leftovers of killed runs and the
memory budget of upscaling.

Each test fails without its fix: an unreadable folder gave a traceback, a legal 250-byte
name failed because the temporary name was longer than the file-system limit, temporary
files and ``.tmp-step_*`` folders of killed runs piled up, a kill while pruning left a
half-deleted checkpoint under its real name, and an image just under Pillow's pixel limit
was decoded whole whatever its size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from conftest import run_cli, write_toml
from PIL import Image
from test_hardening import nearest_x2

from ganpipe import fsutil
from ganpipe.data.sources import FolderDataset, FolderOptions
from ganpipe.errors import ConfigError, DataError
from ganpipe.upscale import upscale_path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return nearest_x2(tmp_path_factory.mktemp("model") / "x2.onnx")


def png(path: Path, h: int = 6, w: int = 6, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, format="PNG")
    return path


def run(src, out, model, **kw):
    return upscale_path(src, out, model, progress=False, device="cpu", **kw)


def refuse_reading(monkeypatch, *folders: Path) -> None:
    """``os.listdir`` / ``os.scandir`` of ``folders`` fail as for a folder without read
    permission (the tests run as root in CI, where chmod does not stop reading)."""
    blocked = {str(f) for f in folders}
    real_listdir, real_scandir = os.listdir, os.scandir

    def check(path):
        if str(path) in blocked:
            raise PermissionError(13, "Permission denied", str(path))

    def listdir(path="."):
        check(path)
        return real_listdir(path)

    def scandir(path="."):
        check(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "scandir", scandir)


# -- 3. unreadable folders and files -----------------------------------------------------------
def test_unreadable_input_folder_is_one_line(tmp_path, model, monkeypatch):
    src = tmp_path / "in"
    png(src / "a.png")
    refuse_reading(monkeypatch, src)
    for recursive in (False, True):
        with pytest.raises(ConfigError, match="cannot read input folder .*Permission denied"):
            run(src, tmp_path / "out", model, recursive=recursive)


def test_unreadable_sub_folder_is_reported_and_the_batch_goes_on(tmp_path, model, monkeypatch):
    src = tmp_path / "in"
    png(src / "a.png")
    png(src / "locked" / "b.png")
    png(src / "open" / "c.png")
    refuse_reading(monkeypatch, src / "locked")
    s = run(src, tmp_path / "out", model, recursive=True)
    assert sorted(p.name for p in s.written) == ["a.png", "c.png"]
    assert s.failures == [(src / "locked", "cannot read folder: Permission denied")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders without read permission")
def test_unreadable_folder_and_file_through_the_cli(tmp_path, model):
    src = tmp_path / "in"
    png(src / "a.png")
    png(src / "locked.png").chmod(0)
    png(src / "sub" / "b.png")
    (src / "sub").chmod(0)
    try:
        proc = run_cli(
            "upscale",
            "-i",
            str(src),
            "-o",
            str(tmp_path / "out"),
            "-m",
            str(model),
            "--device",
            "cpu",
            "-r",
        )
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("ganpipe: failed:")]
        assert len(failed) == 2 and all("Permission denied" in ln for ln in failed), failed
        src.chmod(0)
        proc = run_cli("upscale", "-i", str(src), "-o", str(tmp_path / "o2"), "-m", str(model))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    finally:
        for p in (src, src / "sub", src / "locked.png"):
            p.chmod(0o755)


def test_unreadable_data_folders(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    png(root / "cats" / "a.png")
    png(root / "dogs" / "b.png")
    refuse_reading(monkeypatch, root / "dogs")
    data = FolderDataset().load(FolderOptions(path=root), 8, 3, tmp_path)
    assert data.class_names == ["cats"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"warning: skipped folder {root / 'dogs'}: cannot read folder: Permission denied"
    ]
    refuse_reading(monkeypatch, root, root / "dogs")
    with pytest.raises(DataError, match="cannot read data folder .*Permission denied") as info:
        FolderDataset().load(FolderOptions(path=root), 8, 3, tmp_path)
    assert "\n" not in str(info.value)


# -- 3. name lengths -----------------------------------------------------------------------------
def test_temporary_names_fit_the_name_limit(tmp_path):
    for name in ("a" * 251 + ".png", "é" * 124 + "abc.bin", "x"):  # 255, 255, 1 bytes
        fsutil.write_bytes(tmp_path / name, b"data")
        assert (tmp_path / name).read_bytes() == b"data"
        tmp = fsutil.temp_sibling(tmp_path / name)
        assert len(os.fsencode(tmp.name)) <= 255 and tmp.name.startswith(".")
        assert fsutil.is_temp_name(tmp.name) and f"-{os.getpid()}-" in tmp.name
        tmp.unlink()
    names = {fsutil.temp_sibling(tmp_path / ("b" * 255)).name for _ in range(20)}
    assert len(names) == 20  # shortened, still unique


def test_a_255_byte_output_name_works_and_longer_ones_fail_per_file(tmp_path, model):
    src = tmp_path / "in"
    long_name = "a" * 251 + ".png"  # 255 bytes: the limit of most file systems
    png(src / long_name)
    png(src / "short.png")
    s = run(src, tmp_path / "out", model)
    assert s.ok and sorted(p.name for p in s.written) == sorted([long_name, "short.png"])
    s = run(src, tmp_path / "out2", model, suffix="_x2")  # 258 bytes: cannot be made
    assert [p.name for p in s.written] == ["short_x2.png"]
    ((path, reason),) = s.failures
    assert path.name == long_name and "258 bytes" in reason and "--suffix" in reason


# -- 4. leftovers of killed runs -----------------------------------------------------------------
def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def test_a_killed_writer_leaves_a_temp_file_that_the_next_batch_removes(tmp_path, model):
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import sys, time\nfrom ganpipe.fsutil import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half'); print(tmp, flush=True); time.sleep(60)\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", code, str(out / "a.png")], stdout=subprocess.PIPE, text=True
    )
    tmp = Path(writer.stdout.readline().strip())
    assert tmp.exists() and fsutil.remove_stale([out]) == []  # a live writer's: kept
    writer.kill()
    writer.wait()
    old = out / ".b.png.k2j3h4g5.tmp"  # an earlier version's name (no pid), old
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 3600,) * 2)
    keep = [out / "done.png", out / ".notes.tmp", out / ".c.png.abcdefgh.tmp"]  # last: fresh
    for p in keep:
        p.write_bytes(b"keep")
    png(tmp_path / "in" / "a.png")
    logs = []
    s = run(tmp_path / "in", out, model, log=logs.append)
    assert s.ok and not tmp.exists() and not old.exists()
    assert all(p.exists() for p in keep)
    assert any("removed 2 temporary file(s)" in m for m in logs), logs


def test_run_start_removes_leftovers_of_killed_runs(tmp_path):
    from ganpipe.pipeline import run_file

    pipeline = write_toml(
        tmp_path / "p.toml",
        """
        [run]
        name = "r"
        [data]
        dataset = "shapes"
        image_size = 8
        count = 4
        [augment]
        copies = 0
    """,
    )
    run_dir = tmp_path / "runs" / "r"
    ckpts = run_dir / "train" / "checkpoints"
    (ckpts / "step_00000002").mkdir(parents=True)
    pid, host = dead_pid(), fsutil.HOST
    stale = [
        ckpts / f".tmp-step_00000004-{pid}",
        ckpts / f".step_00000006.ganpipe-{pid}-{host}-abcd1234.tmp",
    ]
    for d in stale:
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"half")
    (run_dir / f".manifest.json.ganpipe-{pid}-{host}-abcd1234.tmp").write_text("{")
    live = ckpts / f".step_00000008.ganpipe-{os.getpid()}-{host}-abcd1234.tmp"
    live.mkdir()
    other = "0000" if host != "0000" else "ffff"  # another machine's writer: kept while fresh
    elsewhere = ckpts / f".step_00000010.ganpipe-{pid}-{other}-abcd1234.tmp"
    elsewhere.mkdir()
    gone = ckpts / f".step_00000012.ganpipe-{pid}-{other}-abcd1234.tmp"
    gone.mkdir()
    os.utime(gone, (time.time() - fsutil.STALE_OTHER_HOST - 60,) * 2)
    logs = []
    run_file(pipeline, entry_points=False, log=logs.append)
    kept = ["step_00000002", live.name, elsewhere.name]
    assert sorted(p.name for p in ckpts.iterdir()) == sorted(kept)
    assert not list(run_dir.glob(".manifest*"))
    assert any("removed 4 temporary file(s)" in m for m in logs), logs


def test_pruning_and_replacing_checkpoints_are_crash_safe(tmp_path, monkeypatch):
    import shutil

    import torch

    from ganpipe.training import checkpoint as ckpt

    nets = {"G": torch.nn.Linear(2, 2)}
    for step in (1, 2):
        ckpt.save_checkpoint(tmp_path, step, nets, {"step": step}, keep=3)
    real_rmtree = shutil.rmtree

    def killed_half_way(path, *args, **kwargs):  # deletes one file, then the process dies
        next(Path(path).iterdir()).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed_half_way)
    for step, keep in ((3, 1), (2, 3)):  # pruning steps 1 and 2; replacing step 2
        with pytest.raises(KeyboardInterrupt):
            ckpt.save_checkpoint(tmp_path, step, nets, {"step": step}, keep=keep)
        for folder in ckpt.list_checkpoints(tmp_path):  # what resume may pick: complete
            assert {p.name for p in folder.iterdir()} == {"model.safetensors", "state.pt"}
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert any(fsutil.is_temp_name(p.name) for p in tmp_path.iterdir())
    monkeypatch.setattr(fsutil, "_alive", lambda pid: False)  # the killed process is gone
    ckpt.save_checkpoint(tmp_path, 4, nets, {"step": 4}, keep=2)  # next save: cleaned up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000003", "step_00000004"]


# -- 6. the memory budget of upscaling ---------------------------------------------------------
def declared_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` with almost no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * width))  # one row
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat))
    return path


def test_max_megapixels_refuses_from_the_header(tmp_path, model, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    declared_png(src / "huge.png", 9000, 9000)  # just under Pillow's limit, 81 MP
    (src / "huge16.png").write_bytes(imagecodecs.png_encode(np.zeros((40, 40, 3), np.uint16)))
    png(src / "small.png")
    from PIL import ImageFile

    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda im: loads.append(im.size) or real_load(im)
    )
    s = run(src, tmp_path / "out", model)  # default: 64 MP
    ((path, reason),) = [f for f in s.failures if f[0].name == "huge.png"]
    assert "81.0 megapixels" in reason and "--max-megapixels" in reason
    assert (9000, 9000) not in loads, "decoded before it was refused"
    s = run(src, tmp_path / "out2", model, max_megapixels=0.001)  # 1000 px
    assert [p.name for p in s.written] == ["small.png"]
    assert sorted(p.name for p, _ in s.failures) == ["huge.png", "huge16.png"]


def test_max_megapixels_is_a_flag_and_a_stage_key(tmp_path, model):
    from ganpipe.stages.upscale import UpscaleStageOptions

    assert UpscaleStageOptions(input="x").max_megapixels == 64
    png(tmp_path / "in" / "a.png", 40, 40)
    proc = run_cli(
        "upscale",
        "-i",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(model),
        "--device",
        "cpu",
        "--max-megapixels",
        "0.001",
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "over the limit of 0.001" in proc.stderr
