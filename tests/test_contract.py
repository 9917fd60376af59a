"""The variant contract, run against every registered ``generate`` variant.

The variants come from :func:`ganpipe.plugins.load_registry` with entry points, so an
installed third-party variant (an ``lsgan`` plugin, say) gets exactly these tests.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ganpipe.export.onnx_export import build_card, export_onnx
from ganpipe.inference.generate import generate_batches
from ganpipe.inference.session import open_model
from ganpipe.registry import load_registry
from ganpipe.variant import Batch, DataInfo, StepContext

REGISTRY = load_registry(entry_points=True)
VARIANTS = [
    REGISTRY.variants.get(name)
    for name in REGISTRY.variants
    if REGISTRY.variants.get(name).task == "generate"
]
IDS = [v.name for v in VARIANTS]
CPU = torch.device("cpu")


def test_builtin_variant_is_covered():
    assert "dcgan" in IDS


def setup_variant(variant, seed: int = 0):
    torch.manual_seed(seed)
    opts = variant.Options(**variant.tiny_options)
    size = variant.test_image_size
    classes = ("a", "b", "c") if variant.conditional else ()
    info = DataInfo(size, 3, classes)
    variant.check_data(opts, info)
    nets = variant.build(opts, info)
    return opts, info, nets


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def discriminate(variant, nets, images, labels):
    return nets["D"](images, labels) if variant.conditional else nets["D"](images)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_forward_shapes_and_value_range(variant):
    opts, info, nets = setup_variant(variant)
    assert "G" in nets  # D is optional: non-adversarial baselines (vae) have none
    spec = variant.export_spec(nets, opts, info)
    lo, hi = spec.value_range
    size = info.image_size
    for mode in ("train", "eval"):
        for net in nets.values():
            net.train(mode == "train")
        for n in (1, 4):
            inputs = variant.make_inputs(opts, info, n, CPU, gen(n))
            assert len(inputs) == len(variant.inputs(opts, info))
            with torch.no_grad():
                if mode == "train" and n == 1:
                    continue  # batch norm needs more than one sample in training mode
                out = variant.generate(nets, inputs)
                assert out.shape == (n, info.channels, size, size)
                assert out.dtype == torch.float32
                assert torch.isfinite(out).all()
                assert out.min() >= lo and out.max() <= hi
                assert out.std() > 0  # not a constant image
                if "D" not in nets:
                    continue
                labels = torch.arange(n) % max(1, info.num_classes)
                d_out = discriminate(variant, nets, out, labels)
                assert d_out.shape[0] == n
                assert d_out.reshape(n, -1).shape[1] >= 1
                assert torch.isfinite(d_out).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_train_step_updates_weights_and_returns_finite_losses(variant):
    opts, info, nets = setup_variant(variant)
    for net in nets.values():
        net.train()
    optimizers = variant.optimizers(nets, opts)
    optimized = {id(p) for o in optimizers.values() for g in o.param_groups for p in g["params"]}
    for name, net in nets.items():
        assert all(id(p) in optimized for p in net.parameters()), f"{name} has no optimizer"
    ctx = StepContext(nets, optimizers, opts, info, CPU)
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in nets.items()}

    def changed(name: str) -> bool:
        return any(
            not torch.equal(a, b.detach())
            for a, b in zip(before[name], nets[name].parameters(), strict=True)
        )

    n = 8
    images = (
        torch.rand(n, info.channels, info.image_size, info.image_size, generator=gen(1)) * 2 - 1
    )
    labels = torch.arange(n) % max(1, info.num_classes)
    for step in range(5):  # some variants update G every k-th step only
        ctx.step = step
        losses = variant.train_step(ctx, Batch(images, labels))
        assert isinstance(losses, dict) and losses
        for name, value in losses.items():
            assert isinstance(value, torch.Tensor), name
            assert value.numel() == 1, name
            assert not value.requires_grad, f"{name} is not detached"
            assert torch.isfinite(value).all(), f"{name} = {value}"
        if step == 0:
            first = "D" if "D" in nets else next(k for k in nets if k != "G")
            assert changed(first), f"one train_step did not change {first}"
        if changed("G"):
            break
    assert changed("G"), "train_step never changed G"


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_export_runs_in_onnx_runtime_with_dynamic_batch(variant, tmp_path):
    opts, info, nets = setup_variant(variant)
    spec = variant.export_spec(nets, opts, info)
    meta = build_card(
        spec, variant.name, variant.task, info.image_size, info.channels, info.class_names
    )
    result = export_onnx(spec, tmp_path / "model.onnx", meta)
    assert result.path == tmp_path / "model.onnx" and result.path.is_file()
    assert result.max_abs_diff < 1e-4

    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [s.name for s in spec.inputs]
    module = spec.module.eval()
    for n in (1, 5):
        inputs = variant.make_inputs(opts, info, n, CPU, gen(10 + n))
        with torch.no_grad():
            expected = module(*inputs).float().numpy()
        got = sess.run(None, {s.name: t.numpy() for s, t in zip(spec.inputs, inputs, strict=True)})[
            0
        ]
        assert got.shape == (n, info.channels, info.image_size, info.image_size)
        assert np.max(np.abs(got - expected)) < 1e-4

    model = open_model(result.path, "cpu", task="generate")
    m = model.meta
    assert m["variant"] == variant.name
    assert m["task"] == "generate"
    assert m["image_size"] == info.image_size
    assert m["channels"] == info.channels
    assert m["inputs"] == [s.to_json() for s in spec.inputs]
    assert m["value_range"] == list(spec.value_range)
    assert m["class_names"] == list(info.class_names)
    batches = list(generate_batches(model, 3, seed=0, labels=None, batch_size=2))
    images = np.concatenate(batches)
    assert images.dtype == np.uint8
    assert images.shape == (3, info.image_size, info.image_size, info.channels)
