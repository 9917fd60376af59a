"""Tests of the LSGAN plugin: the loss math, the options, one real training step, and its
registration through ganpipe's plugin manager from the installed entry point."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch
from ganpipe.errors import ConfigError
from ganpipe.options import validate
from ganpipe.plugins import ENTRY_POINT_GROUP, get_plugin_manager, load_registry
from ganpipe.variant import Batch, DataInfo, StepContext

from ganpipe_lsgan import plugin as lsgan_plugin
from ganpipe_lsgan.variant import LSGAN, LSGANOptions, discriminator_loss, generator_loss


@pytest.fixture(autouse=True)
def _no_disabled_plugins(monkeypatch):
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)


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
    assert validate(LSGANOptions, {"a": -1, "b": 1, "c": 0}, "model").a == -1.0
    with pytest.raises(ConfigError, match=r"model\.b: .*b must differ from a"):
        validate(LSGANOptions, {"a": 1.0, "b": 1.0}, "model")
    with pytest.raises(ConfigError, match=r"model\.label_smoothing: unknown key"):
        validate(LSGANOptions, {"label_smoothing": 0.1}, "model")
    with pytest.raises(ConfigError, match=r"did you mean 'latent_dim'"):
        validate(LSGANOptions, {"latent_dims": 8}, "model")


# -- the variant -------------------------------------------------------------------------


def test_one_training_step_updates_both_nets():
    torch.manual_seed(0)
    variant = LSGAN()
    opts = LSGANOptions(**variant.tiny_options)
    info = DataInfo(image_size=16, channels=3)
    nets = variant.build(opts, info)
    ctx = StepContext(nets, variant.optimizers(nets, opts), opts, info, torch.device("cpu"))
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in nets.items()}
    batch = Batch(torch.rand(4, 3, 16, 16) * 2 - 1, torch.zeros(4, dtype=torch.long))
    losses = variant.train_step(ctx, batch)
    assert set(losses) == {"d_loss", "g_loss"}
    assert all(torch.isfinite(v) and not v.requires_grad for v in losses.values())
    for k, net in nets.items():
        assert any(
            not torch.equal(p0, p1) for p0, p1 in zip(before[k], net.parameters(), strict=True)
        ), k
    (z,) = variant.make_inputs(opts, info, 3, torch.device("cpu"))
    assert variant.generate(nets, (z,)).shape == (3, 3, 16, 16)
    spec = variant.export_spec(nets, opts, info)
    assert [s.name for s in spec.inputs] == ["z"]


# -- registration ------------------------------------------------------------------------


def test_the_installed_entry_point_points_to_the_plugin_module():
    eps = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "lsgan"]
    assert len(eps) == 1, (
        "ganpipe-lsgan is not installed in this interpreter; run "
        "`pip install ./plugins/ganpipe-lsgan` from the ganpipe root"
    )
    assert eps[0].value == "ganpipe_lsgan.plugin"
    assert eps[0].dist.name.replace("_", "-") == "ganpipe-lsgan"
    assert eps[0].load() is lsgan_plugin


def test_registered_through_the_plugin_manager_with_entry_points():
    pm = get_plugin_manager()
    assert pm.get_plugin("lsgan") is lsgan_plugin
    assert pm.ganpipe_dists["lsgan"] == f"ganpipe-lsgan {metadata.version('ganpipe-lsgan')}"
    reg = load_registry(pm)
    assert isinstance(reg.variants.get("lsgan"), LSGAN)
    assert reg.variants.owners["lsgan"] == "lsgan"
    assert reg.variants.get("lsgan").task == "generate"
    assert "dcgan" in reg.variants  # the built-ins are still there


def test_not_registered_without_entry_points_or_when_disabled():
    assert "lsgan" not in load_registry(entry_points=False).variants
    pm = get_plugin_manager(disabled={"lsgan"})
    assert pm.get_plugin("lsgan") is None
    assert "lsgan" not in load_registry(pm).variants
