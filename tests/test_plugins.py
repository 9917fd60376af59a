"""Plugin discovery, for real: the ``ganpipe-lsgan`` distribution in ``plugins/`` is
installed into the running interpreter and found through its ``ganpipe`` entry point;
broken third-party plugins are real distributions (a ``*.dist-info`` folder with METADATA
and entry_points.txt on PYTHONPATH) that ``importlib.metadata`` discovers in a CLI
subprocess. Nothing here mocks ``importlib.metadata`` or pluggy.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from importlib import metadata
from pathlib import Path

import pytest

import ganpipe
from ganpipe import hookspecs
from ganpipe.errors import PluginError
from ganpipe.plugins import ENTRY_POINT_GROUP, builtin_plugins, get_plugin_manager
from ganpipe.registry import KINDS, load_registry

ROOT = Path(__file__).resolve().parent.parent
LSGAN_DIR = ROOT / "plugins" / "ganpipe-lsgan"
BUILTIN_PLUGINS = {name for name, _ in builtin_plugins()}


# -- fixtures and helpers ----------------------------------------------------------------


def _find_lsgan() -> metadata.Distribution | None:
    importlib.invalidate_caches()
    try:
        return metadata.distribution("ganpipe-lsgan")
    except metadata.PackageNotFoundError:
        return None


@pytest.fixture(scope="session")
def lsgan_dist() -> metadata.Distribution:
    """The installed ``ganpipe-lsgan`` distribution. CI installs it; in a fresh env it is
    pip-installed (not editable) from plugins/ganpipe-lsgan once per session. Fails, never
    skips, when that is impossible."""
    dist = _find_lsgan()
    if dist is not None:
        return dist
    errors = []
    for extra in (["--no-build-isolation"], []):  # offline first, then with isolation
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-input",
            "--disable-pip-version-check",
            *extra,
            str(LSGAN_DIR),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        dist = _find_lsgan()
        if proc.returncode == 0 and dist is not None:
            return dist
        errors.append(f"$ {' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-1500:]}")
    pytest.fail(
        "the test plugin ganpipe-lsgan is not installed in this interpreter "
        f"({sys.executable}) and installing it failed; run "
        f"`pip install {LSGAN_DIR}` and try again.\n" + "\n".join(errors),
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def _plugins_enabled(monkeypatch):
    """The outer environment must not hide plugins from these tests."""
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)


def write_dist(
    site: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]
) -> Path:
    """Installs a real (if minimal) distribution into the folder ``site``: top-level
    modules plus ``<dist>-<version>.dist-info`` with METADATA, entry_points.txt and
    RECORD, which is all ``importlib.metadata`` needs to find its entry points."""
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    for mod, source in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\nRequires-Dist: ganpipe\n",
        encoding="utf-8",
    )
    eps = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{eps}", encoding="utf-8")
    record = [f"{mod}.py,," for mod in modules] + [
        f"{info.name}/{f},," for f in ("METADATA", "entry_points.txt", "RECORD")
    ]
    (info / "RECORD").write_text("\n".join(record) + "\n", encoding="utf-8")
    return site


def with_site(site: Path, **env: str) -> dict[str, str]:
    """Environment for a CLI subprocess that sees the distributions in ``site``."""
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **env}


def plugins_json(cli, *args: str, env: dict | None = None) -> dict:
    proc = cli(*args, "plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def names(data: dict, kind: str) -> set[str]:
    return {entry["name"] for entry in data[kind]}


def assert_one_line_error(
    proc: subprocess.CompletedProcess, *needles: str, code: int | None = None
) -> str:
    """Non-zero exit, no traceback, exactly one line on stderr containing ``needles``."""
    err = proc.stderr
    assert proc.returncode != 0, (proc.stdout, err)
    if code is not None:
        assert proc.returncode == code, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ganpipe: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    return lines[0]


def assert_listed_broken(proc: subprocess.CompletedProcess, ep_name: str, *needles: str) -> str:
    """``ganpipe plugins`` with a broken plugin: exit 0, the others listed, the broken one
    listed with its problem, which is also the one warning line on stderr."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: warning: "), proc.stderr
    assert lines[0].endswith("; it is skipped"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    row = re.search(rf"^  {re.escape(ep_name)} .*\[broken, skipped\] (.*)$", proc.stdout, re.M)
    assert row, proc.stdout
    assert lines[0] == f"ganpipe: warning: {row.group(1)}; it is skipped"
    assert re.search(r"^\s+dcgan\s+\[generate\]", proc.stdout, re.M), proc.stdout
    return lines[0]


# -- discovery of the real ganpipe-lsgan distribution ------------------------------------


def test_lsgan_is_discovered_through_its_entry_point(lsgan_dist):
    eps = [ep for ep in lsgan_dist.entry_points if ep.group == ENTRY_POINT_GROUP]
    assert [(ep.name, ep.value) for ep in eps] == [("lsgan", "ganpipe_lsgan.plugin")]
    assert "lsgan" in {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}

    pm = get_plugin_manager()
    plugin = pm.get_plugin("lsgan")
    assert isinstance(plugin, types.ModuleType) and plugin.__name__ == "ganpipe_lsgan.plugin"
    assert pm.ganpipe_dists["lsgan"] == f"ganpipe-lsgan {lsgan_dist.version}"
    assert "ganpipe-lsgan" in pm.ganpipe_dists["lsgan"]
    direct_url = json.loads(lsgan_dist.read_text("direct_url.json") or "{}")
    if not direct_url.get("dir_info", {}).get("editable"):
        # imported from the installed files, not from the source tree
        installed = Path(lsgan_dist.locate_file("ganpipe_lsgan/plugin.py")).resolve()
        assert Path(plugin.__file__).resolve() == installed

    reg = load_registry(pm)
    assert reg.variants.owner("lsgan") == "lsgan"
    lsgan = reg.variants.get("lsgan")
    assert type(lsgan).__name__ == "LSGAN" and lsgan.name == "lsgan"
    assert lsgan.task == "generate"
    assert {"a", "b", "c", "latent_dim", "g_width", "d_width"} <= set(lsgan.Options.model_fields)
    assert lsgan.tiny_options
    # built-ins are registered next to it, owned by the built-in plugins
    assert reg.variants.owner("dcgan") == "ganpipe.dcgan"
    assert "lsgan" not in load_registry(entry_points=False).variants


def test_disabled_plugins_are_not_loaded(lsgan_dist, monkeypatch):
    assert get_plugin_manager(disabled={"lsgan"}).get_plugin("lsgan") is None
    monkeypatch.setenv("GANPIPE_DISABLE_PLUGINS", " something-else , lsgan,")
    pm = get_plugin_manager()
    assert pm.get_plugin("lsgan") is None and "lsgan" not in pm.ganpipe_dists
    assert "lsgan" not in load_registry(pm).variants
    assert "dcgan" in load_registry(pm).variants


def test_plugins_command_lists_lsgan_with_its_distribution(lsgan_dist, cli):
    data = plugins_json(cli)
    dist = f"ganpipe-lsgan {lsgan_dist.version}"
    assert {"name": "lsgan", "distribution": dist} in data["plugins"]
    assert {p["name"]: p["distribution"] for p in data["plugins"]}[
        "ganpipe.dcgan"
    ] == "ganpipe (built-in)"
    lsgan = next(v for v in data["variants"] if v["name"] == "lsgan")
    assert lsgan["plugin"] == "lsgan" and lsgan["task"] == "generate"
    assert "Least-squares" in lsgan["description"]

    text = cli("plugins")
    assert text.returncode == 0, text.stderr
    assert re.search(rf"^\s+lsgan\s+{re.escape(dist)}$", text.stdout, re.M), text.stdout
    assert re.search(r"^\s+lsgan\s+\[generate\] .*\(lsgan\)$", text.stdout, re.M), text.stdout


@pytest.mark.parametrize(
    "args, env",
    [
        (["--no-plugins"], {}),
        ([], {"GANPIPE_DISABLE_PLUGINS": "lsgan"}),
        ([], {"GANPIPE_DISABLE_PLUGINS": "not-installed, lsgan"}),
    ],
    ids=["--no-plugins", "disable-env", "disable-env-list"],
)
def test_lsgan_can_be_hidden(lsgan_dist, cli, args, env):
    data = plugins_json(cli, *args, env=env)
    assert "lsgan" not in names(data, "plugins")
    assert "lsgan" not in names(data, "variants")
    assert BUILTIN_PLUGINS <= names(data, "plugins")  # built-ins always load
    assert "dcgan" in names(data, "variants")


# -- a whole pipeline with the third-party variant ---------------------------------------


@pytest.mark.slow
def test_run_trains_exports_and_generates_with_lsgan(lsgan_dist, tiny_pipeline, cli, tmp_path):
    import onnx

    from ganpipe.modelcard import PREFIX as METADATA_PREFIX

    path = tiny_pipeline(variant="lsgan")
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("d_width = 4\n", "d_width = 4\na = -1.0\nb = 1.0\nc = 0.0\n"), encoding="utf-8"
    )  # the paper's chi^2 targets, through pipeline.toml
    proc = cli("run", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "4 steps of lsgan" in proc.stdout

    run_dir = tmp_path / "runs" / "tiny"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"train", "export", "generate"}
    assert (run_dir / manifest["stages"]["train"]["outputs"]["checkpoint"]).is_dir()
    metrics = [
        json.loads(line)
        for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert metrics and {"d_loss", "g_loss"} <= set(metrics[-1])

    model = run_dir / "export" / "model.onnx"
    assert model.is_file()
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert props[METADATA_PREFIX + "variant"] == "lsgan"
    assert props[METADATA_PREFIX + "task"] == "generate"

    samples = sorted((run_dir / "generate").glob("sample_*.png"))
    assert len(samples) == 5
    assert (run_dir / "generate" / "grid.png").is_file()
    assert manifest["stages"]["generate"]["info"]["count"] == 5


# -- broken third-party plugins ----------------------------------------------------------

BROKEN = {
    "import-error": (
        """
        import ganpipe
        import ganpipe_dependency_that_is_not_installed
        """,
        ["failed to load", "ModuleNotFoundError", "ganpipe_dependency_that_is_not_installed"],
    ),
    "bad-signature": (
        """
        import ganpipe

        @ganpipe.hookimpl
        def ganpipe_register_variants(register, colour):
            register(colour)
        """,
        ["is invalid", "ganpipe_register_variants", "'colour'"],
    ),
    "unknown-hook": (
        """
        import ganpipe

        @ganpipe.hookimpl
        def ganpipe_register_widgets(register):
            pass
        """,
        ["is invalid", "unknown hook 'ganpipe_register_widgets'"],
    ),
    "failing-hook": (
        """
        import ganpipe

        @ganpipe.hookimpl
        def ganpipe_register_variants(register):
            raise RuntimeError("no licence server")
        """,
        ["failed in ganpipe_register_variants", "RuntimeError: no licence server"],
    ),
}


def broken_site(tmp_path: Path, case: str) -> tuple[Path, str, str]:
    """A site folder with one broken distribution: (site, entry-point name, distribution)."""
    source, _ = BROKEN[case]
    ep_name, dist = f"broken-{case}", f"ganpipe-broken-{case}"
    module = f"ganpipe_broken_{case.replace('-', '_')}"
    site = write_dist(tmp_path / "site", dist, "1.2.3", {module: source}, {ep_name: module})
    return site, ep_name, dist


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_plugin_is_one_line_naming_plugin_and_distribution(lsgan_dist, cli, tmp_path, case):
    site, ep_name, dist = broken_site(tmp_path, case)
    needles = (f"plugin {ep_name!r}", f"{dist} 1.2.3", *BROKEN[case][1])
    # it does not stop the listing: the others are listed, it with its problem
    assert_listed_broken(cli("plugins", env=with_site(site)), ep_name, *needles)
    data = plugins_json(cli, env=with_site(site))
    assert "lsgan" in names(data, "plugins") and "lsgan" in names(data, "variants")
    (problem,) = [p["problem"] for p in data["plugins"] if p["name"] == ep_name]
    assert data["problems"] == [
        {"plugin": ep_name, "distribution": f"{dist} 1.2.3", "message": problem}
    ]
    assert all(n in problem for n in needles), problem

    # skipping it by name makes the command work again; the other plugins still load
    data = plugins_json(cli, env=with_site(site, GANPIPE_DISABLE_PLUGINS=ep_name))
    assert ep_name not in names(data, "plugins")
    assert "lsgan" in names(data, "plugins") and "lsgan" in names(data, "variants")
    if case == "import-error":  # --no-plugins does not even import third-party plugins
        data = plugins_json(cli, "--no-plugins", env=with_site(site))
        assert not {ep_name, "lsgan"} & names(data, "plugins")


def test_broken_plugin_is_named_when_run_needs_what_it_may_provide(
    lsgan_dist, cli, tmp_path, tiny_pipeline
):
    """A variant no loaded plugin provides may be the broken plugin's: the error names it
    (after its warning), before any stage."""
    site, ep_name, dist = broken_site(tmp_path, "import-error")
    proc = cli("run", str(tiny_pipeline(variant="broken-gan")), env=with_site(site))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    warning, error = proc.stderr.strip().splitlines()
    assert warning.startswith(f"ganpipe: warning: plugin {ep_name!r}"), warning
    assert error.startswith("ganpipe: error: "), error
    for needle in ("unknown variant 'broken-gan'", "it may come from a broken plugin",
                   f"plugin {ep_name!r}", dist, f"GANPIPE_DISABLE_PLUGINS={ep_name}"):  # fmt: skip
        assert needle in error, (needle, error)
    assert not (tmp_path / "runs").exists()


def test_broken_plugin_raises_plugin_error_in_process(tmp_path, monkeypatch):
    site, ep_name, dist = broken_site(tmp_path, "bad-signature")
    module = "ganpipe_broken_bad_signature"
    monkeypatch.syspath_prepend(str(site))
    try:
        with pytest.raises(PluginError) as info:
            get_plugin_manager()
        message = str(info.value)
        assert f"plugin {ep_name!r} (distribution {dist} 1.2.3) is invalid" in message
        assert "\n" not in message
        get_plugin_manager(disabled={ep_name})  # fine once skipped
    finally:
        sys.modules.pop(module, None)


# -- objects that break their contract -----------------------------------------------------

#: the head of a variant that passes the checks; cases change one thing
GOOD_VARIANT = """
import ganpipe

class Bad(ganpipe.Variant):
    name = "bad"
    task = "generate"
    Options = ganpipe.GANOptions

    def build(self, opts, info):
        raise NotImplementedError

    def train_step(self, ctx, batch):
        raise NotImplementedError
"""
REGISTER_NOW = """
@ganpipe.hookimpl
def ganpipe_register_variants(register):
    register(Bad())
"""

#: registration-time problems: (module source, what the one line says)
INVALID = {
    "missing-method": (
        GOOD_VARIANT.replace(
            "    def train_step(self, ctx, batch):\n        raise NotImplementedError\n", ""
        )
        + REGISTER_NOW,
        [
            "registered an invalid variant 'bad'",
            "method train_step is not implemented (only the base class's)",
        ],
    ),
    "missing-name": (
        GOOD_VARIANT.replace('    name = "bad"\n', "") + REGISTER_NOW,
        ["registered an invalid variant 'Bad'", "'name' must be a lower-case name", "got None"],
    ),
    "unknown-task": (
        GOOD_VARIANT.replace('task = "generate"', 'task = "paint"') + REGISTER_NOW,
        ["'task' must be one of generate, super_resolve, translate, got 'paint'"],
    ),
    "options-not-pydantic": (
        GOOD_VARIANT.replace("Options = ganpipe.GANOptions", "Options = dict") + REGISTER_NOW,
        ["'Options' must be a pydantic model class", "got <class 'dict'>"],
    ),
    "train-step-signature": (
        GOOD_VARIANT.replace("def train_step(self, ctx, batch)", "def train_step(self, ctx)")
        + REGISTER_NOW,
        ["method train_step(ctx) cannot be called as train_step(ctx, batch)"],
    ),
    "lazy-unknown-task": (
        """
        import ganpipe

        @ganpipe.hookimpl
        def ganpipe_register_variants(register):
            register.lazy("ganpipe_somewhere:Bad", name="bad", task="paint")
        """,
        ["variant 'bad' has task 'paint'; use one of generate, super_resolve, translate"],
    ),
}


def invalid_site(tmp_path: Path, case: str, modules: dict[str, str]) -> tuple[Path, str, str]:
    ep_name, dist = f"bad-{case}", f"ganpipe-bad-{case}"
    plugin = f"ganpipe_bad_{case.replace('-', '_')}"
    modules = {plugin if k == "plugin" else k: v for k, v in modules.items()}
    return write_dist(tmp_path / "site", dist, "1.2.3", modules, {ep_name: plugin}), ep_name, dist


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_object_is_one_line_naming_plugin_and_distribution(cli, tmp_path, case):
    source, needles = INVALID[case]
    site, ep_name, dist = invalid_site(tmp_path, case, {"plugin": source})
    proc = cli("plugins", env=with_site(site))
    assert_listed_broken(proc, ep_name, f"plugin {ep_name!r} ({dist} 1.2.3)", *needles)
    assert not re.search(r"^\s+bad\s", proc.stdout, re.M), proc.stdout  # not half-registered
    # skipped by name, the other plugins list as before
    data = plugins_json(cli, env=with_site(site, GANPIPE_DISABLE_PLUGINS=ep_name))
    assert "bad" not in names(data, "variants") and "dcgan" in names(data, "variants")


LAZY_TARGET = "ganpipe_bad_lazy_target"
#: problems found only when a lazy declaration is loaded: (declaration, target module
#: source or None for none, what the one line says)
LAZY = {
    "target-fails-to-import": (
        'register.lazy("ganpipe_not_installed_anywhere.variant:Bad", name="bad", task="generate")',
        None,
        [
            "cannot load variant 'bad' from ganpipe_not_installed_anywhere.variant:Bad",
            "ModuleNotFoundError",
            "GANPIPE_DISABLE_PLUGINS=bad-lazy-target-fails-to-import",
        ],
    ),
    "task-disagrees": (
        f'register.lazy("{LAZY_TARGET}:Bad", name="bad", task="super_resolve")',
        GOOD_VARIANT,
        [f"{LAZY_TARGET}:Bad has task 'generate' but was registered with task 'super_resolve'"],
    ),
    "name-disagrees": (
        f'register.lazy("{LAZY_TARGET}:Bad", name="not-bad", task="generate")',
        GOOD_VARIANT,
        [f"{LAZY_TARGET}:Bad has name 'bad' but was registered with name 'not-bad'"],
    ),
    "target-invalid": (
        f'register.lazy("{LAZY_TARGET}:Bad", name="bad", task="generate")',
        GOOD_VARIANT.replace("def train_step(self, ctx, batch)", "def train_step(self)"),
        ["registered an invalid variant 'bad'", "train_step() cannot be called as"],
    ),
}


@pytest.mark.parametrize("case", sorted(LAZY))
def test_lazy_declaration_problems_show_on_check_and_on_use(cli, tmp_path, tiny_pipeline, case):
    declaration, target, needles = LAZY[case]
    plugin = f"""
        import ganpipe

        @ganpipe.hookimpl
        def ganpipe_register_variants(register):
            {declaration}
        """
    modules = {"plugin": plugin, **({LAZY_TARGET: target} if target else {})}
    site, ep_name, dist = invalid_site(tmp_path, f"lazy-{case}", modules)
    env = with_site(site)
    # listing imports nothing of the plugin's variant: it is listed, unchecked
    data = plugins_json(cli, env=env)
    declared = "not-bad" if case == "name-disagrees" else "bad"
    assert declared in names(data, "variants")
    proc = cli("plugins", "--check", env=env)
    assert_one_line_error(proc, f"plugin {ep_name!r} ({dist} 1.2.3)", *needles, code=1)
    if case == "target-fails-to-import":  # a pipeline naming it stops before any stage
        proc = cli("run", str(tiny_pipeline(variant="bad")), env=env)
        assert_one_line_error(proc, f"plugin {ep_name!r} ({dist} 1.2.3)", *needles, code=1)
        assert not (tmp_path / "runs").exists()


def test_plugins_check_passes_with_the_installed_plugins(lsgan_dist, cli):
    proc = cli("plugins", "--check")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^checked \d+ objects: all conform$", proc.stdout, re.M), proc.stdout


def test_plugins_command_imports_no_torch(lsgan_dist):
    """Listing plugins loads the lsgan plugin module but not its variant, nor torch."""
    code = textwrap.dedent(
        """
        import json, sys
        from ganpipe.cli import main
        try:
            main(["plugins", "--json"], prog_name="ganpipe")
        except SystemExit as exc:
            assert not exc.code, exc.code
        mods = [m for m in sys.modules if m.split(".")[0] in ("torch", "ganpipe_lsgan")]
        print(json.dumps(sorted(mods)), file=sys.stderr)
        """
    )
    env = {**os.environ}
    env.pop("GANPIPE_DISABLE_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "lsgan" in names(json.loads(proc.stdout), "variants")
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    assert "ganpipe_lsgan.plugin" in loaded  # the entry point was loaded ...
    assert "ganpipe_lsgan.variant" not in loaded  # ... its lazy variant was not
    assert not [m for m in loaded if m.split(".")[0] == "torch"], loaded


# -- names -------------------------------------------------------------------------------


class _ValidVariant(ganpipe.Variant):
    """Passes the registration checks (structure only: nothing here imports torch)."""

    name = "valid-test"
    task = "generate"
    Options = ganpipe.GANOptions

    def build(self, opts, info):
        raise NotImplementedError

    def train_step(self, ctx, batch):
        raise NotImplementedError


class _ValidStage(ganpipe.Stage):
    name = "valid-test"
    Options = ganpipe.Options

    def run(self, ctx, opts):
        return ganpipe.StageResult({})


class _ValidDataset(ganpipe.DatasetSource):
    name = "valid-test"
    Options = ganpipe.Options

    def load(self, opts, image_size, channels, base_dir):
        raise NotImplementedError

    def fingerprint(self, opts, base_dir):
        return ""


VALID = {"variants": _ValidVariant, "stages": _ValidStage, "datasets": _ValidDataset}


def valid(kind: str, name: str):
    """A valid object of ``kind`` named ``name``: what a duplicate must look like to get
    past the contract checks."""
    obj = VALID[kind]()
    obj.name = name
    return obj


def test_valid_objects_pass_the_registration_checks():
    from ganpipe.conformance import CHECKS

    for kind in KINDS:
        assert CHECKS[kind](valid(kind, "fine")) == [], kind


@pytest.mark.parametrize(
    "kind, taken, owner",
    [
        ("variants", "dcgan", "ganpipe.dcgan"),
        ("stages", "train", "ganpipe.stages"),
        ("datasets", "shapes", "ganpipe.datasets"),
    ],
)
def test_duplicate_names_are_refused_naming_both_plugins(kind, taken, owner):
    plugin = types.ModuleType("ganpipe_test_duplicate")

    @ganpipe.hookimpl
    def register_again(register):
        register(valid(kind, taken))

    setattr(plugin, f"ganpipe_register_{kind}", register_again)
    pm = get_plugin_manager(entry_points=False)
    pm.register(plugin, name="dup-test")
    try:
        with pytest.raises(PluginError) as info:
            load_registry(pm)
        message = str(info.value)
        assert f"{kind[:-1]} {taken!r} is registered twice" in message
        assert repr(owner) in message and "'dup-test'" in message
        assert "invalid" not in message  # refused as a duplicate, not for its shape
    finally:
        pm.unregister(name="dup-test")
    assert load_registry(pm).variants.owner("dcgan") == "ganpipe.dcgan"


def test_duplicate_name_between_third_party_distributions(lsgan_dist, cli, tmp_path):
    site = write_dist(
        tmp_path / "site",
        "ganpipe-lsgan-fork",
        "0.0.1",
        {
            "ganpipe_lsgan_fork": """
            import ganpipe

            class Fork(ganpipe.Variant):  # valid: refused as a duplicate, not for its shape
                name = "lsgan"
                Options = ganpipe.GANOptions

                def build(self, opts, info):
                    raise NotImplementedError

                def train_step(self, ctx, batch):
                    raise NotImplementedError

            @ganpipe.hookimpl
            def ganpipe_register_variants(register):
                register(Fork())
            """
        },
        {"lsgan-fork": "ganpipe_lsgan_fork"},
    )
    proc = cli("plugins", env=with_site(site))
    # the second to register the name is the broken one, skipped: the first keeps it
    assert_listed_broken(
        proc, "lsgan-fork", "variant 'lsgan' is registered twice", "'lsgan'", "'lsgan-fork'"
    )
    assert re.search(r"^\s+lsgan\s+\[generate\] .*\(lsgan\)$", proc.stdout, re.M)
    data = plugins_json(cli, env=with_site(site, GANPIPE_DISABLE_PLUGINS="lsgan-fork"))
    assert next(v for v in data["variants"] if v["name"] == "lsgan")["plugin"] == "lsgan"


def _known(line: str) -> set[str]:
    match = re.search(r"\(known: ([^;)]*)", line)
    assert match, line
    return set(match.group(1).split(", "))


def test_unknown_variant_lists_the_known_ones(lsgan_dist, cli, tiny_pipeline, tmp_path):
    path = tiny_pipeline(variant="lsgna")
    line_no = next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("variant =")
    )
    proc = cli("run", str(path))
    line = assert_one_line_error(
        proc,
        f"{path}:{line_no}",
        "model.variant",
        "unknown variant 'lsgna'",
        "did you mean 'lsgan'?",
        code=2,
    )
    assert {"dcgan", "lsgan"} <= _known(line)
    assert not (tmp_path / "runs").exists()

    # hidden plugins' variants are unknown too
    proc = cli("--no-plugins", "run", str(tiny_pipeline(variant="lsgan")))
    line = assert_one_line_error(proc, "unknown variant 'lsgan'", code=2)
    assert "dcgan" in _known(line) and "lsgan" not in _known(line)


# -- the hooks themselves ----------------------------------------------------------------


def _hookspecs() -> dict[str, types.FunctionType]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, "ganpipe_spec")
    }


def test_every_hookspec_is_documented_and_exercised_by_a_builtin_plugin():
    # the registration hooks; the extension hooks (commands, report sections, model-card
    # fields, input kinds) are exercised by the example plugins: test_extension_points.py
    specs = {n: f for n, f in _hookspecs().items() if n.removeprefix("ganpipe_register_") in KINDS}
    assert set(specs) == {f"ganpipe_register_{kind}" for kind in KINDS}, (
        "load_registry calls exactly the ganpipe_register_<kind> hooks of KINDS"
    )
    pm = get_plugin_manager(entry_points=False, disabled=())
    reg = load_registry(pm)
    for name, fn in specs.items():
        doc = inspect.getdoc(fn) or ""
        assert len(doc) > 40 and "register" in doc, f"hookspec {name} needs a docstring"
        assert list(inspect.signature(fn).parameters) == ["register"], name
        owners = {impl.plugin_name for impl in getattr(pm.hook, name).get_hookimpls()}
        assert owners & BUILTIN_PLUGINS, f"no built-in plugin implements {name}"
        kind = name.removeprefix("ganpipe_register_")
        assert {e.owner for e in getattr(reg, kind).entries.values()} & BUILTIN_PLUGINS, name
    # and no built-in plugin module is dead weight
    for plugin_name in BUILTIN_PLUGINS:
        assert pm.get_hookcallers(pm.get_plugin(plugin_name)), plugin_name
