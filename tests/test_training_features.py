"""Training-loop features on real tiny nets: DiffAugment, exact resume with augmentation
and EMA, mixed precision on CPU, the mode-collapse signal, EMA export, NaN stops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import ganpipe.training.sampling as sampling
from ganpipe.config import load_config
from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.errors import ConfigError, TrainingError
from ganpipe.inference.session import open_model
from ganpipe.pipeline import run_file
from ganpipe.registry import load_registry
from ganpipe.training import checkpoint as ckpt
from ganpipe.training.devices import amp_dtype
from ganpipe.training.diffaugment import POLICIES, DiffAugment
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.variant import DataInfo
from ganpipe.variants.dcgan import DCGAN, DCGANOptions
from ganpipe.variants.wgan import WGANGP

VOPTS = DCGANOptions(latent_dim=8, g_width=4, d_width=4)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    return ShapesDataset().load(ShapesOptions(count=36, classes=2, seed=3), 16, 3, Path("."))


def options(**kw) -> TrainOptions:
    base = dict(
        steps=6,
        batch_size=8,
        log_every=1,
        sample_every=0,
        checkpoint_every=3,
        num_samples=4,
        progress=False,
    )
    return TrainOptions(**{**base, **kw})


def trainer(out: Path, data, variant=None, vopts=VOPTS, log=None, **kw) -> Trainer:
    return Trainer(
        variant or DCGAN(),
        vopts,
        options(**kw),
        data,
        out,
        seed=0,
        device="cpu",
        fingerprint="fp",
        log=log if log is not None else (lambda *_: None),
    )


def weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt_dir / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# -- DiffAugment -------------------------------------------------------------------------


def test_unknown_diffaugment_policy_is_a_config_error_at_load(tmp_path):
    path = tmp_path / "pipeline.toml"
    path.write_text(
        '[data]\ndataset = "shapes"\n\n[model]\nvariant = "dcgan"\n\n'
        '[train]\nsteps = 2\ndiffaugment = ["color", "zoom"]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, load_registry(entry_points=False))
    msg = str(info.value)
    assert f"{path}:9" in msg and "train.diffaugment" in msg
    assert "'zoom'" in msg and "color, translation, cutout" in msg
    with pytest.raises(ConfigError, match="'zoom'"):
        DiffAugment(["zoom"])


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_each_policy_changes_images_keeps_shape_and_passes_gradients(policy):
    torch.manual_seed(0)
    x = images(8).requires_grad_(True)
    y = DiffAugment([policy])(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(y, x)
    # different images get different transforms
    assert not torch.allclose(y[0] - x[0], y[1] - x[1])
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # randomness comes from torch's global RNG (saved in checkpoints): reproducible
    torch.manual_seed(0)
    assert torch.equal(DiffAugment([policy])(x.detach()), y.detach())


def test_all_policies_on_greyscale():
    torch.manual_seed(0)
    x = images(4)[:, :1]
    y = DiffAugment(list(POLICIES))(x)
    assert y.shape == x.shape and not torch.equal(x, y)


def test_empty_policy_is_the_identity():
    x = images()
    assert DiffAugment([])(x) is x
    assert DiffAugment()(x) is x


class DInputs(DCGAN):
    """DCGAN that records, per step, the raw batch and every input D sees."""

    name = "dinputs-dcgan"

    def __init__(self):
        self.records: list[tuple[torch.Tensor, list[torch.Tensor]]] = []

    def train_step(self, ctx, batch):
        seen: list[torch.Tensor] = []
        hook = ctx.nets["D"].register_forward_pre_hook(
            lambda _m, args: seen.append(args[0].detach().clone())
        )
        try:
            out = super().train_step(ctx, batch)
        finally:
            hook.remove()
        self.records.append((batch.images.clone(), seen))
        return out


@pytest.mark.parametrize("policy", [[], ["translation", "cutout"]])
def test_the_loop_augments_what_d_sees(tmp_path, data, policy):
    variant = DInputs()
    trainer(tmp_path, data, variant, steps=3, diffaugment=policy).run()
    assert len(variant.records) == 3
    for raw, seen in variant.records:
        assert len(seen) == 3  # real, fake (for D), fake (for G)
        assert seen[0].shape == raw.shape
        if policy:
            assert not torch.equal(seen[0], raw)
            # cutout zeroes a square in every image: pixels that were not zero
            zeroed = (seen[0] == 0) & (raw != 0)
            assert zeroed.flatten(1).any(1).all()
        else:
            assert torch.equal(seen[0], raw)


def test_resume_is_exact_with_diffaugment_and_ema(tmp_path, data):
    kw = dict(diffaugment=["color", "translation", "cutout"], ema_decay=0.9, checkpoint_every=3)
    straight = trainer(tmp_path / "straight", data, steps=6, **kw).run()
    trainer(tmp_path / "split", data, steps=3, **kw).run()
    second = trainer(tmp_path / "split", data, steps=6, **kw).run()
    assert second.resumed_from == 3 and second.steps == 6
    assert straight.checkpoint.name == second.checkpoint.name == "step_00000006"
    assert_same_weights(straight.checkpoint, second.checkpoint)
    assert {k.split("/")[0] for k in weights(second.checkpoint)} == {"G", "D", "G_ema"}

    def strip(recs):
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in recs]

    assert strip(metrics(tmp_path / "split" / "metrics.jsonl")) == strip(
        metrics(tmp_path / "straight" / "metrics.jsonl")
    )
    # the augmentation is really part of the run: without it the weights differ
    plain = trainer(tmp_path / "plain", data, steps=6, ema_decay=0.9).run()
    wa, wb = weights(plain.checkpoint), weights(straight.checkpoint)
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


# -- mixed precision ---------------------------------------------------------------------


class AutocastProbe(DCGAN):
    name = "autocast-probe"

    def __init__(self):
        self.seen: list[tuple[bool, torch.dtype]] = []

    def train_step(self, ctx, batch):
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return super().train_step(ctx, batch)


def test_bf16_on_cpu_trains_and_resumes_exactly(tmp_path, data):
    probe = AutocastProbe()
    straight = trainer(
        tmp_path / "straight", data, probe, steps=4, amp="bf16", checkpoint_every=2
    ).run()
    assert probe.seen == [(True, torch.bfloat16)] * 4
    recs = metrics(tmp_path / "straight" / "metrics.jsonl")
    assert len(recs) == 4
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in recs)
    # weights and optimizer state stay float32 under autocast
    assert all(
        v.dtype == torch.float32
        for v in weights(straight.checkpoint).values()
        if v.is_floating_point()
    )
    trainer(tmp_path / "split", data, steps=2, amp="bf16", checkpoint_every=2).run()
    second = trainer(tmp_path / "split", data, steps=4, amp="bf16", checkpoint_every=2).run()
    assert second.resumed_from == 2
    assert_same_weights(straight.checkpoint, second.checkpoint)
    # "off" really runs in full precision
    probe = AutocastProbe()
    trainer(tmp_path / "off", data, probe, steps=1, amp="off").run()
    assert probe.seen[0][0] is False


def test_fp16_on_cpu_is_a_config_error(tmp_path, data):
    with pytest.raises(ConfigError, match="fp16.*CUDA"):
        trainer(tmp_path, data, steps=2, amp="fp16").run()
    assert not (tmp_path / "checkpoints").exists()


def test_amp_dtype():
    assert amp_dtype("auto", CPU) is None
    assert amp_dtype("off", CPU) is None
    assert amp_dtype("bf16", CPU) is torch.bfloat16
    with pytest.raises(ConfigError):
        amp_dtype("fp16", CPU)
    assert amp_dtype("off", torch.device("cuda")) is None


# -- mode collapse -----------------------------------------------------------------------


class ConstantImage(nn.Module):
    """A collapsed generator: one learned image whatever the noise."""

    def __init__(self, info: DataInfo):
        super().__init__()
        self.image = nn.Parameter(torch.randn(1, info.channels, info.image_size, info.image_size))

    def forward(self, z):
        return torch.tanh(self.image).expand(z.shape[0], -1, -1, -1)


class Collapsed(DCGAN):
    name = "collapsed-dcgan"

    def build(self, opts, info):
        nets = super().build(opts, info)
        nets["G"] = ConstantImage(info)
        return nets


MODE_COLLAPSE = "possible mode collapse"


def test_collapsed_generator_warns(tmp_path, data, capsys, monkeypatch):
    trainer(tmp_path / "warmup", data, Collapsed(), steps=6, log_every=2).run()
    recs = metrics(tmp_path / "warmup" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [2, 4, 6]
    assert all(r["diversity"] < 1e-3 for r in recs)
    assert MODE_COLLAPSE not in capsys.readouterr().out  # still within the warm-up

    monkeypatch.setattr(sampling, "COLLAPSE_WARMUP", 0)
    trainer(tmp_path / "warned", data, Collapsed(), steps=10, log_every=1).run()
    out = capsys.readouterr()
    text = out.out + out.err
    # once, and only past a fifth of the run (step 2 of 10)
    assert text.count(MODE_COLLAPSE) == 1, text
    assert f"{MODE_COLLAPSE} at step 2 " in text
    assert str(tmp_path / "warned" / "samples") in text
    assert all(r["diversity"] < 1e-3 for r in metrics(tmp_path / "warned" / "metrics.jsonl"))


def test_healthy_generator_has_diversity_and_no_warning(tmp_path, data, capsys, monkeypatch):
    monkeypatch.setattr(sampling, "COLLAPSE_WARMUP", 0)
    vopts = DCGANOptions(latent_dim=8, g_width=16, d_width=16, lr_g=1e-3, lr_d=1e-3)
    # diversity_every: the check runs on every 50th step only
    trainer(
        tmp_path,
        data,
        vopts=vopts,
        steps=100,
        batch_size=16,
        log_every=10,
        diversity_every=50,
        checkpoint_every=0,
    ).run()
    recs = metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs if "diversity" in r] == [50, 100]
    assert recs[-1]["diversity"] > 2 * sampling.COLLAPSE_THRESHOLD, recs  # about 0.7
    # (a freshly initialised DCGAN in eval mode is nearly constant: hence the warm-up)
    assert MODE_COLLAPSE not in capsys.readouterr().out


def test_pairwise_spread():
    x = torch.zeros(3, 1, 2, 2)
    assert sampling.pairwise_spread(x) == 0.0
    x[1] += 1.0  # distance 2 (sqrt of 4 pixels) from the others, per sqrt(pixel): 1
    assert sampling.pairwise_spread(x) == pytest.approx((1 + 1 + 0) * 2 / 6)
    assert sampling.pairwise_spread(x[:1]) == 0.0


# -- EMA export ------------------------------------------------------------------------------


def pipeline(tmp_path: Path, tiny_pipeline, ema: float) -> tuple[Path, list[str]]:
    path = tiny_pipeline(steps=6)
    path.write_text(
        path.read_text().replace(
            # no ramp: 6 steps of a ramped EMA are ~G, and this test tells them apart
            "batch_size = 8",
            f"batch_size = 8\nema_decay = {ema}\nema_rampup = 0",
        )
    )
    logs: list[str] = []
    run_file(path, entry_points=False, log=logs.append)
    return path.parent / "runs" / "tiny", logs


@pytest.mark.slow
def test_export_uses_the_ema_generator(tmp_path, tiny_pipeline):
    run_dir, logs = pipeline(tmp_path, tiny_pipeline, 0.95)
    export_line = next(line for line in logs if line.startswith("[export] done"))
    assert "EMA generator" in export_line
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["export"]["info"]["ema"] is True

    w = ckpt.load_weights(run_dir / manifest["stages"]["train"]["outputs"]["checkpoint"])
    info = DataInfo(16, 3, ("circle", "square"))
    raw, ema = DCGAN().build(VOPTS, info)["G"], DCGAN().build(VOPTS, info)["G"]
    raw.load_state_dict(w["G"])
    ema.load_state_dict(w["G_ema"])
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want, other = ema.eval()(z).numpy(), raw.eval()(z).numpy()
    got = open_model(run_dir / "export" / "model.onnx", "cpu", task="generate").run(
        {"z": z.numpy()}
    )
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(got - other).max() > 10 * np.abs(got - want).max() + 1e-4


@pytest.mark.slow
def test_no_ema_without_decay(tmp_path, tiny_pipeline):
    run_dir, logs = pipeline(tmp_path, tiny_pipeline, 0.0)
    export_line = next(line for line in logs if line.startswith("[export] done"))
    assert "EMA" not in export_line
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["export"]["info"]["ema"] is False
    keys = weights(run_dir / manifest["stages"]["train"]["outputs"]["checkpoint"])
    assert {k.split("/")[0] for k in keys} == {"G", "D"}


# -- non-finite loss --------------------------------------------------------------------------


class NaNWGAN(WGANGP):
    name = "nan-wgan"

    def __init__(self, bad: int):
        self.bad = bad

    def train_step(self, ctx, batch):
        losses = super().train_step(ctx, batch)
        if ctx.step + 1 == self.bad:
            losses["d_loss"] = losses["d_loss"] * float("inf")
        return losses


def test_nan_loss_stops_and_keeps_checkpoints(tmp_path, data):
    variant = WGANGP()
    vopts = variant.Options(**variant.tiny_options)  # n_critic = 2: two calls per step
    kw = dict(diffaugment=["translation"], ema_decay=0.9)
    trainer(tmp_path, data, variant, vopts, steps=2, checkpoint_every=1, **kw).run()
    before = snapshot(tmp_path / "checkpoints")
    with pytest.raises(TrainingError) as info:
        trainer(tmp_path, data, NaNWGAN(9), vopts, steps=5, checkpoint_every=1, **kw).run()
    msg = str(info.value)
    assert "non-finite loss at step 5 (call 9)" in msg and "d_loss" in msg
    # checkpoint folders count train_step calls (the checkpoint's "step", as ever)
    assert f"last good checkpoint: {tmp_path / 'checkpoints' / 'step_00000008'}" in msg
    after = snapshot(tmp_path / "checkpoints")
    kept = {k: v for k, v in before.items() if k.startswith("step_00000004")}
    assert kept and {k: v for k, v in after.items() if k in before} == kept  # untouched
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step_00000004",
        "step_00000006",
        "step_00000008",
    ]
    recs = metrics(tmp_path / "metrics.jsonl")
    assert max(r["step"] for r in recs) == 4 and max(r["iteration"] for r in recs) == 8
