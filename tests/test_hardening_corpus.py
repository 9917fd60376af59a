"""The committed corpus of malformed images (``tests/corpus/files``, written by
``tests/corpus/make_corpus.py``) replayed through upscale's decoder, the dataset loader
and the real ``ganpipe upscale``: every file either decodes or fails with a one-line
reason - never a traceback, never a hang (each replay runs in a subprocess with a
timeout), never a decoded bomb.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from conftest import run_cli
from test_hardening import nearest_x2

from ganpipe.data.imageio import IMAGE_SUFFIXES
from ganpipe.imaging.decode import decode_image, decode_png16

CORPUS = Path(__file__).resolve().parent / "corpus" / "files"
FILES = sorted(p.name for p in CORPUS.iterdir())

#: the child: only the documented errors are caught, anything else is a traceback
REPLAY = r"""
import json, sys, time
from pathlib import Path
from ganpipe.data.imageio import DECODE_ERRORS, load_image
from ganpipe.imaging.decode import decode_image
from ganpipe.upscale.batch import describe_error

try:  # the dataset loader's one-line reasons, and the CLI's quieting of decoder noise
    from ganpipe.data.imageio import describe
    from ganpipe.imaging.formats import quiet_decoder_warnings
except ImportError:  # an older ganpipe: the replay still runs
    describe, quiet_decoder_warnings = str, lambda: None
quiet_decoder_warnings()
for path in sorted(Path(sys.argv[1]).iterdir()):
    row = {"name": path.name}
    for key, call, say in (
        ("decode", lambda: decode_image(path, 64e6), describe_error),
        ("load", lambda: load_image(path, 3), describe),
    ):
        t0 = time.perf_counter()
        try:
            call()
            row[key] = "ok"
        except DECODE_ERRORS as exc:
            row[key] = "error: " + say(exc)
        row[key + "_s"] = time.perf_counter() - t0
    print(json.dumps(row), flush=True)
"""


@pytest.fixture(scope="module")
def replayed() -> dict[str, dict]:
    proc = subprocess.run(
        [sys.executable, "-c", REPLAY, str(CORPUS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return {row["name"]: row for row in rows}


def test_corpus_is_small_and_complete():
    assert len(FILES) >= 50
    assert sum((CORPUS / n).stat().st_size for n in FILES) < 32 * 1024
    kinds = {n.split("_")[0] for n in FILES}
    assert kinds == {"ok", "trunc", "flip", "magic", "huge", "bad", "hostile"}


def test_make_corpus_writes_the_same_files(tmp_path):
    script = CORPUS.parent / "make_corpus.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == FILES


@pytest.mark.parametrize("name", FILES)
def test_every_file_decodes_or_fails_in_one_line(replayed, name):
    row = replayed[name]
    for key in ("decode", "load"):
        outcome = row[key]
        assert outcome == "ok" or outcome.startswith("error: "), outcome
        assert "\n" not in outcome and len(outcome) < 400, outcome
        assert "Traceback" not in outcome
        assert row[key + "_s"] < 10, f"{name}: {key} took {row[key + '_s']:.1f}s"
    kind = name.split("_")[0]
    if kind == "ok":
        assert row["decode"] == row["load"] == "ok", row
    elif kind == "hostile":
        assert "unsupported format" in row["decode"] and "unsupported format" in row["load"]
    elif kind in ("huge", "magic", "trunc"):
        assert row["decode"] != "ok", row  # never decoded whole


def test_the_dataset_loader_takes_the_corpus(tmp_path):
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from ganpipe.data.sources import FolderDataset, FolderOptions\n"
        "d = FolderDataset().load(FolderOptions(path=Path(sys.argv[1])), 8, 3, Path('.'))\n"
        "print(len(d), len(d.skipped))\n"
        "for path, reason in d.skipped: print(Path(path).name, '|', reason)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(CORPUS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    first, *skipped = proc.stdout.splitlines()
    loaded, count = map(int, first.split())
    names = [line.split(" | ")[0] for line in skipped]
    listed = [n for n in FILES if Path(n).suffix in IMAGE_SUFFIXES]  # datasets take no GIF
    assert count == len(skipped) and loaded + count == len(listed)
    assert not [n for n in names if n.startswith("ok_")]
    assert {n for n in listed if n.startswith(("hostile_", "huge_"))} <= set(names)
    # one line for the skipped files; Python warnings of Pillow about damaged TIFF tags
    # (the loader leaves global warning filters alone) and libtiff's own lines aside
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(lines) == 1 and f"skipped {count} unreadable" in lines[0], proc.stderr


def test_upscale_cli_takes_the_corpus(tmp_path):
    proc = run_cli("upscale", "-i", str(CORPUS), "-o", str(tmp_path / "out"),
                   "-m", str(nearest_x2(tmp_path / "x2.onnx")), "--device", "cpu")  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("ganpipe: failed: ")]
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(failed) + len(written) == len(FILES)
    # BMP and GIF become PNG: ok_rgb.bmp and ok_rgb.png both want ok_rgb.png (one fails)
    assert {Path(n).stem for n in FILES if n.startswith("ok_")} <= {Path(n).stem for n in written}
    assert not [n for n in written if n.startswith(("hostile_", "huge_"))]
    other = [ln for ln in proc.stderr.splitlines() if ln.strip() and ln not in failed]
    assert len(other) <= 3, other  # libtiff's own stderr lines at most, no Python noise


def test_an_icc_bomb_in_a_16_bit_png_is_dropped(tmp_path):
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    data = imagecodecs.png_encode(np.zeros((4, 4, 3), np.uint16))
    bomb = chunk(b"iCCP", b"bomb\0\0" + zlib.compress(b"\0" * (64 << 20), 9))  # 64 MiB
    path = tmp_path / "bomb.png"
    path.write_bytes(data[:33] + bomb + data[33:])
    arr = decode_png16(path.read_bytes())  # libpng reads the profile's header only
    assert arr.shape == (4, 4, 3) and arr.dtype == np.uint16
    with pytest.raises(ValueError, match="too large"):  # Pillow refuses the header first
        decode_image(path)
