"""Platform 1.1, the variant side: the contract stated once on the base classes and the
checks derived from it; identity declared once; one adapter for variants not derived from
``ganpipe.Variant``; plugin code failing in a run as one line naming plugin, method and
fix; ``quick_check``; the variant's checkpointed ``ctx.state``; ``train_defaults``; the
public ``SRVariant``. Real plugin managers, real registries, real (tiny) training."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from conftest import write_toml
from pydantic import Field

import ganpipe
from ganpipe import conformance
from ganpipe.config import load_config
from ganpipe.contract import Hook, call_params, hook, hooks
from ganpipe.dataset import DatasetSource
from ganpipe.errors import ConfigError, PluginCodeError, PluginError, TrainingError
from ganpipe.nn import DCGANDiscriminator, DCGANGenerator
from ganpipe.pipeline import run_pipeline
from ganpipe.plugins import get_plugin_manager
from ganpipe.registry import load_registry
from ganpipe.stage import Stage
from ganpipe.testing import make_image_set, quick_check
from ganpipe.training import defaults
from ganpipe.training.checkpoint import load_state, load_weights
from ganpipe.training.loop import Trainer
from ganpipe.training.options import TrainOptions
from ganpipe.training.state import pack_variant_state
from ganpipe.variants.dcgan import DCGAN

TINY = {"latent_dim": 8, "g_width": 4, "d_width": 4}
DIST = "ganpipe-v11 0.1.0"


class Hinge(ganpipe.Variant):
    """A plugin variant in the once-only form: name, task and description are left to its
    lazy registration."""

    Options = ganpipe.GANOptions
    tiny_options = TINY

    def build(self, opts, info):
        return {
            "G": DCGANGenerator(opts.latent_dim, info.image_size, info.channels, opts.g_width, 32),
            "D": DCGANDiscriminator(info.image_size, info.channels, opts.d_width, 32),
        }

    def train_step(self, ctx, batch):
        G, D = ctx.nets["G"], ctx.nets["D"]
        (z,) = self.make_inputs(ctx.opts, ctx.info, batch.images.shape[0], ctx.device)
        fake = G(z)
        d_loss = torch.relu(1 - D(batch.images)).mean() + torch.relu(1 + D(fake.detach())).mean()
        ctx.update("D", d_loss)
        g_loss = -D(fake).mean()
        ctx.update("G", g_loss)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


class Lazy:
    """A plugin declaring ``module:attr`` of this test module lazily."""

    def __init__(self, attr: str, **declared):
        self.attr, self.declared = attr, declared

    @ganpipe.hookimpl
    def ganpipe_register_variants(self, register):
        register.lazy(f"{__name__}:{self.attr}", **self.declared)


class Now:
    """A plugin registering an object now."""

    def __init__(self, obj):
        self.obj = obj

    @ganpipe.hookimpl
    def ganpipe_register_variants(self, register):
        register(self.obj)


def registry_with(*plugins):
    pm = get_plugin_manager(entry_points=False)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"v11-{i}")
        pm.ganpipe_dists[f"v11-{i}"] = DIST
    return load_registry(pm, strict=True)


# -- the contract, stated once ------------------------------------------------------------


def test_the_checks_are_derived_from_the_base_classes():
    required = {b: {n for n, h in hooks(b).items() if h.required} for b in (ganpipe.Variant,)}
    assert required[ganpipe.Variant] == {"build", "train_step"}
    assert {n for n, h in hooks(Stage).items() if h.required} == {"run"}
    assert {n for n, h in hooks(DatasetSource).items() if h.required} == {"load", "fingerprint"}
    assert call_params(ganpipe.Variant, "make_inputs") == ("opts", "info", "n", "device")
    assert ganpipe.Variant.contract_attributes["train_defaults"].since == "0.3"
    for table in ("VARIANT_METHODS", "VARIANT_OWN", "STAGE_METHODS", "DATASET_METHODS"):
        assert not hasattr(conformance, table)  # no hand-copied tables

    class Extended(ganpipe.Variant):  # a method added to a base is checked at once
        @hook(required=True, since="9.9", fix="implement it")
        def extra(self, opts):
            raise NotImplementedError

    assert hooks(Extended)["extra"] == Hook("extra", True, "9.9", "implement it")
    problems = conformance.methods_problems(Hinge(), Extended)
    assert problems == ["method extra(opts) is missing; implement it (subclass ganpipe.Extended)"]


def test_an_optional_hook_with_a_wrong_signature_is_refused_naming_the_fix():
    class Wrong(Hinge):
        name = "wrong"

        def updates_per_step(self):
            return 2

    problems = conformance.variant_problems(Wrong())
    assert problems == [
        "method updates_per_step() cannot be called as updates_per_step(opts); "
        "give it the parameters (self, opts)"
    ]


# -- identity, declared once -----------------------------------------------------------------


def test_identity_comes_from_the_lazy_registration():
    reg = registry_with(Lazy("Hinge", name="v11-hinge", description="hinge, declared once"))
    variant = reg.variants.get("v11-hinge")
    assert isinstance(variant, Hinge)
    assert (variant.name, variant.task, variant.description) == (
        "v11-hinge",
        "generate",
        "hinge, declared once",
    )
    assert not {"name", "task", "description"} & set(vars(Hinge))
    assert Hinge().name == "v11-hinge"  # an instance made directly knows it too
    # the built-ins: the table in ganpipe.variants, not the classes
    assert "name" not in vars(DCGAN) and DCGAN().name == "dcgan"
    assert DCGAN().description.startswith("Deep convolutional GAN")


class Repeats(Hinge):
    """The old form: the class repeats what its registration declares."""

    name = "v11-repeats"
    task = "generate"
    description = "said twice"


def test_the_old_form_still_works_and_a_disagreement_is_one_line():
    reg = registry_with(Lazy("Repeats", name="v11-repeats", task="generate"))
    assert reg.variants.get("v11-repeats").description == "said twice"
    reg = registry_with(Lazy("Repeats", name="v11-other", task="generate"))
    with pytest.raises(PluginError) as info:
        reg.variants.get("v11-other")
    message = str(info.value)
    assert f"plugin 'v11-0' ({DIST}):" in message and "\n" not in message
    assert "has name 'v11-repeats' but was registered with name 'v11-other'" in message


# -- one adapter for variants not derived from Variant ---------------------------------------


class Duck:
    """Written against the duck-typed contract of ganpipe 0.2: no base class."""

    name = "v11-duck"
    task = "generate"
    Options = ganpipe.GANOptions
    tiny_options = TINY
    flavour = "quack"
    build = Hinge.build
    train_step = Hinge.train_step

    def make_inputs(self, opts, info, n, device, generator=None):
        return (torch.randn((n, opts.latent_dim), generator=generator).to(device),)


def test_a_variant_not_derived_from_variant_is_adapted_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning) as caught:
        reg = registry_with(Now(Duck()))
    message = str(caught[0].message)
    assert "v11-duck" in message and "ganpipe.Variant" in message and "\n" not in message
    variant = reg.variants.get("v11-duck")
    assert isinstance(variant, ganpipe.Variant) and variant.flavour == "quack"
    opts = ganpipe.GANOptions(**TINY)
    info = ganpipe.DataInfo(16, 3)
    assert variant.generator_net == "G" and variant.updates_per_step(opts) == 1  # defaults
    assert variant.resolve_options(opts, info, "cpu", 10) is opts
    real = torch.zeros(2, 3, 16, 16)
    (z,) = variant.fixed_inputs(opts, info, 2, torch.device("cpu"), None, real)
    assert z.shape == (2, 8)  # the base's fixed_inputs calls the duck's make_inputs
    assert quick_check(variant) == []


# -- plugin code failing: one line naming plugin, distribution, method and fix --------------


class KeyErrorBuild(Hinge):
    name = "v11-keyerror"

    def build(self, opts, info):
        return {"gen": super().build(opts, info)["G"]}["G"]


class TupleBuild(Hinge):
    name = "v11-tuple"

    def build(self, opts, info):
        return tuple(super().build(opts, info).values())


class RefusesData(Hinge):
    name = "v11-refuses"

    def check_data(self, opts, info):
        raise ConfigError("data.image_size: too small; use 32")


def test_exceptions_in_plugin_methods_name_plugin_distribution_method_and_fix():
    reg = registry_with(Now(KeyErrorBuild()), Now(TupleBuild()), Now(RefusesData()))
    opts, info = ganpipe.GANOptions(**TINY), ganpipe.DataInfo(16, 3)
    variant = reg.variants.get("v11-keyerror")
    with pytest.raises(PluginCodeError) as info_:
        variant.build(opts, info)
    err = info_.value
    assert str(err).startswith(
        f"plugin 'v11-0' ({DIST}): Variant.build raised KeyError: 'G'; build(opts, info) "
        f"must return a dict of nets by name"
    )
    assert (err.plugin, err.dist, err.method) == ("v11-0", DIST, "build")
    assert isinstance(err.__cause__, KeyError) and "\n" not in str(err)
    again = pickle.loads(pickle.dumps(variant))  # data-parallel workers get it pickled
    with pytest.raises(PluginCodeError):
        again.build(opts, info)
    with pytest.raises(PluginCodeError, match=r"Variant.build returned a tuple; build\(opts"):
        reg.variants.get("v11-tuple").build(opts, info)
    with pytest.raises(ConfigError, match="^data.image_size: too small; use 32$"):
        reg.variants.get("v11-refuses").check_data(opts, info)  # the user's: unchanged


class ReadsUndeclared(Hinge):
    """``Options = GANOptions`` while the code reads a key it does not declare."""

    name = "v11-undeclared"

    def train_step(self, ctx, batch):
        if ctx.opts.loss == "rahinge":
            pass
        return super().train_step(ctx, batch)


TOML = """
[run]
device = "cpu"
[data]
dataset = "shapes"
image_size = 16
count = 8
[model]
variant = "{variant}"
latent_dim = 8
g_width = 4
d_width = 4
[train]
steps = 2
batch_size = 4
sample_every = 0
progress = false
{train}
"""


def test_a_run_reports_plugin_code_failures_in_one_line(tmp_path):
    reg = registry_with(Now(ReadsUndeclared()))
    toml = write_toml(tmp_path / "pipeline.toml", TOML.format(variant="v11-undeclared", train=""))
    with pytest.raises(PluginCodeError) as info:
        run_pipeline(load_config(toml, reg), log=lambda *_: None)
    assert str(info.value) == (
        f"plugin 'v11-0' ({DIST}): Variant.train_step raised AttributeError: 'GANOptions' "
        f"object has no attribute 'loss'; the code reads opts.loss, which GANOptions does "
        f"not declare; add it to the variant's options (class MyOptions(GANOptions): loss: "
        f"... = <default>; Options = MyOptions)"
    )


# -- quick_check ---------------------------------------------------------------------------


class Gen(Hinge):
    name = "v11-gen"
    generator_net = "gen"


class WrongOptimizer(Hinge):
    name = "v11-wrong-optimizer"

    def train_step(self, ctx, batch):
        loss = ctx.nets["D"](batch.images).mean()
        ctx.update("disc", loss)
        return {"d": loss.detach()}


class UnknownKind(Hinge):
    name = "v11-unknown-kind"

    def inputs(self, opts, info):
        return [ganpipe.InputSpec("z", "gaussian", (opts.latent_dim,))]


class NoGeneratorSR(ganpipe.SRVariant):
    name = "v11-no-generator"
    Options = ganpipe.SROptions
    tiny_options = {"d_width": 4}


@pytest.mark.parametrize(
    "variant, needles",
    [
        (ReadsUndeclared(), ["Variant.train_step raised AttributeError", "add it to the"]),
        (TupleBuild(), ["Variant.build returned a tuple; build(opts, info) must return a dict"]),
        (Gen(), ["without 'gen' (generator_net); return the net that makes images as 'gen'"]),
        (WrongOptimizer(), ["no optimizer 'disc'; optimizers() returned 'G', 'D'", "ctx.update"]),
        (UnknownKind(), ["unknown input kind 'gaussian'; use one of normal,"]),
        (NoGeneratorSR(), ["build raised NotImplementedError; build_generator() is only the"]),
    ],
    ids=["undeclared-option", "tuple", "generator-net", "optimizer-name", "input-kind", "sr"],
)
def test_quick_check_names_each_mistake_and_its_fix(variant, needles):
    problems = quick_check(variant)
    assert len(problems) == 1 and "\n" not in problems[0], problems
    for needle in needles:
        assert needle in problems[0]


def test_quick_check_passes_every_installed_variant():
    reg = load_registry()
    for name in reg.variants:
        assert quick_check(reg.variants.get(name)) == [], name


# -- ctx.state: the variant's own checkpointed state ----------------------------------------


class Stateful(Hinge):
    """Weighs its G loss by a schedule kept in ctx.state (a float and a tensor)."""

    name = "v11-stateful"

    def train_step(self, ctx, batch):
        w = ctx.state.get("weight", 1.0) * 0.5
        ctx.state["weight"] = w
        if "seen" not in ctx.state:
            ctx.state["seen"] = torch.zeros(1)
        ctx.state["seen"] += batch.images.mean().detach()
        (z,) = self.make_inputs(ctx.opts, ctx.info, batch.images.shape[0], ctx.device)
        g_loss = -ctx.nets["D"](ctx.nets["G"](z)).mean() * (w + ctx.state["seen"].item())
        ctx.update("G", g_loss)
        losses = super().train_step(ctx, batch)
        return {**losses, "weight": torch.tensor(w), "seen": ctx.state["seen"][0].clone()}


def _trainer(out, steps):
    opts = TrainOptions(
        steps=steps,
        batch_size=4,
        log_every=1,
        sample_every=0,
        checkpoint_every=2,
        num_samples=4,
        progress=False,
    )
    data, vopts = make_image_set(8, 16, 3), ganpipe.GANOptions(**TINY)
    return Trainer(Stateful(), vopts, opts, data, out, device="cpu", fingerprint="v11", log=_quiet)


def _quiet(*_args) -> None:
    pass


def test_ctx_state_is_checkpointed_and_restored_on_resume(tmp_path):
    straight = _trainer(tmp_path / "straight", 4).run()
    _trainer(tmp_path / "split", 2).run()
    resumed = _trainer(tmp_path / "split", 4).run()
    assert resumed.resumed_from == 2
    a, b = load_weights(straight.checkpoint), load_weights(resumed.checkpoint)
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])
    saved = load_state(resumed.checkpoint)["variant_state"]
    assert saved["weight"] == 0.5**4 and saved["seen"].shape == (1,)
    logs = [
        (tmp_path / r / "metrics.jsonl").read_text().splitlines() for r in ("straight", "split")
    ]
    strip = [[line.split('"images_per_s"')[0] for line in lines] for lines in logs]
    assert strip[0] == strip[1]  # the logged state continues as if never interrupted


def test_ctx_state_refuses_what_a_checkpoint_cannot_keep():
    with pytest.raises(TrainingError) as info:
        pack_variant_state({"ok": [1, "a", None], "bad": {"x": object()}}, "v11")
    assert str(info.value).startswith("variant 'v11': ctx.state['bad']['x'] holds a object")


# -- train_defaults --------------------------------------------------------------------------


class Recommends(Hinge):
    name = "v11-recommends"
    train_defaults = {"ema_decay": 0.5, "batch_size": 8}


class RecommendsBadly(Hinge):
    name = "v11-recommends-badly"
    train_defaults = {"ema": 0.5}


def test_train_defaults_fill_the_keys_the_user_did_not_set(tmp_path):
    reg = registry_with(Now(Recommends()), Now(RecommendsBadly()))
    toml = write_toml(tmp_path / "a.toml", TOML.format(variant="v11-recommends", train=""))
    cfg = load_config(toml, reg)
    train = cfg.stage("train").options
    assert (train.ema_decay, train.batch_size) == (0.5, 4)  # batch_size: set by the user
    assert cfg.train_defaults == {"ema_decay": 0.5}
    assert defaults.describe_train(cfg.train_defaults, "v11-recommends") == (
        "train: ema_decay 0.5 (recommended by variant 'v11-recommends' for keys not set; "
        "set them in [train] to choose)"
    )
    toml = write_toml(
        tmp_path / "b.toml", TOML.format(variant="v11-recommends", train="ema_decay = 0.0")
    )
    assert load_config(toml, reg).train_defaults == {}
    toml = write_toml(tmp_path / "c.toml", TOML.format(variant="v11-recommends-badly", train=""))
    with pytest.raises(PluginError, match=r"recommends train_defaults 'ema', which is not"):
        load_config(toml, reg)


# -- SRVariant, public -----------------------------------------------------------------------


class TinySROptions(ganpipe.SROptions):
    scale: int = Field(2, description="up-scaling factor")
    feat: int = Field(4, ge=1, description="channels of the hidden convolution")


class TinySR(ganpipe.SRVariant):
    """A third-party super-resolution variant from public names only."""

    name = "v11-tiny-sr"
    Options = TinySROptions
    scales = (2,)
    tiny_options = {"d_width": 4}

    def build_generator(self, opts, info):
        c = info.channels
        return torch.nn.Sequential(
            torch.nn.Conv2d(c, opts.feat, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(opts.feat, c * opts.scale**2, 3, padding=1),
            torch.nn.PixelShuffle(opts.scale),
        )


def test_sr_variant_is_public_and_a_plugin_can_reuse_it(tmp_path):
    assert {"SRVariant", "SROptions"} <= set(ganpipe.__all__)
    variant = TinySR()
    assert variant.task == "super_resolve"
    assert quick_check(variant) == []  # build, optimizers, inputs, generate, a step, export
    opts = TrainOptions(steps=2, batch_size=4, sample_every=0, num_samples=4, progress=False)
    data, vopts = make_image_set(8, 16, 3), TinySROptions(**variant.tiny_options)
    result = Trainer(variant, vopts, opts, data, tmp_path, device="cpu", log=_quiet).run()
    assert result.steps == 2 and set(load_weights(result.checkpoint)) == {"G", "D"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        from ganpipe.variants.srbase import SRVariant  # the old private path still works
    assert SRVariant is ganpipe.SRVariant
