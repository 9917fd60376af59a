"""Batch upscaling beyond one process: ``--shard i/N`` workers (the scheduler-array way) and
the Ray Data engine (real local Ray instance, 2 CPU actors)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganpipe.upscale.batch import upscale_path


@pytest.fixture(scope="module")
def sr_onnx(compact_x2_onnx):
    return compact_x2_onnx


def _folder(root, count: int):
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(count):
        arr = rng.integers(0, 256, (12 + i % 5, 16, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"{i:03d}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def _summary_count(stderr: str, word: str) -> int:
    if word == "upscaled":
        m = re.search(r"upscaled (\d+) image", stderr)
    else:
        m = re.search(rf"{word} (\d+)" if word == "skipped" else rf"(\d+) {word}", stderr)
    return int(m.group(1)) if m else 0


def test_three_concurrent_shards_do_every_file_exactly_once(tmp_path, sr_onnx):
    src = _folder(tmp_path / "in", 13)
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ganpipe", "upscale", "-i", str(src), "-o", str(out)]
            + ["-m", str(sr_onnx), "--device", "cpu", "--shard", f"{i}/3", "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = [(p.wait(timeout=300), p.stdout.read() + p.stderr.read()) for p in procs]
    # the shard with the broken file exits 1 (a failed file), the others 0
    assert sorted(code for code, _ in results) == [0, 0, 1]
    assert sum(_summary_count(err, "upscaled") for _, err in results) == 13
    assert sum(_summary_count(err, "failed") for _, err in results) == 1
    outputs = sorted(p.name for p in out.iterdir())
    assert outputs == [f"{i:03d}.png" for i in range(13)]  # no temporary names left
    # a second round with --skip-existing finds everything done: nothing is redone
    again = subprocess.run(
        [sys.executable, "-m", "ganpipe", "upscale", "-i", str(src), "-o", str(out)]
        + ["-m", str(sr_onnx), "--device", "cpu", "--shard", "1/3", "--skip-existing"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert _summary_count(again.stdout, "upscaled") == 0
    assert _summary_count(again.stdout, "existing") == 4


def test_engine_ray_without_ray_says_how_to_install(tmp_path, sr_onnx, monkeypatch, capsys):
    from ganpipe.cli.main import main

    src = _folder(tmp_path / "in", 2)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SystemExit) as exc:
        main(
            ["upscale", "-i", str(src), "-o", str(tmp_path / "o"), "-m", str(sr_onnx)]
            + ["--device", "cpu", "--engine", "ray"]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'ganpipe[ray]'" in err[0], err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


ray = pytest.importorskip("ray")
# one local Ray instance at a time: under pytest-xdist these tests share a worker
# (``--dist loadfile``, README)


@pytest.mark.slow
def test_ray_engine_writes_the_local_engines_bytes(tmp_path, sr_onnx):
    from ganpipe.upscale.options import UpscaleOptions
    from ganpipe.upscale.plan import plan_jobs
    from ganpipe.upscale.ray_engine import run_on_ray

    src = _folder(tmp_path / "in", 9)
    opts = UpscaleOptions(model=[sr_onnx], device="cpu")
    seen = []
    result = run_on_ray(
        plan_jobs(src, tmp_path / "ray", opts).jobs, opts, actors=2, on_record=seen.append
    )
    assert len(seen) == len(result.records) == 10
    outcomes = {Path(r.path).name: r.outcome for r in seen}
    assert outcomes.pop("broken.png") == "failed"
    assert set(outcomes.values()) == {"written"}
    local = upscale_path(src, tmp_path / "local", sr_onnx, device="cpu", progress=False)
    assert len(local.written) == 9
    for path in sorted((tmp_path / "local").iterdir()):
        assert (tmp_path / "ray" / path.name).read_bytes() == path.read_bytes(), path.name
    # the records are the local engine's report records, field for field but the timing
    by_path = {r.path: r for r in local.records}
    for record in seen:
        twin = by_path[record.path]
        assert (record.outcome, record.output_bytes, record.megapixels) == (
            twin.outcome,
            twin.output_bytes,
            twin.megapixels,
        )
        assert (record.output is None) == (twin.output is None)
        if record.output is not None:
            assert Path(record.output).name == Path(twin.output).name


@pytest.mark.slow
def test_cli_engine_ray_report_and_resume(tmp_path, sr_onnx):
    from ganpipe.upscale.report import load_report

    src = _folder(tmp_path / "in", 5)
    out, report = tmp_path / "out", tmp_path / "run.jsonl"
    args = [sys.executable, "-m", "ganpipe", "upscale", "-i", str(src), "-o", str(out)]
    args += ["-m", str(sr_onnx), "--device", "cpu", "--engine", "ray", "--actors", "2"]
    first = subprocess.run(
        args + ["--report", str(report)], capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 1, first.stderr  # broken.png
    assert "upscaled 5 images" in first.stdout and "1 failed" in first.stdout
    assert [ln for ln in first.stderr.splitlines() if not ln.startswith("ganpipe: ")] == []
    records = load_report(report)
    assert sorted(r.outcome for r in records) == ["failed"] + ["written"] * 5
    again = subprocess.run(args + ["--skip-existing"], capture_output=True, text=True, timeout=600)
    assert "upscaled 0 images" in again.stdout and "skipped 5 existing" in again.stdout
