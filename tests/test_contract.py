"""The plugin contracts, run with :mod:`ganpipe.testing` against every registered variant
(all tasks), every built-in dataset source and the built-in stages; and the checks
themselves, shown to catch broken plugins with messages that name what broke.

The objects come from :func:`ganpipe.registry.load_registry` with entry points, so an
installed third-party variant (``ganpipe-lsgan``, say) gets exactly these tests.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from ganpipe.registry import load_registry
from ganpipe.stage import Stage, StageResult
from ganpipe.testing import (
    ContractError,
    check_dataset,
    check_stage,
    check_variant,
    make_image_folder,
)
from ganpipe.training.checkpoint import load_weights
from ganpipe.variant import Batch
from ganpipe.variants.dcgan import DCGAN

REGISTRY = load_registry(entry_points=True)
VARIANTS = list(REGISTRY.variants)
BUILTIN = "ganpipe (built-in)"


def builtin(kind: str) -> list[str]:
    registry = getattr(REGISTRY, kind)
    return [n for n in registry if REGISTRY.dist(registry.owner(n)) == BUILTIN]


def test_every_task_and_the_example_plugin_are_covered():
    tasks = {REGISTRY.variants.entries[n].task for n in VARIANTS}
    assert tasks == {"generate", "super_resolve", "translate"}
    assert "dcgan" in VARIANTS
    assert "lsgan" in VARIANTS, (
        "the example plugin is not installed; run `pip install ./plugins/ganpipe-lsgan`"
    )


# -- variants ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_contract(name, tmp_path):
    variant = REGISTRY.variants.get(name)
    report = check_variant(variant, tmp_path=tmp_path)
    assert report.name == name
    assert {"resume", "export", "onnx runtime", "train_step"} <= set(report.timings)
    # the loop's checkpoints of the resume check are where they were asked to be
    assert (tmp_path / "resume" / "split" / "checkpoints").is_dir()


class _RenamedNets(DCGAN):
    """Nets named otherwise than G and D: nothing in the loop or the checks assumes them."""

    generator_net = "generator"

    def build(self, opts, info):
        nets = super().build(opts, info)
        return {"generator": nets["G"], "critic": nets["D"]}

    def optimizers(self, nets, opts):
        return super().optimizers({"G": nets["generator"], "D": nets["critic"]}, opts)

    def train_step(self, ctx, batch):
        G, D = ctx.nets["generator"], ctx.nets["critic"]
        (z,) = self.make_inputs(ctx.opts, ctx.info, len(batch.images), ctx.device)
        fake = G(z)
        d_loss = F.softplus(D(fake.detach())).mean() + F.softplus(-D(batch.images)).mean()
        ctx.update("D", d_loss)
        g_loss = F.softplus(-D(fake)).mean()
        ctx.update("G", g_loss)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


def test_generator_net_names_the_generator(tmp_path):
    report = check_variant(_RenamedNets(), tmp_path=tmp_path)
    assert report.name == "dcgan"
    weights = load_weights(tmp_path / "resume" / "split" / "checkpoints" / "step_00000004")
    assert set(weights) == {"generator", "critic", "generator_ema"}


class _NoGeneratorUpdate(DCGAN):
    def train_step(self, ctx, batch):
        (z,) = self.make_inputs(ctx.opts, ctx.info, len(batch.images), ctx.device)
        fake = ctx.nets["G"](z).detach()
        d_loss = ctx.nets["D"](fake).mean() - ctx.nets["D"](batch.images).mean()
        ctx.update("D", d_loss)
        return {"d_loss": d_loss.detach()}


class _PythonRandom(DCGAN):
    """Draws from Python's ``random``, whose state no checkpoint keeps."""

    def train_step(self, ctx, batch):
        return super().train_step(ctx, Batch(batch.images * random.random(), batch.labels))


class _WrongRange(DCGAN):
    def export_spec(self, nets, opts, info):
        spec = super().export_spec(nets, opts, info)
        spec.value_range = (0.0, 1.0)  # the generator's tanh gives [-1, 1]
        return spec


class _NoGeneratorNet(DCGAN):
    generator_net = "generator"


class _LooseOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    latent_dim: int = 8
    g_width: int = 4
    d_width: int = 4
    max_width: int = 512
    label_smoothing: float = 0.0
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


class _Loose(DCGAN):
    Options = _LooseOptions


class _Shrinking(DCGAN):
    def generate(self, nets, inputs):
        return super().generate(nets, inputs)[..., :-1, :-1]


@pytest.mark.parametrize(
    "variant, step, needle",
    [
        (_NoGeneratorUpdate(), "train_step", "never changed nets ['G']"),
        (_PythonRandom(), "resume", "give different weights in"),
        (_WrongRange(), "onnx runtime", "outside the card's value_range (0.0, 1.0)"),
        (_NoGeneratorNet(), "build", "without 'generator' (generator_net)"),
        (_Loose(), "options", "accept the unknown key"),
        (_Shrinking(), "forward", "gave shape (4, 3, 15, 15), expected (4, 3, 16, 16)"),
    ],
    ids=["no-G-update", "python-random", "wrong-range", "no-generator-net", "loose", "shape"],
)
def test_check_variant_names_the_variant_and_the_broken_step(variant, step, needle, tmp_path):
    with pytest.raises(ContractError) as info:
        check_variant(variant, tmp_path=tmp_path)
    message = str(info.value)
    assert message.startswith(f"variant 'dcgan', step {step!r}: "), message
    assert needle in message, message
    assert "\n" not in message


def test_check_variant_wraps_what_the_variant_raises(tmp_path):
    class Broken(DCGAN):
        def build(self, opts, info):
            raise RuntimeError("no weights here")

    with pytest.raises(ContractError, match=r"step 'build': raised RuntimeError: no weights") as e:
        check_variant(Broken(), tmp_path=tmp_path)
    assert isinstance(e.value.__cause__, RuntimeError)  # the traceback is kept


def test_check_variant_refuses_a_structurally_invalid_object():
    class NotAVariant:
        name = "Bad Name"
        task = "paint"

    with pytest.raises(ContractError) as info:
        check_variant(NotAVariant())
    message = str(info.value)
    assert "step 'conformance'" in message
    assert "'task' must be one of generate, super_resolve, translate" in message
    assert "method build(opts, info) is missing" in message


# -- dataset sources ---------------------------------------------------------------------


def _add_image(base: Path) -> None:
    make_image_folder(base / "images" / "c", classes=(), per_class=1, seed=5)


#: per built-in source: (options, how to ask for other data); data lies in tmp_path/images
DATASETS = {
    "shapes": ({"count": 12, "classes": 3}, {"seed": 1}),
    "folder": ({"path": "images"}, _add_image),
    "patches": ({"path": "images", "per_image": 2}, {"per_image": 3}),
}


def test_every_builtin_dataset_has_contract_settings():
    assert set(builtin("datasets")) == set(DATASETS)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_contract(name, tmp_path):
    make_image_folder(tmp_path / "images", classes=("a", "b"), per_class=3, size=(24, 20))
    options, change = DATASETS[name]
    source = REGISTRY.datasets.get(name)
    report = check_dataset(
        source, tmp_path=tmp_path / "scratch", options=options, base_dir=tmp_path, change=change
    )
    assert "fingerprint follows the data" in report.timings


class _Shapes:
    """Delegates to the built-in shapes source; tests break one behaviour at a time."""

    name = "shapes-test"
    Options = REGISTRY.datasets.get("shapes").Options

    def __init__(self):
        self._inner = REGISTRY.datasets.get("shapes")

    def load(self, opts, image_size, channels, base_dir):
        return self._inner.load(opts, image_size, channels, base_dir)

    def fingerprint(self, opts, base_dir):
        return self._inner.fingerprint(opts, base_dir)

    def class_names(self, opts, base_dir):
        return self._inner.class_names(opts, base_dir)


class _WrongClasses(_Shapes):
    def class_names(self, opts, base_dir):
        return ["x", "y"]


class _UnstableFingerprint(_Shapes):
    def fingerprint(self, opts, base_dir):
        return str(random.random())


class _WrongSize(_Shapes):
    def load(self, opts, image_size, channels, base_dir):
        return self._inner.load(opts, image_size + 1, channels, base_dir)


class _Writes(_Shapes):
    def load(self, opts, image_size, channels, base_dir):
        (Path(base_dir) / "cache.npz").write_bytes(b"")
        return super().load(opts, image_size, channels, base_dir)


@pytest.mark.parametrize(
    "source, step, needle",
    [
        (_WrongClasses(), "class_names", "class_names() = ['x', 'y'] but load gives"),
        (_UnstableFingerprint(), "fingerprint", "fingerprint is not stable"),
        (_WrongSize(), "load 16px 3ch", "expected (n >= 1, 16, 16, 3)"),
        (_Writes(), "read only", "changed files under"),
        (_Shapes(), "fingerprint follows the data", "fingerprint is unchanged with {'count': 8}"),
    ],
    ids=["class-names", "unstable-fingerprint", "size", "writes", "fingerprint-ignores-change"],
)
def test_check_dataset_names_the_source_and_the_broken_step(source, step, needle, tmp_path):
    with pytest.raises(ContractError) as info:
        check_dataset(
            source, tmp_path=tmp_path, options={"count": 8}, change={"count": 8}, channels=(3,)
        )
    message = str(info.value)
    assert message.startswith(f"dataset 'shapes-test', step {step!r}: "), message
    assert needle in message, message


# -- stages --------------------------------------------------------------------------------

SR_MODEL = {"variant": "espcn", "scale": 2, "feat1": 8, "feat2": 4, "adv_weight": 0.0}
TRAIN = {"steps": 2, "batch_size": 8, "sample_every": 0, "num_samples": 4, "progress": False}


def _stage_settings(tmp_path: Path) -> dict[str, dict | None]:
    """Per built-in stage: the keyword arguments of check_stage (None: structure only)."""
    lowres = make_image_folder(tmp_path / "lowres", classes=(), per_class=2, size=(12, 10))
    return {
        "augment": {},
        "train": {},
        "export": {},
        "generate": {},
        "evaluate": {
            "options": {"count": 8, "kid_subset_size": 4, "device": "cpu"},
            "data": {"dataset": "shapes", "image_size": 16, "count": 16, "holdout": 0.25},
        },
        "upscale": {
            "options": {"input": str(lowres), "device": "cpu"},
            "model": SR_MODEL,
            "upstream": {"train": TRAIN, "export": {}},
        },
        # a whole search (trains a model per trial) has its own tests in test_tune.py
        "tune": {"run": False, "options": {"space": {"model.lr_g": [1e-4, 2e-4]}}},
    }


def test_every_builtin_stage_has_contract_settings(tmp_path):
    assert set(builtin("stages")) == set(_stage_settings(tmp_path)) == set(STAGES)


STAGES = ("augment", "train", "export", "generate", "evaluate", "upscale", "tune")


@pytest.mark.parametrize("name", STAGES)
def test_stage_contract(name, tmp_path):
    settings = _stage_settings(tmp_path)[name]
    report = check_stage(REGISTRY.stages.get(name), tmp_path=tmp_path / "check", **settings)
    assert report.name == name
    if settings.get("run", True):
        assert "rerun skips" in report.timings
        assert (tmp_path / "check" / "runs" / "contract" / "manifest.json").is_file()


class _Escaping(Stage):
    name = "escaping"
    Options = REGISTRY.stages.get("augment").Options

    def run(self, ctx, opts):
        return StageResult({"file": "../outside.txt"})


class _AlwaysNew(Stage):
    name = "always-new"
    Options = REGISTRY.stages.get("augment").Options

    def fingerprint(self, config, opts):
        return str(random.random())

    def run(self, ctx, opts):
        out = ctx.stage_dir(self.name) / "out.txt"
        out.write_text("x")
        return StageResult({"file": out.relative_to(ctx.run_dir).as_posix()})


@pytest.mark.parametrize(
    "stage, step, needle",
    [
        (_Escaping(), "run", "output 'file' = '../outside.txt' is not a path inside the run"),
        (_AlwaysNew(), "rerun skips", "a second run with nothing changed ran [always-new] again"),
    ],
    ids=["escaping-output", "unstable-fingerprint"],
)
def test_check_stage_names_the_stage_and_the_broken_step(stage, step, needle, tmp_path):
    with pytest.raises(ContractError) as info:
        check_stage(stage, tmp_path=tmp_path)
    message = str(info.value)
    assert message.startswith(f"stage {stage.name!r}, step {step!r}: "), message
    assert needle in message, message


# -- from a third party's own test suite ---------------------------------------------------


def test_the_checks_run_from_a_plugins_own_pytest_with_the_fixture(tmp_path):
    """A plugin's conftest opts in to the ``ganpipe_contract`` fixture; checking a dataset
    source imports no torch."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["ganpipe.testing.pytest_plugin"]\n')
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent(
            """
            import sys

            import pytest
            from ganpipe.testing import ContractError, registered


            def test_dataset(ganpipe_contract, tmp_path):
                source = registered("dataset", "shapes")
                report = ganpipe_contract.dataset(source, options={"count": 4})
                assert report.name == "shapes" and (tmp_path / "dataset").is_dir()
                assert "torch" not in sys.modules


            def test_unknown_name_is_a_contract_error():
                with pytest.raises(ContractError, match="is not registered by any installed"):
                    registered("variant", "no-such-variant")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "GANPIPE_DISABLE_PLUGINS"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout, proc.stdout
