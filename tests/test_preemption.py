"""Preemption: SIGTERM / SIGINT to a real ``ganpipe run`` stop training after a step with a
checkpoint, exit 143 / 130 with one line naming it, and the same command resumes to the
bit-identical result of an uninterrupted run (one process, and ``devices = 2``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_toml
from safetensors.torch import load_file

from ganpipe import signals
from ganpipe.training import checkpoint as ckpt

PIPELINE = """
[run]
name = "pre"
out_dir = "runs"
seed = 1
device = "cpu"

[data]
dataset = "shapes"
image_size = 16
channels = 3
count = 64
classes = 2

[model]
variant = "dcgan"
latent_dim = 8
g_width = 4
d_width = 4

[train]
steps = {steps}
batch_size = 8
log_every = 5
sample_every = 0
checkpoint_every = 0
num_samples = 4
ema_decay = 0.9
progress = false
devices = {devices}
"""

#: one intra-op thread: fast on a shared machine, and the same arithmetic in every run
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def make(folder: Path, steps: int, devices: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_toml(folder / "pipeline.toml", PIPELINE.format(steps=steps, devices=devices))


def train_dir(folder: Path) -> Path:
    return folder / "runs" / "pre" / "train"


def run(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ganpipe", "run", "pipeline.toml"],
        cwd=folder,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_stopped(folder: Path, signums: list[int], gap: float = 0.0) -> tuple[int, str]:
    """Start the run, wait for two metrics lines, send ``signums`` (``gap`` s apart)."""
    metrics = train_dir(folder) / "metrics.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ganpipe", "run", "pipeline.toml"],
        cwd=folder,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be stopped"
        for signum in signums:
            proc.send_signal(signum)
            time.sleep(gap)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out


def final(folder: Path, steps: int) -> tuple[dict[str, torch.Tensor], dict, list[dict]]:
    """The last checkpoint's weights, optimizer state and the metrics log (no timings)."""
    path = train_dir(folder) / "checkpoints" / f"step_{steps:08d}"
    lines = (train_dir(folder) / "metrics.jsonl").read_text().splitlines()
    log = [{k: v for k, v in json.loads(ln).items() if k != "images_per_s"} for ln in lines]
    return load_file(path / "model.safetensors"), ckpt.load_state(path)["optimizers"], log


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def stopped_step(out: str, name: str, folder: Path) -> int:
    lines = [ln for ln in out.splitlines() if ln.startswith(f"ganpipe: stopped by {name}")]
    assert len(lines) == 1, out
    step = int(lines[0].split(" at step ")[1].split(";")[0])
    rel = Path("runs", "pre", "train", "checkpoints", f"step_{step:08d}")
    assert lines[0] == (
        f"ganpipe: stopped by {name} at step {step}; checkpoint {rel} written; "
        f"run the same command to resume"
    )
    assert [p.name for p in (train_dir(folder) / "checkpoints").iterdir()] == [rel.name]
    return step


STEPS = 600


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    make(folder, STEPS)
    done = run(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return final(folder, STEPS)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_and_resumes_exactly(tmp_path, reference, signum, code):
    make(tmp_path, STEPS)
    rc, out = run_stopped(tmp_path, [signum])
    assert rc == code, out
    name = signal.Signals(signum).name
    step = stopped_step(out, name, tmp_path)
    assert 0 < step < STEPS
    entry = json.loads((tmp_path / "runs" / "pre" / "manifest.json").read_text())["stages"]
    assert entry["train"]["status"] == ("terminated" if name == "SIGTERM" else "interrupted")
    assert entry["train"]["signal"] == name
    # the metrics log holds every step up to the stop
    last = json.loads((train_dir(tmp_path) / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == step - step % 5
    again = run(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from" in again.stdout and f"(step {step})" in again.stdout
    weights, optimizers, log = final(tmp_path, STEPS)
    assert same(weights, reference[0])
    assert same(optimizers, reference[1])
    assert log == reference[2]


@pytest.mark.slow
def test_second_sigterm_during_the_save_corrupts_nothing(tmp_path):
    make(tmp_path, STEPS)
    rc, out = run_stopped(tmp_path, [signal.SIGTERM] * 3, gap=0.01)
    assert rc == 143, out
    step = stopped_step(out, "SIGTERM", tmp_path)
    path = train_dir(tmp_path) / "checkpoints" / f"step_{step:08d}"
    assert ckpt.latest_checkpoint(path.parent) == path
    assert int(ckpt.load_state(path)["step"]) == step
    assert ckpt.load_weights(path)  # complete, readable
    leftovers = [p for p in train_dir(tmp_path).rglob("*") if p.name.startswith(".")]
    assert not leftovers


@pytest.mark.slow
def test_data_parallel_processes_stop_together_and_resume_exactly(tmp_path):
    steps = 250
    ref, stopped = tmp_path / "ref", tmp_path / "stopped"
    make(ref, steps, devices=2)
    make(stopped, steps, devices=2)
    done = run(ref)
    assert done.returncode == 0, done.stdout + done.stderr
    rc, out = run_stopped(stopped, [signal.SIGTERM])  # to the parent only
    assert rc == 143, out
    step = stopped_step(out, "SIGTERM", stopped)
    state = ckpt.load_state(train_dir(stopped) / "checkpoints" / f"step_{step:08d}")
    assert len(state["rng_ranks"]) == 2  # both processes took part in it
    assert not list(train_dir(stopped).glob(".devices-*"))
    again = run(stopped)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"(step {step})" in again.stdout
    a, b = final(ref, steps), final(stopped, steps)
    assert same(a[0], b[0]) and same(a[1], b[1]) and a[2] == b[2]


def test_interrupted_names_the_signal_and_exit_code():
    term = signals.Interrupted(signal.SIGTERM, step=7, checkpoint="/nowhere/step_00000007")
    assert (term.exit_code, term.status, term.signal_name) == (143, "terminated", "SIGTERM")
    assert "at step 7; checkpoint /nowhere/step_00000007 written" in str(term)
    assert isinstance(term, KeyboardInterrupt)
    stop = signals.Interrupted(signal.SIGINT)
    assert (stop.exit_code, stop.status) == (130, "interrupted")
    assert "finished outputs and checkpoints are kept" in stop.message()


def test_deferred_records_and_hands_back_what_was_not_taken():
    before = signal.getsignal(signal.SIGTERM)
    seen = []
    signal.signal(signal.SIGTERM, lambda s, _f: seen.append(s))
    try:
        with signals.deferred():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)
            assert signals.requested() == signal.SIGTERM and not seen
        assert seen == [signal.SIGTERM]  # the previous handler got it, once, at the end
        with pytest.raises(signals.Interrupted), signals.deferred():
            signal.raise_signal(signal.SIGTERM)
            raise signals.Interrupted(signals.consume())
        assert seen == [signal.SIGTERM] and signals.requested() is None
    finally:
        signal.signal(signal.SIGTERM, before)


def test_raising_stops_another_stage_with_exit_143(tmp_path):
    """Outside training (export, evaluate, upscale...): the CLI's handler raises
    Interrupted in the main thread, so ``finally`` blocks run; the exit code is 143."""
    script = tmp_path / "stage.py"
    script.write_text(
        "import sys, time\n"
        "from ganpipe.cli.main import main\n"
        "import click\n"
        "@main.command('slow')\n"
        "def slow():\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "    finally:\n"
        "        print('cleaned up', flush=True)\n"
        "main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), "slow"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "cleaned up" in out
    assert err.strip().splitlines()[-1] == (
        "ganpipe: stopped by SIGTERM; finished outputs and checkpoints are kept, "
        "run the same command to resume"
    )
