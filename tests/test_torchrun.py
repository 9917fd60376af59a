"""``torchrun ... -m ganpipe run pipeline.toml`` in real processes (Gloo on the CPU): the
same weights as ``devices = 2``, two nodes meeting at a c10d rendezvous on localhost, an
elastic restart after a worker is killed, SIGTERM to torchrun, and a checkpoint resumed
with another number of processes. Process 0 alone writes; every resume of the same world
size is bit-exact, so each run ends equal to one uninterrupted ``devices = 2`` run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from _dist_helpers import (
    DP_STEPS,
    final,
    finish,
    make,
    run,
    same,
    stage_entry,
    start,
    stop_after,
    stopped_step,
    torchrun,
    train_dir,
    wait_for,
)
from conftest import TINY_PIPELINE, write_toml

from ganpipe.errors import ConfigError
from ganpipe.pipeline import run_file
from ganpipe.training import checkpoint as ckpt
from ganpipe.training.distributed import _free_port
from ganpipe.training.launch import Launched, from_env

ONE_NODE = ("--standalone", "--nproc-per-node", "2")


def workers(launcher: int) -> dict[int, int]:
    """RANK -> pid of the ganpipe processes torchrun ``launcher`` started (Linux /proc)."""
    found = {}
    for task in Path(f"/proc/{launcher}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for item in env:
                if item.startswith(b"RANK="):
                    found[int(item[5:])] = int(pid)
    return found


@pytest.mark.slow
def test_torchrun_trains_the_same_weights_as_devices_2(tmp_path, dp_reference):
    make(tmp_path, DP_STEPS, every=10)
    rc, out = run(tmp_path, torchrun(*ONE_NODE))
    assert rc == 0, out
    assert out.count("[train] 2 data-parallel processes (torchrun)") == 1  # process 0 logs
    # weights, optimizers and the metrics log (one writer) equal those of devices = 2
    assert same(final(tmp_path, DP_STEPS), dp_reference)
    assert stage_entry(tmp_path)["info"]["device"] == "2x cpu"
    assert not list(train_dir(tmp_path).glob(".*"))
    # a second run: up to date on every process, nothing trained
    rc, out = run(tmp_path, torchrun(*ONE_NODE))
    assert rc == 0, out
    assert "[train] up to date, skipped" in out


@pytest.mark.slow
def test_killed_worker_restarts_and_resumes_from_the_checkpoint(tmp_path, dp_reference):
    make(tmp_path, DP_STEPS, every=10)
    proc = start(tmp_path, torchrun(*ONE_NODE, "--max-restarts", "1"))
    first = train_dir(tmp_path) / "checkpoints" / "step_00000010"
    wait_for(first.is_dir, proc, "checkpoint")
    os.kill(workers(proc.pid)[0], signal.SIGKILL)  # the writer, mid-run
    rc, out = finish(proc)
    assert rc == 0, out
    assert "resuming from" in out, out
    assert same(final(tmp_path, DP_STEPS), dp_reference)


@pytest.mark.slow
def test_sigterm_to_torchrun_checkpoints_and_resumes(tmp_path, dp_reference):
    make(tmp_path, DP_STEPS)  # no checkpoint but the one the signal makes (and the last)
    rc, out = stop_after(tmp_path, [signal.SIGTERM], torchrun(*ONE_NODE))
    assert rc != 0, out  # torchrun exits 1 (its SignalException); each ganpipe process 143
    step = stopped_step(out, "SIGTERM", tmp_path)  # process 0 alone says it
    assert 0 < step < DP_STEPS
    entry = stage_entry(tmp_path)
    assert (entry["status"], entry["signal"]) == ("terminated", "SIGTERM")
    state = ckpt.load_state(train_dir(tmp_path) / "checkpoints" / f"step_{step:08d}")
    assert len(state["rng_ranks"]) == 2
    rc, out = run(tmp_path, torchrun(*ONE_NODE))
    assert rc == 0, out
    assert f"(step {step})" in out
    assert same(final(tmp_path, DP_STEPS), dp_reference)


@pytest.mark.slow
def test_two_nodes_meet_and_resume_a_checkpoint_of_another_world_size(tmp_path):
    """A one-process checkpoint, continued by two torchrun 'nodes' (one process each,
    rendezvous c10d on localhost), then by one process again: each resume says the
    noise restarts; weights, optimizers and step carry over."""
    quiet = lambda *_: None  # noqa: E731
    run_file(make(tmp_path, 4, every=2), entry_points=False, log=quiet)
    make(tmp_path, 8, every=2)
    rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{_free_port()}"]
    node = ["--nnodes", "2", "--nproc-per-node", "1", *rdzv, "--rdzv-id", "two-nodes"]
    procs = [start(tmp_path, torchrun(*node, "--node-rank", str(r))) for r in (0, 1)]
    outs = [finish(p) for p in procs]
    assert [rc for rc, _ in outs] == [0, 0], outs
    text = "".join(out for _, out in outs)
    assert "was made by 1 process(es), resuming with 2" in text
    assert "2 data-parallel processes (torchrun)" in text
    state = ckpt.load_state(train_dir(tmp_path) / "checkpoints" / "step_00000008")
    assert len(state["rng_ranks"]) == 2
    steps = [json.loads(ln)["step"] for ln in (train_dir(tmp_path) / "metrics.jsonl").open()]
    assert steps == [4, 5, 8]  # one writer (log_every = 5, and the last step)
    logs: list[str] = []
    run_file(make(tmp_path, 10, every=2), entry_points=False, log=logs.append)
    assert any("made by 2 process(es), resuming with 1" in ln for ln in logs), logs
    assert (train_dir(tmp_path) / "checkpoints" / "step_00000010").is_dir()


def test_place_from_the_environment(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert from_env() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert from_env() is None  # one process: a plain run
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="RANK / LOCAL_RANK are missing"):
        from_env()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert from_env() == Launched(rank=3, world=4, local_rank=1, local_world=2)
    assert not from_env().main


def test_torchrun_configuration_errors_at_load(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="leave train.devices at 1 under torchrun"):
        run_file(make(tmp_path, 8, devices=3), entry_points=False, log=lambda *_: None)
    with pytest.raises(ConfigError, match="multiple of the processes torchrun started = 3"):
        run_file(make(tmp_path, 8), entry_points=False, log=lambda *_: None)
    assert not (tmp_path / "runs").exists()


def test_a_pipeline_without_training_runs_in_process_0_alone(tmp_path, monkeypatch):
    text = TINY_PIPELINE.split("[train]")[0].format(variant="dcgan") + "[augment]\n"
    path = write_toml(tmp_path / "pipeline.toml", text)
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    manifest = run_file(path, entry_points=False, log=lambda *_: None)
    assert manifest.stages == {}
    assert not (tmp_path / "runs").exists()  # process 0 alone writes (and runs augment)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert "augment" in run_file(path, entry_points=False, log=lambda *_: None).stages
