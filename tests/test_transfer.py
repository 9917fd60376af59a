"""Transfer learning (``[train] init_from``): a fresh run starts from released SR weights
or a ganpipe checkpoint; matching tensors are taken, the rest is listed and kept fresh."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_PIPELINE, write_toml

from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.errors import ConfigError, ModelFileError
from ganpipe.nn.sr import RRDBNet
from ganpipe.pipeline import run_file
from ganpipe.training import checkpoint as ckpt
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.variants.biggan import BigGAN
from ganpipe.variants.esrgan import ESRGAN

SR_PIPELINE = """
[run]
name = "ft"
device = "cpu"

[data]
dataset = "shapes"
image_size = 16
count = 16

[model]
variant = "esrgan"
scale = 4
num_feat = 8
num_block = 1
num_grow_ch = 4

[train]
steps = {steps}
batch_size = 4
sample_every = 0
checkpoint_every = 0
progress = false
init_from = "{init}"
"""


def released_rrdb(path: Path) -> dict[str, torch.Tensor]:
    """A Real-ESRGAN-style release: params_ema (used) next to params (a decoy)."""
    torch.manual_seed(5)
    state = RRDBNet(3, 3, 4, num_feat=8, num_block=1, num_grow_ch=4).state_dict()
    decoy = {k: torch.zeros_like(v) for k, v in state.items()}
    torch.save({"params_ema": state, "params": decoy}, path)
    return state


def test_fine_tune_released_sr_weights(tmp_path):
    state = released_rrdb(tmp_path / "RealESRGAN_tiny.pth")
    logs: list[str] = []
    toml = write_toml(
        tmp_path / "pipeline.toml", SR_PIPELINE.format(steps=2, init="RealESRGAN_tiny.pth")
    )
    run_file(toml, entry_points=False, log=logs.append)
    assert any(
        "G initialised from RealESRGAN_tiny.pth (released weights): "
        f"{len(state)} of {len(state)} tensors" in line
        for line in logs
    ), logs
    # the starting point really is the file: a Trainer built the same way holds it
    variant = ESRGAN()
    opts = variant.Options(scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    data = ShapesDataset().load(ShapesOptions(count=16), 16, 3, Path("."))
    trainer = Trainer(
        variant,
        opts,
        TrainOptions(
            steps=1, batch_size=4, progress=False, init_from=tmp_path / "RealESRGAN_tiny.pth"
        ),
        data,
        tmp_path / "direct",
        device="cpu",
        log=lambda *_: None,
    )
    trainer._build()
    got = trainer.nets["G"].state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state)
    # and training moves on from it
    trained = ckpt.load_weights(
        ckpt.latest_checkpoint(tmp_path / "runs" / "ft" / "train" / "checkpoints")
    )["G"]
    assert any(not torch.equal(trained[k], state[k]) for k in state)


def test_init_from_a_checkpoint_and_partial_transfer(tmp_path):
    """A BigGAN trained on 2 classes starts one on 3: everything but the class-sized
    tensors is taken, and those are listed."""
    (tmp_path / "a").mkdir()
    two = write_toml(
        tmp_path / "a" / "pipeline.toml",
        TINY_PIPELINE.format(variant="biggan", steps=2).replace(
            "d_width = 4\n", "d_width = 4\nembed_dim = 4\n"
        ),
    )
    assert "classes = 2" in two.read_text()
    run_file(two, entry_points=False, log=lambda *_: None)
    source = ckpt.latest_checkpoint(tmp_path / "a" / "runs" / "tiny" / "train" / "checkpoints")
    saved = ckpt.load_weights(source)

    variant = BigGAN()
    opts = variant.Options(**variant.tiny_options)
    data = ShapesDataset().load(ShapesOptions(count=12, classes=3), 16, 3, Path("."))
    logs: list[str] = []
    trainer = Trainer(
        variant,
        opts,
        TrainOptions(steps=1, batch_size=4, progress=False, init_from=source),
        data,
        tmp_path / "b",
        device="cpu",
        log=logs.append,
    )
    trainer._build()
    for net in ("G", "D"):
        mine = trainer.nets[net].state_dict()
        same = [k for k in mine if mine[k].shape == saved[net][k].shape]
        assert same and all(torch.equal(mine[k], saved[net][k]) for k in same)
        assert len(same) < len(mine)  # the class embeddings differ in size
    g_line = next(line for line in logs if line.startswith("train: G initialised"))
    assert "(checkpoint)" in g_line and "kept fresh: shared.weight ((2, 4) vs (3, 4))" in g_line


def test_init_from_errors_and_resume(tmp_path):
    (tmp_path / "other.pth").write_bytes(b"")
    torch.save({"params": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    toml = write_toml(tmp_path / "pipeline.toml", SR_PIPELINE.format(steps=2, init="nope.pth"))
    with pytest.raises(ConfigError, match="init_from: .*nope.pth does not exist"):
        run_file(toml, entry_points=False, log=lambda *_: None)
    assert not (tmp_path / "runs").exists()
    # a file with nothing that fits: one line, no checkpoint written
    rrdb = RRDBNet(3, 3, 4, num_feat=16, num_block=1, num_grow_ch=4).state_dict()
    torch.save(rrdb, tmp_path / "wide.pth")
    toml = write_toml(tmp_path / "pipeline.toml", SR_PIPELINE.format(steps=2, init="wide.pth"))
    with pytest.raises(
        ModelFileError, match=r"wide.pth fits only \d+ of the 42 tensors of G"
    ) as info:
        run_file(toml, entry_points=False, log=lambda *_: None)
    assert "\n" not in str(info.value)
    # a resumed run continues from its checkpoint and does not load init_from again
    released_rrdb(tmp_path / "ok.pth")
    toml = write_toml(tmp_path / "pipeline.toml", SR_PIPELINE.format(steps=2, init="ok.pth"))
    run_file(toml, entry_points=False, log=lambda *_: None)
    logs: list[str] = []
    run_file(
        write_toml(tmp_path / "pipeline.toml", SR_PIPELINE.format(steps=3, init="ok.pth")),
        entry_points=False,
        log=logs.append,
    )
    assert any("resuming" in line for line in logs)
    assert not any("initialised" in line for line in logs)
