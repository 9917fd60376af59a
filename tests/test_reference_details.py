"""Small training details pinned to their reference implementations (issue 23, item 7):
BigGAN's orthogonal regularisation (BigGAN-PyTorch ``utils.ortho``), DiffAugment's cutout
(``rand_cutout`` in mit-han-lab/data-efficient-gans), WGAN-GP's penalty under DiffAugment
(on the augmented batches the critic scored, as the DiffAugment authors' compare_gan code)
and WGAN weight clipping with RMSprop at 5e-5 (Arjovsky et al. 2017)."""

from __future__ import annotations

import copy

import pytest
import torch

from ganpipe import Batch, DataInfo, StepContext
from ganpipe.training.diffaugment import DiffAugment, cutout, translation
from ganpipe.variants.biggan import BigGAN
from ganpipe.variants.wgan import WGANGP

# -- BigGAN orthogonal regularisation ------------------------------------------------------


def reference_ortho_grad(w: torch.Tensor, strength: float) -> torch.Tensor:
    """BigGAN-PyTorch ``ortho``: ``strength * 2 (W W^T * (1 - I)) W``, W = rows per
    output channel."""
    m = w.flatten(1)
    off_diagonal = (m @ m.t()) * (1 - torch.eye(m.shape[0]))
    return (strength * 2 * off_diagonal @ m).reshape(w.shape)


def biggan_g_step(reg: float):
    """G's weights before, and its gradients in, one BigGAN step with ``ortho_reg = reg``
    (the same nets, data and noise for every ``reg``)."""
    v = BigGAN()
    info = DataInfo(16, 3, ("a", "b"))
    opts = v.Options(**{**v.tiny_options, "ortho_reg": reg})
    torch.manual_seed(0)
    nets = v.build(opts, info)
    with torch.no_grad():  # orthogonal init has W W^T diagonal: make the rows overlap
        for p in nets["G"].parameters():
            p.add_(torch.randn_like(p) * 0.3)
    G = nets["G"]
    before = {n: p.detach().clone() for n, p in G.named_parameters()}
    ctx = StepContext(nets, v.optimizers(nets, opts), opts, info, torch.device("cpu"))
    torch.manual_seed(1)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    out = v.train_step(ctx, Batch(images, torch.tensor([0, 1, 0, 1])))
    assert "g_loss" in out
    return G, before, {n: p.grad.detach().clone() for n, p in G.named_parameters()}


def test_ortho_reg_adds_biggan_pytorchs_gradient():
    strength = 0.05
    G, weights, with_reg = biggan_g_step(strength)
    _, _, without = biggan_g_step(0.0)
    shared = {id(p) for p in G.shared.parameters()}
    checked = 0
    for name, p in G.named_parameters():
        added = with_reg[name] - without[name]
        if p.ndim < 2 or id(p) in shared:  # biases, gains, the shared class embedding
            assert torch.allclose(added, torch.zeros_like(added), atol=1e-7), name
            continue
        expected = reference_ortho_grad(weights[name], strength)
        torch.testing.assert_close(added, expected, rtol=1e-4, atol=1e-6, msg=name)
        checked += bool(expected.abs().max() > 1e-3)  # one-row weights get none
    assert checked >= 5  # the first linear, the blocks' convs, the output conv, ...


# -- DiffAugment cutout ----------------------------------------------------------------------


def reference_cutout_mask(h: int, w: int, oy: int, ox: int) -> torch.Tensor:
    """``rand_cutout`` (ratio 0.5) for offsets (oy, ox): a side of int(size * 0.5 + 0.5),
    rows / columns ``offset - side // 2 + arange(side)`` clamped into the image, zeroed."""
    ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    rows = (oy - ch // 2 + torch.arange(ch)).clamp(0, h - 1)
    cols = (ox - cw // 2 + torch.arange(cw)).clamp(0, w - 1)
    mask = torch.ones(h, w)
    mask[rows[:, None], cols[None, :]] = 0
    return mask


@pytest.mark.parametrize("h, w", [(32, 32), (29, 31), (16, 15)])
def test_cutout_is_the_references_given_its_offset_draws(h, w):
    ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    torch.manual_seed(3)
    out = cutout(torch.ones(64, 2, h, w))
    torch.manual_seed(3)  # the reference draws the row offsets, then the column offsets
    oy = torch.randint(0, h + 1 - ch % 2, (64,))
    ox = torch.randint(0, w + 1 - cw % 2, (64,))
    for i in range(64):
        expected = reference_cutout_mask(h, w, int(oy[i]), int(ox[i]))
        assert torch.equal(out[i], expected.expand(2, h, w)), i


def extent(line: torch.Tensor) -> tuple[int, int]:
    """(first, last + 1) of the zeros of a 1-D 0/1 mask that has some."""
    idx = torch.nonzero(line == 0).flatten()
    return int(idx[0]), int(idx[-1]) + 1


@pytest.mark.parametrize("size, side", [(32, 16), (29, 15), (31, 16)])
def test_cutout_squares_and_offsets_span_the_references(size, side):
    """Every image loses one square of ``int(size / 2 + 0.5)`` a side (16 on 32 px, not
    17), clipped at the border, and the squares seen over many draws are exactly those of
    the reference's offsets ``[0, size + 1 - side % 2)``."""
    torch.manual_seed(0)
    out = cutout(torch.ones(3000, 1, size, size))[:, 0]
    predicted = {
        (max(0, o - side // 2), min(size, o - side // 2 + side)) for o in range(size + 1 - side % 2)
    }
    seen = set()
    for mask in out:
        rows = extent(mask.min(dim=1).values)
        cols = extent(mask.min(dim=0).values)
        square = torch.ones(size, size)
        square[rows[0] : rows[1], cols[0] : cols[1]] = 0
        assert torch.equal(mask, square)  # one axis-aligned rectangle
        assert rows in predicted and cols in predicted
        seen.update((rows, cols))
    assert seen == predicted
    assert max(b - a for a, b in seen) == side


# -- DiffAugment translation -----------------------------------------------------------------


def reference_translation(x: torch.Tensor, ty: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
    """``rand_translation`` for given integer shifts: pad by one zero pixel, then index
    ``clamp(i + t + 1, 0, size + 1)`` (rows, columns) - a pixel shifted in from outside is 0."""
    n, c, h, w = x.shape
    b, gy, gx = torch.meshgrid(torch.arange(n), torch.arange(h), torch.arange(w), indexing="ij")
    gy = (gy + ty.view(n, 1, 1) + 1).clamp(0, h + 1)
    gx = (gx + tx.view(n, 1, 1) + 1).clamp(0, w + 1)
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1])
    return padded.permute(0, 2, 3, 1)[b, gy, gx].permute(0, 3, 1, 2)


@pytest.mark.parametrize("h, w", [(32, 32), (29, 16)])
def test_translation_is_the_references_given_its_shift_draws(h, w):
    """Whole-pixel shifts uniform in [-round(size / 8), round(size / 8)] (+-4 on 32 px),
    each value as likely as the others, and the image the reference's indexing gives."""
    sh, sw = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
    x = torch.randn(2000, 3, h, w)
    torch.manual_seed(5)
    out = translation(x)
    torch.manual_seed(5)  # the reference draws the row shifts, then the column shifts
    ty = torch.randint(-sh, sh + 1, (2000,))
    tx = torch.randint(-sw, sw + 1, (2000,))
    assert torch.equal(out, reference_translation(x, ty, tx))
    counts = torch.bincount(ty + sh, minlength=2 * sh + 1)
    assert len(counts) == 2 * sh + 1 and int(counts.min()) > 0.7 * 2000 / (2 * sh + 1)


def test_translation_passes_gradients():
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    translation(x).sum().backward()
    assert x.grad is not None and set(x.grad.unique().tolist()) <= {0.0, 1.0}


# -- WGAN-GP under DiffAugment -------------------------------------------------------------


def flip_dim(x: torch.Tensor) -> torch.Tensor:
    """A deterministic augmentation: horizontal flip, contrast halved, shifted."""
    return 0.5 * x.flip(-1) + 0.25


@pytest.mark.parametrize("augment", [flip_dim, DiffAugment(["color", "translation", "cutout"])])
def test_gradient_penalty_is_on_interpolates_of_what_the_critic_saw(augment):
    v = WGANGP()
    info = DataInfo(16, 3)
    opts = v.Options(**{**v.tiny_options, "n_critic": 1})
    torch.manual_seed(0)
    nets = v.build(opts, info)
    critic = copy.deepcopy(nets["D"])  # the critic the penalty is taken on (pre-update)
    seen: list[torch.Tensor] = []
    nets["D"].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    ctx = StepContext(
        nets, v.optimizers(nets, opts), opts, info, torch.device("cpu"), augment=augment
    )
    real = torch.rand(6, 3, 16, 16) * 2 - 1
    out = v.train_step(ctx, Batch(real, torch.zeros(6, dtype=torch.long)))
    seen_real, seen_fake, x_hat = seen[:3]  # then G's step
    if augment is flip_dim:
        torch.testing.assert_close(seen_real, flip_dim(real))
    # each interpolate lies on the segment between the augmented real and fake the critic
    # scored: x_hat = a * aug(real) + (1 - a) * aug(fake), a in [0, 1]
    d = (seen_real - seen_fake).flatten(1)
    a = ((x_hat - seen_fake).flatten(1) * d).sum(1) / (d * d).sum(1)
    assert ((a >= 0) & (a <= 1)).all()
    on_segment = a.reshape(-1, 1, 1, 1) * seen_real + (1 - a.reshape(-1, 1, 1, 1)) * seen_fake
    torch.testing.assert_close(x_hat, on_segment, rtol=0, atol=1e-5)
    # and the penalty is E[(||grad D(x_hat)||_2 - 1)^2] there
    x = x_hat.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x)
    expected = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(out["gp"], expected, rtol=1e-5, atol=1e-7)


# -- WGAN weight clipping: RMSprop -----------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "cuda"])  # small-run scale and full scale
def test_weight_clipping_trains_with_rmsprop_at_the_papers_rate(device):
    v = WGANGP()
    info = DataInfo(32, 1)

    def optimizers(**given):
        opts = v.resolve_options(v.Options(**given), info, device, 100)
        return opts, v.optimizers(v.build(opts, info), opts)

    opts, opt = optimizers(clip=0.01)
    assert {k: type(o) for k, o in opt.items()} == {
        "G": torch.optim.RMSprop,
        "D": torch.optim.RMSprop,
    }
    assert opts.lr_g == opts.lr_d == 5e-5 and opts.n_critic == 5
    assert opt["G"].param_groups[0]["lr"] == opt["D"].param_groups[0]["lr"] == 5e-5
    # the user's values win
    opts, opt = optimizers(clip=0.01, lr_d=3e-4, n_critic=2)
    assert (opts.lr_g, opts.lr_d, opts.n_critic) == (5e-5, 3e-4, 2)
    assert opt["D"].param_groups[0]["lr"] == 3e-4
    # the penalty keeps Adam and its own rates
    opts, opt = optimizers()
    assert all(type(o) is torch.optim.Adam for o in opt.values())
    assert opts.lr_d == (2e-4 if device == "cpu" else 1e-4)
    assert opt["D"].param_groups[0]["betas"] == tuple(opts.betas)


def test_a_checkpoint_of_another_optimizer_is_refused_in_one_line(tmp_path):
    """A clip run saved with Adam (before clip meant RMSprop) and resumed with the same
    fingerprint: one line naming the net, not a KeyError at the next step; an Adam state
    from an older torch, lacking a newer setting, still loads."""
    from ganpipe.errors import TrainingError
    from ganpipe.training.checkpoint import load_optimizer

    params = [torch.nn.Parameter(torch.ones(3))]
    adam = torch.optim.Adam(params, lr=5e-5)
    params[0].grad = torch.ones(3)
    adam.step()
    saved = adam.state_dict()
    with pytest.raises(TrainingError, match=r"another optimizer for 'D' than this run's RMSprop"):
        load_optimizer(tmp_path, "D", torch.optim.RMSprop(params, lr=5e-5), saved)
    older = copy.deepcopy(saved)
    for group in older["param_groups"]:
        group.pop("decoupled_weight_decay", None)
    fresh = torch.optim.Adam(params, lr=5e-5)
    load_optimizer(tmp_path, "D", fresh, older)
    assert fresh.state_dict()["state"][0]["step"] == 1
