"""The truncation trick per model kind, on real exported files and ONNX Runtime sessions:
stylegan truncates in W towards a tracked ``w_avg`` (psi 0: the average image for every z;
psi 1: untruncated; less spread as psi falls), pggan refuses it with the reason, and a
stylegan file exported before W truncation says to re-export it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli

from ganpipe.errors import ConfigError, GanpipeError
from ganpipe.export.onnx_export import build_card, export_onnx
from ganpipe.inference.generate import generate_batches, generate_to_folder, sample_inputs
from ganpipe.inference.session import open_model
from ganpipe.variant import Batch, DataInfo, ExportSpec, InputSpec, StepContext
from ganpipe.variants.pggan import PGGAN
from ganpipe.variants.stylegan import StyleGAN

INFO = DataInfo(16, 3)


def _trained_stylegan(steps: int = 3):
    """Tiny stylegan nets after a few real training steps (w_avg tracked)."""
    v = StyleGAN()
    opts = v.Options(**v.tiny_options)
    torch.manual_seed(0)
    nets = v.build(opts, INFO)
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, INFO, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        ctx.step = step
        v.train_step(ctx, Batch(torch.rand(4, 3, 16, 16, generator=g) * 2 - 1, torch.zeros(4)))
    return v, opts, nets


def _export(variant, opts, nets, path):
    for net in nets.values():
        net.eval()
    spec = variant.export_spec(nets, opts, INFO)
    card = build_card(spec, variant.name, variant.task, 16, 3, ())
    return spec, export_onnx(spec, path, card).path


@pytest.fixture(scope="module")
def stylegan_onnx(tmp_path_factory):
    v, opts, nets = _trained_stylegan()
    spec, path = _export(v, opts, nets, tmp_path_factory.mktemp("sg") / "stylegan.onnx")
    return spec.module, path


def _spread(images: np.ndarray) -> float:
    """Mean over pixels of the standard deviation across images (uint8 scale)."""
    return float(images.astype(np.float64).std(axis=0).mean())


def test_w_avg_follows_the_batch_mean_of_w_once_per_step():
    """StyleGAN2-ADA: w_avg = lerp(mean(w), w_avg, 0.995) at every step, from the first
    mapping of the step (not the style-mixing one); the first step takes the mean."""
    v = StyleGAN()
    opts = v.Options(**{**v.tiny_options, "mixing": 1.0})
    torch.manual_seed(0)
    nets = v.build(opts, INFO)
    G = nets["G"]
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, INFO, torch.device("cpu"))
    calls: list[tuple[bool, torch.Tensor]] = []
    G.mapping.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((kwargs.get("update_w_avg", False), out)),
        with_kwargs=True,
    )
    expected = torch.zeros(opts.w_dim)
    for step in range(3):
        calls.clear()
        ctx.step = step
        v.train_step(ctx, Batch(torch.rand(4, 3, 16, 16) * 2 - 1, torch.zeros(4)))
        assert [u for u, _ in calls] == [True, False]  # the mixing mapping leaves it alone
        mean = calls[0][1].detach().mean(dim=0)
        expected = mean if step == 0 else mean + 0.995 * (expected - mean)
        torch.testing.assert_close(G.mapping.w_avg, expected, rtol=1e-5, atol=1e-6)
    assert G.mapping.w_avg.abs().sum() > 0
    # a buffer: checkpoints and the EMA copy carry it
    assert "mapping.w_avg" in G.state_dict()


def test_psi_zero_is_one_image_and_psi_one_is_the_untruncated_generator(stylegan_onnx):
    module, path = stylegan_onnx
    model = open_model(path, "cpu", task="generate")
    assert model.card.truncation == "w_lerp"
    psi_spec = next(s for s in model.card.inputs if s.kind == "truncation")
    assert psi_spec.name == "psi" and psi_spec.shape == (module.num_ws,)
    z = np.random.default_rng(0).standard_normal((6, 8), dtype=np.float32)
    ones = np.ones((6, module.num_ws), np.float32)
    out1 = model.run({"z": z, "psi": ones})
    with torch.no_grad():
        plain = module(torch.from_numpy(z)).numpy()  # no psi: the untruncated generator
    np.testing.assert_allclose(out1, plain, atol=1e-5)
    out0 = model.run({"z": z, "psi": ones * 0})
    assert np.abs(out0 - out0[:1]).max() < 1e-5 and np.abs(out1 - out1[:1]).max() > 1e-3
    # ganpipe generate: no --truncation feeds psi 1; --truncation 0 gives one image
    untruncated = np.concatenate(list(generate_batches(model, 6, seed=0)))
    feeds = sample_inputs(model, 6, seed=0, labels=None)
    np.testing.assert_array_equal(feeds["psi"], np.ones((6, module.num_ws), np.float32))
    assert np.array_equal(
        untruncated, np.concatenate(list(generate_batches(model, 6, seed=0, truncation=1.0)))
    )
    same = np.concatenate(list(generate_batches(model, 6, seed=0, truncation=0.0)))
    assert (same == same[:1]).all() and not (untruncated == untruncated[:1]).all()


def test_spread_falls_monotonically_with_psi_and_the_cutoff_keeps_fine_layers(stylegan_onnx):
    _, path = stylegan_onnx
    model = open_model(path, "cpu", task="generate")
    spreads = [
        _spread(np.concatenate(list(generate_batches(model, 64, seed=3, truncation=psi))))
        for psi in (1.0, 0.75, 0.5, 0.25, 0.0)
    ]
    assert all(a > b for a, b in zip(spreads, spreads[1:], strict=False)), spreads
    assert spreads[-1] == 0.0
    # truncation_cutoff: psi on the first N style layers only, 1 on the others
    psi = sample_inputs(model, 2, 0, None, truncation=0.0, truncation_cutoff=2)["psi"]
    assert psi[:, :2].tolist() == [[0.0, 0.0]] * 2 and (psi[:, 2:] == 1).all()
    cut = _spread(np.concatenate(list(generate_batches(model, 64, 3, None, None, None, 0.0, 2))))
    assert 0 < cut < spreads[0]


def test_generate_cli_truncates_a_stylegan_model(stylegan_onnx, tmp_path):
    _, path = stylegan_onnx
    out = tmp_path / "psi0"
    proc = run_cli(
        "generate", "-m", str(path), "-n", "5", "--truncation", "0", "--device", "cpu",
        "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pngs = sorted(p.read_bytes() for p in out.glob("sample_*.png"))
    assert len(pngs) == 5 and len(set(pngs)) == 1
    for bad, key in (("20", "truncation_cutoff"), ("0", "truncation_cutoff")):
        with pytest.raises(ConfigError, match=f"^{key}: "):
            generate_to_folder(path, tmp_path / "bad", truncation=0.5, truncation_cutoff=bad)
    with pytest.raises(ConfigError, match="^truncation_cutoff: set only with truncation"):
        generate_to_folder(path, tmp_path / "bad", truncation_cutoff=2)
    assert not (tmp_path / "bad").exists()


class _ZOnly(torch.nn.Module):
    """What stylegan exported before W truncation: G(z), no psi input."""

    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, z):
        return self.g(z)


def _one_line_refusal(path, tmp_path, *needles):
    proc = run_cli("generate", "-m", str(path), "--truncation", "0.5", "-o", str(tmp_path / "x"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, lines
    for needle in needles:
        assert needle in lines[0]
    assert not (tmp_path / "x").exists()
    return lines[0]


def test_an_old_stylegan_file_and_pggan_refuse_truncation_with_the_reason(tmp_path):
    # a stylegan file as exported before this change: z only, no truncation in its card
    v, opts, nets = _trained_stylegan(1)
    g = nets["G"].eval()
    spec = ExportSpec(
        _ZOnly(g), [InputSpec("z", "normal", (8,))], (torch.randn(2, 8),), metadata={}
    )
    card = build_card(spec, "stylegan", "generate", 16, 3, ())
    old = export_onnx(spec, tmp_path / "old.onnx", card).path
    assert open_model(old, "cpu").card.truncation is None
    _one_line_refusal(old, tmp_path, "old.onnx", "before stylegan truncated in W", "re-export")
    assert generate_to_folder(old, tmp_path / "plain", count=2, device="cpu").files  # untruncated
    # pggan: z is pixel-normalised, so truncating it would do nothing
    p = PGGAN()
    popts = p.Options(**p.tiny_options)
    _, pg = _export(p, popts, p.build(popts, INFO), tmp_path / "pggan.onnx")
    assert open_model(pg, "cpu").card.truncation == "none"
    _one_line_refusal(pg, tmp_path, "pggan.onnx", "normalises z", "drop --truncation")
    with pytest.raises(GanpipeError, match="normalises z"):
        list(generate_batches(open_model(pg, "cpu"), 2, seed=0, truncation=0.5))


def test_a_checkpoint_without_w_avg_loads_with_w_avg_estimated_from_the_mapping():
    """Checkpoints from before w_avg still load strictly (training resume, export): w_avg
    is then the mean of w over 10,000 z from the loaded mapping net."""
    _, _, nets = _trained_stylegan(2)
    state = {k: v for k, v in nets["G"].state_dict().items() if k != "mapping.w_avg"}
    v = StyleGAN()
    opts = v.Options(**v.tiny_options)
    fresh = v.build(opts, INFO)["G"]
    fresh.load_state_dict(state)  # strict
    with torch.no_grad():
        reference = fresh.mapping(torch.randn(20000, 8, generator=torch.Generator().manual_seed(9)))
    torch.testing.assert_close(fresh.mapping.w_avg, reference.mean(0), atol=0.02, rtol=0.02)
    assert not torch.equal(fresh.mapping.w_avg, nets["G"].mapping.w_avg)  # not the tracked one
    # a checkpoint with w_avg keeps it exactly
    fresh.load_state_dict(nets["G"].state_dict())
    assert torch.equal(fresh.mapping.w_avg, nets["G"].mapping.w_avg)


@pytest.mark.parametrize(
    "size, channels, device",
    [(32, 1, "cpu"), (64, 3, "cpu")],
    ids=["32px-gray-cpu-defaults", "64px-rgb-cpu-defaults"],
)
def test_exported_truncation_matches_the_formula_at_user_configurations(
    size, channels, device, tmp_path
):
    """The .onnx against StyleGAN's formula on the torch net, at the sizes the defaults
    resolve to for users' data (32 px digits on the CPU: the quality table's setting; 64 px
    RGB photos), not the tiny test nets: each style layer's w is w_avg + psi (w - w_avg),
    psi per layer (0.5 for the coarse layers, 0.8 for one middle layer, 1 elsewhere)."""
    v = StyleGAN()
    info = DataInfo(size, channels)
    opts = v.resolve_options(v.Options(), info, device, 1000)
    torch.manual_seed(0)
    nets = v.build(opts, info)
    G = nets["G"]
    with torch.no_grad():  # a trained-looking w_avg: off zero, as training leaves it
        G.mapping.w_avg.copy_(G.mapping.estimate_w_avg(2000) + 0.3 * torch.randn(opts.w_dim))
    G.eval()
    spec = v.export_spec(nets, opts, info)
    card = build_card(spec, v.name, v.task, size, channels, ())
    model = open_model(export_onnx(spec, tmp_path / "g.onnx", card).path, "cpu", task="generate")
    n, num_ws = 5, G.num_ws
    z = np.random.default_rng(3).standard_normal((n, opts.latent_dim), dtype=np.float32)
    psi = np.ones((n, num_ws), np.float32)
    psi[:, :2] = 0.5
    psi[:, num_ws // 2] = 0.8
    got = model.run({"z": z, "psi": psi})
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z))[:, None].expand(-1, num_ws, -1)
        w_avg = G.mapping.w_avg
        ws = w_avg + torch.from_numpy(psi)[..., None] * (w - w_avg)  # StyleGAN's lerp
        want = G.synthesis(ws).clamp(-1, 1).numpy()
    assert got.shape == (n, channels, size, size)
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert np.abs(want - model.run({"z": z, "psi": np.ones_like(psi)})).max() > 1e-3
