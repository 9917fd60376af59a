"""The EMA of the generator as StyleGAN2-ADA keeps it (``training_loop.py``): its window
ramps up with the run (``train.ema_rampup``), it is updated once per generator update
(not per ``train_step`` call), it resumes exactly, and a window the run cannot fill is
one loud line when the pipeline runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import ganpipe.training.loop as loop
from ganpipe.pipeline import run_file
from ganpipe.registry import load_registry
from ganpipe.testing import make_image_set
from ganpipe.training import checkpoint as ckpt
from ganpipe.training.ema import beta, suggested_decay, window_warning
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.variants.dcgan import DCGAN, DCGANOptions

VOPTS = DCGANOptions(latent_dim=8, g_width=4, d_width=4)
BATCH = 8
REGISTRY = load_registry(entry_points=True)
GENERATE = [n for n in REGISTRY.variants if REGISTRY.variants.get(n).task == "generate"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: fastest on one thread
    yield
    torch.set_num_threads(threads)


def train(out: Path, variant=None, vopts=VOPTS, data=None, **kw) -> Trainer:
    base = dict(
        steps=6,
        batch_size=BATCH,
        ema_decay=0.999,
        log_every=1,
        sample_every=0,
        checkpoint_every=0,
        num_samples=4,
        progress=False,
    )
    data = data if data is not None else make_image_set(24, 16, 3)
    opts = TrainOptions(**{**base, **kw})
    return Trainer(variant or DCGAN(), vopts, opts, data, out, device="cpu", log=lambda *_: None)


def stylegan2_ada_ema(init, live, decay: float, rampup: float) -> list[dict]:
    """The reference, written out: StyleGAN2-ADA's ``ema_nimg = min(ema_kimg * 1000,
    cur_nimg * ema_rampup)``, ``ema_beta = 0.5 ** (batch / max(ema_nimg, 1e-8))``, with
    ``ema_kimg`` the half-life of ``decay`` in images and ``cur_nimg`` the images seen
    before the update; ``G_ema = G.lerp(G_ema, ema_beta)`` after every G update, from a
    copy of the initial G."""
    ema_nimg_target = BATCH * math.log(0.5) / math.log(decay)
    ema, out = init, []
    for i, weights in enumerate(live):
        cur_nimg = i * BATCH
        ema_nimg = min(ema_nimg_target, cur_nimg * rampup) if rampup else ema_nimg_target
        b = 0.5 ** (BATCH / max(ema_nimg, 1e-8))
        ema = {k: weights[k].lerp(ema[k], b) for k in weights}
        out.append(ema)
    return out


@pytest.mark.parametrize("rampup", [0.05, 0.0])
def test_the_ema_follows_stylegan2_adas_ramp(tmp_path, rampup):
    """Every step's G_ema equals the reference on the same sequence of live weights. With
    the ramp, the EMA holds no random init: after the first update it is G, and at every
    step it lies within the range of the live weights so far."""
    t = train(tmp_path, steps=8, checkpoint_every=1, keep_checkpoints=8, ema_rampup=rampup)
    torch.manual_seed(0)  # the loop builds the nets after seeding with run.seed (0)
    init = DCGAN().build(VOPTS, t.info)["G"].state_dict()
    t.run()
    names = [n for n, _ in t.generator.named_parameters()]
    saved = [ckpt.load_weights(s) for s in sorted((tmp_path / "checkpoints").glob("step_*"))]
    assert len(saved) == 8
    live = [{k: w["G"][k] for k in names} for w in saved]
    want = stylegan2_ada_ema(init, live, 0.999, rampup)
    for w, ref in zip(saved, want, strict=True):
        for k in names:
            torch.testing.assert_close(w["G_ema"][k], ref[k], rtol=0, atol=1e-6)
    if rampup:
        assert all(torch.equal(saved[0]["G_ema"][k], saved[0]["G"][k]) for k in names)
        for step in range(1, 9):
            for k in names:
                seen = torch.stack([w[k] for w in live[:step]])
                ema = saved[step - 1]["G_ema"][k]
                assert (ema >= seen.min(0).values - 1e-6).all(), f"step {step}: {k}"
                assert (ema <= seen.max(0).values + 1e-6).all(), f"step {step}: {k}"
    else:  # the plain decay keeps 0.999 of the random init at step 1
        assert not torch.equal(saved[0]["G_ema"][names[0]], saved[0]["G"][names[0]])


def test_beta_in_generator_updates():
    """decay 0.999: a half-life of 693 updates, reached after 693 / 0.05 = 13863."""
    assert beta(0.999, 0.05, 0) == 0.0  # the first update copies G
    assert beta(0.999, 0.05, 20) == pytest.approx(0.5)  # half-life 0.05 * 20 = 1 update
    assert beta(0.999, 0.05, 300) == pytest.approx(0.5 ** (1 / 15))
    assert beta(0.999, 0.05, 13_900) == pytest.approx(0.999)
    assert beta(0.999, 0.0, 0) == 0.999  # no ramp: plain decay from the start
    assert beta(0.0, 0.05, 100) == 0.0


@pytest.mark.parametrize("name", GENERATE)
def test_one_ema_update_per_generator_update(tmp_path, monkeypatch, name):
    """Every generate variant (plugins too), with several D updates per G update where it
    has them: the EMA is updated exactly as often as G's optimizer steps."""
    variant = REGISTRY.variants.get(name)
    given = dict(getattr(variant, "tiny_options", {}))
    for key in ("d_steps", "n_critic"):
        if key in variant.Options.model_fields:
            given[key] = 2
    vopts = variant.Options(**given)
    classes = ("a", "b", "c") if getattr(variant, "conditional", False) else ()
    data = make_image_set(16, getattr(variant, "test_image_size", 16), 3, classes)
    calls = []
    real = loop.update_ema

    def counted(ema, model, b):
        calls.append(b)
        real(ema, model, b)

    monkeypatch.setattr(loop, "update_ema", counted)
    t = train(tmp_path, variant, vopts, data, steps=3, batch_size=4, ema_decay=0.9)
    t.run()
    if name in ("wgan-gp", "biggan", "pggan"):
        assert t.per_step == 2  # several train_step calls per G update
    g_params = set(t.generator.parameters())
    g_steps = max(
        int(opt.state[p]["step"])
        for opt in t.optimizers.values()
        for group in opt.param_groups
        for p in group["params"]
        if p in g_params and "step" in opt.state.get(p, {})
    )
    assert g_steps == 3, f"{name}: {g_steps} G updates in 3 steps"
    assert len(calls) == g_steps, f"{name}: {len(calls)} EMA updates for {g_steps} G updates"
    assert calls == [beta(0.9, 0.05, i) for i in range(3)]


def test_resume_is_exact_with_the_ramp(tmp_path):
    """wgan-gp (2 critic calls per step): 6 steps straight equal 3 + 3 resumed, EMA too."""
    variant = REGISTRY.variants.get("wgan-gp")
    vopts = variant.Options(**variant.tiny_options)
    kw = dict(ema_decay=0.999, ema_rampup=0.05, checkpoint_every=3)
    straight = train(tmp_path / "a", variant, vopts, steps=6, **kw).run()
    train(tmp_path / "b", variant, vopts, steps=3, **kw).run()
    resumed = train(tmp_path / "b", variant, vopts, steps=6, **kw).run()
    assert resumed.resumed_from == 3
    a, b = ckpt.load_weights(straight.checkpoint), ckpt.load_weights(resumed.checkpoint)
    assert set(a) == set(b) and "G_ema" in a
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key}"


# -- the load-time warning -------------------------------------------------------------------


def test_window_warning_names_the_key_the_window_and_a_value_that_fits():
    line = window_warning(0.999, 0.05, 300)
    assert line.startswith("warning: train.ema_decay = 0.999 averages over ~1000 ")
    assert "train.steps = 300" in line and "set train.ema_decay = 0.95" in line
    line = window_warning(0.995, 0.0, 100)  # the new user's case, without the ramp
    assert "~200 generator updates" in line and "set train.ema_decay = 0.9 " in line
    assert f"{0.995**100:.0%} of the exported G is still its random init" in line
    assert window_warning(0.99, 0.05, 400) is None  # 100 updates: a quarter, fits
    assert window_warning(0.995, 0.05, 1600) is None  # the quickstart's setting
    assert window_warning(0.0, 0.05, 10) is None  # no EMA
    assert suggested_decay(10_000) == 0.999 and suggested_decay(1600) == 0.99
    assert suggested_decay(10) == 0.0  # even 0.5 (2 updates) is too long: off


def test_a_run_with_an_ema_too_long_for_it_says_so(tmp_path, tiny_pipeline):
    path = tiny_pipeline(steps=2, extra="")
    text = path.read_text().replace("batch_size = 8", "batch_size = 8\nema_decay = 0.999")
    path.write_text(text.split("[export]")[0])
    logs: list[str] = []
    run_file(path, entry_points=False, log=logs.append)
    lines = [line for line in logs if "train.ema_decay" in line]
    assert len(lines) == 1, logs
    assert lines[0].startswith("[train] warning: train.ema_decay = 0.999 averages over ~1000")
    assert "train.steps = 2" in lines[0] and "set train.ema_decay = 0 (off)" in lines[0]
