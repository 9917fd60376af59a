"""The built-in variants on real tiny nets: every one end to end through the pipeline,
conditional generation that really follows the label, WGAN-GP's critic, penalty, n_critic
and clipping, the VAE, and the MLP GAN's options."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.errors import ConfigError, GanpipeError
from ganpipe.inference.generate import generate_batches, generate_to_folder, resolve_labels
from ganpipe.inference.session import open_model
from ganpipe.pipeline import run_file
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.variant import Batch, DataInfo, StepContext
from ganpipe.variants.cgan import CGAN
from ganpipe.variants.gan import VanillaGAN
from ganpipe.variants.wgan import WGANGP, gradient_penalty


def write_toml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def run(path: Path) -> list[str]:
    logs: list[str] = []
    run_file(path, entry_points=False, log=logs.append)
    return logs


def batch_of(n: int = 8, size: int = 16, channels: int = 3, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, channels, size, size, generator=g) * 2 - 1, torch.arange(n) % 2)


# -- every variant end to end ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["gan", "dcgan", "cgan", "wgan-gp", "vae"])
def test_variant_runs_the_pipeline_end_to_end(tiny_pipeline, variant):
    path = tiny_pipeline(variant=variant, steps=4)
    if variant == "gan":  # the MLP's default widths are large; keep it tiny
        path.write_text(path.read_text().replace("d_width = 4", "d_width = 4\nhidden = [16]"))
    logs = run(path)
    assert any(line.startswith("[generate] done") for line in logs), logs
    run_dir = path.parent / "runs" / "tiny"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"train", "export", "generate"}
    assert manifest["stages"]["train"]["info"]["steps"] == 4

    pngs = sorted(p.name for p in (run_dir / "generate").glob("*.png"))
    assert pngs == ["grid.png", *(f"sample_{i:05d}.png" for i in range(5))]
    with Image.open(run_dir / "generate" / "sample_00000.png") as im:
        assert im.format == "PNG" and im.size == (16, 16) and im.mode == "RGB"

    model = open_model(run_dir / "export" / "model.onnx", "cpu", task="generate")
    assert model.card.variant == variant
    assert model.card.image_size == 16 and model.card.channels == 3
    kinds = [s.kind for s in model.card.inputs]
    if variant == "cgan":
        assert kinds == ["normal", "label"]
        assert model.card.class_names == (
            "circle",
            "square",
        )
    else:
        assert kinds == ["normal"]
    assert model.card.inputs[0].shape == (8,)  # latent_dim of the tiny pipeline


@pytest.mark.slow
def test_cgan_on_a_real_image_folder(tmp_path, image_folder):
    path = write_toml(
        tmp_path / "pipeline.toml",
        f"""
        [run]
        name = "folder"
        device = "cpu"
        [data]
        dataset = "folder"
        path = "{image_folder.as_posix()}"
        image_size = 16
        [model]
        variant = "cgan"
        latent_dim = 8
        g_width = 4
        d_width = 4
        [train]
        steps = 3
        batch_size = 4
        sample_every = 0
        num_samples = 4
        progress = false
        [export]
        [generate]
        count = 4
        labels = ["dogs"]
        """,
    )
    run(path)
    run_dir = tmp_path / "runs" / "folder"
    info = json.loads((run_dir / "manifest.json").read_text())["stages"]["train"]["info"]
    assert info["data"] == {"image_size": 16, "channels": 3, "class_names": ["cats", "dogs"]}
    model = open_model(run_dir / "export" / "model.onnx", "cpu", task="generate")
    assert model.card.variant == "cgan"
    assert model.card.class_names == (
        "cats",
        "dogs",
    )
    assert len(list((run_dir / "generate").glob("sample_*.png"))) == 4


# -- conditional generation follows the label -----------------------------------------

BW_PIPELINE = """
[run]
name = "bw"
seed = 1
device = "cpu"

[data]
dataset = "folder"
path = "bw"
image_size = 16
channels = 1

[model]
variant = "cgan"
latent_dim = 8
g_width = 8
d_width = 8
lr_g = 0.0005
lr_d = 0.0005

[train]
steps = 300
batch_size = 16
log_every = 50
sample_every = 0
num_samples = 8
progress = false

[export]
"""


def black_and_white_folder(root: Path, per_class: int = 32) -> Path:
    """Two trivially separable classes: dark and bright noisy greyscale images."""
    rng = np.random.default_rng(0)
    for name, level in (("black", 25), ("white", 230)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.clip(level + rng.normal(0, 12, (16, 16)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def bw_model(tmp_path_factory) -> Path:
    """A cgan trained (300 steps, a few seconds) and exported on black vs white images."""
    tmp = tmp_path_factory.mktemp("bw")
    black_and_white_folder(tmp / "bw")
    path = write_toml(tmp / "pipeline.toml", BW_PIPELINE)
    run(path)
    return tmp / "runs" / "bw" / "export" / "model.onnx"


def brightness(model, label: str, n: int = 32, seed: int = 3) -> np.ndarray:
    """Mean pixel value (0..255) of each of ``n`` images generated for ``label``."""
    labels = resolve_labels(model, [label], n)
    images = np.concatenate(list(generate_batches(model, n, seed, labels, batch_size=16)))
    assert images.shape == (n, 16, 16, 1)
    return images.reshape(n, -1).mean(axis=1)


@pytest.mark.slow
def test_cgan_generates_the_requested_class(bw_model, tmp_path):
    model = open_model(bw_model, "cpu", task="generate")
    assert model.card.class_names == (
        "black",
        "white",
    )
    black, white = brightness(model, "black"), brightness(model, "white")
    # the same noise, only the label differs: the label alone decides the brightness
    assert white.mean() - black.mean() > 100, (black.mean(), white.mean())
    assert black.mean() < 90 and white.mean() > 165, (black.mean(), white.mean())
    assert white.min() > black.max()
    # by index too, and through generate_to_folder (what the CLI and the stage use)
    assert np.array_equal(brightness(model, "1"), white)
    summary = generate_to_folder(
        bw_model, tmp_path / "white", 4, seed=3, labels=["white"], device="cpu", grid=False
    )
    files = [np.asarray(Image.open(p)) for p in summary.files]
    assert len(files) == 4 and all(f.mean() > 165 for f in files)
    summary = generate_to_folder(
        bw_model, tmp_path / "black", 4, seed=3, labels=[0], device="cpu", grid=False
    )
    assert all(np.asarray(Image.open(p)).mean() < 90 for p in summary.files)


@pytest.mark.slow
def test_cli_label_outside_the_classes(bw_model, tmp_path, cli):
    for bad in ("2", "grey", "-1"):
        proc = cli(
            "generate", "-m", str(bw_model), "-n", "2", "-o", "out", "--label", bad, cwd=tmp_path
        )
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr + proc.stdout
        err = proc.stderr.strip()
        assert err.startswith("ganpipe: error:") and len(err.splitlines()) == 1, err
        assert f"--label {bad!r}" in err and "0=black, 1=white" in err and "0..1" in err
        assert not (tmp_path / "out").exists()
    ok = cli(
        "generate",
        "-m",
        str(bw_model),
        "-n",
        "2",
        "-o",
        "out",
        "--label",
        "white",
        "--no-grid",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "out").glob("sample_*.png"))) == 2


def test_resolve_labels_error_lists_the_classes(bw_model):
    model = open_model(bw_model, "cpu", task="generate")
    with pytest.raises(GanpipeError, match=r"0=black, 1=white"):
        resolve_labels(model, ["7"], 2)


# -- conditional variants need labelled data --------------------------------------------


def test_conditional_variant_on_a_flat_folder_is_a_config_error(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(flat / f"{i}.png")
    path = write_toml(
        tmp_path / "pipeline.toml",
        f"""
        [run]
        name = "flat"
        device = "cpu"
        [data]
        dataset = "folder"
        path = "{flat.as_posix()}"
        image_size = 16
        [model]
        variant = "cgan"
        latent_dim = 8
        g_width = 4
        d_width = 4
        [augment]
        copies = 1
        [train]
        steps = 2
        batch_size = 4
        progress = false
        [export]
        """,
    )
    with pytest.raises(ConfigError) as info:
        run(path)
    msg = str(info.value)
    assert "cgan" in msg and "conditional" in msg and "subfolder" in msg
    assert msg.startswith(str(path))
    # said when the file is loaded: not even the augment stage before train ran
    assert not (tmp_path / "runs").exists()
    train_dir = tmp_path / "runs" / "flat" / "train"
    assert not (train_dir / "checkpoints").exists()
    assert not (train_dir / "metrics.jsonl").exists()
    assert not (tmp_path / "runs" / "flat" / "export").exists()


def test_conditional_variant_on_one_class_fails_before_training(tmp_path):
    data = ShapesDataset().load(ShapesOptions(count=8, classes=1), 16, 3, Path("."))
    variant = CGAN()
    with pytest.raises(ConfigError, match="subfolder"):
        Trainer(
            variant,
            variant.Options(**variant.tiny_options),
            TrainOptions(steps=2, batch_size=4, progress=False),
            data,
            tmp_path,
            device="cpu",
        )
    assert list(tmp_path.iterdir()) == []


# -- WGAN-GP -----------------------------------------------------------------------------


def wgan(info: DataInfo | None = None, **opts):
    variant = WGANGP()
    vopts = variant.Options(**{**variant.tiny_options, **opts})
    info = info or DataInfo(16, 3)
    torch.manual_seed(0)
    nets = variant.build(vopts, info)
    ctx = StepContext(nets, variant.optimizers(nets, vopts), vopts, info, torch.device("cpu"))
    return variant, ctx


def test_wgan_critic_has_no_sigmoid_or_batch_norm():
    _, ctx = wgan()
    kinds = {type(m) for m in ctx.nets["D"].modules()}
    assert not any(issubclass(k, nn.Sigmoid | nn.modules.batchnorm._BatchNorm) for k in kinds)
    # the DCGAN discriminator it is built from does have batch norm
    assert any(isinstance(m, nn.BatchNorm2d) for m in ctx.nets["G"].modules())
    # the critic's output is an unbounded score per image
    with torch.no_grad():
        for p in ctx.nets["D"].parameters():
            p.mul_(50)
        out = ctx.nets["D"](batch_of().images)
    assert out.shape == (8,) and out.abs().max() > 1


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


def test_gradient_penalty():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(6, 3, 16, 16, generator=g)
    fake = torch.randn(6, 3, 16, 16, generator=g)
    w = torch.randn(1, 3, 16, 16, generator=g)
    unit = w / w.norm()
    assert gradient_penalty(LinearCritic(unit), real, fake).item() == pytest.approx(0, abs=1e-8)
    # ||grad|| = 3 -> (3 - 1)^2 = 4, for any interpolate
    assert gradient_penalty(LinearCritic(3 * unit), real, fake).item() == pytest.approx(4.0)
    assert gradient_penalty(LinearCritic(0.5 * unit), real, fake).item() == pytest.approx(0.25)
    # a real critic: positive, and differentiable w.r.t. the critic's weights
    _, ctx = wgan()
    gp = gradient_penalty(ctx.nets["D"], real.tanh(), fake.tanh())
    assert gp.item() > 0
    gp.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ctx.nets["D"].parameters())


def params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def changed(before: list[torch.Tensor], net: nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_wgan_n_critic():
    variant, ctx = wgan(n_critic=3)
    g_steps, d_steps = [], []
    for step in range(7):
        ctx.step = step
        g0, d0 = params(ctx.nets["G"]), params(ctx.nets["D"])
        losses = variant.train_step(ctx, batch_of(seed=step))
        g_steps.append(changed(g0, ctx.nets["G"]))
        d_steps.append(changed(d0, ctx.nets["D"]))
        assert ("g_loss" in losses) == g_steps[-1]
        assert {"wasserstein", "gp", "d_loss"} <= set(losses)
        assert all(torch.isfinite(v) for v in losses.values())
    assert g_steps == [False, False, True, False, False, True, False]  # steps 3 and 6
    assert all(d_steps)


def test_wgan_weight_clipping():
    clip = 0.01
    variant, ctx = wgan(clip=clip, n_critic=1)
    # DCGAN init is N(0, 0.02): many critic weights start outside [-clip, clip]
    assert max(p.abs().max().item() for p in ctx.nets["D"].parameters()) > clip
    for step in range(2):
        ctx.step = step
        losses = variant.train_step(ctx, batch_of(seed=step))
        for p in ctx.nets["D"].parameters():
            assert p.abs().max().item() <= clip
        assert "gp" not in losses  # clipping replaces the penalty
    # without clipping the critic's weights are left alone
    variant, ctx = wgan(n_critic=1)
    ctx.step = 0
    variant.train_step(ctx, batch_of())
    assert max(p.abs().max().item() for p in ctx.nets["D"].parameters()) > clip


# -- VAE ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_vae_learns_and_its_decoder_generates(tiny_pipeline):
    path = tiny_pipeline(variant="vae", steps=30)
    path.write_text(path.read_text().replace("log_every = 2", "log_every = 1"))
    run(path)
    run_dir = path.parent / "runs" / "tiny"
    recs = [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").open()]
    assert [r["step"] for r in recs] == list(range(1, 31))
    loss = np.array([r["loss"] for r in recs])
    assert np.isfinite(loss).all() and all({"recon", "kl"} <= set(r) for r in recs)
    assert loss[-5:].mean() < 0.85 * loss[:5].mean(), loss  # about 0.73 here
    # the exported model is the decoder alone: z in, image out
    model = open_model(run_dir / "export" / "model.onnx", "cpu", task="generate")
    assert model.card.variant == "vae"
    assert [s.name for s in model.card.inputs] == ["z"]
    images = np.concatenate(list(generate_batches(model, 6, seed=0)))
    assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
    assert images.std() > 0
    assert len(list((run_dir / "generate").glob("sample_*.png"))) == 5


# -- the MLP GAN -------------------------------------------------------------------------------


def test_gan_hidden_widths_are_honoured():
    variant = VanillaGAN()
    opts = variant.Options(latent_dim=8, hidden=[16, 24])
    nets = variant.build(opts, DataInfo(16, 1))

    def shape(net):
        return [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]

    assert shape(nets["G"]) == [(8, 16), (16, 24), (24, 256)]
    assert shape(nets["D"]) == [(256, 24), (24, 16), (16, 1)]
    assert nets["G"](torch.randn(3, 8)).shape == (3, 1, 16, 16)
    assert nets["D"](torch.randn(3, 1, 16, 16)).shape == (3,)
    with pytest.raises(ValueError):
        variant.Options(hidden=[])
