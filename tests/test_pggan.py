"""PGGAN: the growth schedule, fading a new level in, and a run that grows to the full
resolution and exports the grown generator."""

from __future__ import annotations

import json

import torch
from conftest import TINY_PIPELINE, write_toml

from ganpipe.inference.session import open_model
from ganpipe.pipeline import run_file
from ganpipe.variant import Batch, DataInfo, StepContext
from ganpipe.variants.pggan import PGGAN, schedule


def test_schedule_fades_in_then_stabilises_each_level():
    got = [schedule(s, 4, 2) for s in range(0, 20, 2)]
    assert got == [
        (0, 1.0),
        (0, 1.0),
        (1, 0.0),
        (1, 0.5),
        (1, 1.0),
        (1, 1.0),
        (2, 0.0),
        (2, 0.5),
        (2, 1.0),
        (2, 1.0),
    ]


def test_fading_blends_the_previous_level_and_images_stay_full_size():
    torch.manual_seed(0)
    v = PGGAN()
    opts = v.Options(**v.tiny_options)
    nets = v.build(opts, DataInfo(16, 3))
    G, D = nets["G"].eval(), nets["D"].eval()
    z = torch.randn(3, opts.latent_dim)
    low, high = G.grow(z, 0, 1.0), G.grow(z, 1, 1.0)
    half = G.grow(z, 1, 0.5)
    assert low.shape == high.shape == half.shape == (3, 3, 16, 16)
    # at 4x4, 16x16 images are blocks of 4x4 equal pixels; a level up they are not
    assert torch.equal(low, low[..., ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3))
    assert not torch.equal(
        high, high[..., ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3)
    )
    pre = torch.atanh(torch.stack([low, high, half]).clamp(-0.999999, 0.999999))
    torch.testing.assert_close(pre[2], (pre[0] + pre[1]) / 2, atol=1e-4, rtol=1e-4)
    for level, alpha in ((0, 1.0), (1, 0.3), (2, 1.0)):
        D.level.fill_(level)
        D.alpha.fill_(alpha)
        assert D(high).shape == (3,)


def test_a_run_grows_to_full_resolution_and_exports_it(tmp_path):
    toml = TINY_PIPELINE.format(variant="pggan", steps=10).replace(
        "d_width = 4\n", "d_width = 4\nphase_steps = 2\nmax_width = 8\n"
    )
    path = write_toml(tmp_path / "pipeline.toml", toml)
    run_file(path, entry_points=False, log=lambda *_: None)
    run_dir = tmp_path / "runs" / "tiny"
    metrics = [
        json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["level"] for m in metrics] == [0.0, 1.0, 1.0, 2.0, 2.0]
    model = open_model(run_dir / "export" / "model.onnx", "cpu", task="generate")
    assert model.card.resolution == 16
    assert run_dir.joinpath("generate", "grid.png").is_file()


def test_depth_one_blocks_have_one_conv_and_depth_two_keeps_its_weight_names():
    """``depth = 1`` (the small-run nets) keeps only the channel-changing 3x3 conv of each
    growth block; ``depth = 2`` has the parameter names of the nets before the option
    existed (earlier checkpoints still load)."""
    v = PGGAN()
    info = DataInfo(16, 1)
    for depth, per_block in ((1, 1), (2, 2)):
        opts = v.Options(**{**v.tiny_options, "depth": depth})
        nets = v.build(opts, info)
        G, D = nets["G"], nets["D"]
        assert [len(b) for b in G.blocks] == [len(b) for b in D.blocks] == [per_block] * 2
        for net in (G, D):
            net.level.fill_(2)
        assert D(G(torch.randn(3, opts.latent_dim))).shape == (3,)
    assert {"blocks.0.0.weight", "blocks.0.1.weight"} <= set(G.state_dict())
    assert G.blocks[1][0].weight.shape[:2] == (4, 8) and D.blocks[1][1].weight.shape[:2] == (8, 4)


def test_reals_are_faded_with_the_alpha_of_the_fakes():
    """progressive_growing_of_gans ``process_reals``: during a fade-in D's reals are the
    images at the new resolution lerped with their 2x box-down, nearest-up version by the
    alpha G's output is blended with; outside a fade-in just box-filtered."""
    torch.manual_seed(0)
    v = PGGAN()
    opts = v.Options(**{**v.tiny_options, "phase_steps": 4})
    info = DataInfo(16, 3)
    nets = v.build(opts, info)
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, info, torch.device("cpu"))
    seen: list[torch.Tensor] = []
    nets["D"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    real = torch.rand(4, 3, 16, 16) * 2 - 1

    def box(x, k):  # mean of k x k blocks
        return x.reshape(*x.shape[:2], x.shape[2] // k, k, x.shape[3] // k, k).mean((3, 5))

    def up(x, k):
        return x.repeat_interleave(k, 2).repeat_interleave(k, 3)

    given, wanted = [], []
    for step in (0, 6, 7, 9, 14):  # 4 px; fading 8 px in at 0.5, 0.75; 8 px; fading 16 px
        seen.clear()
        ctx.step = step
        v.train_step(ctx, Batch(real, torch.zeros(4, dtype=torch.long)))
        level, alpha = nets["G"].stage()  # what G's output was blended with
        assert (level, alpha) == nets["D"].stage()
        k = 16 // (4 * 2**level)
        at_res = box(real, k)
        want = at_res if alpha == 1 else alpha * at_res + (1 - alpha) * up(box(at_res, 2), 2)
        # what D's layers see (D box-filters its input to the level's resolution)
        torch.testing.assert_close(box(seen[0], k), want, atol=1e-6, rtol=1e-5)
        given.append(seen[0])
        wanted.append(up(want, k))
    assert (level, alpha) == (2, 0.5)
    for got, want in zip(given, wanted, strict=True):  # full size, nearest up like G's images
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
