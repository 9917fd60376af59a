"""Models that lie or hang, and what ONNX Runtime does behind ganpipe's back (issue 25, 3).

Every model here is a real ONNX graph made with ``onnx.helper`` and a ganpipe card in its
metadata, run by real ONNX Runtime sessions in real ``ganpipe`` processes:

* a card that lies (a 2^40 latent, 7 channels against 3, an output without spatial axes,
  non-finite values) is one line naming the model, before anything is written;
* an endless ``Loop`` is stopped by SIGTERM / SIGINT (exit 143 / 130) and by
  ``--timeout`` (that batch or file fails, the others are written);
* ONNX Runtime's coloured log lines never reach stderr raw, and its telemetry writes
  nothing under ``~/.cache/Microsoft``;
* a full disk in ``generate`` keeps the images written and says how many were not.
"""

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
from _lying_models import LATENT, generator, upscaler, write_images
from conftest import fill_disk, run_cli
from PIL import Image


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The single ``ganpipe: error:`` line of ``proc``'s stderr, which holds ``words``."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _no_raw_ort(stderr: str) -> None:
    assert "\x1b[" not in stderr, stderr
    assert ":onnxruntime:" not in stderr, stderr
    assert "Traceback" not in stderr, stderr


def _generate(model: Path, out: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return run_cli("generate", "-m", str(model), "-o", str(out), "--device", "cpu", *args, **kw)


def _upscale(model: Path, src: Path, out: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    cmd = ["upscale", "-i", str(src), "-o", str(out), "-m", str(model), "--device", "cpu"]
    return run_cli(*cmd, *args, **kw)


# -- generate: cards that lie -------------------------------------------------------
def test_generate_refuses_a_2_to_the_40_latent_before_running(tmp_path):
    model = generator(tmp_path / "huge.onnx", card_latent=2**40, graph_latent="latent")
    proc = _generate(model, tmp_path / "out", "-n", "4")
    assert proc.returncode == 2
    _one_line_error(proc, "huge.onnx", "'z' of 1,099,511,627,776 values", "4.0 TiB", "re-export")
    assert not (tmp_path / "out").exists()


def test_generate_refuses_a_card_latent_the_graph_does_not_take(tmp_path):
    model = generator(tmp_path / "lies.onnx", card_latent=2**40)
    proc = _generate(model, tmp_path / "out", "-n", "4")
    assert proc.returncode == 2
    _one_line_error(proc, "lies.onnx", "batch x 1099511627776", "the graph takes ?x8")


def test_generate_refuses_a_batch_over_the_memory_budget_naming_a_batch_size(tmp_path):
    from ganpipe.inference.contract import memory_budget

    latent = memory_budget() // 4 // 16  # one image's noise is 1/16 of the budget
    model = generator(tmp_path / "big.onnx", card_latent=latent, graph_latent="latent")
    proc = _generate(model, tmp_path / "out", "-n", "64")
    assert proc.returncode == 2
    _one_line_error(proc, "big.onnx", "a batch of 64", "use --batch-size 16 or less")


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ({"channels": 7}, ["7 channels", "model card says channels = 3"]),
        ({"spatial": False}, ["shape (4, 48)", "not images (batch, channels, height, width)"]),
    ],
    ids=["7-channels", "no-spatial-axes"],
)
def test_generate_refuses_an_output_unlike_its_card(tmp_path, kind, words):
    model = generator(tmp_path / "liar.onnx", **kind)
    proc = _generate(model, tmp_path / "out", "-n", "4")
    assert proc.returncode == 2
    _one_line_error(proc, "liar.onnx", *words)
    assert not list((tmp_path / "out").glob("*.png"))


def test_generate_run_failure_is_one_line_and_no_raw_onnxruntime_log(tmp_path):
    model = generator(tmp_path / "broken.onnx", head="reshape")
    proc = _generate(model, tmp_path / "out", "-n", "4")
    assert proc.returncode == 2
    _no_raw_ort(proc.stderr)
    _one_line_error(proc, "broken.onnx fails to run", "onnxruntime: Reshape node:", "{4,8}")


def test_generate_skips_images_with_non_finite_values_and_writes_the_others(tmp_path):
    model = generator(tmp_path / "sqrt.onnx", head="sqrt0")
    proc = _generate(model, tmp_path / "out", "-n", "8", "--seed", "0")
    z0 = np.random.default_rng(0).standard_normal((8, LATENT), dtype=np.float32)[:, 0]
    good = {f"sample_{i:05d}.png" for i in np.flatnonzero(z0 >= 0)}
    assert 0 < len(good) < 8
    assert proc.returncode == 1, proc.stderr
    _no_raw_ort(proc.stderr)
    assert {p.name for p in (tmp_path / "out").glob("sample_*.png")} == good
    assert f"; {8 - len(good)} not written" in proc.stdout
    assert "non-finite values (NaN or inf)" in proc.stderr
    assert "RuntimeWarning" not in proc.stderr


def test_generate_refuses_a_model_whose_every_image_is_nan(tmp_path):
    model = generator(tmp_path / "nan.onnx", head="nan")
    proc = _generate(model, tmp_path / "out", "-n", "4")
    assert proc.returncode == 2
    _one_line_error(proc, "nan.onnx gives non-finite values (NaN or inf) for 4 of 4 images")
    assert not list((tmp_path / "out").glob("*.png"))


def test_generate_warns_once_about_outputs_far_outside_the_card_range(tmp_path):
    model = generator(tmp_path / "loud.onnx", head="x100")
    proc = _generate(model, tmp_path / "out", "-n", "6", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "far outside" in line]
    assert len(warnings) == 1 and "value_range [-1, 1]" in warnings[0]
    assert len(list((tmp_path / "out").glob("sample_*.png"))) == 6


# -- bounded runs -------------------------------------------------------------------
def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"the command did not get going: {proc.communicate()}")
        time.sleep(0.05)
    time.sleep(0.5)  # inside the endless run by now


def _popen(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ganpipe", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _signal(proc: subprocess.Popen, signum: int) -> tuple[int | None, str]:
    """Send ``signum``; the exit status and stderr (status None when the process had not
    exited 30 s later - a safety bound, not a speed target: then it is killed, so no
    endless process outlives the test)."""
    proc.send_signal(signum)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        return None, stderr
    return proc.returncode, stderr


def test_sigterm_stops_an_endless_loop_in_generate(tmp_path):
    model = generator(tmp_path / "loop.onnx", hang_above=0)
    out = tmp_path / "out"
    proc = _popen("generate", "-m", str(model), "-o", str(out), "--device", "cpu", "-n", "2")
    _wait_for(out, proc)
    code, stderr = _signal(proc, signal.SIGTERM)
    assert code == 143, stderr  # None: still running 30 s after the signal
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr


def test_sigint_stops_an_endless_loop_in_upscale(tmp_path):
    model = upscaler(tmp_path / "loop.onnx", hang_above=40)  # the 32 px test image runs
    src, out = write_images(tmp_path / "in", [64]), tmp_path / "out"
    proc = _popen("upscale", "-i", str(src), "-o", str(out), "-m", str(model), "--device", "cpu")
    _wait_for(out, proc)
    code, stderr = _signal(proc, signal.SIGINT)
    assert code == 130, stderr
    assert "stopped by SIGINT" in stderr and "Traceback" not in stderr


def test_generate_timeout_fails_the_slow_batch_and_writes_the_others(tmp_path):
    model = generator(tmp_path / "loop.onnx", hang_above=2)  # batches of 3 never end
    args = ["-n", "5", "--batch-size", "3", "--timeout", "1"]
    proc = _generate(model, tmp_path / "out", *args, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("sample_*.png")) == [
        "sample_00003.png",
        "sample_00004.png",
    ]
    assert (
        "ganpipe: not written: sample_00000.png to sample_00002.png (3 images): the model "
        "took longer than --timeout 1s; stopped"
    ) in proc.stderr
    assert "wrote 2 images and grid.png" in proc.stdout and "3 not written" in proc.stdout


def test_upscale_timeout_fails_the_slow_file_and_the_batch_goes_on(tmp_path):
    model = upscaler(tmp_path / "loop.onnx", hang_above=40)
    src = write_images(tmp_path / "in", [24, 64, 24])
    report = tmp_path / "r.jsonl"
    args = ["--timeout", "1", "--report", str(report)]
    proc = _upscale(model, src, tmp_path / "out", *args, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0_24.png", "2_24.png"]
    records = {Path(r["path"]).name: r for r in map(json.loads, report.read_text().splitlines())}
    assert records["1_64.png"]["outcome"] == "failed"
    assert records["1_64.png"]["reason"] == "the model took longer than --timeout 1s; stopped"


def test_upscale_timeout_refuses_a_model_that_hangs_on_its_test_image(tmp_path):
    model = upscaler(tmp_path / "loop.onnx", hang_above=0)
    src = write_images(tmp_path / "in", [24])
    proc = _upscale(model, src, tmp_path / "out", "--timeout", "1", timeout=60)
    assert proc.returncode == 2
    _one_line_error(proc, "loop.onnx: a 32x32 test image took longer than --timeout 1s")


# -- upscale: outputs that lie ------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ({"out_channels": 7}, ["shape (1, 7, 64, 64)", "not (1, 3, 64, 64)", "32x32 test"]),
        ({"head": "nan"}, ["non-finite values (NaN or inf)", "32x32 test image"]),
    ],
    ids=["7-channels", "nan"],
)
def test_upscale_refuses_a_lying_model_once_before_any_file(tmp_path, kind, words):
    model = upscaler(tmp_path / "liar.onnx", **kind)
    src = write_images(tmp_path / "in", [24, 24, 24])
    proc = _upscale(model, src, tmp_path / "out")
    assert proc.returncode == 2
    _one_line_error(proc, "liar.onnx", *words)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_upscale_run_error_is_that_files_one_line_reason_never_raw_log(tmp_path):
    model = upscaler(tmp_path / "picky.onnx", head="reshape")  # 24 px runs, 64 px fails
    src = write_images(tmp_path / "in", [24, 64])
    proc = _upscale(model, src, tmp_path / "out", "--verbose")
    assert proc.returncode == 1, proc.stderr
    _no_raw_ort(proc.stderr)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["0_24.png"]
    failed = [line for line in proc.stderr.splitlines() if line.startswith("ganpipe: failed:")]
    assert len(failed) == 1 and "1_64.png: upscaling failed: onnxruntime: Reshape node" in failed[0]


def test_onnxruntime_load_log_becomes_plain_notes(tmp_path):
    """What ONNX Runtime prints while a session is made is captured as plain lines."""
    import onnxruntime as ort

    from ganpipe.inference.ortlog import captured

    model = upscaler(tmp_path / "m.onnx")
    opts = ort.SessionOptions()
    opts.log_severity_level = 0  # verbose: ONNX Runtime prints plenty
    notes: list[str] = []
    with captured(notes):
        ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    assert notes and all(n.startswith("onnxruntime: ") for n in notes if "onnxruntime" in n)
    assert not any("\x1b" in n or ":onnxruntime:" in n for n in notes)


# -- telemetry ----------------------------------------------------------------------
def test_no_onnxruntime_telemetry_under_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY",)}
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    gen = subprocess.run(
        [sys.executable, "-m", "ganpipe", "generate", "-m", str(generator(tmp_path / "g.onnx"))]
        + ["-o", str(tmp_path / "gen"), "-n", "2", "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert gen.returncode == 0, gen.stderr
    src = write_images(tmp_path / "in", [24])
    up = subprocess.run(
        [sys.executable, "-m", "ganpipe", "upscale", "-i", str(src), "-o", str(tmp_path / "up")]
        + ["-m", str(upscaler(tmp_path / "u.onnx")), "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert up.returncode == 0, up.stderr
    imp = subprocess.run(  # import runs the exporter and its parity check (ONNX Runtime)
        [sys.executable, "-m", "ganpipe", "import", str(_compact_weights(tmp_path / "w.pth"))]
        + ["-o", str(tmp_path / "w.onnx")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert imp.returncode == 0, imp.stderr
    assert list(home.rglob("*")) == []  # no ~/.cache/Microsoft/DeveloperTools/.onnxruntime


def _compact_weights(path: Path) -> Path:
    """A tiny Real-ESRGAN compact x2 net in its released layout."""
    import torch

    from ganpipe.nn.sr import SRVGGNetCompact

    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=4, num_conv=1, upscale=2)
    torch.save({"params": net.state_dict()}, path)
    return path


# -- full disk ----------------------------------------------------------------------
def test_generate_on_a_full_disk_keeps_what_it_wrote_and_says_what_it_did_not(tmp_path, small_disk):
    disk = small_disk(256)
    model = generator(tmp_path / "g.onnx")
    fill_disk(disk, leave=8 * 4096)  # room for a few images
    proc = _generate(model, disk / "out", "-n", "40", "--batch-size", "8")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    written = sorted((disk / "out").glob("sample_*.png"))
    assert 0 < len(written) < 40
    for path in written:  # complete images, none half-written
        with Image.open(path) as im:
            im.load()
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ganpipe: not written")]
    assert len(lines) == 1
    assert f"({40 - len(written)} images): cannot write " in lines[0]
    assert "No space left on device" in lines[0]
    assert f"wrote {len(written)} images to" in proc.stdout
    assert f"{40 - len(written)} not written" in proc.stdout
    assert not [p for p in (disk / "out").iterdir() if not p.name.startswith("sample_")]


def test_ray_engine_applies_the_timeout_in_its_actors(tmp_path):
    pytest.importorskip("ray.data")
    model = upscaler(tmp_path / "loop.onnx", hang_above=40)
    src = write_images(tmp_path / "in", [24, 64, 24])
    args = ["--engine", "ray", "--actors", "1", "--timeout", "1"]
    proc = _upscale(model, src, tmp_path / "out", *args, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0_24.png", "2_24.png"]
    assert (
        "ganpipe: failed: " + str(src / "1_64.png") + ": the model took longer than "
        "--timeout 1s; stopped"
    ) in proc.stderr
