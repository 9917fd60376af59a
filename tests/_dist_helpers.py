"""Helpers of the tests that train in real processes (test_preemption, test_torchrun,
test_distributed): one tiny pipeline, ``ganpipe run`` or torchrun in a subprocess, the
signals sent to it, and what the run left behind (weights, optimizers, metrics)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import TINY_PIPELINE, write_toml
from safetensors.torch import load_file

from ganpipe.training import checkpoint as ckpt

#: conftest's tiny pipeline (run folder runs/tiny), training only, saved as these tests need
PIPELINE = (
    TINY_PIPELINE.split("[train]")[0].format(variant="dcgan")
    + """[train]
steps = {steps}
batch_size = 8
log_every = 5
sample_every = 0
checkpoint_every = {every}
num_samples = 4
ema_decay = 0.9
progress = false
devices = {devices}
"""
)

#: steps of the data-parallel runs (``devices = 2``, torchrun): a few seconds each
DP_STEPS = 80

#: one intra-op thread: fast on a shared machine, and the same arithmetic in every run
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
for _key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
    ENV.pop(_key, None)

GANPIPE_RUN = [sys.executable, "-m", "ganpipe", "run"]


def make(folder: Path, steps: int, devices: int = 1, every: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = PIPELINE.format(steps=steps, devices=devices, every=every)
    return write_toml(folder / "pipeline.toml", text)


def train_dir(folder: Path) -> Path:
    return folder / "runs" / "tiny" / "train"


def torchrun(*args: str) -> list[str]:
    """``torchrun ARGS -m ganpipe run`` (its own log files in the test's folder)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--log-dir", "logs", *args]
    return [*launcher, "-m", "ganpipe", "run"]


def start(folder: Path, cmd: list[str] = GANPIPE_RUN) -> subprocess.Popen:
    """``cmd pipeline.toml`` in ``folder``, stdout and stderr together."""
    return subprocess.Popen(
        [*cmd, "pipeline.toml"],
        cwd=folder,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out


def run(folder: Path, cmd: list[str] = GANPIPE_RUN) -> tuple[int, str]:
    return finish(start(folder, cmd))


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)


def logged(folder: Path, lines: int):
    """A condition: the metrics log has ``lines`` lines."""
    metrics = train_dir(folder) / "metrics.jsonl"
    return lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= lines


def stop_after(folder: Path, signums: list[int], cmd=GANPIPE_RUN, gap: float = 0.0):
    """Start the run, wait for two metrics lines, send ``signums`` (``gap`` s apart) to
    the process started (only); returns its exit code and output."""
    proc = start(folder, cmd)
    try:
        wait_for(logged(folder, 2), proc, "two metrics lines")
        for signum in signums:
            proc.send_signal(signum)
            time.sleep(gap)
    except BaseException:
        proc.kill()
        raise
    return finish(proc, timeout=120)


def final(folder: Path, steps: int) -> tuple[dict[str, torch.Tensor], dict, list[dict]]:
    """The last checkpoint's weights, optimizer state and the metrics log (no timings)."""
    path = train_dir(folder) / "checkpoints" / f"step_{steps:08d}"
    lines = (train_dir(folder) / "metrics.jsonl").read_text().splitlines()
    log = [{k: v for k, v in json.loads(ln).items() if k != "images_per_s"} for ln in lines]
    return load_file(path / "model.safetensors"), ckpt.load_state(path)["optimizers"], log


def same(a, b) -> bool:
    """Bit-equal tensors, in equal containers."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def stopped_step(out: str, name: str, folder: Path) -> int:
    """The step of the one ``stopped by NAME`` line; that step's checkpoint is the only
    one in the folder."""
    lines = [ln for ln in out.splitlines() if ln.startswith(f"ganpipe: stopped by {name}")]
    assert len(lines) == 1, out
    step = int(lines[0].split(" at step ")[1].split(";")[0])
    rel = Path("runs", "tiny", "train", "checkpoints", f"step_{step:08d}")
    assert lines[0] == (
        f"ganpipe: stopped by {name} at step {step}; checkpoint {rel} written; "
        f"run the same command to resume"
    )
    assert [p.name for p in (train_dir(folder) / "checkpoints").iterdir()] == [rel.name]
    return step


def stage_entry(folder: Path, stage: str = "train") -> dict:
    """The manifest's record of ``stage``."""
    return json.loads((folder / "runs" / "tiny" / "manifest.json").read_text())["stages"][stage]


def reference_run(folder: Path) -> tuple[dict[str, torch.Tensor], dict, list[dict]]:
    """One uninterrupted ``devices = 2`` run of :data:`DP_STEPS` steps (conftest's
    ``dp_reference``): what every data-parallel run of the tests must end equal to."""
    make(folder, DP_STEPS, devices=2, every=10)
    rc, out = run(folder)
    assert rc == 0, out
    return final(folder, DP_STEPS)
