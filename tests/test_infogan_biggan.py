"""InfoGAN (latent codes steer the exported model; the information term trains G) and
BigGAN (hinge loss, spectral norm, a class-conditional pipeline end to end)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_PIPELINE, run_cli, write_toml
from PIL import Image
from torch import nn

from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.errors import ConfigError, GanpipeError
from ganpipe.export.onnx_export import build_card, export_onnx
from ganpipe.inference.generate import (
    generate_batches,
    generate_to_folder,
    resolve_codes,
    sample_inputs,
)
from ganpipe.inference.session import OnnxModel, open_model
from ganpipe.modelcard import ModelCard
from ganpipe.nn.layers import SelfAttention, has_spectral_norm
from ganpipe.pipeline import run_file
from ganpipe.variant import Batch, DataInfo, StepContext
from ganpipe.variants.biggan import BigGAN, hinge_d_loss, hinge_g_loss, orthogonal_penalty
from ganpipe.variants.infogan import InfoGAN, info_losses

CPU = torch.device("cpu")


def pipeline_file(folder: Path, variant: str, steps: int, model_extra: str = "") -> Path:
    """The conftest tiny pipeline with extra [model] keys, an EMA generator (exported, with
    its spectral norm) and DiffAugment on D's inputs."""
    text = TINY_PIPELINE.format(variant=variant, steps=steps)
    text = text.replace("d_width = 4\n", f"d_width = 4\n{model_extra}")
    text = text.replace(
        "progress = false\n",
        'progress = false\nema_decay = 0.9\ndiffaugment = ["color", "translation", "cutout"]\n',
    )
    return write_toml(folder / "pipeline.toml", text)


def read_pngs(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("sample_*.png"))])


# -- InfoGAN ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def infogan_model(tmp_path_factory, one_torch_thread) -> Path:
    """A tiny InfoGAN trained for a few steps by the pipeline and exported to ONNX."""
    folder = tmp_path_factory.mktemp("infogan")
    path = pipeline_file(folder, "infogan", 12, "categories = 4\nq_hidden = 8\n")
    run_file(path, entry_points=False, log=lambda *_: None)
    return folder / "runs" / "tiny" / "export" / "model.onnx"


def test_infogan_exported_inputs_and_metadata(infogan_model):
    model = open_model(infogan_model, "cpu", task="generate")
    assert [i.name for i in model.session.get_inputs()] == ["z", "c_cat", "c_cont"]
    assert [s.to_json() for s in model.card.inputs] == [
        {"name": "z", "kind": "normal", "shape": [8]},
        {"name": "c_cat", "kind": "categorical", "shape": [4]},
        {"name": "c_cont", "kind": "uniform", "shape": [2]},
    ]
    # Random codes: one-hot categorical, continuous in [-1, 1].
    feeds = sample_inputs(model, 50, 0, None)
    assert feeds["c_cat"].shape == (50, 4) and (feeds["c_cat"].sum(1) == 1).all()
    assert set(np.unique(feeds["c_cat"])) == {0.0, 1.0}
    assert len(set(feeds["c_cat"].argmax(1))) > 1
    assert feeds["c_cont"].shape == (50, 2) and np.abs(feeds["c_cont"]).max() <= 1
    fixed = sample_inputs(model, 50, 0, None, {"c_cat": 2, "c_cont": "0.5,-1"})
    assert (fixed["c_cat"].argmax(1) == 2).all()
    assert (fixed["c_cont"] == np.array([0.5, -1.0], np.float32)).all()
    assert np.array_equal(fixed["z"], feeds["z"])  # fixing codes leaves the noise alone


def test_infogan_codes_steer_the_onnx_model(infogan_model, tmp_path):
    def images(name: str, **codes) -> np.ndarray:
        generate_to_folder(
            infogan_model, tmp_path / name, 6, seed=3, device="cpu", grid=False, codes=codes
        )
        return read_pngs(tmp_path / name)

    cat0, cat0_again, cat3 = images("a", c_cat=0), images("b", c_cat=0), images("c", c_cat=3)
    assert np.array_equal(cat0, cat0_again)  # same z, same codes: same images
    assert not np.array_equal(cat0, cat3)  # same z, other category: other images
    c_lo = images("d", c_cat=1, c_cont=[-1.0, -1.0])
    c_hi = images("e", c_cat=1, c_cont=1.0)
    assert not np.array_equal(c_lo, c_hi)

    # Through the CLI: the same images as the library for the same seed and codes.
    out = tmp_path / "cli"
    proc = run_cli(
        "generate",
        "-m",
        str(infogan_model),
        "-n",
        "6",
        "--seed",
        "3",
        "-o",
        str(out),
        "--code",
        "c_cat=3",
        "--device",
        "cpu",
        "--no-grid",
    )
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(read_pngs(out), cat3)
    out2 = tmp_path / "cli2"
    proc = run_cli(
        "generate",
        "-m",
        str(infogan_model),
        "-n",
        "6",
        "--seed",
        "3",
        "-o",
        str(out2),
        "--code",
        "c_cat=1",
        "--code",
        "c_cont=1",
        "--device",
        "cpu",
        "--no-grid",
    )
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(read_pngs(out2), c_hi)


def test_bad_code_is_one_line_error(infogan_model, tmp_path):
    proc = run_cli(
        "generate",
        "-m",
        str(infogan_model),
        "-o",
        str(tmp_path / "x"),
        "--code",
        "colour=1",
        "--code",
        "c_cat=9",
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "colour" in lines[0] and "c_cat (categorical" in lines[0] and "0..3" in lines[0]
    assert "c_cont (continuous" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "codes, needle",
    [
        ({"c_cat": 4}, "out of range 0..3"),
        ({"c_cat": "two"}, "not a class index"),
        ({"c_cat": 1.5}, "not a class index"),
        ({"c_cont": "0.5,x"}, "'x' is not a number"),
        ({"c_cont": [0.1, 0.2, 0.3]}, "3 values given, it takes 1 or 2"),
        ({"c_cont": "nan"}, "not finite"),
        ({"z": 1}, "has no code 'z'"),
    ],
)
def test_bad_code_values(infogan_model, tmp_path, codes, needle):
    with pytest.raises(GanpipeError) as err:
        generate_to_folder(infogan_model, tmp_path / "x", 2, device="cpu", codes=codes)
    message = str(err.value)
    assert "\n" not in message and needle in message, message
    assert "c_cat (categorical: class index 0..3)" in message
    assert not (tmp_path / "x").exists()


def test_code_on_a_model_without_codes_and_several_categorical_codes(tmp_path):
    plain = OnnxModel(
        tmp_path / "m.onnx",
        None,
        ModelCard(task="generate", inputs=[{"name": "z", "kind": "normal", "shape": [4]}]),
    )
    with pytest.raises(GanpipeError, match="has no latent code inputs; drop --code"):
        resolve_codes(plain, {"c_cat": 1})
    multi = OnnxModel(
        tmp_path / "m.onnx",
        None,
        ModelCard(
            task="generate", inputs=[{"name": "c_cat", "kind": "categorical", "shape": [3, 5]}]
        ),
    )
    assert resolve_codes(multi, {"c_cat": "0,4,2"})["c_cat"].tolist() == [0, 4, 2]
    assert resolve_codes(multi, {"c_cat": 1})["c_cat"].tolist() == [1, 1, 1]
    with pytest.raises(GanpipeError, match="3 comma-separated class indices"):
        resolve_codes(multi, {"c_cat": "0,4"})


def test_infogan_options_and_inputs():
    v = InfoGAN()
    info = DataInfo(16, 3)
    opts = v.Options(latent_dim=8, n_categorical=2, categories=5, n_continuous=0)
    assert [(s.name, s.kind, s.shape) for s in v.inputs(opts, info)] == [
        ("z", "normal", (8,)),
        ("c_cat", "categorical", (2, 5)),
    ]
    z, c_cat = v.make_inputs(opts, info, 7, CPU, torch.Generator().manual_seed(0))
    assert c_cat.shape == (7, 2, 5) and torch.equal(c_cat.sum(-1), torch.ones(7, 2))
    with pytest.raises(ValueError, match="at least one latent code"):
        v.Options(n_categorical=0, n_continuous=0)


def test_infogan_several_categorical_codes_and_no_continuous_export(tmp_path):
    v, opts, info, nets = tiny_infogan(n_categorical=2, n_continuous=0)
    spec = v.export_spec(nets, opts, info)
    meta = build_card(spec, v.name, v.task, info.image_size, info.channels, ())
    result = export_onnx(spec, tmp_path / "m.onnx", meta)
    assert result.max_abs_diff < 1e-4
    model = open_model(result.path, "cpu", task="generate")
    assert [i.name for i in model.session.get_inputs()] == ["z", "c_cat"]
    feeds = sample_inputs(model, 5, 0, None, {"c_cat": "3,1"})
    assert feeds["c_cat"].shape == (5, 2, 4)
    assert (feeds["c_cat"].argmax(-1) == [3, 1]).all() and (feeds["c_cat"].sum(-1) == 1).all()
    other = sample_inputs(model, 5, 0, None, {"c_cat": "0,1"})
    assert np.array_equal(feeds["z"], other["z"])
    assert not np.allclose(model.run(feeds), model.run(other))


def tiny_infogan(seed: int = 0, **kw):
    torch.manual_seed(seed)
    v = InfoGAN()
    opts = v.Options(**{**v.tiny_options, "categories": 4, **kw})
    info = DataInfo(16, 3, ("a", "b"))
    return v, opts, info, v.build(opts, info)


def test_info_gradient_reaches_generator():
    v, opts, info, nets = tiny_infogan()
    for net in nets.values():
        net.train()
    z, *codes = v.make_inputs(opts, info, 8, CPU)
    fake = nets["G"](z, *codes)
    cat, cont = info_losses(nets["Q"](nets["D"].features(fake)), *v.code_targets(opts, codes))
    (cat + cont).backward()
    grads = [p.grad for p in nets["G"].parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is not None for p in nets["Q"].parameters())


@functools.cache
def shapes() -> torch.Tensor:
    data = ShapesDataset().load(ShapesOptions(count=64, classes=2, seed=1), 16, 3, Path("."))
    return torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 127.5 - 1


def train_infogan(steps: int = 24, seed: int = 0, **kw) -> dict[str, list[float]]:
    """``steps`` InfoGAN steps (batch 16) on shapes; the losses of every step."""
    kw = {"g_width": 8, "d_width": 8, "q_hidden": 32, "lr_g": 1e-3, "lr_d": 1e-3, **kw}
    v, opts, info, nets = tiny_infogan(seed, **kw)
    images = shapes()
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, info, CPU)
    for net in nets.values():
        net.train()
    history: dict[str, list[float]] = {}
    for step in range(steps):
        ctx.step = step
        idx = torch.arange(step * 16, step * 16 + 16) % len(images)
        losses = v.train_step(ctx, Batch(images[idx], torch.zeros(16, dtype=torch.long)))
        assert set(losses) == {"d_loss", "g_loss", "info_loss", "cat_loss", "cont_loss"}
        for key, value in losses.items():
            history.setdefault(key, []).append(float(value))
    assert all(np.isfinite(values).all() for values in history.values())
    return history


def first_last(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values[:5])), float(np.mean(values[-5:]))


@pytest.mark.parametrize("continuous_loss", ["gaussian", "mse"])
def test_information_loss_decreases_on_shapes(continuous_loss):
    history = train_infogan(continuous_loss=continuous_loss)
    for key in ("info_loss", "cat_loss"):
        first, last = first_last(history[key])
        assert last < 0.7 * first, (key, history[key])


def test_information_term_trains_the_generator():
    """With G frozen (only Q and D's trunk learn) the codes are predicted worse; without
    the information term they are not predicted at all (chance: ln 4 = 1.39)."""
    _, trained = first_last(train_infogan()["cat_loss"])
    _, g_frozen = first_last(train_infogan(lr_g=1e-12)["cat_loss"])
    _, no_info = first_last(train_infogan(lambda_info=0.0)["cat_loss"])
    assert trained < g_frozen - 0.08, (trained, g_frozen)
    assert no_info > 1.2 and trained < no_info - 0.5, (trained, no_info)


# -- BigGAN ----------------------------------------------------------------------------
def test_hinge_losses_on_known_values():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - x) = 0, 0.5, 2
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + x) = 0, 1, 2
    assert torch.isclose(hinge_d_loss(real, fake), torch.tensor(2.5 / 3 + 1.0))
    assert torch.isclose(hinge_g_loss(fake), torch.tensor(1.0 / 3))
    # Confident, correct D: no loss at all.
    assert hinge_d_loss(torch.full((4,), 3.0), torch.full((4,), -3.0)) == 0


def test_biggan_nets_are_spectrally_normalised():
    torch.manual_seed(0)
    v = BigGAN()
    opts = v.Options(**v.tiny_options)
    nets = v.build(opts, DataInfo(32, 3, ("a", "b", "c")))
    for name in ("G", "D"):
        assert has_spectral_norm(nets[name]), name
        weighted = [m for m in nets[name].modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        assert weighted and all(hasattr(m, "parametrizations") for m in weighted), name
    conv = nets["D"].blocks[2].conv1  # blocks[1]: self-attention
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert abs(float(sigma) - 1.0) < 0.05
    # The projection: D's embedding is spectrally normalised too, G's shared one is not.
    assert hasattr(nets["D"].embed, "parametrizations")
    assert not hasattr(nets["G"].shared, "parametrizations")


def test_biggan_rejects_unsupported_sizes():
    v = BigGAN()
    with pytest.raises(ConfigError, match="power of two >= 16"):
        v.check_data(v.Options(), DataInfo(8, 3, ("a", "b")))
    with pytest.raises(ConfigError, match="latent_dim = 2 is too small"):
        v.check_data(v.Options(latent_dim=2), DataInfo(64, 3, ("a", "b")))
    with pytest.raises(ConfigError, match="needs class labels"):
        v.check_data(v.Options(), DataInfo(32, 3))


def test_self_attention_is_global_and_starts_as_identity():
    torch.manual_seed(0)
    attn = SelfAttention(16).eval()
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(attn(x), x)  # gamma = 0 at the start
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    y = attn(x)
    x2 = x.clone()
    x2[:, :, 0, 0] += 3.0  # one corner changes ...
    changed = (attn(x2) - y).abs().sum(dim=1)
    assert changed[:, 7, 7].min() > 1e-4  # ... and the opposite corner sees it
    loss = attn(x).square().mean()
    loss.backward()
    assert attn.gamma.grad is not None and attn.gamma.grad != 0


@pytest.mark.parametrize(
    "size,attention,g_res,d_res",
    [
        (16, None, 8, 8),
        (32, None, 16, 16),
        (64, None, 32, 32),
        (64, 16, 16, 16),
        (32, 0, None, None),
    ],
)
def test_biggan_self_attention_sits_at_its_resolution(size, attention, g_res, d_res):
    v = BigGAN()
    opts = v.Options(**{**v.tiny_options, "attention": attention})
    nets = v.build(opts, DataInfo(size, 3, ("a", "b")))
    seen: dict[str, list[int]] = {"G": [], "D": []}
    for name, net in nets.items():
        for m in net.modules():
            if isinstance(m, SelfAttention):
                m.register_forward_hook(
                    lambda mod, inp, out, n=name: seen[n].append(inp[0].shape[-1])
                )
    fake = nets["G"](torch.randn(2, opts.latent_dim), torch.tensor([0, 1]))
    nets["D"](fake, torch.tensor([0, 1]))
    assert seen == {"G": [g_res] if g_res else [], "D": [d_res] if d_res else []}
    for bad in (4, 12, size):
        with pytest.raises(ConfigError, match=f"model.attention = {bad} is not a power of two"):
            v.check_data(v.Options(attention=bad), DataInfo(size, 3, ("a", "b")))


def test_orthogonal_regularisation():
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))  # W W^T = [[2, 1], [1, 1]]
    assert float(orthogonal_penalty(net).detach()) == pytest.approx(2.0)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, -2.0]]))  # orthogonal rows
    assert float(orthogonal_penalty(net).detach()) == 0.0
    assert float(orthogonal_penalty(net, skip=(net.weight,)).detach()) == 0.0
    # in a BigGAN step: logged, and it moves G's weights
    v = BigGAN()
    info = DataInfo(16, 3, ("a", "b"))
    results = {}
    for reg in (0.0, 10.0):
        torch.manual_seed(0)
        opts = v.Options(**{**v.tiny_options, "ortho_reg": reg})
        nets = v.build(opts, info)
        opt = {k: torch.optim.Adam(n.parameters(), 1e-2) for k, n in nets.items()}
        ctx = StepContext(nets, opt, opts, info, torch.device("cpu"))
        torch.manual_seed(1)
        out = v.train_step(ctx, Batch(torch.rand(4, 3, 16, 16) * 2 - 1, torch.tensor([0, 1, 0, 1])))
        assert ("ortho" in out) == (reg > 0)
        results[reg] = nets["G"].linear.parametrizations.weight.original.detach().clone()
    assert not torch.equal(results[0.0], results[10.0])


@pytest.mark.slow
def test_biggan_pipeline_end_to_end_with_label(tmp_path):
    path = pipeline_file(tmp_path, "biggan", 4, "embed_dim = 4\n")
    manifest = run_file(path, entry_points=False, log=lambda *_: None)
    run_dir = tmp_path / "runs" / "tiny"
    assert set(manifest.stages) >= {"train", "export", "generate"}
    assert manifest.stages["export"]["info"]["ema"] is True
    assert manifest.stages["export"]["info"]["max_abs_diff"] < 1e-4
    metrics = [
        json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    ]
    assert metrics and all(np.isfinite(m["d_loss"]) for m in metrics)
    assert any("g_loss" in m for m in metrics)  # d_steps = 2: G steps every other step
    model_path = run_dir / "export" / "model.onnx"
    model = open_model(model_path, "cpu", task="generate")
    assert model.card.variant == "biggan"
    assert [s.name for s in model.card.inputs] == ["z", "label"]
    assert model.card.num_classes == 2
    assert len(list((run_dir / "generate").glob("sample_*.png"))) == 5

    out = tmp_path / "gen"
    proc = run_cli(
        "generate",
        "-m",
        str(model_path),
        "-n",
        "3",
        "-o",
        str(out),
        "--label",
        "1",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("sample_*.png"))) == 3 and (out / "grid.png").is_file()
    # The label steers the model: same noise, other class, other images.
    a = np.concatenate(list(generate_batches(model, 4, 0, np.zeros(4, np.int64))))
    b = np.concatenate(list(generate_batches(model, 4, 0, np.ones(4, np.int64))))
    assert a.shape == (4, 16, 16, 3) and not np.array_equal(a, b)
