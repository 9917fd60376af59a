"""The SR training recipe against BasicSR's: ESRGAN's loss weights (``train_ESRGAN_x4.yml``:
pixel L1 1e-2, perceptual 1.0, GAN 5e-3; the warm-up ``RRDBNet_PSNR``: L1 alone at 1),
the LR input quantised to 8 bits as the stored LR images (Real-ESRGAN rounds its degraded
LR the same way), each written here from the formulas, not from the variant's helpers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganpipe.nn import VGG19Features, downscale, vgg19_layers
from ganpipe.registry import load_registry
from ganpipe.variant import Batch, DataInfo, StepContext

REGISTRY = load_registry(entry_points=False)
CPU = torch.device("cpu")


@pytest.fixture
def vgg_file(tmp_path):
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19_layers(8).state_dict().items()}
    save_file(state, str(tmp_path / "vgg.safetensors"))
    return tmp_path / "vgg.safetensors"


def esrgan(vgg_file, **extra):
    v = REGISTRY.variants.get("esrgan")
    torch.manual_seed(0)
    opts = v.Options(**{**v.tiny_options, "vgg_weights": vgg_file, "vgg_layer": 7, **extra})
    info = DataInfo(16, 3)
    v.check_data(opts, info)
    nets = v.build(opts, info)
    for net in nets.values():
        net.train()
    return v, opts, info, nets


def hr_images(n=4, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def reference_lr(hr, scale):
    """BasicSR's LR: the bicubic down-scaling stored as an 8-bit image."""
    return (downscale(hr, scale) * 255).round().clamp(0, 255) / 255


def test_esrgan_defaults_are_basicsr_weights():
    o = REGISTRY.variants.get("esrgan").Options()
    assert (o.content_weight, o.vgg_weight, o.adv_weight) == (1e-2, 1.0, 5e-3)
    assert (o.content_loss, o.gan_loss, o.vgg_layer) == ("l1", "ragan", 34)  # conv5_4, pre-ReLU


def test_esrgan_generator_loss_is_basicsr_composition(vgg_file):
    v, opts, info, nets = esrgan(vgg_file)
    hr = hr_images()
    G, D = copy.deepcopy(nets["G"]), copy.deepcopy(nets["D"])  # the nets before the step
    vgg = VGG19Features.from_file(vgg_file, 7)
    with torch.no_grad():
        sr = G(reference_lr(hr, opts.scale))
        pixel = (sr - hr).abs().mean()
        perceptual = (vgg(sr) - vgg(hr)).abs().mean()
        fake, real = D(sr * 2 - 1), D(hr * 2 - 1)  # RaGAN, G's view (BasicSR ESRGANModel)
        bce = F.binary_cross_entropy_with_logits
        gan = 0.5 * (
            bce(real - fake.mean(), torch.zeros_like(real))
            + bce(fake - real.mean(), torch.ones_like(fake))
        )
        want = 1e-2 * pixel + 1.0 * perceptual + 5e-3 * gan
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, info, CPU)
    losses = v.train_step(ctx, Batch(hr * 2 - 1, torch.zeros(4).long()))
    assert float(losses["content"]) == pytest.approx(float(pixel), rel=1e-5)
    assert float(losses["perceptual"]) == pytest.approx(float(perceptual), rel=1e-5)
    assert float(losses["adv"]) == pytest.approx(float(gan), rel=1e-5)
    assert float(losses["g_loss"]) == pytest.approx(float(want), rel=1e-5)


def test_warm_up_is_pixel_loss_alone_at_weight_one(vgg_file):
    v, opts, info, nets = esrgan(vgg_file, pretrain_steps=1)
    hr = hr_images()
    G = copy.deepcopy(nets["G"])
    with torch.no_grad():
        want = (G(reference_lr(hr, opts.scale)) - hr).abs().mean()
    d_before = copy.deepcopy(nets["D"].state_dict())
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, info, CPU)
    losses = v.train_step(ctx, Batch(hr * 2 - 1, torch.zeros(4).long()))
    assert set(losses) == {"content", "g_loss"}  # no perceptual, no GAN, D untouched
    assert float(losses["g_loss"]) == pytest.approx(float(want), rel=1e-5)
    assert all(torch.equal(t, nets["D"].state_dict()[k]) for k, t in d_before.items())


@pytest.mark.parametrize("name", ["srgan", "compact", "espcn"])
def test_other_sr_variants_keep_their_weights(name):
    o = REGISTRY.variants.get(name).Options()
    assert o.content_weight == 1.0 and o.vgg_weight == 1.0
    # SRGAN (Ledig et al. 2017): 1e-3 adversarial; espcn trains on the pixel loss alone
    assert o.adv_weight == {"srgan": 1e-3, "compact": 1e-3, "espcn": 0.0}[name]
    if name == "srgan":
        assert (o.content_loss, o.gan_loss, o.vgg_layer) == ("mse", "bce", 35)


def test_lr_input_is_quantised_to_8_bits():
    v = REGISTRY.variants.get("compact")
    opts = v.Options(**v.tiny_options)
    hr = hr_images()
    lr = v.make_lr(hr, opts)
    assert torch.equal(lr, reference_lr(hr, opts.scale))
    assert torch.equal(lr * 255, (lr * 255).round())


def test_esrgan_without_vgg_weights_keeps_the_pixel_loss_in_charge(vgg_file):
    """No perceptual loss without local VGG weights: BasicSR's 1e-2 pixel weight would leave
    the GAN term half the loss, so an unset content_weight resolves to 1.0 there (and stays
    1e-2 with VGG weights, or whatever the user set)."""
    v = REGISTRY.variants.get("esrgan")
    info = DataInfo(16, 3)
    bare = v.resolve_options(v.Options(), info, "cpu", 100)
    assert bare.content_weight == 1.0
    with_vgg = v.resolve_options(v.Options(vgg_weights=vgg_file), info, "cpu", 100)
    assert with_vgg.content_weight == 1e-2
    chosen = v.resolve_options(v.Options(content_weight=0.1), info, "cpu", 100)
    assert chosen.content_weight == 0.1


def last_hidden_spread(net, x):
    """How much the features before the last conv vary between images, relative to their
    size."""
    with torch.no_grad():
        for layer in net.body[:-1]:
            x = layer(x)
    return float(x.std(dim=0).mean() / x.abs().mean().clamp_min(1e-12))


def test_a_fresh_compact_body_carries_the_input():
    """The features before compact's last conv must depend on the input at the start of
    training (default sizes: 16 conv/PReLU pairs). With PyTorch's default init they are
    almost the same for every image: the net sits at its nearest-neighbour skip, and an
    800-step run left it or not by the seed's luck (bench/sr_quality.py x2, seeds 0-2:
    -2.4, +8.4, +11.3 dB over bicubic; with He init +13.8, +12.4, ...)."""
    from ganpipe.nn import SRVGGNetCompact

    v = REGISTRY.variants.get("compact")
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    net = v.build_generator(v.Options(scale=2), DataInfo(32, 3))
    torch.manual_seed(0)
    default = SRVGGNetCompact(3, 3, 64, 16, 2)
    assert last_hidden_spread(default, x) < 0.01  # the signal is gone
    assert last_hidden_spread(net, x) > 0.05
    # He: std sqrt(2 / ((1 + 0.25^2) fan_in)) for a PReLU's initial slope 0.25
    assert float(net.body[0].weight.detach().std()) == pytest.approx(
        (2 / 1.0625 / 27) ** 0.5, rel=0.1
    )
    assert float(net.body[-1].weight.detach().std()) == pytest.approx(
        0.1 * (2 / 1.0625 / 576) ** 0.5, rel=0.1
    )
