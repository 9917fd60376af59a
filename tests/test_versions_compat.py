"""One version number, and the compatibility policy of docs/plugins.md, for real.

The plugin written the old way is ``tests/data/old_style_plugin``: the scaffold's output
and ganpipe-lsgan as they were written against ganpipe 0.2, one distribution
(``ganpipe_old_style-0.1.0.dist-info``) that ``importlib.metadata`` finds when the folder
is on ``sys.path``. Its entry points are discovered, its objects loaded and checked as
``ganpipe plugins --check`` does, and a pipeline of its dataset, variant and stage trains
a few steps, with deprecation warnings at most.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import tomllib
import warnings
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

import ganpipe
from ganpipe import _version
from ganpipe._deprecation import RENAMED, GanpipeDeprecationWarning, Renamed
from ganpipe.cli.main import main
from ganpipe.pipeline import run_file
from ganpipe.registry import load_registry
from ganpipe.scaffold import create
from ganpipe.testing import make_image_folder

ROOT = Path(__file__).resolve().parent.parent
OLD_STYLE = Path(__file__).resolve().parent / "data" / "old_style_plugin"
OLD_PACKAGES = ("ganpipe_old_variant", "ganpipe_old_stage", "ganpipe_old_dataset")
OLD_PACKAGES += ("ganpipe_old_lsgan",)
OLD_DIST = "ganpipe-old-style 0.1.0"
OLD_PLUGINS = {"old-variant", "old-lsgan", "old-stage", "old-dataset"}


# -- one version -------------------------------------------------------------------------


def test_one_version_number():
    """pyproject.toml, the installed metadata, ganpipe.__version__ and --version agree."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    installed = metadata.version("ganpipe")
    assert installed == declared, (
        f"the installed ganpipe says {installed}, pyproject.toml {declared}: reinstall it "
        "(pip install -e .)"
    )
    assert ganpipe.__version__ == installed
    assert _version.read_version() == installed
    assert _version._from_source_checkout() == declared  # the fallback when not installed
    out = CliRunner().invoke(main, ["--version"])
    assert out.exit_code == 0 and out.output == f"ganpipe, version {installed}\n"


def test_scaffold_pins_the_versions_the_policy_guarantees(tmp_path):
    """From this minor (it may use what this minor added) to the first that may remove
    what it uses: 0.N and 0.N+1 (deprecations warn for at least one minor)."""
    major, minor = _version.minor_of(ganpipe.__version__)
    assert major == 0, "from 1.0 on the scaffold pins <2; update this test with the policy"
    project = tomllib.loads(
        create("pinned", "variant", tmp_path).joinpath("pyproject.toml").read_text()
    )
    (requirement,) = project["project"]["dependencies"]
    assert requirement == f"ganpipe>=0.{minor},<0.{minor + 2}"
    spec = Requirement(requirement).specifier
    assert ganpipe.__version__ in spec and f"0.{minor}.7" in spec and f"0.{minor + 1}.0" in spec
    assert f"0.{minor - 1}.9" not in spec and f"0.{minor + 2}.0" not in spec
    assert _version.plugin_requirement("1.4.2") == "ganpipe>=1.4,<2"
    assert _version.minor_of("0.3.1.dev2") == (0, 3) and _version.minor_of("0+unknown") == (0, 0)


def test_the_example_plugins_pin_what_the_policy_guarantees():
    """plugins/*: the model plugin authors copy declares the range the scaffold writes."""
    pinned = {}
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
        pinned[pyproject.parent.name] = [d for d in deps if Requirement(d).name == "ganpipe"]
    assert pinned and all(v == [_version.plugin_requirement()] for v in pinned.values()), pinned


# -- the deprecation mechanism -----------------------------------------------------------


def test_a_renamed_public_name_warns_once_naming_its_replacement_and_still_works(monkeypatch):
    monkeypatch.setitem(
        RENAMED["ganpipe"], "OldOptions", Renamed("ganpipe.options:Options", "0.3", "0.5")
    )
    with pytest.warns(GanpipeDeprecationWarning) as caught:
        value = ganpipe.OldOptions
    assert value is ganpipe.Options
    (warning,) = caught
    assert str(warning.message) == (
        "ganpipe.OldOptions is deprecated since ganpipe 0.3 and goes in 0.5; "
        "use ganpipe.options.Options"
    )
    assert warning.filename == __file__  # points at the line that used the old name
    assert issubclass(warning.category, DeprecationWarning)
    with pytest.warns(GanpipeDeprecationWarning):
        from ganpipe import OldOptions  # noqa: F401  (the import form works too)
    assert "OldOptions" not in ganpipe.__all__ and "OldOptions" not in dir(ganpipe)
    with pytest.raises(AttributeError, match="module 'ganpipe' has no attribute 'Nope'"):
        ganpipe.Nope  # noqa: B018
    assert not hasattr(ganpipe, "Nope")


# -- a plugin written against the previous minor -----------------------------------------


@pytest.fixture
def old_style(monkeypatch):
    """The old-style distribution on sys.path (discovered through its entry points), its
    modules forgotten afterwards."""
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(OLD_STYLE))
    yield
    for module in [m for m in sys.modules if m.split(".")[0] in OLD_PACKAGES]:
        del sys.modules[module]


PIPELINE = """
[run]
name = "{variant}"
out_dir = "runs"
seed = 0
device = "cpu"

[data]
dataset = "old-dataset"
path = "images.txt"
image_size = 16

[model]
variant = "{variant}"
latent_dim = 8
g_width = 4
d_width = 4

[train]
steps = 2
batch_size = 4
log_every = 1
sample_every = 0
checkpoint_every = 0
num_samples = 4
progress = false

[old-stage]
max_images = 6
"""


def _problems(caught: list[warnings.WarningMessage]) -> list[str]:
    """Warnings a plugin written the old way must not get: anything but a deprecation,
    and a deprecation of ganpipe's that is not the one-line form naming a replacement."""
    bad = []
    for w in caught:
        text = str(w.message)
        if not issubclass(w.category, DeprecationWarning):
            bad.append(f"{w.category.__name__}: {text} ({w.filename}:{w.lineno})")
        elif issubclass(w.category, GanpipeDeprecationWarning) and (
            "\n" in text or " is deprecated since ganpipe " not in text or "; use " not in text
        ):
            bad.append(f"deprecation without the policy's form: {text}")
    return bad


def test_a_plugin_written_the_old_way_registers_checks_and_trains(old_style, tmp_path):
    images = make_image_folder(tmp_path / "images", classes=("a", "b"), per_class=4)
    listing = [
        f"{p.relative_to(tmp_path).as_posix()}, {p.parent.name}"
        for p in sorted(images.rglob("*.*"))
    ]
    (tmp_path / "images.txt").write_text("\n".join(listing) + "\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = load_registry()
        found = {
            "variants": {"old-variant", "old-lsgan"},
            "stages": {"old-stage"},
            "datasets": {"old-dataset"},
        }
        for kind, names in found.items():
            assert names <= set(getattr(reg, kind)), (kind, list(getattr(reg, kind)))
        for plugin in sorted(OLD_PLUGINS):
            assert OLD_DIST in reg.dist(plugin)

        # `ganpipe plugins --check`: every object imported and checked (the other
        # installed plugins skipped: they have tests of their own)
        others = {ep.name for ep in metadata.entry_points(group="ganpipe")} - OLD_PLUGINS
        env = {"GANPIPE_DISABLE_PLUGINS": ",".join(sorted(others))}
        checked = CliRunner().invoke(main, ["plugins", "--check"], env=env)
        assert checked.exit_code == 0, checked.output
        assert "all conform" in checked.output and "old-lsgan" in checked.output

        # the scaffold's three objects together in one pipeline, as a user runs them; then
        # the old ganpipe-lsgan (its own check_data, ganpipe.nn, a validator) on the same
        manifests = {}
        for variant in ("old-variant", "old-lsgan"):
            toml = tmp_path / f"{variant}.toml"
            toml.write_text(PIPELINE.format(variant=variant), encoding="utf-8")
            manifests[variant] = run_file(toml, log=lambda line: None)
    assert _problems(caught) == []
    for variant, manifest in manifests.items():
        run = tmp_path / "runs" / variant
        assert {"train", "old-stage"} <= set(manifest.stages), manifest.stages
        assert (run / "old-stage" / "stats.json").is_file()
        assert any((run / "train").rglob("*.safetensors")), sorted((run / "train").rglob("*"))


# -- the version tables of docs/plugins.md, and what earlier versions had ----------------

sys.path.insert(0, str(ROOT / "tools"))
import compat_docs  # noqa: E402


def test_version_tables_in_the_plugin_guide_follow_the_code():
    page = compat_docs.PAGE.read_text(encoding="utf-8")
    assert compat_docs.render(page) == page, (
        "docs/plugins.md's version tables are out of date; run "
        "`python tools/compat_docs.py --write` and review the diff"
    )


def test_what_an_earlier_version_offered_still_exists_with_the_same_arguments():
    """Every hook, contract method (with the arguments ganpipe passes) and public name of
    each earlier minor version, as the compatibility policy promises (a renamed name
    resolves with a deprecation warning)."""
    hooks, methods = compat_docs.hook_specs(), compat_docs.contract_methods()
    for version, api in compat_docs.API.items():
        for name, args in api["hooks"].items():
            assert hooks.get(name) == args, f"hook {name}{args} of {version} changed or is gone"
        for name, args in api["contract"].items():
            assert name in methods, f"contract method {name} of {version} is gone"
            marker, now = methods[name]
            assert now == args, f"ganpipe calls {name}{now}; {version} called it {name}{args}"
            assert marker.since == version, f"{name} exists since {version}, marked {marker.since}"
        attributes = compat_docs.contract_attributes()
        for name in api["attributes"]:
            assert name in attributes, f"contract attribute {name} of {version} is gone"
            assert attributes[name].since == version, f"{name} exists since {version}"
        for module in compat_docs.MODULES:
            mod = importlib.import_module(module)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                gone = [n for n in api[module] if not hasattr(mod, n)]
            assert gone == [], f"public names of {version} gone from {module}: {gone}"


def test_new_hooks_and_methods_say_from_which_version():
    """A hook or contract method added after the oldest version states its version: the
    hookspec's docstring "(since X)", the method's @hook(since=X) marker."""
    oldest = next(iter(compat_docs.API))
    from ganpipe import hookspecs

    for name in compat_docs.hook_specs():
        since = compat_docs.first_in("hooks", name)
        if since != oldest:
            assert f"(since {since})" in inspect.getdoc(getattr(hookspecs, name)), name
    known = compat_docs.API[oldest]["contract"]
    for name, (marker, _) in compat_docs.contract_methods().items():
        if name not in known:
            assert marker.since != oldest, f"mark {name} with @hook(since=...) (added later)"
    for name, marker in compat_docs.contract_attributes().items():
        if name not in compat_docs.API[oldest]["attributes"]:
            assert marker.since != oldest, f"give {name}'s Hook a since (added later)"
