"""``[train] tensorboard = true``: the loop's losses, diversity and sample grids in
``train/tensorboard/``, read back with TensorBoard's own event reader."""

from __future__ import annotations

import importlib.util

import pytest

from ganpipe.config import load_config
from ganpipe.errors import ConfigError
from ganpipe.pipeline import run_file
from ganpipe.registry import load_registry
from ganpipe.stages.train import NON_RESULT_KEYS
from ganpipe.training.options import TrainOptions


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import (
        IMAGES,
        SCALARS,
        EventAccumulator,
    )

    acc = EventAccumulator(str(folder), size_guidance={SCALARS: 0, IMAGES: 0})
    acc.Reload()
    return acc


def _with_tensorboard(path):
    """``tensorboard = true`` in the [train] table of ``path``."""
    path.write_text(
        path.read_text().replace("progress = false", "progress = false\ntensorboard = true")
    )
    return path


def test_tensorboard_logs_losses_diversity_and_grids(tiny_pipeline):
    path = _with_tensorboard(tiny_pipeline(steps=6))
    path.write_text(path.read_text().replace("sample_every = 0", "sample_every = 3"))
    manifest = run_file(path, entry_points=False, log=lambda *a: None)
    folder = manifest.path.parent / "train" / "tensorboard"
    assert list(folder.glob("events.out.tfevents.*")), "no event file written"
    acc = _events(folder)
    tags = acc.Tags()
    for tag in ("loss/d_loss", "loss/g_loss", "diversity", "perf/images_per_s"):
        assert tag in tags["scalars"], tags
    steps = [e.step for e in acc.Scalars("loss/d_loss")]
    assert steps == [2, 4, 6]  # log_every = 2, as in metrics.jsonl
    assert all(e.value >= 0 for e in acc.Scalars("diversity"))
    images = acc.Images("samples")
    assert [e.step for e in images] == [3, 6]
    assert images[-1].width > 0 and images[-1].height > 0


def test_tensorboard_is_off_by_default_and_not_a_result_key(tiny_pipeline):
    """Turning it on later resumes the same run (the resume fingerprint ignores it), and
    the resumed run's events start where the checkpoint is."""
    assert TrainOptions().tensorboard is False
    assert "tensorboard" in NON_RESULT_KEYS
    path = tiny_pipeline(steps=4)
    text = path.read_text().replace("checkpoint_every = 0", "checkpoint_every = 2")
    path.write_text(text)
    manifest = run_file(path, entry_points=False, log=lambda *a: None)
    run_dir = manifest.path.parent
    assert not (run_dir / "train" / "tensorboard").exists()
    path.write_text(path.read_text().replace("steps = 4", "steps = 6"))
    _with_tensorboard(path)
    lines = []
    manifest = run_file(path, entry_points=False, log=lines.append)
    assert any("resuming from" in str(line) and "step 4" in str(line) for line in lines), lines
    assert manifest.stages["train"]["info"]["steps"] == 6
    acc = _events(run_dir / "train" / "tensorboard")
    assert [e.step for e in acc.Scalars("loss/g_loss")] == [6]


def test_missing_tensorboard_is_one_line_at_load(tiny_pipeline, monkeypatch):
    path = _with_tensorboard(tiny_pipeline(steps=2))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "tensorboard" else real(name, *a, **k),
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, load_registry(entry_points=False))
    message = str(err.value)
    assert "\n" not in message
    assert "tensorboard" in message and "pip install" in message and "pipeline.toml" in message
    assert not (path.parent / "runs").exists()  # before anything ran
