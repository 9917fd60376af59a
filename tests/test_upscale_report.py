"""``--report``: the per-file record (also the Ray engine's manifest), its writer's journal
(a killed run leaves a valid prefix), the reader, the refusals, the stage's ``report`` key,
and the per-file worker another engine calls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_toml
from PIL import Image
from test_upscale import OUT_NAME, _hand_model, _resize

from ganpipe.errors import ConfigError
from ganpipe.upscale import upscale_path
from ganpipe.upscale.model import open_sr_model
from ganpipe.upscale.plan import plan_jobs
from ganpipe.upscale.report import FileRecord, ReportWriter, load_report, part_path
from ganpipe.upscale.tiling import Upscaler
from ganpipe.upscale.worker import process


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    nodes, inits = _resize("image", OUT_NAME, 2)
    return _hand_model(tmp_path_factory.mktemp("m") / "near2.onnx", nodes, inits, 2)


def photos(folder: Path, n: int = 3, size: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (size, size + 2, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.png")
    return folder


def test_record_round_trips_and_ignores_unknown_keys():
    rec = FileRecord(
        "in/ä b.png", "written", "", "out/ä b.png", 10, 4, 3, 20, 8, 6, 1.2e-5, 0.5, ("note",)
    )
    assert FileRecord.from_json(rec.to_json()) == rec
    data = json.loads(rec.to_json())
    assert data["warnings"] == ["note"] and data["input_width"] == 4
    assert FileRecord.from_json({**data, "provider": "CUDA"}) == rec  # a newer writer's key
    assert FileRecord.from_json({"path": "x", "outcome": "ignored"}).reason == ""
    with pytest.raises(ValueError, match="outcome"):
        FileRecord("x", "done")


def test_the_journal_is_a_valid_prefix_and_the_report_replaces_it(tmp_path):
    path = tmp_path / "r.jsonl"
    writer = ReportWriter(path)
    writer.add(FileRecord("b", "written", output="ob"))
    writer.add(FileRecord("a", "failed", "broken"))
    # killed here: the journal holds both, a half-written line after them is dropped
    with open(part_path(path), "a") as fh:
        fh.write('{"path": "c", "outc')
    assert [r.path for r in load_report(part_path(path))] == ["b", "a"]
    assert not path.exists()
    writer.close()
    assert [r.path for r in load_report(path)] == ["a", "b"]  # input order (sorted)
    assert not part_path(path).exists()
    for line in path.read_text().splitlines():
        json.loads(line)
    js = tmp_path / "r.json"
    with ReportWriter(js) as w:
        w.add(FileRecord("a", "skipped", output="oa"))
    assert isinstance(json.loads(js.read_text()), list)
    assert load_report(js) == [FileRecord("a", "skipped", output="oa")]
    # an exception leaves the journal, not a report
    with pytest.raises(RuntimeError), ReportWriter(tmp_path / "x.jsonl") as w:
        w.add(FileRecord("a", "written"))
        raise RuntimeError
    assert not (tmp_path / "x.jsonl").exists() and load_report(tmp_path / "x.jsonl.part")


def test_a_report_is_never_an_input_and_needs_a_report_name(tmp_path, model, cli):
    src = photos(tmp_path / "in")
    (src / "old.json").write_text("{}")  # a file of the input folder
    with pytest.raises(ConfigError, match="is an input of this run"):
        upscale_path(src, tmp_path / "out", model, device="cpu", report=src / "old.json")
    assert (src / "old.json").read_text() == "{}"
    proc = cli(
        "upscale", "-i", str(src), "-o", str(tmp_path / "o"), "-m", str(model),
        "--report", str(tmp_path / "r.csv"),
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--report" in proc.stderr
    assert ".jsonl" in proc.stderr and not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="not a ganpipe upscale report"):
        (tmp_path / "bad.jsonl").write_text("[1, 2]")
        load_report(tmp_path / "bad.jsonl")


def test_summary_and_report_account_for_every_entry(tmp_path, model):
    src = photos(tmp_path / "in", 3)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (src / "notes.txt").write_text("x")
    (src / ".cache").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (4, 4)).save(out / "0.png")
    report = tmp_path / "run.jsonl"
    s = upscale_path(src, out, model, device="cpu", skip_existing=True, report=report)
    assert s.report == report
    got = {Path(r.path).name: (r.outcome, r.reason) for r in load_report(report)}
    assert got == {
        "0.png": ("skipped", "output exists (--skip-existing)"),
        "1.png": ("written", ""),
        "2.png": ("written", ""),
        "broken.png": ("failed", got["broken.png"][1]),
        "notes.txt": ("ignored", "not an image by name (--all-files reads every file's content)"),
        ".cache": ("ignored", "hidden"),
    }
    assert got["broken.png"][1]
    rec = next(r for r in s.records if r.path.endswith("1.png"))
    assert (rec.input_width, rec.input_height, rec.output_width, rec.output_height) == (
        8,
        6,
        16,
        12,
    )
    assert rec.output_bytes == Path(rec.output).stat().st_size
    assert rec.input_bytes == (src / "1.png").stat().st_size and rec.megapixels == 48e-6
    assert "skipped 1 existing; 1 failed; ignored 1 non-image file, 1 hidden" in s.line()


def test_the_worker_is_callable_per_file_by_another_engine(tmp_path, model):
    src = photos(tmp_path / "in", 2)
    (src / "bad.png").write_text("text")
    plan = plan_jobs(src, tmp_path / "out")
    upscaler = Upscaler(open_sr_model(model, "cpu"), tile=0)
    from ganpipe.upscale.options import UpscaleOptions

    records = [process(upscaler, job, UpscaleOptions()) for job in plan.jobs]
    assert [r.outcome for r in records] == ["written", "written", "failed"]
    assert all(Path(r.output).is_file() for r in records[:2])
    assert "unsupported format" in records[2].reason
    assert FileRecord.from_json(records[0].to_json()) == records[0]


def test_the_stage_writes_its_report(tmp_path, model):
    (tmp_path / "near2.onnx").write_bytes(model.read_bytes())
    photos(tmp_path / "photos", 2)
    toml = write_toml(
        tmp_path / "pipeline.toml",
        """
[run]
name = "up"
device = "cpu"

[upscale]
input = "photos"
model = "near2.onnx"
device = "cpu"
report = "reports/upscale.jsonl"
""",
    )
    from ganpipe.pipeline import run_file

    run_file(toml, entry_points=False, log=lambda m: None)
    records = load_report(tmp_path / "reports" / "upscale.jsonl")
    assert sorted(Path(r.path).name for r in records) == ["0.png", "1.png"]
    assert {r.outcome for r in records} == {"written"}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_run_leaves_a_valid_journal(tmp_path, model):
    """A real process killed mid-batch: FILE.part holds whole records of finished files."""
    src = photos(tmp_path / "in", 40, size=200)
    report = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "ganpipe", "upscale", "-i", str(src), "-o",
            str(tmp_path / "out"), "-m", str(model), "--device", "cpu", "--tile", "16",
            "--workers", "1", "--png-compression", "9", "--report", str(report),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    part = part_path(report)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if part.exists() and part.read_text().count("\n") >= 3:  # the header, 2 records
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    records = load_report(part)
    assert len(records) >= 2 and not report.exists()
    for r in records:
        assert r.outcome == "written" and Path(r.output).is_file()
