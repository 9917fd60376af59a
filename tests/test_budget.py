"""Defaults scaled to the data and the device, one meaning of ``train.steps`` (generator
updates), schedules that finish, early warnings and channels_last on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_PIPELINE, write_toml

from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.errors import ConfigError
from ganpipe.inference.session import open_model
from ganpipe.pipeline import run_file
from ganpipe.registry import load_registry
from ganpipe.training import defaults, health
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.variant import DataInfo, default_scale, scaled_width
from ganpipe.variants.dcgan import DCGAN
from ganpipe.variants.pggan import PGGAN, schedule
from ganpipe.variants.wgan import WGANGP

GENERATIVE = ["gan", "dcgan", "cgan", "wgan-gp", "infogan", "biggan", "stylegan", "pggan", "vae"]


@pytest.fixture(scope="module")
def data():
    return ShapesDataset().load(ShapesOptions(count=24, classes=2, seed=3), 16, 3, Path("."))


def trainer(out: Path, data, variant, vopts, **kw) -> Trainer:
    base = dict(batch_size=8, log_every=1, sample_every=0, num_samples=4, progress=False)
    return Trainer(
        variant,
        vopts,
        TrainOptions(**{**base, **kw}),
        data,
        out,
        seed=0,
        device="cpu",
        fingerprint="fp",
        log=lambda *_: None,
    )


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- defaults scaled to the data and the device ---------------------------------------------


def test_the_shared_rule_is_full_size_on_cuda_and_light_on_a_small_cpu_run():
    assert default_scale(DataInfo(32, 1), "cuda") == 1.0
    assert default_scale(DataInfo(256, 3), "cpu") == 1.0
    assert default_scale(DataInfo(64, 3), "cpu") == 0.5
    assert default_scale(DataInfo(32, 1), "cpu") == 0.125
    assert [scaled_width(64, s) for s in (1.0, 0.5, 0.25, 0.125)] == [64, 32, 16, 16]
    assert scaled_width(512, 0.125, 64) == 64 and scaled_width(32, 2.0) == 32


@pytest.mark.parametrize("name", GENERATIVE)
def test_resolution_keeps_what_the_user_set_and_is_idempotent(name):
    variant = load_registry(entry_points=False).variants.get(name)
    classes = ("a", "b") if variant.conditional else ()
    info = DataInfo(32, 1, classes)
    user = variant.Options.model_validate({"g_width": 24} if name != "gan" else {})
    cpu = defaults.resolve(variant, user, info, "cpu", 600)
    assert defaults.resolve(variant, cpu, info, "cpu", 600) == cpu  # idempotent
    assert type(cpu).model_validate(cpu.model_dump()) == cpu  # valid values
    if name != "gan":
        assert cpu.g_width == 24  # set by the user: kept
        assert cpu.d_width < variant.Options().d_width  # scaled down on a small CPU run
    gpu = defaults.resolve(variant, variant.Options(), DataInfo(256, 3, classes), "cuda", 600)
    # follow train.steps (phases, lazy R1 interval) or the image area (R1 weight) anywhere
    fixed = {"phase_steps", "r1_every", "r1_gamma"}
    assert {k for k in defaults.scaled_values(variant.Options(), gpu)} <= fixed
    variant.check_data(cpu, info)
    nets = variant.build(cpu, info)  # the resolved options build
    assert variant.generator_net in nets


def test_run_prints_records_and_exports_the_resolved_options(tmp_path):
    toml = TINY_PIPELINE.format(variant="dcgan", steps=2).replace("g_width = 4\nd_width = 4\n", "")
    lines: list[str] = []
    run_file(write_toml(tmp_path / "p.toml", toml), entry_points=False, log=lines.append)
    assert any("g_width 64 -> 16" in line and "16 px, 3 channels, cpu" in line for line in lines)
    run = tmp_path / "runs" / "tiny"
    info = json.loads((run / "manifest.json").read_text())["stages"]["train"]["info"]
    assert info["model_options"]["g_width"] == 16 and info["scaled_defaults"]["d_width"] == 16
    card = open_model(run / "export" / "model.onnx", "cpu", task="generate").card
    assert card.model_options["g_width"] == 16 and card.model_options["latent_dim"] == 8


# -- one meaning of steps -------------------------------------------------------------------


def test_wgan_steps_count_generator_updates(tmp_path, data):
    variant = WGANGP()
    vopts = variant.Options(**variant.tiny_options)  # n_critic = 2
    t = trainer(tmp_path, data, variant, vopts, steps=3, log_every=1, checkpoint_every=0)
    result = t.run()
    assert result.steps == 3
    assert int(t.optimizers["G"].state_dict()["state"][0]["step"]) == 3
    assert int(t.optimizers["D"].state_dict()["state"][0]["step"]) == 6
    recs = records(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["iteration"]) for r in recs] == [(1, 2), (2, 4), (3, 6)]
    assert all("g_loss" in r for r in recs)  # every line is logged after a G update
    state = torch.load(result.checkpoint / "state.pt", weights_only=True)
    assert (state["step"], state["generator_steps"]) == (6, 3)


def test_a_checkpoint_from_before_resumes(tmp_path, data):
    """Checkpoints and metrics written when a step was one train_step call resume: the
    checkpoint's ``step`` still counts calls; old metrics lines are converted."""
    variant = WGANGP()
    vopts = variant.Options(**variant.tiny_options)
    first = trainer(tmp_path, data, variant, vopts, steps=2, checkpoint_every=0).run()
    state_path = first.checkpoint / "state.pt"
    state = torch.load(state_path, weights_only=True)
    for key in ("generator_steps", "model_options"):
        del state[key]  # as old checkpoints were
    torch.save(state, state_path)
    old = [{"step": call, "d_loss": 0.5} for call in range(1, 6)]  # one line per call
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    again = trainer(tmp_path, data, variant, vopts, steps=3, checkpoint_every=0).run()
    assert (again.resumed_from, again.steps) == (2, 3)
    assert [(r["step"], r["iteration"]) for r in records(tmp_path / "metrics.jsonl")] == [
        (0, 1),
        (1, 2),
        (1, 3),
        (2, 4),
        (3, 6),
    ]


def test_resume_refusal_names_the_options_that_differ(tmp_path, data):
    from ganpipe.errors import TrainingError

    variant = DCGAN()
    vopts = variant.Options(latent_dim=8, g_width=4, d_width=4)
    trainer(tmp_path, data, variant, vopts, steps=1).run()
    other = variant.Options(latent_dim=8, g_width=8, d_width=4)
    t = trainer(tmp_path, data, variant, other, steps=2)
    t.fingerprint = "changed"
    with pytest.raises(TrainingError, match=r"model.g_width = 4 \(now 8\)"):
        t.run()


# -- schedules that finish ------------------------------------------------------------------


def test_pggan_phase_steps_follow_steps_and_reach_full_resolution():
    v, info = PGGAN(), DataInfo(32, 1)
    for steps in (10, 900, 5000):
        opts = defaults.resolve(v, v.Options(), info, "cpu", steps)
        assert opts.phase_steps == steps // 10  # 6 growth phases, then 4 at 32 px
        assert v.schedule_problems(opts, info, steps) == {}
        assert schedule(steps - 1, opts.phase_steps, 3) == (3, 1.0)  # 32 px, faded in
        # the last 40% train at the full resolution
        assert schedule(steps - 4 * opts.phase_steps, opts.phase_steps, 3) == (3, 1.0)
        assert schedule(steps - 4 * opts.phase_steps - 1, opts.phase_steps, 3)[1] < 1.0
    # fewer steps than phases: one step per phase, the full resolution still reached
    opts = defaults.resolve(v, v.Options(), info, "cpu", 8)
    assert opts.phase_steps == 1 and v.schedule_problems(opts, info, 8) == {}


def test_a_schedule_that_cannot_finish_is_refused_or_warned(tmp_path):
    v, info = PGGAN(), DataInfo(32, 1)
    user = v.Options()
    with pytest.raises(ConfigError, match=r"model.phase_steps: train.steps = 5 is too few"):
        defaults.check_schedule(v, user, defaults.resolve(v, user, info, "cpu", 5), info, 5)
    mine = v.Options(phase_steps=1000)  # set on purpose: a warning, with what to change
    (warning,) = defaults.check_schedule(v, mine, mine, info, 900)
    assert "model.phase_steps (set in [model])" in warning and "end at 4 px" in warning
    assert "at most 128" in warning
    # at load: one line naming the key, non-zero exit, no traceback
    toml = TINY_PIPELINE.format(variant="pggan", steps=3)
    path = write_toml(tmp_path / "p.toml", toml)
    proc = subprocess.run(
        [sys.executable, "-m", "ganpipe", "run", str(path)], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "model.phase_steps" in proc.stderr and "raise train.steps to 5" in proc.stderr


def test_stylegan_lazy_r1_fits_the_run():
    from ganpipe.variants.stylegan import StyleGAN

    v, info = StyleGAN(), DataInfo(32, 1)
    assert defaults.resolve(v, v.Options(), info, "cpu", 40).r1_every == 5
    mine = v.Options(r1_every=16)
    assert "r1_every" in v.schedule_problems(mine, info, 40)
    # the R1 weight follows the image area: 10 at 1024 px (FFHQ), 0.01 at 32 px (CIFAR);
    # a small CPU run's small D gets 1 (at 0.01 G collapsed onto a few digits)
    assert defaults.resolve(v, v.Options(), info, "cuda", 40).r1_gamma == 0.01
    assert defaults.resolve(v, v.Options(), info, "cpu", 40).r1_gamma == 1.0
    assert defaults.resolve(v, v.Options(), DataInfo(1024, 3), "cuda", 40).r1_gamma == 10.0
    assert defaults.resolve(v, v.Options(r1_gamma=5.0), info, "cpu", 40).r1_gamma == 5.0


def test_small_cpu_runs_get_cheap_steps_and_full_runs_the_paper_recipes():
    """Below half scale the D-heavy recipes take fewer D steps per G update, BigGAN one
    learning rate of 1e-3, PGGAN and StyleGAN one conv per level at higher rates, and
    StyleGAN no style mixing and a stronger R1; on CUDA at full size they keep the papers'
    values."""
    reg = load_registry(entry_points=False).variants
    small, full = DataInfo(32, 1, ("a", "b")), DataInfo(128, 3, ("a", "b"))
    for name, key, cpu_value, paper in [
        ("wgan-gp", "n_critic", 2, 5),
        ("pggan", "d_steps", 2, 3),
        ("pggan", "depth", 1, 2),
        ("pggan", "lr_g", 3e-3, 1e-3),
        ("pggan", "lr_d", 3e-3, 1e-3),
        ("biggan", "d_steps", 1, 2),
        ("biggan", "lr_g", 1e-3, 1e-4),
        ("biggan", "lr_d", 1e-3, 4e-4),
        ("stylegan", "mixing", 0.0, 0.9),
        ("stylegan", "depth", 1, 2),
        ("stylegan", "lr_g", 5e-3, 2e-3),
        ("stylegan", "r1_gamma", 1.0, 0.1562),  # 10 x (128 / 1024)^2
    ]:
        v = reg.get(name)
        assert getattr(defaults.resolve(v, v.Options(), small, "cpu", 600), key) == cpu_value
        assert getattr(defaults.resolve(v, v.Options(), full, "cuda", 600), key) == paper
    gan = reg.get("gan")
    assert defaults.resolve(gan, gan.Options(), small, "cpu", 600).hidden == [128, 256, 512]
    assert defaults.resolve(gan, gan.Options(), full, "cuda", 600).hidden == [256, 512, 1024]


def test_size_and_width_helpers_of_the_public_api():
    from ganpipe import GANOptions, require_power_of_two, scaled_defaults

    assert scaled_defaults(GANOptions, 0.125, g_width=8, d_width=16) == {
        "g_width": 8,
        "d_width": 16,
    }
    assert scaled_defaults(GANOptions, 1.0, g_width=8) == {"g_width": 64}
    require_power_of_two("foo", 32)
    with pytest.raises(ConfigError, match=r"^foo needs data.image_size a power of two >= 16, "):
        require_power_of_two("foo", 24, 16)


# -- early warnings --------------------------------------------------------------------------


def test_a_saturated_discriminator_is_one_warning_with_the_fix(tmp_path):
    watch = health.HealthWatch(1000, tmp_path)
    out = [w for s in range(1, 9) for w in watch.check(s * 50, {"d_loss": 0.0})]
    assert len(out) == 1
    assert "discriminator saturated at step 200" in out[0] and "model.lr_d" in out[0]
    flat = health.HealthWatch(1000, tmp_path)
    got = [w for s in range(4) for w in flat.check(s, {"d_loss": 1.3862})]
    assert got and "stuck at 1.386" in got[0]
    moving = health.HealthWatch(1000, tmp_path)
    assert not [w for s in range(8) for w in moving.check(s, {"d_loss": 1.0 + s / 10})]


def test_no_progress_warns_once_late_in_the_run(tmp_path):
    watch = health.HealthWatch(100, tmp_path)
    gaps = [0.9, 0.5, 0.4] + [0.45] * 7
    out = [w for i, g in enumerate(gaps) for w in watch.check(10 * (i + 1), {}, g)]
    assert len(out) == 1 and "stopped getting closer" in out[0] and "train.steps" in out[0]
    good = health.HealthWatch(100, tmp_path)  # close to the data: no warning
    assert not [w for i in range(10) for w in good.check(10 * i, {}, 0.05)]


def test_stats_gap_tells_samples_from_the_data():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(64, 1, 16, 16, generator=g) * 2 - 1
    stats = health.image_stats(real)
    assert health.stats_gap(torch.rand(64, 1, 16, 16, generator=g) * 2 - 1, *stats) < 0.15
    assert health.stats_gap(torch.full((64, 1, 16, 16), -1.0), *stats) > 0.5


# -- channels_last on the CPU ----------------------------------------------------------------


class SlowInNHWC(DCGAN):
    name = "nchw-dcgan"
    channels_last_on_cpu = False


@pytest.mark.parametrize(("variant", "expected"), [(SlowInNHWC(), False), (DCGAN(), True)])
def test_channels_last_on_cpu_follows_the_variant(tmp_path, data, variant, expected):
    vopts = variant.Options(latent_dim=8, g_width=4, d_width=4)
    t = trainer(tmp_path, data, variant, vopts, steps=1)
    t.run()
    conv = next(p for p in t.nets["D"].parameters() if p.ndim == 4 and p.shape[2] > 1)
    nhwc = conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert nhwc is expected
