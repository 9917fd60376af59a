"""Tests of the LSGAN plugin, through ganpipe's public API only (``ganpipe``,
``ganpipe.testing``, the ``ganpipe`` command): the loss math, the options, ganpipe's
contract checks, and its registration from the installed entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import ganpipe
import pytest
import torch
from ganpipe.testing import check_variant, registered
from pydantic import ValidationError

from ganpipe_lsgan import plugin as lsgan_plugin
from ganpipe_lsgan.variant import (
    LSGAN,
    SCORE_DECAY,
    LSGANOptions,
    discriminator_loss,
    generator_loss,
    track_scores,
)


@pytest.fixture(autouse=True)
def _no_disabled_plugins(monkeypatch):
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)


def ganpipe_cli(*args: str, cwd=None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "GANPIPE_DISABLE_PLUGINS"}
    return subprocess.run(
        [sys.executable, "-m", "ganpipe", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**environ, **env},
        timeout=600,
    )


# -- loss math ---------------------------------------------------------------------------


def test_discriminator_loss_matches_the_formula():
    real = torch.tensor([1.0, 0.5, 3.0])
    fake = torch.tensor([0.0, -1.0])
    # 0.5 * mean((real - 1)^2) + 0.5 * mean((fake - 0)^2)
    expected = 0.5 * (0.0 + 0.25 + 4.0) / 3 + 0.5 * (0.0 + 1.0) / 2
    assert discriminator_loss(real, fake).item() == pytest.approx(expected)
    # other targets: a = -1, b = 1
    expected = 0.5 * (0.0 + 0.25 + 4.0) / 3 + 0.5 * (1.0 + 0.0) / 2
    assert discriminator_loss(real, fake, a=-1.0, b=1.0).item() == pytest.approx(expected)


def test_generator_loss_matches_the_formula():
    fake = torch.tensor([0.0, 2.0, 1.0, -1.0])
    assert generator_loss(fake).item() == pytest.approx(0.5 * (1 + 1 + 0 + 4) / 4)
    assert generator_loss(fake, c=0.0).item() == pytest.approx(0.5 * (0 + 4 + 1 + 1) / 4)


def test_losses_vanish_at_their_targets_and_have_the_right_gradients():
    real = torch.full((4,), 1.0, requires_grad=True)
    fake = torch.full((4,), 0.0, requires_grad=True)
    assert discriminator_loss(real, fake, a=0.0, b=1.0).item() == 0.0
    assert generator_loss(torch.full((4,), 1.0), c=1.0).item() == 0.0
    # d/ds 0.5 * mean((s - t)^2) = (s - t) / n
    scores = torch.tensor([0.0, 2.0], requires_grad=True)
    generator_loss(scores, c=1.0).backward()
    assert scores.grad.tolist() == pytest.approx([-0.5, 0.5])
    real = torch.tensor([3.0], requires_grad=True)
    fake = torch.tensor([-2.0], requires_grad=True)
    discriminator_loss(real, fake, a=0.0, b=1.0).backward()
    assert real.grad.item() == pytest.approx(2.0)  # (3 - 1) / 1
    assert fake.grad.item() == pytest.approx(-2.0)  # (-2 - 0) / 1


# -- options -----------------------------------------------------------------------------


def test_options_defaults_and_validation():
    opts = LSGANOptions()
    assert (opts.a, opts.b, opts.c) == (0.0, 1.0, 1.0)
    assert isinstance(opts, ganpipe.GANOptions)
    assert LSGANOptions.model_validate({"a": -1, "b": 1, "c": 0}).a == -1.0
    with pytest.raises(ValidationError, match="b must differ from a"):
        LSGANOptions(a=1.0, b=1.0)
    with pytest.raises(ValidationError, match="label_smoothing"):
        LSGANOptions(label_smoothing=0.1)


@pytest.mark.parametrize(
    "keys, needle",
    [
        ("a = 1.0\nb = 1.0\n", "model.b: b must differ from a"),
        ("latent_dims = 8\n", "model.latent_dims: unknown key; did you mean 'latent_dim'?"),
    ],
    ids=["a-equals-b", "typo"],
)
def test_bad_options_in_pipeline_toml_are_one_line_errors(tmp_path, keys, needle):
    toml = tmp_path / "pipeline.toml"
    toml.write_text(
        '[run]\ndevice = "cpu"\n[data]\ndataset = "shapes"\nimage_size = 16\n'
        f'[model]\nvariant = "lsgan"\n{keys}[train]\nsteps = 1\n',
        encoding="utf-8",
    )
    proc = ganpipe_cli("run", str(toml))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: error: "), proc.stderr
    assert f"{toml}:" in lines[0] and needle in lines[0], proc.stderr


# -- the variant -------------------------------------------------------------------------


def test_ganpipe_contract(tmp_path):
    report = check_variant(LSGAN(), tmp_path=tmp_path)
    assert report.name == "lsgan"


def test_ganpipe_contract_with_the_chi2_targets(tmp_path):
    check_variant(LSGAN(), tmp_path=tmp_path, options={"a": -1.0, "b": 1.0, "c": 0.0})


def test_one_training_step_returns_the_least_squares_losses():
    torch.manual_seed(0)
    variant = LSGAN()
    opts = LSGANOptions(**variant.tiny_options)
    info = ganpipe.DataInfo(image_size=16, channels=3)
    nets = variant.build(opts, info)
    ctx = ganpipe.StepContext(nets, variant.optimizers(nets, opts), opts, info, torch.device("cpu"))
    batch = ganpipe.Batch(torch.rand(4, 3, 16, 16) * 2 - 1, torch.zeros(4, dtype=torch.long))
    losses = variant.train_step(ctx, batch)
    assert set(losses) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(torch.isfinite(v) and not v.requires_grad for v in losses.values())
    assert losses["d_loss"] >= 0 and losses["g_loss"] >= 0  # sums of squares
    assert ctx.state["n"] == 1 and ctx.state["scores"].shape == (2,)  # the variant's state
    spec = variant.export_spec(nets, opts, info)
    assert [s.name for s in spec.inputs] == ["z"]


def test_score_averages_are_bias_corrected_moving_averages():
    state: dict = {}
    first = track_scores(state, torch.tensor([1.0, 3.0]), torch.tensor([-1.0]))
    assert first.tolist() == pytest.approx([2.0, -1.0])  # the first step: the scores
    second = track_scores(state, torch.tensor([0.0]), torch.tensor([1.0]))
    d = SCORE_DECAY
    expected = [(d * (1 - d) * 2.0) / (1 - d**2), (d * (1 - d) * -1.0 + (1 - d)) / (1 - d**2)]
    assert second.tolist() == pytest.approx(expected)
    assert state["n"] == 2


# -- registration ------------------------------------------------------------------------


def test_identity_is_declared_once_in_the_registration():
    assert not {"name", "task", "description"} & set(vars(LSGAN))  # not on the class
    assert LSGAN().name == "lsgan" and LSGAN().task == "generate"  # from register.lazy


def test_the_installed_entry_point_points_to_the_plugin_module():
    eps = [ep for ep in metadata.entry_points(group="ganpipe") if ep.name == "lsgan"]
    assert len(eps) == 1, (
        "ganpipe-lsgan is not installed in this interpreter; run "
        "`pip install ./plugins/ganpipe-lsgan` from the ganpipe root"
    )
    assert eps[0].value == "ganpipe_lsgan.plugin"
    assert eps[0].dist.name.replace("_", "-") == "ganpipe-lsgan"
    assert eps[0].load() is lsgan_plugin


def test_registered_as_ganpipe_run_finds_it():
    variant = registered("variant", "lsgan", plugin="lsgan")
    assert isinstance(variant, LSGAN) and variant.task == "generate"
    assert "Least-squares" in variant.description


def test_listed_with_its_distribution_and_hidden_when_disabled():
    proc = ganpipe_cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    dist = f"ganpipe-lsgan {metadata.version('ganpipe-lsgan')}"
    assert {"name": "lsgan", "distribution": dist} in data["plugins"]
    row = next(v for v in data["variants"] if v["name"] == "lsgan")
    assert row["plugin"] == "lsgan" and row["task"] == "generate"
    assert "dcgan" in {v["name"] for v in data["variants"]}  # the built-ins are still there

    for args, env in ((["--no-plugins"], {}), ([], {"GANPIPE_DISABLE_PLUGINS": "lsgan"})):
        proc = ganpipe_cli(*args, "plugins", "--json", **env)
        assert proc.returncode == 0, proc.stderr
        hidden = json.loads(proc.stdout)
        assert "lsgan" not in {v["name"] for v in hidden["variants"]}
        assert "lsgan" not in {p["name"] for p in hidden["plugins"]}


def test_a_run_gets_the_recommended_train_defaults_and_checkpoints_the_state(tmp_path):
    toml = tmp_path / "pipeline.toml"
    toml.write_text(
        '[run]\ndevice = "cpu"\n[data]\ndataset = "shapes"\nimage_size = 16\n'
        '[model]\nvariant = "lsgan"\ng_width = 4\nd_width = 4\nlatent_dim = 8\n'
        "[train]\nsteps = 2\nbatch_size = 4\nprogress = false\n",
        encoding="utf-8",
    )
    proc = ganpipe_cli("run", str(toml))
    assert proc.returncode == 0, proc.stderr
    assert "train: sample_every 250 (recommended by variant 'lsgan'" in proc.stdout, proc.stdout
    checkpoint = tmp_path / "runs" / "default" / "train" / "checkpoints" / "step_00000002"
    saved = torch.load(checkpoint / "state.pt", weights_only=True)["variant_state"]
    assert saved["n"] == 2 and saved["scores"].shape == (2,)
