"""The committed batch corpus (tests/batch_corpus, built by make_corpus.py) through the real
CLI in a subprocess: stderr holds only ganpipe's own lines, every entry of the folder is
accounted for exactly once (summary counts and report), and no valid image fails on its
metadata or on what a decoder prints."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_upscale import OUT_NAME, _hand_model, _resize

from ganpipe.upscale.report import OUTCOMES, load_report

CORPUS = Path(__file__).resolve().parent / "batch_corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
#: what ganpipe itself prints on stderr: its prefixed lines (the summary is on stdout)
OWN_LINE = re.compile(r"^ganpipe: (warning|failed|report): ")


def nearest_x2(path: Path) -> Path:
    """A real x2 super-resolution .onnx (nearest neighbour), built without torch."""
    nodes, inits = _resize("image", OUT_NAME, 2)
    return _hand_model(path, nodes, inits, 2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A copy of the corpus (the runs must not touch the committed files) and a model."""
    base = tmp_path_factory.mktemp("batch")
    shutil.copytree(CORPUS / "files", base / "in")
    return base / "in", nearest_x2(base / "x2.onnx")


def entries(folder: Path) -> set[str]:
    return {str(folder / name) for name in EXPECTED}


def upscale(cli, src: Path, model: Path, out: Path, *extra: str):
    proc = cli("upscale", "-i", str(src), "-o", str(out), "-m", str(model), *extra)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def check_accounting(src: Path, report: Path, key: str, stdout: str) -> dict[str, str]:
    records = load_report(report)
    paths = [r.path for r in records]
    assert len(paths) == len(set(paths)) and set(paths) == entries(src)  # each exactly once
    got = {Path(r.path).name: r.outcome for r in records}
    want = {name: e[key] for name, e in EXPECTED.items()}
    assert got == want, {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    counts = {o: sum(r.outcome == o for r in records) for o in OUTCOMES}
    assert f"upscaled {counts['written']} images" in stdout
    assert f"; {counts['failed']} failed" in stdout
    for r in records:
        if r.outcome == "written":
            assert r.output and Path(r.output).is_file() and r.output_bytes
            assert (r.output_width, r.output_height) == (2 * r.input_width, 2 * r.input_height)
            assert r.input_bytes and r.megapixels
        elif r.outcome == "failed":
            assert r.reason and not r.output
    return {Path(r.path).name: r for r in records}


def test_the_corpus_is_accounted_for_and_stderr_is_ganpipe_s_own(corpus, cli, tmp_path):
    src, model = corpus
    report = tmp_path / "report.jsonl"
    proc = upscale(cli, src, model, tmp_path / "out", "--report", str(report))
    assert proc.returncode == 1  # the truncated and non-image files failed; the others not
    stderr = proc.stderr.splitlines()
    assert stderr and all(OWN_LINE.match(line) for line in stderr), proc.stderr
    assert not any(line.startswith("ganpipe: warning") for line in stderr)  # no --verbose
    failed = [line for line in stderr if line.startswith("ganpipe: failed: ")]
    records = check_accounting(src, report, "by_name", proc.stdout)
    assert len(failed) == sum(r.outcome == "failed" for r in records.values())
    assert "ignored 5 non-image files, 1 hidden, 1 sub-folder (no --recursive)" in proc.stdout
    # libtiff's own messages became the failed files' reasons, not raw stderr lines
    assert "TIFFFillStrip" in records["libtiff_truncated.tif"].reason
    assert "ZIPDecode" in records["libtiff_garbage.tif"].reason
    # metadata never fails an image; what was dropped is a warning of that file
    for name in ("exif_string_res.jpg", "exif_turned.jpg", "icc_garbage.png", "huge_text.png"):
        assert records[name].outcome == "written" and records[name].warnings, name
    assert any("UserWarning" in n for n in records["bad_exif_chunk.png"].warnings)
    assert any("text chunk dropped" in n for n in records["huge_text.png"].warnings)
    warned = {name for name, r in records.items() if r.warnings}
    assert f"; {len(warned)} with warnings" in proc.stdout
    # the collisions were renamed, nothing overwritten
    outs = {name: Path(records[name].output).name for name in ("x.png", "x.gif", "x.bmp")}
    assert outs == {"x.png": "x.png", "x.gif": "x.gif.png", "x.bmp": "x.bmp.png"}
    with Image.open(records["exif_turned.jpg"].output) as im:
        assert im.size == (24, 32)  # turned upright despite the malformed EXIF


def test_verbose_prints_each_warning_once_prefixed_with_its_file(corpus, cli, tmp_path):
    src, model = corpus
    report = tmp_path / "report.json"
    proc = upscale(cli, src, model, tmp_path / "out", "--verbose", "--report", str(report))
    stderr = proc.stderr.splitlines()
    assert all(OWN_LINE.match(line) for line in stderr), proc.stderr
    records = {Path(r.path).name: r for r in load_report(report)}
    warnings = [line for line in stderr if line.startswith("ganpipe: warning: ")]
    expected = [
        f"ganpipe: warning: {r.path}: {note}"
        for r in sorted(records.values(), key=lambda r: r.path)
        for note in r.warnings
    ]
    assert warnings == expected and len(warnings) >= 6


def test_all_files_reads_every_file_by_content(corpus, cli, tmp_path):
    src, model = corpus
    report = tmp_path / "all.jsonl"
    proc = upscale(cli, src, model, tmp_path / "out", "--all-files", "--report", str(report))
    assert all(OWN_LINE.match(line) for line in proc.stderr.splitlines()), proc.stderr
    records = check_accounting(src, report, "all_files", proc.stdout)
    assert records["noext"].outcome == "written" and records["text.png"].reason.startswith(
        "not an image (by content)"
    )
    # a rerun resumes: the written ones are skipped, the report still lists every entry
    again = upscale(
        cli, src, model, tmp_path / "out", "--all-files", "--skip-existing", "--report", str(report)
    )
    rerun = {Path(r.path).name: r for r in load_report(report)}
    assert set(rerun) == set(records)
    written = [n for n, r in records.items() if r.outcome == "written"]
    assert all(rerun[n].outcome == "skipped" and rerun[n].output_bytes for n in written)
    assert f"skipped {len(written)} existing" in again.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="fd 2 capture is POSIX-tested here")
def test_the_library_collects_what_libtiff_prints_per_file(corpus, capfd):
    """In this process, on decode threads: libtiff's lines land in their own file's record
    and never on fd 2."""
    from ganpipe.upscale import upscale_path

    src, model = corpus
    s = upscale_path(src, src.parent / "lib_out", model, device="cpu", workers=4)
    by_name = {Path(r.path).name: r for r in s.records}
    assert "TIFFFillStrip" in by_name["libtiff_truncated.tif"].reason
    assert not any(
        "TIFF" in n or "ZIP" in n
        for r in s.records
        for n in r.warnings
        if not r.path.endswith(".tif")
    )
    err = capfd.readouterr().err
    assert "TIFFFillStrip" not in err and "ZIPDecode" not in err and "UserWarning" not in err


def test_concurrent_files_keep_their_own_messages(corpus):
    """Eight threads decode files that warn (Python), print (libtiff on fd 2) or neither,
    over and over: every note lands in its own file's list, none in another's."""
    from concurrent.futures import ThreadPoolExecutor

    from ganpipe.imaging.capture import collecting, quiet_decoder_warnings
    from ganpipe.imaging.decode import decode_image

    src, _ = corpus
    names = ["bad_exif_chunk.png", "libtiff_truncated.tif", "libtiff_garbage.tif", "palette.png"]
    quiet_decoder_warnings()

    def notes_of(name: str) -> tuple[str, tuple[str, ...]]:
        with collecting() as notes:
            try:
                decode_image(src / name)
            except (OSError, ValueError):  # the broken TIFFs
                pass
        return name, tuple(notes)

    alone = dict(notes_of(n) for n in names)
    assert "UserWarning" in alone["bad_exif_chunk.png"][0]
    assert "TIFFFillStrip" in alone["libtiff_truncated.tif"][0]
    assert "ZIPDecode" in alone["libtiff_garbage.tif"][0] and alone["palette.png"] == ()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(notes_of, names * 25))
    assert all(notes == alone[name] for name, notes in results)
