"""Tests of the sphere plugin through ganpipe's public API and its installed entry point:
the sampler, the variant's contract (ganpipe.testing.check_variant, which exports it), the
exported card's ``sphere`` fields read back typed, and training's draws of the kind."""

from __future__ import annotations

import math

import ganpipe
import numpy as np
import onnx
import pytest
import torch
from ganpipe.testing import check_variant, registered

from ganpipe_sphere.card import SphereFields
from ganpipe_sphere.sampling import sphere
from ganpipe_sphere.variant import DCGANSphere


@pytest.fixture(autouse=True)
def _no_disabled_plugins(monkeypatch):
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)


def test_sampler_draws_points_on_the_sphere_reproducibly():
    a = sphere(np.random.default_rng(7), 500, (16,))
    assert a.shape == (500, 16) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=-1), 4.0, atol=1e-4)  # radius sqrt(16)
    assert np.abs(a.mean(axis=0)).max() < 0.4  # no preferred direction
    assert np.array_equal(a, sphere(np.random.default_rng(7), 500, (16,)))
    assert not np.array_equal(a, sphere(np.random.default_rng(8), 500, (16,)))


def test_registered_through_its_entry_point():
    assert isinstance(registered("variant", "dcgan-sphere", plugin="sphere"), DCGANSphere)


def test_training_draws_the_kind_from_the_run_generator():
    variant, info = DCGANSphere(), ganpipe.DataInfo(16, 3)
    opts = variant.Options(latent_dim=8)

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return variant.make_inputs(opts, info, 6, torch.device("cpu"), g)[0]

    z = draw(0)
    assert z.shape == (6, 8) and z.dtype == torch.float32
    assert torch.allclose(z.norm(dim=-1), torch.full((6,), math.sqrt(8)), atol=1e-4)
    assert torch.equal(z, draw(0)) and not torch.equal(z, draw(1))


def test_contract_and_the_exported_card(tmp_path):
    check_variant(DCGANSphere(), tmp_path=tmp_path)
    (path,) = tmp_path.rglob("*.onnx")
    card = ganpipe.ModelCard.from_onnx(onnx.load(str(path)), path)
    assert [(s.name, s.kind) for s in card.inputs] == [("z", "sphere")]
    fields = card.extension("sphere")  # typed by this plugin's declaration
    assert fields == SphereFields(radius=math.sqrt(8))
    assert card.extensions["sphere"]["interpolation"] == "slerp"
