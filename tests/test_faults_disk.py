"""Full disks (issue 25, deliverable 1): the ``--report`` journal, the report, outputs,
checkpoints and a run's own files on a real small tmpfs (``small_disk``; root only). Each
write that does not fit is one line naming the file and what to free; a batch goes on
with what it can still do and its summary says what was not written; nothing
half-written is left under a final name."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fill_disk
from PIL import Image
from test_upscale import OUT_NAME, _hand_model, _resize

from ganpipe.errors import WriteError
from ganpipe.fsutil import append_line, is_temp_name, open_append
from ganpipe.training.checkpoint import list_checkpoints, load_state, load_weights, save_checkpoint
from ganpipe.upscale import upscale_path
from ganpipe.upscale.report import load_report, part_path

FULL = "No space left on device (the disk is full; free space on it or choose another folder)"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    nodes, inits = _resize("image", OUT_NAME, 2)
    return _hand_model(tmp_path_factory.mktemp("m") / "near2.onnx", nodes, inits, 2)


def photos(folder: Path, n: int, size: int = 24) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.png")
    return folder


def temp_names(folder: Path) -> list[str]:
    return [
        name for _, dirs, files in os.walk(folder) for name in dirs + files if is_temp_name(name)
    ]


def test_a_full_disk_under_the_report_does_not_stop_the_batch(tmp_path, small_disk, model, cli):
    """The journal and the report on a full disk: every image is still written; one line
    for the journal, one for the report, the summary says the report is not written."""
    disk = small_disk(64)
    fill_disk(disk)
    src, out = photos(tmp_path / "in", 6), tmp_path / "out"
    report = disk / "r.jsonl"
    proc = cli(
        "upscale", "-i", str(src), "-o", str(out), "-m", str(model), "--device", "cpu",
        "--report", str(report),
    )  # fmt: skip
    assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.png" for i in range(6)]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, lines  # the journal's and the report's; the lock holds silently
    journal = [line for line in lines if "report journal" in line]
    assert journal == [
        f"ganpipe: cannot write report journal {part_path(report)}: {FULL}; the batch goes "
        f"on, the report is tried again at the end"
    ]
    final = [line for line in lines if line.startswith(f"ganpipe: cannot write report {report}")]
    assert len(final) == 1 and FULL in final[0] and "its 6 records are not written" in final[0]
    assert "upscaled 6 images" in proc.stdout
    assert "report not written (No space left on device)" in proc.stdout
    assert not report.exists() and not temp_names(disk)  # nothing half-written


def test_the_report_is_written_when_space_comes_back(tmp_path, small_disk, model):
    """The journal stops on a full disk (said once); space freed meanwhile, the report at
    the end holds every record and the summary has nothing to add."""
    disk = small_disk(64)
    fill_disk(disk)
    src = photos(tmp_path / "in", 6)
    said: list[str] = []

    def log(message: str) -> None:
        said.append(message)
        if "report journal" in message:
            (disk / ".filler").unlink()  # the operator frees space

    s = upscale_path(src, tmp_path / "out", model, device="cpu", report=disk / "r.json", log=log)
    assert [m for m in said if "report journal" in m] == [
        f"cannot write report journal {part_path(disk / 'r.json')}: {FULL}; the batch goes on, "
        f"the report is tried again at the end"
    ]
    assert s.ok and s.report == disk / "r.json" and "not written" not in s.line()
    records = load_report(disk / "r.json")
    assert len(records) == 6 and {r.outcome for r in records} == {"written"}
    assert not part_path(disk / "r.json").exists() and not temp_names(disk)


def test_outputs_on_a_full_disk_fail_one_line_each(tmp_path, small_disk, model, cli):
    disk = small_disk(64)
    fill_disk(disk)
    src = photos(tmp_path / "in", 3, size=40)
    proc = cli(
        "upscale", "-i", str(src), "-o", str(disk / "out"), "-m", str(model), "--device",
        "cpu", "--report", str(tmp_path / "r.jsonl"),
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("ganpipe: failed:")]
    assert len(failed) == 3
    for i, line in enumerate(failed):
        assert line == (
            f"ganpipe: failed: {src / f'{i}.png'}: cannot write {disk / 'out' / f'{i}.png'}: {FULL}"
        )
    records = load_report(tmp_path / "r.jsonl")
    assert [r.outcome for r in records] == ["failed"] * 3
    assert records[0].reason.count("cannot write") == 1
    assert os.listdir(disk / "out") == []  # no temporary file left


def test_a_checkpoint_on_a_full_disk_is_one_line_and_keeps_the_previous(small_disk):
    """torch.save's ``RuntimeError: [enforce fail ...] unexpected pos`` becomes the
    WriteError of the disk; the checkpoint before stays loadable, no temporary folder."""
    torch.manual_seed(0)
    disk = small_disk(256)
    nets = {"g": torch.nn.Linear(100, 200)}
    first = save_checkpoint(disk / "ckpt", 1, nets, {"step": 1, "opt": torch.zeros(30000)})
    fill_disk(disk, leave=40 << 10)  # less than one more checkpoint
    with pytest.raises(WriteError) as caught:
        save_checkpoint(disk / "ckpt", 2, nets, {"step": 2, "opt": torch.zeros(30000)})
    assert str(caught.value) == f"cannot write checkpoint {disk / 'ckpt' / 'step_00000002'}: {FULL}"
    assert list_checkpoints(disk / "ckpt") == [first] and not temp_names(disk)
    assert load_state(first)["step"] == 1
    assert torch.equal(load_weights(first)["g"]["weight"], nets["g"].weight.detach())


def test_the_metrics_log_on_a_full_disk_is_one_line(small_disk):
    disk = small_disk(16)
    fh = open_append(disk / "metrics.jsonl", "metrics log")
    with pytest.raises(WriteError) as caught:
        for step in range(10_000):
            append_line(fh, f'{{"step": {step}, "loss": 0.5}}', "metrics log")
    assert str(caught.value) == f"cannot write metrics log {disk / 'metrics.jsonl'}: {FULL}"
    assert fh.closed  # nothing left buffered to fail again at close


def test_ganpipe_run_on_a_full_disk_stops_in_one_line_keeping_the_checkpoint(
    tmp_path, small_disk, tiny_pipeline, cli
):
    """A run folder on a disk that fills up: training resumed from step 2 cannot write
    its step-4 checkpoint; one line names what could not be written and what to free, the
    step-2 checkpoint stays, no temporary file or folder is left."""
    runs = small_disk(4096)
    extra = "\n".join(f"{k} = {v}" for k, v in [("checkpoint_every", 2)])
    toml = tiny_pipeline(steps=2).read_text().replace("checkpoint_every = 0", extra)
    toml = toml.replace('out_dir = "runs"', f'out_dir = "{runs}"')
    toml = toml[: toml.index("[export]")]  # training only
    (tmp_path / "pipeline.toml").write_text(toml)
    first = cli("run", str(tmp_path / "pipeline.toml"))
    assert first.returncode == 0, first.stderr
    ckpts = runs / "tiny" / "train" / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpts)] == ["step_00000002"]
    fill_disk(runs, leave=24 << 10)
    (tmp_path / "pipeline.toml").write_text(toml.replace("steps = 2", "steps = 4"))
    proc = cli("run", str(tmp_path / "pipeline.toml"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ganpipe: error: cannot write checkpoint {ckpts / 'step_00000004'}: {FULL}"
    )
    assert [p.name for p in list_checkpoints(ckpts)] == ["step_00000002"]
    assert load_state(ckpts / "step_00000002")["step"] == 2
    assert not temp_names(runs)
