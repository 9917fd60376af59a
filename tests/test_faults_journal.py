"""The ``--report`` journal and report next to user data (issue 25, deliverables 4, 5, 7
and the journal's lock of 2): never through a planted link, never over a file ganpipe
did not write; names that are not UTF-8 carried through records, messages and reports;
an interrupted batch resumed by the same command from its journal (or told to use
``--skip-existing``); a second batch on the same report refused, naming the first."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_upscale import OUT_NAME, _hand_model, _resize

from ganpipe import signals
from ganpipe.fsutil import rename_noreplace, set_aside, temp_sibling
from ganpipe.upscale import upscale_path
from ganpipe.upscale.report import FileRecord, ReportWriter, load_report, part_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links and signals")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    nodes, inits = _resize("image", OUT_NAME, 2)
    return _hand_model(tmp_path_factory.mktemp("m") / "near2.onnx", nodes, inits, 2)


def photos(folder: Path, n: int, size: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (size, size + 2, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i:02d}.png")
    return folder


def args(src: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["upscale", "-i", str(src), "-o", str(out), "-m", str(model), "--device", "cpu", *extra]


# -- links and other people's files ------------------------------------------------------
def test_a_planted_link_at_the_journal_is_refused_not_followed(tmp_path, model, cli):
    precious = tmp_path / "precious.txt"
    precious.write_text("my notes\n")
    (tmp_path / "reports").mkdir()
    link = tmp_path / "reports" / "r.jsonl.part"
    link.symlink_to("../precious.txt")
    report = tmp_path / "reports" / "r.jsonl"
    proc = cli(*args(photos(tmp_path / "in", 2), tmp_path / "out", model, "--report", str(report)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"ganpipe: error: --report {report}: {link} is a symbolic link, and ganpipe did not "
        f"make it; remove it or choose another report name"
    )
    assert precious.read_text() == "my notes\n" and link.is_symlink() and not report.exists()


@pytest.mark.parametrize(
    ("name", "make", "says"),
    [
        ("r.jsonl.part", lambda p: p.write_text("my notes\n"), "is not a report journal"),
        ("r.jsonl.part", lambda p: p.mkdir(), "is not a regular file"),
        ("r.jsonl", lambda p: p.write_text('{"a": 1}\n'), "is not a ganpipe report"),
        ("r.jsonl", lambda p: p.symlink_to("elsewhere.jsonl"), "is a symbolic link"),
    ],
)
def test_a_file_ganpipe_did_not_write_is_never_replaced(tmp_path, model, cli, name, make, says):
    """A regular file without the journal's header at ``FILE.part`` (a user's, not an
    interrupted run's), or a ``FILE`` that is not a ganpipe report: one-line refusal
    naming it, the file untouched."""
    theirs = tmp_path / name
    make(theirs)
    before = theirs.read_bytes() if theirs.is_file() and not theirs.is_symlink() else None
    report = tmp_path / "r.jsonl"
    proc = cli(*args(photos(tmp_path / "in", 1), tmp_path / "out", model, "--report", str(report)))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"ganpipe: error: --report {report}") and says in proc.stderr
    if before is not None:
        assert theirs.read_bytes() == before


def test_a_report_ganpipe_wrote_is_replaced(tmp_path, model):
    """The refusals above do not stop the normal re-run over an earlier report."""
    src, report = photos(tmp_path / "in", 2), tmp_path / "r.json"
    upscale_path(src, tmp_path / "out", model, device="cpu", report=report)
    s = upscale_path(src, tmp_path / "out", model, device="cpu", report=report)
    assert s.ok and len(load_report(report)) == 2


def test_temporary_names_are_made_without_following_or_replacing(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep")
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "mine").write_text("new")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "mine", tmp_path / "link")
    assert target.read_text() == "keep" and (tmp_path / "link").is_symlink()
    aside = set_aside(tmp_path / "mine")
    assert aside is not None and aside.read_text() == "new" and not (tmp_path / "mine").exists()
    tmp = temp_sibling(tmp_path / "x.png")
    assert tmp.is_file() and not tmp.is_symlink() and tmp.stat().st_mode & 0o777 == 0o644


# -- names that are not UTF-8 ------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_names_that_are_not_utf8_go_through_records_messages_and_reports(
    tmp_path, model, cli, suffix
):
    src = photos(tmp_path / "in", 1)
    raw = os.fsencode(src)
    Image.new("RGB", (6, 4)).save(raw + b"/caf\xe9.png")
    Path(os.fsdecode(raw + b"/bad\xff.png")).write_bytes(b"not a png")
    Image.new("RGB", (6, 4)).save(os.fsdecode(raw) + "/line\u2028sep\x85.png")
    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/out\xe9"))
    report = tmp_path / f"r{suffix}"
    proc = cli(*args(src, out, model, "--report", str(report), "-v"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"ganpipe: failed: {src}/bad\\xff.png: " in proc.stderr  # printed escaped
    assert f"to {tmp_path}/out\\xe9 in" in proc.stdout
    report.read_bytes().decode("utf-8")  # valid UTF-8 throughout
    records = {os.fsencode(r.path): r for r in load_report(report)}
    assert set(records) == {
        raw + b"/00.png",
        raw + b"/caf\xe9.png",
        raw + b"/bad\xff.png",
        raw + "/line\u2028sep\x85.png".encode(),
    }
    cafe = records[raw + b"/caf\xe9.png"]
    assert cafe.outcome == "written" and Path(cafe.output).is_file()
    assert os.fsencode(cafe.output) == os.fsencode(out) + b"/caf\xe9.png"
    assert FileRecord.from_json(cafe.to_json()) == cafe
    assert "\\udce9" in report.read_text(encoding="utf-8")  # the documented escape


# -- interrupted batches -----------------------------------------------------------------
def slow_batch(tmp_path: Path, model: Path, *extra: str, n: int = 30) -> tuple[list[str], Path]:
    """A batch of ``n`` files slow enough (200 px, 16 px tiles, one worker) to stop half-way."""
    src = photos(tmp_path / "in", n, size=200)
    cmd = [sys.executable, "-m", "ganpipe", *args(src, tmp_path / "out", model)]
    return cmd + ["--tile", "16", "--workers", "1", "--png-compression", "9", *extra], src


def start_and_stop(cmd: list[str], ready) -> tuple[int, str]:
    """Run ``cmd``, SIGTERM it once ``ready()``; its exit status and stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_an_interrupted_batch_resumes_from_its_journal(tmp_path, model):
    report = tmp_path / "r.jsonl"
    cmd, _src = slow_batch(tmp_path, model, "--report", str(report), n=10)
    part = part_path(report)
    rc, err = start_and_stop(cmd, lambda: part.exists() and part.read_text().count("\n") >= 3)
    if rc == 0:
        pytest.skip("the batch finished before it could be stopped")
    assert (
        rc == 143
        and (
            f"ganpipe: stopped by SIGTERM; finished outputs are kept; run the same command to "
            f"resume from the journal {part}"
        )
        in err.splitlines()
    ), err
    done = [r for r in load_report(part) if r.outcome == "written"]
    assert len(done) >= 2 and not report.exists()
    stamps = {r.output: os.stat(r.output).st_mtime_ns for r in done}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"ganpipe: resuming from {part}: {len(done)} file(s) done before kept" in again.stderr
    assert f"{len(done)} done before the interruption (journal)" in again.stdout
    assert f"upscaled {10 - len(done)} image" in again.stdout
    assert {out: os.stat(out).st_mtime_ns for out in stamps} == stamps  # not redone
    records = load_report(report)
    assert len(records) == 10 and {r.outcome for r in records} == {"written"}
    assert not part.exists()


def test_a_journal_of_other_options_is_started_over(tmp_path, model):
    src, report = photos(tmp_path / "in", 3), tmp_path / "r.jsonl"
    upscale_path(src, tmp_path / "out", model, device="cpu", report=report)
    with pytest.raises(RuntimeError), ReportWriter(report, batch="another batch") as w:
        w.add(FileRecord(str(src / "00.png"), "written", output=str(tmp_path / "out/00.png")))
        raise RuntimeError  # interrupted: the journal stays
    said: list[str] = []
    s = upscale_path(
        src, tmp_path / "out", model, device="cpu", suffix="_b", report=report, log=said.append
    )
    assert any("journal of an interrupted run of another batch" in m for m in said)
    assert len(s.written) == 3 and s.resumed == 0
    assert all(r.output.endswith("_b.png") for r in load_report(report))


def test_without_a_report_the_message_names_skip_existing(tmp_path, model):
    cmd, _src = slow_batch(tmp_path, model)
    out = tmp_path / "out"
    rc, err = start_and_stop(cmd, lambda: out.is_dir() and any(out.glob("*.png")))
    if rc == 0:
        pytest.skip("the batch finished before it could be stopped")
    assert (
        rc == 143
        and (
            "ganpipe: stopped by SIGTERM; finished outputs are kept; add --skip-existing to the "
            "same command to resume (written outputs are complete)"
        )
        in err.splitlines()
    ), err


def test_the_resume_hint_travels_with_the_exception():
    stop = signals.Interrupted(signal.SIGINT, resume="run it again")
    assert str(stop) == "stopped by SIGINT; finished outputs are kept; run it again"
    back = pickle.loads(pickle.dumps(stop))
    assert back.resume == "run it again" and back.exit_code == 130
    stop.resume = "later"  # set on its way out
    assert str(stop).endswith("; later")


# -- the lock ----------------------------------------------------------------------------
def test_a_second_batch_on_the_same_report_refuses_naming_the_first(tmp_path, model, cli):
    report = tmp_path / "r.jsonl"
    cmd, src = slow_batch(tmp_path, model, "--report", str(report))
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        part = part_path(report)
        while first.poll() is None and time.monotonic() < deadline and not part.exists():
            time.sleep(0.02)
        if first.poll() is not None:
            pytest.skip("the first batch finished too soon")
        second = cli(*args(src, tmp_path / "out2", model, "--report", str(report)))
        if first.poll() is not None:
            pytest.skip("the first batch finished while the second started")
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
    assert second.stderr.startswith(f"ganpipe: error: report {report} is in use by ganpipe pid ")
    assert f"pid {first.pid} " in second.stderr
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())
    assert json.loads(part.read_text().split("\n")[0])["ganpipe"] == "upscale-journal"
