"""The shared training loop on real tiny nets: exact resume, checkpoints, NaN handling,
metrics and samples, reproducibility, and the pipeline manifest (skip / rerun)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_toml
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import ganpipe
from ganpipe.config import load_config
from ganpipe.data.sources import ShapesDataset, ShapesOptions
from ganpipe.errors import ConfigError, TrainingError
from ganpipe.inference.session import open_model
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator
from ganpipe.pipeline import run_file, run_pipeline
from ganpipe.plugins import get_plugin_manager
from ganpipe.registry import load_registry
from ganpipe.training import checkpoint as ckpt
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.variants.dcgan import DCGAN, DCGANOptions

VOPTS = DCGANOptions(latent_dim=8, g_width=4, d_width=4)


@pytest.fixture(scope="module")
def data():
    # 36 images, batch 8: 4 batches per epoch, so 6 steps cross an epoch boundary
    return ShapesDataset().load(ShapesOptions(count=36, classes=2, seed=3), 16, 3, Path("."))


def options(**kw) -> TrainOptions:
    base = dict(
        steps=6,
        batch_size=8,
        ema_decay=0.9,
        log_every=1,
        sample_every=0,
        checkpoint_every=3,
        keep_checkpoints=3,
        num_samples=4,
        progress=False,
    )
    return TrainOptions(**{**base, **kw})


def trainer(
    out: Path, data, variant=None, seed: int = 0, fingerprint: str = "fp", log=None, **kw
) -> Trainer:
    return Trainer(
        variant or DCGAN(),
        VOPTS,
        options(**kw),
        data,
        out,
        seed=seed,
        device="cpu",
        fingerprint=fingerprint,
        log=log if log is not None else (lambda *_: None),
    )


def weights(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt_dir / "model.safetensors"))


def assert_same(a, b, where="state"):
    """Recursive exact equality of nested containers of tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def losses_of(metrics: Path) -> list[dict]:
    recs = [json.loads(line) for line in metrics.read_text().splitlines()]
    for r in recs:
        r.pop("images_per_s")
    return recs


# -- resume --------------------------------------------------------------------------------


def test_resume_is_exact(tmp_path, data):
    n = 3
    straight = trainer(tmp_path / "straight", data, steps=2 * n, checkpoint_every=n).run()
    assert straight.steps == 2 * n and straight.resumed_from == 0

    first = trainer(tmp_path / "split", data, steps=n, checkpoint_every=n).run()
    assert first.steps == n
    assert first.checkpoint.name == f"step_{n:08d}"
    logs: list[str] = []
    second = trainer(
        tmp_path / "split", data, steps=2 * n, checkpoint_every=n, resume=True, log=logs.append
    ).run()
    assert second.resumed_from == n and second.steps == 2 * n
    assert any("resuming" in line and f"step {n}" in line for line in logs)

    a, b = straight.checkpoint, second.checkpoint
    assert a.name == b.name == f"step_{2 * n:08d}"
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    assert {k.split("/")[0] for k in wa} == {"G", "D", "G_ema"}  # EMA is checkpointed
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    # the EMA generator really differs from G (decay > 0), so the check covers it
    assert any(not torch.equal(wa[k], wa["G_ema/" + k[2:]]) for k in wa if k.startswith("G/"))
    sa, sb = ckpt.load_state(a), ckpt.load_state(b)
    assert sa["step"] == sb["step"] == 2 * n
    assert_same(sa["optimizers"], sb["optimizers"], "optimizers")
    assert_same(sa["rng"], sb["rng"], "rng")
    # the metrics log of the resumed run equals the uninterrupted one, step for step
    assert losses_of(tmp_path / "split" / "metrics.jsonl") == losses_of(
        tmp_path / "straight" / "metrics.jsonl"
    )
    # and so does the final sample grid
    final = f"samples/step_{2 * n:08d}.png"
    assert (tmp_path / "split" / final).read_bytes() == (tmp_path / "straight" / final).read_bytes()


def test_resume_after_crash_mid_log(tmp_path, data):
    trainer(tmp_path, data, steps=3, checkpoint_every=3).run()
    # a crash after step 5: lines past the checkpoint, the last one cut short mid-write
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "d_loss": 99.0, "g_loss": 99.0, "images_per_s": 1}\n')
        f.write('{"step": 5, "d_lo')
    result = trainer(tmp_path, data, steps=6, checkpoint_every=3).run()
    assert result.resumed_from == 3
    recs = losses_of(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]
    assert recs[3]["d_loss"] != 99.0


def test_resume_false_starts_over(tmp_path, data):
    trainer(tmp_path, data, steps=3, checkpoint_every=3).run()
    result = trainer(tmp_path, data, steps=3, checkpoint_every=3, resume=False).run()
    assert result.resumed_from == 0 and result.steps == 3


def test_already_finished_does_nothing(tmp_path, data):
    trainer(tmp_path, data, steps=3).run()
    before = snapshot(tmp_path)
    logs: list[str] = []
    result = trainer(tmp_path, data, steps=3, log=logs.append).run()
    assert result.steps == 3 and result.checkpoint.name == "step_00000003"
    assert any("nothing to do" in line for line in logs)
    assert snapshot(tmp_path) == before


# -- checkpoint files --------------------------------------------------------------------


def test_checkpoint_layout_and_safe_loading(tmp_path, data):
    result = trainer(tmp_path, data, steps=4, checkpoint_every=2).run()
    ckpt_dir = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step_00000002", "step_00000004"]
    for step_dir in ckpt_dir.iterdir():
        assert sorted(p.name for p in step_dir.iterdir()) == ["model.safetensors", "state.pt"]
    final = ckpt_dir / "step_00000004"
    assert result.checkpoint == final
    with safe_open(str(final / "model.safetensors"), "pt") as f:
        assert f.metadata()["step"] == "4"
        keys = set(f.keys())
    assert any(k.startswith("G/") for k in keys) and any(k.startswith("D/") for k in keys)
    assert any(k.startswith("G_ema/") for k in keys)
    # plain tensors and containers only: loadable without unpickling arbitrary objects
    state = torch.load(final / "state.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 4 and state["fingerprint"] == "fp"
    assert set(state["optimizers"]) == {"G", "D"}
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    grouped = ckpt.load_weights(final)
    assert set(grouped) == {"G", "D", "G_ema"}


def test_leftover_temp_checkpoint_is_ignored(tmp_path, data):
    trainer(tmp_path, data, steps=4, checkpoint_every=2).run()
    ckpt_dir = tmp_path / "checkpoints"
    # a crash while writing step 99 left a half-written temporary folder behind
    tmp = ckpt_dir / ".tmp-step_00000099-4242"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"half written")
    assert ckpt.latest_checkpoint(ckpt_dir).name == "step_00000004"
    logs: list[str] = []
    result = trainer(tmp_path, data, steps=6, checkpoint_every=2, log=logs.append).run()
    assert result.resumed_from == 4 and result.steps == 6
    assert any("step_00000004" in line for line in logs)


def test_keep_checkpoints_prunes(tmp_path, data):
    trainer(tmp_path, data, steps=6, checkpoint_every=1, keep_checkpoints=2).run()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000005", "step_00000006"]


def test_unreadable_checkpoint_is_a_training_error(tmp_path, data):
    trainer(tmp_path, data, steps=2, checkpoint_every=2).run()
    (tmp_path / "checkpoints" / "step_00000002" / "state.pt").write_bytes(b"garbage")
    with pytest.raises(TrainingError, match="--force"):
        trainer(tmp_path, data, steps=4).run()


def test_changed_config_refuses_to_resume(tmp_path, data):
    trainer(tmp_path, data, steps=2, checkpoint_every=2, fingerprint="old").run()
    before = snapshot(tmp_path)
    with pytest.raises(TrainingError, match="--force"):
        trainer(tmp_path, data, steps=4, fingerprint="new").run()
    assert snapshot(tmp_path) == before


# -- non-finite losses ---------------------------------------------------------------------


class NaNAt(DCGAN):
    """DCGAN whose train_step reports a NaN loss at (1-based) step ``bad``."""

    name = "nan-dcgan"

    def __init__(self, bad: int):
        self.bad = bad

    def train_step(self, ctx, batch):
        losses = super().train_step(ctx, batch)
        if ctx.step + 1 == self.bad:
            losses["g_loss"] = torch.tensor(float("nan"))
        return losses


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path, data):
    trainer(tmp_path, data, steps=4, checkpoint_every=2).run()
    before = snapshot(tmp_path / "checkpoints")
    with pytest.raises(TrainingError) as info:
        trainer(tmp_path, data, variant=NaNAt(6), steps=10, checkpoint_every=1).run()
    msg = str(info.value)
    assert "non-finite loss at step 6" in msg
    assert "g_loss" in msg and "nan" in msg
    assert f"last good checkpoint: {tmp_path / 'checkpoints' / 'step_00000005'}" in msg
    # step 5 was checkpointed before the bad step; nothing existing was changed and
    # nothing was written for the bad step
    after = snapshot(tmp_path / "checkpoints")
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step_00000002",
        "step_00000004",
        "step_00000005",
    ]
    steps = [r["step"] for r in losses_of(tmp_path / "metrics.jsonl")]
    assert max(steps) == 5


def test_nan_loss_in_a_fresh_run(tmp_path, data):
    with pytest.raises(TrainingError) as info:
        trainer(tmp_path, data, variant=NaNAt(3), steps=6, checkpoint_every=2).run()
    assert "non-finite loss at step 3" in str(info.value)
    assert "step_00000002" in str(info.value)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000002"]
    with pytest.raises(TrainingError, match="no checkpoint was written yet"):
        trainer(tmp_path / "other", data, variant=NaNAt(1), steps=6).run()


# -- metrics, samples, reproducibility -----------------------------------------------------


def test_metrics_and_sample_grids(tmp_path, data):
    trainer(
        tmp_path, data, steps=7, log_every=2, sample_every=3, num_samples=4, checkpoint_every=0
    ).run()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["step"] for r in recs] == [2, 4, 6, 7]  # every log_every, and the last step
    for r in recs:
        assert set(r) == {"step", "d_loss", "g_loss", "images_per_s", "diversity"}
        assert np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"])
    samples = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert samples == ["step_00000003.png", "step_00000006.png", "step_00000007.png"]
    path = tmp_path / "samples" / "step_00000007.png"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (2 * 18 + 2, 2 * 18 + 2)  # 2x2 grid of 16px images, 2px padding
        assert np.asarray(im).std() > 0
    # checkpoint_every=0: only the final checkpoint
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000007"]


def test_same_seed_same_weights(tmp_path, data):
    a = trainer(tmp_path / "a", data, steps=3, seed=7).run()
    b = trainer(tmp_path / "b", data, steps=3, seed=7).run()
    c = trainer(tmp_path / "c", data, steps=3, seed=8).run()
    wa, wb, wc = weights(a.checkpoint), weights(b.checkpoint), weights(c.checkpoint)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


# -- the pipeline manifest ----------------------------------------------------------------


def run(path: Path, **kw) -> list[str]:
    logs: list[str] = []
    run_file(path, entry_points=False, log=logs.append, **kw)
    return logs


def states(logs: list[str]) -> dict[str, str]:
    """``{stage: "ran" | "skipped"}`` from a run's log."""
    out = {}
    for line in logs:
        for stage in ("train", "export", "generate", "augment"):
            if line.startswith(f"[{stage}] running"):
                out[stage] = "ran"
            elif line.startswith(f"[{stage}] up to date"):
                out[stage] = "skipped"
    return out


def test_manifest_skips_and_reruns(tiny_pipeline):
    path = tiny_pipeline(steps=4)
    run_dir = path.parent / "runs" / "tiny"
    assert states(run(path)) == {"train": "ran", "export": "ran", "generate": "ran"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"train", "export", "generate"}
    assert len(list((run_dir / "generate").glob("*.png"))) == 5 + 1  # images + grid
    ckpt_file = run_dir / "train" / "checkpoints" / "step_00000004" / "model.safetensors"
    onnx = run_dir / "export" / "model.onnx"
    first_ckpt, first_onnx = ckpt_file.stat().st_mtime_ns, onnx.stat().st_mtime_ns

    # unchanged: every stage is up to date
    logs = run(path)
    assert states(logs) == {"train": "skipped", "export": "skipped", "generate": "skipped"}
    assert sum("up to date" in line for line in logs) == 3
    assert ckpt_file.stat().st_mtime_ns == first_ckpt

    # a [generate] option changed: only generate reruns
    path.write_text(path.read_text().replace("count = 5", "count = 6"))
    assert states(run(path)) == {"train": "skipped", "export": "skipped", "generate": "ran"}
    assert len(list((run_dir / "generate").glob("sample_*.png"))) == 6
    assert onnx.stat().st_mtime_ns == first_onnx
    assert states(run(path)) == {"train": "skipped", "export": "skipped", "generate": "skipped"}

    # the truncation trick reaches the stage: same seed, other (truncated) noise
    before = (run_dir / "generate" / "sample_00000.png").read_bytes()
    path.write_text(path.read_text().replace("[generate]\n", "[generate]\ntruncation = 0.3\n"))
    assert states(run(path)) == {"train": "skipped", "export": "skipped", "generate": "ran"}
    assert (run_dir / "generate" / "sample_00000.png").read_bytes() != before

    # from_stage: that stage and the later ones
    assert states(run(path, from_stage="export")) == {
        "train": "skipped",
        "export": "ran",
        "generate": "ran",
    }
    assert ckpt_file.stat().st_mtime_ns == first_ckpt
    assert onnx.stat().st_mtime_ns != first_onnx

    # force: everything
    assert states(run(path, force=True)) == {"train": "ran", "export": "ran", "generate": "ran"}
    assert ckpt_file.stat().st_mtime_ns != first_ckpt

    # a deleted output makes its stage run again, and the stages that read it
    (run_dir / "export" / "model.onnx").unlink()
    assert states(run(path)) == {"train": "skipped", "export": "ran", "generate": "ran"}

    with pytest.raises(ConfigError, match="--from nope"):
        run(path, from_stage="nope")


def train_only(tiny_pipeline, steps: int) -> Path:
    path = tiny_pipeline(steps=steps)
    text = path.read_text()
    path.write_text(
        text[: text.index("[export]")].replace("checkpoint_every = 0", "checkpoint_every = 2")
    )
    return path


def test_pipeline_resumes_when_steps_grow(tiny_pipeline):
    path = train_only(tiny_pipeline, steps=2)
    run(path)
    path.write_text(path.read_text().replace("steps = 2", "steps = 4"))
    logs = run(path)
    assert states(logs) == {"train": "ran"}
    assert any("resumed at step 2" in line for line in logs)
    ckpts = path.parent / "runs" / "tiny" / "train" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000002", "step_00000004"]


def test_pipeline_config_change_needs_force(tiny_pipeline):
    path = train_only(tiny_pipeline, steps=2)
    run(path)
    train_dir = path.parent / "runs" / "tiny" / "train"
    before = snapshot(train_dir)
    path.write_text(path.read_text().replace("d_width = 4", "d_width = 4\nlr_g = 0.001"))
    with pytest.raises(TrainingError) as info:
        run(path)
    assert "--force" in str(info.value) and "step_00000002" in str(info.value)
    assert snapshot(train_dir) == before, "nothing is overwritten"
    # --force starts over with the new configuration
    logs = run(path, force=True)
    assert states(logs) == {"train": "ran"}
    state = ckpt.load_state(train_dir / "checkpoints" / "step_00000002")
    assert state["optimizers"]["G"]["param_groups"][0]["lr"] == 0.001


# -- names the loop relies on: declared by the variant ---------------------------------------


class RenamedOptions(ganpipe.Options):
    """No ``latent_dim``, ``lr_g``, ``lr_d`` or ``betas``: nothing the base class reads."""

    z_size: int = 8
    width: int = 4
    lr: float = 2e-4


class Renamed(ganpipe.Variant):
    """A DCGAN whose nets are ``gen`` / ``disc`` and optimizers ``gen_opt`` / ``disc_opt``,
    built on the public API only, as a plugin is."""

    name = "renamed"
    description = "test variant without a net called G"
    Options = RenamedOptions
    generator_net = "gen"

    def build(self, opts, info):
        return {
            "gen": DCGANGenerator(opts.z_size, info.image_size, info.channels, opts.width),
            "disc": DCGANDiscriminator(info.image_size, info.channels, opts.width),
        }

    def optimizers(self, nets, opts):
        return {
            "gen_opt": torch.optim.Adam(nets["gen"].parameters(), lr=opts.lr, betas=(0.5, 0.9)),
            "disc_opt": torch.optim.Adam(nets["disc"].parameters(), lr=opts.lr, betas=(0.5, 0.9)),
        }

    def inputs(self, opts, info):
        return [ganpipe.InputSpec("z", "normal", (opts.z_size,))]

    def train_step(self, ctx, batch):
        gen, disc = ctx.nets["gen"], ctx.nets["disc"]
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        (z,) = self.make_inputs(ctx.opts, ctx.info, batch.images.shape[0], ctx.device)
        fake = gen(z)
        real_logits, fake_logits = disc(ctx.augment(batch.images)), disc(ctx.augment(fake.detach()))
        d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(
            fake_logits, torch.zeros_like(fake_logits)
        )
        ctx.update("disc_opt", d_loss)
        logits = disc(ctx.augment(fake))
        g_loss = bce(logits, torch.ones_like(logits))
        ctx.update("gen_opt", g_loss)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


def renamed_trainer(out: Path, data, **kw) -> Trainer:
    return Trainer(
        Renamed(),
        RenamedOptions(),
        options(**kw),
        data,
        out,
        device="cpu",
        fingerprint="fp",
        log=lambda *_: None,
    )


def test_a_generator_not_called_g_trains_and_resumes_exactly(tmp_path, data):
    n = 3
    straight = renamed_trainer(tmp_path / "straight", data, steps=2 * n, checkpoint_every=n).run()
    renamed_trainer(tmp_path / "split", data, steps=n, checkpoint_every=n).run()
    second = renamed_trainer(tmp_path / "split", data, steps=2 * n, checkpoint_every=n).run()
    assert second.resumed_from == n and second.steps == 2 * n

    wa, wb = weights(straight.checkpoint), weights(second.checkpoint)
    assert {k.split("/")[0] for k in wa} == {"gen", "disc", "gen_ema"}  # no G, no G_ema
    assert set(wa) == set(wb)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    gen_keys = [k for k in wa if k.startswith("gen/")]
    assert any(not torch.equal(wa[k], wa["gen_ema/" + k[4:]]) for k in gen_keys)  # EMA kept
    sa, sb = ckpt.load_state(straight.checkpoint), ckpt.load_state(second.checkpoint)
    assert set(sa["optimizers"]) == {"gen_opt", "disc_opt"}
    assert_same(sa["optimizers"], sb["optimizers"], "optimizers")
    recs = losses_of(tmp_path / "split" / "metrics.jsonl")
    assert recs == losses_of(tmp_path / "straight" / "metrics.jsonl")
    assert all("diversity" in r for r in recs)  # sampled from gen's EMA
    final = f"samples/step_{2 * n:08d}.png"
    assert (tmp_path / "split" / final).read_bytes() == (tmp_path / "straight" / final).read_bytes()


class RenamedPlugin:
    @ganpipe.hookimpl
    def ganpipe_register_variants(self, register):
        register(Renamed())


@pytest.mark.slow
def test_a_generator_not_called_g_exports_its_ema(tmp_path):
    path = write_toml(
        tmp_path / "pipeline.toml",
        """
        [run]
        name = "renamed"
        device = "cpu"

        [data]
        dataset = "shapes"
        image_size = 16
        count = 32

        [model]
        variant = "renamed"
        z_size = 8

        [train]
        steps = 4
        batch_size = 8
        ema_decay = 0.9
        ema_rampup = 0           # 4 ramped steps: the EMA is ~gen
        sample_every = 0
        checkpoint_every = 0
        num_samples = 4
        progress = false

        [export]
        """,
    )
    pm = get_plugin_manager(entry_points=False)
    pm.register(RenamedPlugin(), name="renamed-test")
    try:
        logs: list[str] = []
        run_pipeline(load_config(path, load_registry(pm)), log=logs.append)
    finally:
        pm.unregister(name="renamed-test")
    assert any(line.startswith("[export] done") and "EMA generator" in line for line in logs)
    run_dir = tmp_path / "runs" / "renamed"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["export"]["info"]["ema"] is True
    w = ckpt.load_weights(run_dir / manifest["stages"]["train"]["outputs"]["checkpoint"])
    info = ganpipe.DataInfo(16, 3)
    raw, ema = (
        Renamed().build(RenamedOptions(), info)["gen"],
        Renamed().build(RenamedOptions(), info)["gen"],
    )
    raw.load_state_dict(w["gen"])
    ema.load_state_dict(w["gen_ema"])
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, other = ema.eval()(z).numpy(), raw.eval()(z).numpy()
    model = open_model(run_dir / "export" / "model.onnx", "cpu", task="generate")
    got = model.run({"z": z.numpy()})
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(got - other).max() > 1e-4  # the EMA, not the raw generator
