"""Batch upscaling beyond one process: ``--shard i/N`` workers (the scheduler-array way) and
the Ray Data engine (real local Ray instance, 2 CPU actors)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganpipe.nn.sr import SRVGGNetCompact
from ganpipe.upscale.batch import upscale_path
from ganpipe.weights import import_weights


@pytest.fixture(scope="module")
def sr_onnx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=2).eval()
    torch.save({"params": net.state_dict()}, folder / "m.pth")
    import_weights(folder / "m.pth", folder / "m.onnx")
    return folder / "m.onnx"


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


ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_engine_writes_the_local_engines_bytes(tmp_path, sr_onnx):
    from ganpipe.upscale.options import UpscaleOptions
    from ganpipe.upscale.plan import plan_jobs
    from ganpipe.upscale.ray_engine import run_on_ray

    src = _folder(tmp_path / "in", 9)
    opts = UpscaleOptions(model=[sr_onnx], device="cpu")
    seen = []
    result = run_on_ray(
        plan_jobs(src, tmp_path / "ray", opts).jobs, opts, actors=2, on_row=seen.append
    )
    assert len(seen) == len(result.rows) == 10 and result.scale == 2
    outcomes = {row["src"].rsplit("/", 1)[-1]: row["outcome"] for row in seen}
    assert outcomes.pop("broken.png") == "failed"
    assert set(outcomes.values()) == {"written"}
    local = upscale_path(src, tmp_path / "local", sr_onnx, device="cpu", progress=False)
    assert len(local.written) == 9
    for path in sorted((tmp_path / "local").iterdir()):
        assert (tmp_path / "ray" / path.name).read_bytes() == path.read_bytes(), path.name
