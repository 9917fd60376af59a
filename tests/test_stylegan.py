"""StyleGAN: the modulated convolution is StyleGAN2's weight (de)modulation, styles and
noise act where they should, and the lazy R1 penalty runs on its schedule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganpipe.errors import ConfigError
from ganpipe.nn.stylegan import ModulatedConv, StyleDiscriminator, StyleGenerator
from ganpipe.variant import Batch, DataInfo, StepContext
from ganpipe.variants.stylegan import StyleGAN


def test_modulated_conv_equals_per_sample_weight_modulation():
    """Scaling activations then demodulating outputs == convolving each sample with its
    own modulated, demodulated weight (StyleGAN2's formulation, grouped conv)."""
    torch.manual_seed(0)
    conv = ModulatedConv(5, 7, 3, w_dim=6)
    x, w = torch.randn(3, 5, 8, 8), torch.randn(3, 6)
    got = conv(x, w)
    style = conv.affine(w)  # B, cin
    weight = conv.weight[None] * conv.scale * style[:, None, :, None, None]
    weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    ref = F.conv2d(
        x.reshape(1, 15, 8, 8), weight.reshape(21, 5, 3, 3), padding=1, groups=3
    ).reshape(3, 7, 8, 8)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # demodulation keeps unit-variance inputs at about unit variance
    big = conv(torch.randn(64, 5, 16, 16), torch.randn(64, 6))
    assert 0.7 < float(big.detach().std()) < 1.3


def test_styles_mix_per_layer_and_noise_is_fixed_in_eval():
    torch.manual_seed(0)
    G = StyleGenerator(8, 8, 2, 16, 3, 4, 8)
    assert G.num_ws == 6
    w1, w2 = G.mapping(torch.randn(2, 8)), G.mapping(torch.randn(2, 8))
    G.eval()
    ws = w1[:, None].expand(-1, G.num_ws, -1)
    base = G.synthesis(ws)
    mixed = G.synthesis(torch.cat([ws[:, :3], w2[:, None].expand(-1, 3, -1)], dim=1))
    assert not torch.allclose(base, mixed)  # later layers take the second style
    assert torch.equal(G.synthesis(ws), base)  # eval: const noise, deterministic
    with torch.no_grad():
        for m in G.modules():
            if hasattr(m, "noise_strength"):
                m.noise_strength.fill_(1.0)
    G.train()
    assert not torch.equal(G.synthesis(ws), G.synthesis(ws))  # train: fresh noise
    out = G(torch.randn(2, 8))
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1.0


def test_lazy_r1_and_image_size_check():
    v = StyleGAN()
    opts = v.Options(**v.tiny_options)
    info = DataInfo(16, 3)
    torch.manual_seed(0)
    nets = v.build(opts, info)
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, info, torch.device("cpu"))
    batch = Batch(torch.rand(4, 3, 16, 16) * 2 - 1, torch.zeros(4, dtype=torch.long))
    logged = []
    for step in range(4):
        ctx.step = step
        out = v.train_step(ctx, batch)
        logged.append("r1" in out)
        assert all(torch.isfinite(t) for t in out.values())
    assert logged == [True, False, True, False]  # r1_every = 2 in the tiny options
    with pytest.raises(ConfigError, match="power of two >= 8"):
        v.check_data(opts, DataInfo(24, 3))


def test_depth_one_keeps_one_styled_conv_per_level_and_depth_two_keeps_its_weight_names():
    """``depth = 1`` (the small-run nets) drops the second 3x3 conv of every level in G and
    D; ``depth = 2`` has the parameter names of the nets before the option existed, so
    earlier checkpoints and weights still load."""
    torch.manual_seed(0)
    one, two = (StyleGenerator(8, 8, 2, 16, 1, 4, 8, depth=d) for d in (1, 2))
    assert (one.num_ws, two.num_ws) == (4, 6)  # first conv, depth per level, last ToRGB
    assert one(torch.randn(2, 8)).shape == two(torch.randn(2, 8)).shape == (2, 1, 16, 16)
    assert "convs.0.conv.weight" in two.state_dict() and len(one.convs) == 0
    convs = [m for m in one.modules() if isinstance(m, ModulatedConv) and m.weight.shape[-1] == 3]
    assert len(convs) == 1 + 2  # the 4 px conv, then one per level (8 and 16 px)
    d_one, d_two = (StyleDiscriminator(16, 1, 4, 8, depth=d) for d in (1, 2))
    assert {"blocks.0.conv1.weight", "blocks.0.conv2.weight"} <= set(d_two.state_dict())
    assert "blocks.0.conv2.weight" not in d_one.state_dict()
    x = torch.randn(4, 1, 16, 16)
    assert d_one(x).shape == d_two(x).shape == (4,)
    with pytest.raises(ValueError, match="depth must be 1 or 2"):
        StyleGenerator(8, 8, 2, 16, 1, 4, 8, depth=3)


def test_one_generator_pass_serves_both_updates():
    """A step draws one batch of fakes: D's update sees them detached, G's update the same
    images through D (one synthesis pass per step, not two)."""
    v = StyleGAN()
    opts = v.Options(**{**v.tiny_options, "r1_every": 100})
    info = DataInfo(16, 1)
    torch.manual_seed(0)
    nets = v.build(opts, info)
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, info, torch.device("cpu"))
    calls = []
    nets["G"].synthesis = lambda ws, f=nets["G"].synthesis: calls.append(1) or f(ws)
    ctx.step = 1
    v.train_step(ctx, Batch(torch.rand(4, 1, 16, 16) * 2 - 1, torch.zeros(4, dtype=torch.long)))
    assert len(calls) == 1


@pytest.mark.parametrize("every", [1, 4, 16])
def test_lazy_r1_scales_d_adam_lr_and_betas_by_k_over_k_plus_1(every):
    """StyleGAN2's correction for lazy regularisation (training_loop.py ``mb_ratio``): with
    an R1 update every k steps, D's Adam runs with lr * k/(k+1) and betas ** (k/(k+1));
    G (no lazy path-length term here) and D without R1 keep the options' values."""
    v = StyleGAN()
    opts = v.Options(**{**v.tiny_options, "r1_every": every, "betas": (0.5, 0.99)})
    nets = v.build(opts, DataInfo(16, 1))
    opt = v.optimizers(nets, opts)
    ratio = every / (every + 1)
    (d_group,) = opt["D"].param_groups
    assert d_group["lr"] == pytest.approx(opts.lr_d * ratio)
    assert d_group["betas"] == pytest.approx((0.5**ratio, 0.99**ratio))
    assert len(d_group["params"]) == len(list(nets["D"].parameters()))
    (g_group,) = opt["G"].param_groups
    assert g_group["lr"] == opts.lr_g and tuple(g_group["betas"]) == (0.5, 0.99)
    off = v.optimizers(nets, opts.model_copy(update={"r1_gamma": 0.0}))
    assert off["D"].param_groups[0]["lr"] == opts.lr_d
    assert tuple(off["D"].param_groups[0]["betas"]) == (0.5, 0.99)
