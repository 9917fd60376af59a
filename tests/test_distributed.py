"""Data-parallel training (``[train] devices = N``) in real worker processes: Gloo on the
CPU here, the same code as NCCL on GPUs. Gradients are averaged so every process keeps the
same weights (the loop checks it at the end)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_toml
from safetensors.torch import load_file

from ganpipe.errors import ConfigError
from ganpipe.pipeline import run_file
from ganpipe.training.distributed import average_gradients

PIPELINE = """
[run]
name = "ddp"
device = "{device}"
seed = 3

[data]
dataset = "shapes"
image_size = 16
count = 64

[model]
variant = "{variant}"
latent_dim = 8
g_width = 4
d_width = 4

[train]
steps = {steps}
batch_size = {batch}
log_every = 2
sample_every = 0
checkpoint_every = 3
progress = false
devices = {devices}
ema_decay = 0.9
"""


def pipeline(
    tmp_path: Path,
    *,
    steps: int = 6,
    devices: int = 2,
    batch: int = 8,
    device: str = "cpu",
    variant: str = "dcgan",
) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_toml(
        tmp_path / "pipeline.toml",
        PIPELINE.format(steps=steps, devices=devices, batch=batch, device=device, variant=variant),
    )


def weights(tmp_path: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(
        tmp_path
        / "runs"
        / "ddp"
        / "train"
        / "checkpoints"
        / f"step_{step:08d}"
        / "model.safetensors"
    )


def _average_worker(rank: int, world: int, port: int, out) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(2, 2))
    c = torch.nn.Parameter(torch.zeros(1))  # no gradient: left alone
    a.grad = torch.full((3,), float(rank + 1))
    b.grad = torch.arange(4.0).reshape(2, 2) * (rank + 1)
    average_gradients([a, b, c], world)
    out.put((rank, a.grad.tolist(), b.grad.tolist(), c.grad))
    dist.barrier()  # leave together (see ganpipe.training.distributed._leave_together)
    dist.destroy_process_group()


def test_average_gradients_across_processes():
    import torch.multiprocessing as mp

    from ganpipe.training.distributed import _free_port

    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    mp.spawn(_average_worker, args=(2, _free_port(), out), nprocs=2, start_method="spawn")
    results = sorted(out.get() for _ in range(2))
    for _rank, a, b, c in results:
        assert a == [1.5, 1.5, 1.5]
        assert b == [[0.0, 1.5], [3.0, 4.5]]
        assert c is None


@pytest.mark.slow
def test_two_processes_train_with_one_writer(tmp_path):
    """Process 0 alone writes checkpoints (with each process's RNG state) and metrics.
    (A stop and resume of ``devices = 2`` ending bit-identical to an uninterrupted run:
    test_preemption and test_torchrun.)"""
    logs: list[str] = []
    run_file(pipeline(tmp_path / "a", steps=6), entry_points=False, log=logs.append)
    assert any("2 data-parallel processes" in line for line in logs)
    assert any("2x cpu" in line for line in logs)
    train = tmp_path / "a" / "runs" / "ddp" / "train"
    metrics = [json.loads(line) for line in (train / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4, 6]  # one writer
    state = torch.load(train / "checkpoints" / "step_00000006" / "state.pt", weights_only=True)
    assert len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])
    # two processes are not one process with the same global batch (other noise draws),
    # but they train the same nets from the same start
    run_file(pipeline(tmp_path / "c", steps=6, devices=1), entry_points=False, log=lambda *_: None)
    straight, single = weights(tmp_path / "a", 6), weights(tmp_path / "c", 6)
    assert single.keys() == straight.keys()
    assert any(not torch.equal(single[k], straight[k]) for k in single)


def test_devices_configuration_errors_at_load(tmp_path):
    with pytest.raises(ConfigError, match="batch_size = 7 must be a multiple of"):
        run_file(pipeline(tmp_path, batch=7), entry_points=False, log=lambda *_: None)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match='run.device = "cpu"'):
            run_file(pipeline(tmp_path, device="auto"), entry_points=False, log=lambda *_: None)
    assert not (tmp_path / "runs").exists()
