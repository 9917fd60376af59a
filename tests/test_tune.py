"""The tune stage: Optuna trials that really train and score, a resumable study, and
one-line errors for a bad search space."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import pytest
from conftest import write_toml

from ganpipe.errors import ConfigError
from ganpipe.pipeline import run_file

GAN = """
[run]
name = "t"
device = "cpu"
seed = 1

[data]
dataset = "shapes"
image_size = 16
count = 96
holdout = 0.25

[model]
variant = "dcgan"
latent_dim = 8
g_width = 4
d_width = 4

[tune]
trials = {trials}
steps = 6
count = 32
[tune.space]
{space}
"""

SPACE = """"model.lr_g" = {low = 1e-4, high = 1e-2, log = true}
"train.batch_size" = [8, 16]
"train.ema_decay" = {low = 0.0, high = 0.9}"""


def tune(path: Path, trials: int = 3, space: str = SPACE) -> list[str]:
    path.mkdir(parents=True, exist_ok=True)
    toml = write_toml(path / "pipeline.toml", GAN.format(trials=trials, space=space))
    logs: list[str] = []
    run_file(toml, entry_points=False, log=logs.append)
    return logs


def read_trials(path: Path) -> list[dict]:
    with open(path / "runs" / "t" / "tune" / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_trials_train_score_and_the_best_is_written(tmp_path):
    logs = tune(tmp_path / "a")
    rows = read_trials(tmp_path / "a")
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    fids = [float(r["fid"]) for r in rows]
    assert all(f > 0 for f in fids) and len(set(fids)) == 3  # real, differing scores
    best = json.loads((tmp_path / "a" / "runs" / "t" / "tune" / "best.json").read_text())
    assert best["metric"] == "fid" and best["value"] == min(fids)
    params = best["params"]
    assert 1e-4 <= params["model.lr_g"] <= 1e-2 and params["train.batch_size"] in (8, 16)
    pasted = tomllib.loads((tmp_path / "a" / "runs" / "t" / "tune" / "best.toml").read_text())
    assert pasted["model"]["lr_g"] == params["model.lr_g"]
    assert pasted["train"]["batch_size"] == params["train.batch_size"]
    assert sum(line.startswith("[tune] trial ") for line in logs) == 3
    for i in range(3):  # each trial really trained, with its own values
        ckpts = list(
            (tmp_path / "a" / "runs" / "t" / "tune" / f"trial_{i:04d}" / "checkpoints").glob(
                "step_*"
            )
        )
        assert [c.name for c in ckpts] == ["step_00000006"]
    # seeded: the same search elsewhere proposes the same values and gets the same scores
    tune(tmp_path / "b")
    assert read_trials(tmp_path / "b") == rows


def test_more_trials_continue_the_study(tmp_path):
    tune(tmp_path, trials=2)
    first = read_trials(tmp_path)
    logs = tune(tmp_path, trials=4)
    assert any("continuing the study: 2 of 4 trials done" in line for line in logs)
    rows = read_trials(tmp_path)
    assert len(rows) == 4 and rows[:2] == first
    assert sum(line.startswith("[tune] trial ") for line in logs) == 2


def test_super_resolution_maximises_psnr(tmp_path):
    toml = write_toml(
        tmp_path / "pipeline.toml",
        """
        [run]
        name = "t"
        device = "cpu"
        [data]
        dataset = "shapes"
        image_size = 16
        count = 64
        holdout = 0.25
        [model]
        variant = "espcn"
        feat1 = 8
        feat2 = 4
        [train]
        batch_size = 8
        [tune]
        trials = 2
        steps = 5
        [tune.space]
        "model.lr_g" = [1e-4, 3e-3]
        """,
    )
    run_file(toml, entry_points=False, log=lambda *_: None)
    best = json.loads((tmp_path / "runs" / "t" / "tune" / "best.json").read_text())
    rows = read_trials(tmp_path)
    assert best["metric"] == "psnr"
    assert best["value"] == max(float(r["psnr"]) for r in rows) > 10


@pytest.mark.parametrize(
    "space,needle",
    [
        ('"model.nope" = [1, 2]', "'model.nope' is not a [model] or [train] option"),
        ('"data.count" = [1, 2]', "'data.count' is not a [model] or [train] option"),
        ('"model.lr_g" = []', "the list of values is empty"),
        ('"model.lr_g" = {low = 1e-2, high = 1e-4}', "low must be below high"),
        ('"model.lr_g" = {low = 0.0, high = 1e-2, log = true}', "a log range needs low > 0"),
        ('"model.lr_g" = {low = 1e-4, high = 1e-2, lo = 1}', "tune.space"),
        ('"model.latent_dim" = [8, -3]', "latent_dim"),
    ],
)
def test_bad_search_spaces_are_one_line_errors(tmp_path, space, needle):
    with pytest.raises(ConfigError) as info:
        tune(tmp_path, space=space)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "runs" / "t" / "tune" / "best.json").exists()


def test_metric_must_suit_the_task(tmp_path):
    toml = write_toml(
        tmp_path / "pipeline.toml",
        GAN.format(trials=1, space=SPACE).replace("[tune]\n", '[tune]\nmetric = "psnr"\n'),
    )
    with pytest.raises(ConfigError, match="metric 'psnr' is for super_resolve models"):
        run_file(toml, entry_points=False, log=lambda *_: None)
