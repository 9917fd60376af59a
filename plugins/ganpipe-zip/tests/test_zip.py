"""Tests of the zip dataset source on real archives built here, through ganpipe's public
API only (``ganpipe``, ``ganpipe.testing``, the ``ganpipe`` command): the contract checks,
labels, corrupt and oversized members, unsafe names, the decompression-bomb limit, and a
pipeline that trains from an archive."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import ganpipe
import numpy as np
import pytest
from ganpipe.testing import check_dataset, registered
from PIL import Image

from ganpipe_zip.source import ZipOptions, ZipSource

FORMATS = (("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"))


@pytest.fixture(autouse=True)
def _no_disabled_plugins(monkeypatch):
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)


def encoded(seed: int, size: tuple[int, int] = (24, 20), fmt: str = "PNG", mode="RGB") -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def build_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def class_members(per_class: int = 4) -> dict[str, bytes]:
    out = {}
    k = 0
    for label in ("cats", "dogs"):
        for i in range(per_class):
            ext, fmt = FORMATS[k % len(FORMATS)]
            out[f"{label}/{i:02d}.{ext}"] = encoded(k, (24 + i, 20), fmt)
            k += 1
    return out


@pytest.fixture
def archive(tmp_path) -> Path:
    return build_zip(tmp_path / "images.zip", class_members())


def load(path: Path, size: int = 16, channels: int = 3, **options) -> ganpipe.ImageSet:
    return ZipSource().load(ZipOptions(path=path, **options), size, channels, path.parent)


# -- the contract ------------------------------------------------------------------------


def test_contract(archive, tmp_path):
    def add_member(base: Path) -> None:
        with zipfile.ZipFile(base / "images.zip", "a") as zf:
            zf.writestr("dogs/99.png", encoded(99))

    check_dataset(
        ZipSource(),
        tmp_path=tmp_path / "scratch",
        options={"path": "images.zip"},
        base_dir=tmp_path,
        change=add_member,
    )


def test_contract_checks_notice_option_changes(archive, tmp_path):
    check_dataset(
        ZipSource(),
        tmp_path=tmp_path / "scratch",
        options={"path": "images.zip"},
        base_dir=tmp_path,
        change={"recursive": False},
    )


def test_registered_as_ganpipe_run_finds_it():
    assert isinstance(registered("dataset", "zip", plugin="zip"), ZipSource)


# -- labels and layout -------------------------------------------------------------------


def test_labels_are_the_top_level_folders(tmp_path):
    members = {
        **class_members(2),
        "top.png": encoded(50),
        "cats/tabby/deep.png": encoded(51),
        "notes.txt": b"not an image",
        "cats/": b"",  # a folder entry
    }
    path = build_zip(tmp_path / "a.zip", members)
    data = load(path)
    assert data.class_names == ["_root", "cats", "dogs"]
    assert len(data) == 6 and not data.skipped
    counts = {n: int((data.labels == i).sum()) for i, n in enumerate(data.class_names)}
    assert counts == {"_root": 1, "cats": 3, "dogs": 2}
    assert ZipSource().class_names(ZipOptions(path=path), tmp_path) == data.class_names
    flat = load(path, recursive=False)
    assert len(flat) == 5  # cats/tabby/deep.png left out


def test_grayscale_alpha_and_16_bit_members(tmp_path):
    rgba = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(rgba, format="PNG")  # transparent
    deep = io.BytesIO()
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(deep, format="PNG")  # white
    path = build_zip(tmp_path / "m.zip", {"a.png": rgba.getvalue(), "b.png": deep.getvalue()})
    data = load(path, size=8, channels=1)
    assert data.images.shape == (2, 8, 8, 1)
    assert (data.images == 255).all()  # transparency on white; 16-bit white stays white


# -- what is skipped, and why ------------------------------------------------------------


def test_corrupt_members_are_skipped_and_counted(tmp_path, capsys):
    good = class_members(2)
    jpeg = encoded(7, fmt="JPEG")
    members = {**good, "cats/broken.png": b"\x89PNG not really", "dogs/cut.jpg": jpeg[:40]}
    data = load(build_zip(tmp_path / "c.zip", members))
    assert len(data) == len(good)
    assert sorted(name for name, _ in data.skipped) == ["cats/broken.png", "dogs/cut.jpg"]
    assert all(reason for _, reason in data.skipped)
    err = capsys.readouterr().err
    assert "skipped 2 member(s)" in err and str(tmp_path / "c.zip") in err


def test_a_bad_crc_is_a_skipped_member(tmp_path):
    path = build_zip(tmp_path / "crc.zip", {"a/0.png": encoded(1), "a/1.png": encoded(2)})
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("a/1.png")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF  # flip a byte of the compressed data
    path.write_bytes(bytes(raw))
    data = load(path)
    assert len(data) == 1 and [n for n, _ in data.skipped] == ["a/1.png"]


def test_members_over_the_size_cap_are_not_read(tmp_path):
    big = encoded(3, size=(400, 400))  # noise: ~480 KB as PNG
    path = build_zip(tmp_path / "big.zip", {"a/big.png": big, "a/small.png": encoded(4)})
    data = load(path, max_member_mb=0.1)
    assert len(data) == 1
    assert data.skipped == [
        ("a/big.png", f"{len(big)} bytes uncompressed, over max_member_mb = 0.1")
    ]


def test_too_many_members_is_refused(tmp_path):
    path = build_zip(tmp_path / "n.zip", {f"a/{i}.png": encoded(i) for i in range(5)})
    with pytest.raises(ganpipe.DataError, match="has 5 entries, more than data.max_members = 4"):
        load(path, max_members=4)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_limit_is_kept(tmp_path, monkeypatch):
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # importing the plugin left Pillow's default
    path = build_zip(tmp_path / "bomb.zip", {"a/0.png": encoded(1), "a/1.png": encoded(2)})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 24 * 20 - 1)  # one pixel too many
    with pytest.raises(ganpipe.DataError, match="DecompressionBombError") as info:
        load(path)
    assert "no usable images" in str(info.value) and "\n" not in str(info.value)


def test_member_names_never_become_paths(tmp_path, monkeypatch):
    members = {
        "../escape.png": encoded(1),
        "/absolute.png": encoded(2),
        "c:/drive.png": encoded(3),
        "a\\b.png": encoded(4),
        "a//b.png": encoded(5),
        "__MACOSX/a/._0.png": b"resource fork",
        "a/.hidden.png": encoded(6),
        "a/ok.png": encoded(7),
    }
    work = tmp_path / "work"
    work.mkdir()
    path = build_zip(tmp_path / "evil.zip", members)
    monkeypatch.chdir(work)
    before = sorted(tmp_path.rglob("*"))
    data = load(path)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere
    assert len(data) == 1 and data.class_names == ["a"]
    assert sorted(n for n, _ in data.skipped) == sorted(
        ["../escape.png", "/absolute.png", "c:/drive.png", "a\\b.png", "a//b.png"]
    )
    assert all(r.startswith("unsafe member name") for _, r in data.skipped)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], 'is a folder; use dataset = "folder"'),
        (lambda p: (p.write_text("hello"), p)[1], "is not a readable zip archive"),
        (lambda p: build_zip(p, {"readme.txt": b"no images"}), "has no usable images"),
    ],
    ids=["missing", "folder", "not-a-zip", "no-images"],
)
def test_unusable_archives_are_one_line_data_errors(tmp_path, make, needle):
    path = make(tmp_path / "data.zip")
    with pytest.raises(ganpipe.DataError, match="^data.path: ") as info:
        load(path)
    assert needle in str(info.value) and "\n" not in str(info.value)


# -- the command and the report section -----------------------------------------------


def ganpipe_command(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GANPIPE_DISABLE_PLUGINS"}
    cmd = [sys.executable, "-m", "ganpipe", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_zip_info_command_is_listed_and_reads_the_central_directory(tmp_path):
    members = {**class_members(2), "../evil.png": encoded(9), "cats/broken.png": b"not a png"}
    path = build_zip(tmp_path / "a.zip", members)
    proc = ganpipe_command("--help")
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("Commands from plugins:")[1]
    assert "zip-info" in listed, proc.stdout
    proc = ganpipe_command("zip-info", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    # names only: the corrupt member is an image member until a pipeline decodes it
    assert info["classes"] == {"cats": 3, "dogs": 2} and info["images"] == 5
    assert [s["member"] for s in info["skipped"]] == ["../evil.png"]
    proc = ganpipe_command("zip-info", str(tmp_path / "missing.zip"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "missing.zip" in proc.stderr and "does not exist" in proc.stderr


# -- in a pipeline -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_pipeline_trains_a_conditional_gan_from_an_archive(archive, tmp_path):
    toml = tmp_path / "pipeline.toml"
    toml.write_text(
        '[run]\nname = "z"\ndevice = "cpu"\n'
        '[data]\ndataset = "zip"\npath = "images.zip"\nimage_size = 16\n'
        '[model]\nvariant = "cgan"\nlatent_dim = 8\ng_width = 4\nd_width = 4\n'
        "[train]\nsteps = 3\nbatch_size = 4\nsample_every = 0\nprogress = false\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "GANPIPE_DISABLE_PLUGINS"}
    cmd = [sys.executable, "-m", "ganpipe", "run", str(toml)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 steps of cgan on 8 images" in proc.stdout
    manifest = json.loads((tmp_path / "runs" / "z" / "manifest.json").read_text())
    assert (tmp_path / "runs" / "z" / manifest["stages"]["train"]["outputs"]["checkpoint"]).is_dir()
    # the run's report has the plugin's section about the archive
    proc = ganpipe_command("report", str(tmp_path / "runs" / "z"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "runs" / "z" / "report.html").read_text(encoding="utf-8")
    section = page.split('<section id="plugin-zip-1">')[1].split("</section>")[0]
    assert "<h2>Zip archive</h2>" in section and "from plugin zip" in section
    assert "<td>cats</td><td class=n>4</td>" in section and "images.zip" in section
    # nothing changed: the next run skips training (the fingerprint is stable) ...
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and "[train] up to date, skipped" in proc.stdout, proc.stdout
    # ... and a changed archive is noticed: the old checkpoint is not resumed ...
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("dogs/new.png", encoded(77))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[train] up to date" not in proc.stdout
    assert "made with a different model, data or training configuration" in proc.stderr
    # ... and --force trains on the new data
    proc = subprocess.run([*cmd, "--force"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 steps of cgan on 9 images" in proc.stdout
