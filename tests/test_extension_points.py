"""The extension points beyond registration (since 0.3): plugin commands, report sections,
model-card extension fields and input kinds.

Each is exercised through real entry-point discovery: the installed example plugins
(``ganpipe-zip``: a command and a report section; ``ganpipe-sphere``: an input kind and
model-card fields) and throwaway distributions written into a folder on ``sys.path``
(``*.dist-info`` with entry_points.txt), as ``tests/test_plugins.py`` does. Models are
built with ``onnx.helper`` and run by ONNX Runtime; nothing mocks the thing under test.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from PIL import Image
from pydantic import BaseModel, ValidationError
from test_plugins import write_dist

from ganpipe import hookspecs
from ganpipe.card_extensions import CardFieldsRegister
from ganpipe.cli import main
from ganpipe.cli.main import COMMANDS
from ganpipe.cli.plugin_commands import find_entry_points, load_commands
from ganpipe.errors import GanpipeError, ModelFileError, PluginError
from ganpipe.inference.generate import generate_to_folder, sample_inputs
from ganpipe.inference.session import open_model
from ganpipe.inputs import BUILTIN_KINDS, InputKind, InputKindRegister, draw, plugin_input_kinds
from ganpipe.modelcard import InputSpec, ModelCard
from ganpipe.plugins import get_plugin_manager
from ganpipe.report import load_run, render

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "plugins.md"
EXTENSION_HOOKS = {
    "ganpipe_register_commands": "zip",
    "ganpipe_report_sections": "zip",
    "ganpipe_model_card_fields": "sphere",
    "ganpipe_register_input_kinds": "sphere",
}


@pytest.fixture(autouse=True)
def _plugins_enabled(monkeypatch):
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)


@pytest.fixture(scope="module")
def example_plugins() -> None:
    """The example plugins must be installed (CI and the README's command install them)."""
    for dist in ("ganpipe-zip", "ganpipe-sphere"):
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{dist} is not installed: pip install ./plugins/{dist}", pytrace=False)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on ``sys.path`` for throwaway distributions; their modules are forgotten
    afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("xp_"):
            del sys.modules[name]


def sphere_model(path: Path, kind: str = "sphere", dim: int = 12) -> Path:
    """A 2x2 RGB generator (``tanh(reshape(z))``) whose input ``z`` has ``kind``, with a
    card that carries the ``sphere`` namespace and one no plugin declares."""
    nodes = [
        helper.make_node("Reshape", ["z", "shape"], ["r"]),
        helper.make_node("Tanh", ["r"], ["image"]),
    ]
    graph = helper.make_graph(
        nodes,
        "sphere",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 2, 2])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 3, 2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    card = ModelCard(
        variant="dcgan-sphere",
        task="generate",
        image_size=2,
        channels=3,
        inputs=(InputSpec("z", kind, (dim,)),),
        latent_dim=dim,
        extensions={"sphere": {"radius": math.sqrt(dim)}, "someone-else": {"note": "kept"}},
    )
    for key, value in card.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path.write_bytes(model.SerializeToString())
    return path


# -- commands ------------------------------------------------------------------------------


def test_help_lists_plugin_commands_without_torch(example_plugins):
    code = textwrap.dedent(
        """
        import sys
        from ganpipe.cli import main
        try:
            main(["--help"], prog_name="ganpipe")
        except SystemExit as exc:
            assert not exc.code, exc.code
        heavy = ("torch", "ganpipe_zip.source", "ganpipe_zip.commands", "importlib.metadata", "ctypes")
        heavy = [m for m in heavy if m in sys.modules]
        print("HEAVY", heavy)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "GANPIPE_DISABLE_PLUGINS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "zip-info" in proc.stdout.split("Commands from plugins:")[1]
    # the command's module is imported only when it runs (cli.lazy); entry points are read
    # without importing importlib.metadata (a third of --help's time), and --help's
    # plugin loading needs no C library flush (ctypes)
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_no_plugins_and_disabled_plugins_hide_their_commands(example_plugins, monkeypatch):
    runner = CliRunner()
    assert "zip-info" in runner.invoke(main, ["--help"]).output
    assert "Commands from plugins" not in runner.invoke(main, ["--no-plugins", "--help"]).output
    result = runner.invoke(main, ["--no-plugins", "zip-info", "x.zip"])
    assert result.exit_code == 2 and "No such command 'zip-info'" in result.output
    monkeypatch.setenv("GANPIPE_DISABLE_PLUGINS", "zip")
    assert "zip-info" not in runner.invoke(main, ["--help"]).output


CLASHING = """
import click
import ganpipe

@ganpipe.hookimpl
def ganpipe_register_commands(cli):
    @cli.command()
    def run():
        "Shadows ganpipe run."

    @cli.command()
    @click.argument("who")
    def hello(who):
        "Say hello."
        click.echo(f"hello {who}")

    @cli.command()
    def boom():
        "Has a bug."
        raise ZeroDivisionError("the plugin's bug")

    @cli.command()
    def oops():
        "A user's mistake, in ganpipe's words."
        raise ganpipe.ConfigError("oops: set x in pipeline.toml")

    cli.lazy("xp_clash_later:later", name="later", help="Imported when it runs.")
    cli.lazy("xp_clash_later:NOT_A_COMMAND", name="notcmd", help="Declared wrongly.")
"""
LATER = """
import click

NOT_A_COMMAND = 42

@click.command()
@click.option("--times", default=1)
def later(times):
    click.echo("later " * times)
"""
SECOND = """
import click
import ganpipe

@ganpipe.hookimpl
def ganpipe_register_commands(cli):
    cli.add_command(click.Command("hello", callback=lambda: click.echo("second")))
"""
FAILING = """
import ganpipe

@ganpipe.hookimpl
def ganpipe_register_commands(cli):
    raise RuntimeError("no commands today")
"""


def test_plugin_command_names_and_failures_are_one_line_each(site):
    for dist, modules in (
        ("xp-clash", {"xp_clash": CLASHING, "xp_clash_later": LATER}),
        ("xp-second", {"xp_second": SECOND}),
        ("xp-failing", {"xp_failing": FAILING}),
    ):
        write_dist(site, dist, "1.0", modules, {dist.removeprefix("xp-"): dist.replace("-", "_")})
    found = load_commands(COMMANDS)
    assert {"hello", "boom", "oops", "later"} <= set(found.commands)
    assert "run" not in found.commands
    assert "xp_clash_later" not in sys.modules  # a lazy command: declared, not imported
    assert found.owners["hello"] == "plugin 'clash' (xp-clash 1.0)"  # first by name wins
    problems = "\n".join(found.problems)
    assert all("\n" not in p for p in found.problems)
    assert "plugin 'clash' (xp-clash 1.0): command 'run' is one of ganpipe's own" in problems
    assert "plugin 'second' (xp-second 1.0): command 'hello' is already added by" in problems
    assert "plugin 'failing' (xp-failing 1.0) failed in ganpipe_register_commands" in problems
    assert "RuntimeError: no commands today" in problems

    runner = CliRunner()
    listed = runner.invoke(main, ["--help"]).stdout.split("Commands from plugins:")[1]
    assert "later     Imported when it runs." in listed
    result = runner.invoke(main, ["later", "--times", "2"])
    assert result.exit_code == 0 and result.stdout == "later later \n"
    result = runner.invoke(main, ["notcmd"])
    assert result.exit_code == 1 and result.stderr.strip().splitlines()[-1] == (
        "ganpipe: error: plugin 'clash' (xp-clash 1.0): xp_clash_later:NOT_A_COMMAND is int, "
        "not a click command; decorate it with @click.command()"
    )
    result = runner.invoke(main, ["hello", "you"])
    assert result.exit_code == 0 and "hello you" in result.stdout
    assert result.stderr.count("ganpipe: warning: ") == 3  # the refusals, one line each
    result = runner.invoke(main, ["run", "--help"])  # ganpipe's own run, untouched
    assert "PIPELINE" in result.stdout
    result = runner.invoke(main, ["boom"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "ganpipe: error: plugin 'clash' (xp-clash 1.0): command 'boom' failed: "
        "ZeroDivisionError: the plugin's bug; report it to the plugin's authors, or skip "
        "the plugin with GANPIPE_DISABLE_PLUGINS=clash (ganpipe --debug shows the traceback)"
    )
    result = runner.invoke(main, ["oops"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == "ganpipe: error: oops: set x in pipeline.toml"


def test_entry_point_scan_agrees_with_importlib_metadata(site):
    write_dist(site, "xp-scan", "2.5", {"xp_scan": "import ganpipe\n"}, {"scan": "xp_scan"})
    ours = sorted((e.name, e.value, e.dist) for e in find_entry_points())
    theirs = sorted(
        (e.name, e.value, f"{e.dist.name} {e.dist.version}")
        for e in metadata.entry_points(group="ganpipe")
    )
    assert ours == theirs and ("scan", "xp_scan", "xp-scan 2.5") in ours


# -- report sections -------------------------------------------------------------------------


SECTIONS = """
import ganpipe

@ganpipe.hookimpl
def ganpipe_report_sections(report):
    report.add(
        "Notes <b>bold</b>",
        "a <script>alert(1)</script> in text",
        report.key_values({"run": report.run.name, "<k>": 1.5}),
        report.table(["what", "n"], [["<td>", 3]]),
        report.code("x < y"),
        note="n & m",
    )
    report.add("Second", report.text("fine"))
    raise ValueError("the third section has a bug")
"""


def test_report_sections_are_escaped_and_a_failing_one_is_a_note(site, tmp_path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for label in ("cats", "dogs"):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "PNG")
            zf.writestr(f"{label}/0.png", buf.getvalue())
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "pipeline.toml").write_text(
        '[run]\nname = "r"\n[data]\ndataset = "zip"\npath = "images.zip"\n', encoding="utf-8"
    )
    manifest = {"stages": {}, "pipeline": {"path": str(tmp_path / "pipeline.toml")}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    write_dist(site, "xp-notes", "0.1", {"xp_notes": SECTIONS}, {"notes": "xp_notes"})

    page = render(load_run(run_dir))
    first = page.split('<section id="plugin-notes-1">')[1].split("</section>")[0]
    assert "<h2>Notes &lt;b&gt;bold&lt;/b&gt;</h2>" in first
    assert "n &amp; m · from plugin notes" in first
    assert "<p>a &lt;script&gt;alert(1)&lt;/script&gt; in text</p>" in first
    assert "<th>&lt;k&gt;</th><td>1.5</td>" in first and "<td>&lt;td&gt;</td>" in first
    assert "<pre>x &lt; y</pre>" in first and "<script>alert" not in page
    assert '<section id="plugin-notes-2"><h2>Second</h2>' in page
    note = page.split('<section id="plugin-notes-3">')[1].split("</section>")[0]
    assert "plugin &#x27;notes&#x27; (xp-notes 0.1) failed in ganpipe_report_sections" in note
    assert "ValueError: the third section has a bug" in note
    # the installed zip plugin's section, and the rest of the page after the plugins'
    assert "<h2>Zip archive</h2>" in page and "<td>dogs</td>" in page
    assert page.index("plugin-notes-3") < page.index('<section id="pipeline">')
    assert "Zip archive" not in render(load_run(run_dir), entry_points=False)


# -- model-card extension fields -------------------------------------------------------------


def test_extension_fields_round_trip_typed_and_unknown_namespaces_kept(example_plugins, tmp_path):
    from ganpipe_sphere.card import SphereFields

    path = sphere_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    keys = {p.key for p in model.metadata_props}
    assert {"ganpipe.extensions.sphere", "ganpipe.extensions.someone-else"} <= keys
    card = ModelCard.from_onnx(model, path)
    typed = card.extension("sphere")  # the installed plugin declares the namespace
    assert isinstance(typed, SphereFields) and typed.radius == pytest.approx(math.sqrt(12))
    assert card.extension("someone-else") == {"note": "kept"}  # nobody declares it
    assert card.extension("absent") is None
    again = ModelCard.from_props(card.to_props())  # written back unchanged
    assert again.extensions == card.extensions and again.extra == {}
    # a typed value given at export is stored as its JSON object
    direct = card.model_copy(update={"extensions": {}})
    direct = ModelCard.model_validate(
        {**direct.model_dump(), "extensions": {"sphere": SphereFields(radius=2.0)}}
    )
    assert direct.extensions["sphere"] == {"input": "z", "radius": 2.0, "interpolation": "slerp"}


def test_extension_fields_mistakes_are_one_line(example_plugins):
    base = {"task": "generate", "inputs": [{"name": "z", "kind": "normal", "shape": [4]}]}
    with pytest.raises(ValidationError, match="ganpipe's own"):  # extra cannot shadow a key
        ModelCard.model_validate({**base, "extra": {"task": "paint"}})
    with pytest.raises(ValidationError, match="namespace 'My NS'"):
        ModelCard.model_validate({**base, "extensions": {"My NS": {}}})
    card = ModelCard.model_validate({**base, "extensions": {"sphere": {"radius": -1}}})
    with pytest.raises(ModelFileError) as err:
        card.extension("sphere")
    assert "\n" not in str(err.value)
    assert "model card extension 'sphere': field 'radius' is invalid" in str(err.value)
    props = {**card.to_props(), "ganpipe.extensions.sphere": "[1, 2]"}
    with pytest.raises(ModelFileError, match="re-export the model"):
        ModelCard.from_props(props, "bad.onnx")


def test_card_field_declarations_are_checked():
    class Fields(BaseModel):
        x: int = 0

    declared: dict = {}
    register = CardFieldsRegister(declared, "mine", "ganpipe-mine 1.0")
    register("mine", Fields)
    register.lazy("pkg.module:Other", namespace="mine-two")
    assert set(declared) == {"mine", "mine-two"}
    for call, needle in (
        (lambda: register("ganpipe", Fields), "must be lower-case"),
        (lambda: register("Bad Name", Fields), "must be lower-case"),
        (lambda: register("third", dict), "must be a pydantic model class"),
        (lambda: register.lazy("no-colon", namespace="fourth"), "'package.module:Name'"),
        (
            lambda: CardFieldsRegister(declared, "other", "x 1")("mine", Fields),
            "declared twice: by plugin 'mine' (ganpipe-mine 1.0) and by plugin 'other'",
        ),
    ):
        with pytest.raises(PluginError, match=re.escape(needle)):
            call()


# -- input kinds -----------------------------------------------------------------------------


def test_generate_draws_a_plugin_kind_with_its_sampler_without_torch(example_plugins, tmp_path):
    path = sphere_model(tmp_path / "m.onnx")
    code = textwrap.dedent(
        f"""
        import sys
        from ganpipe.cli import main
        try:
            main(["generate", "-m", {str(path)!r}, "-n", "5", "-o", {str(tmp_path / "out")!r}])
        except SystemExit as exc:
            assert not exc.code, exc.code
        print("TORCH", "torch" in sys.modules)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "GANPIPE_DISABLE_PLUGINS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stdout
    assert len(list((tmp_path / "out").glob("sample_*.png"))) == 5


def test_sample_inputs_use_the_kind_sampler_reproducibly(example_plugins, tmp_path):
    from ganpipe_sphere.sampling import sphere

    model = open_model(sphere_model(tmp_path / "m.onnx"), "cpu", task="generate")
    z = sample_inputs(model, 6, 3, None)["z"]
    assert z.shape == (6, 12) and z.dtype == np.float32
    assert np.allclose(np.linalg.norm(z, axis=1), math.sqrt(12), atol=1e-4)
    assert np.array_equal(z, sphere(np.random.default_rng(3), 6, (12,)))
    assert not np.array_equal(z, sample_inputs(model, 6, 4, None)["z"])


def test_a_kind_no_plugin_provides_is_refused_in_one_line(tmp_path):
    path = sphere_model(tmp_path / "m.onnx", kind="hyperbolic")
    with pytest.raises(GanpipeError) as err:
        generate_to_folder(path, tmp_path / "out", 2)
    assert str(err.value) == (
        "m.onnx: input 'z' has kind 'hyperbolic', which neither this ganpipe nor an installed "
        "plugin draws; install the plugin that trained it (variant 'dcgan-sphere') or "
        "upgrade ganpipe"
    )


def test_make_inputs_draws_uniform_categorical_and_plugin_kinds(example_plugins):
    import torch

    import ganpipe

    class Coded(ganpipe.Variant):
        name, task, Options = "coded", "generate", ganpipe.GANOptions

        def inputs(self, opts, info):
            return [
                InputSpec("z", "sphere", (8,)),
                InputSpec("c", "uniform", (2,)),
                InputSpec("k", "categorical", (2, 3)),
            ]

    variant, info = Coded(), ganpipe.DataInfo(8, 3)

    def make(seed):
        g = torch.Generator().manual_seed(seed)
        return variant.make_inputs(None, info, 5, torch.device("cpu"), g)

    z, c, k = make(0)
    assert torch.allclose(z.norm(dim=1), torch.full((5,), math.sqrt(8)), atol=1e-4)
    assert c.shape == (5, 2) and float(c.abs().max()) <= 1.0
    assert k.shape == (5, 2, 3) and torch.equal(k.sum(-1), torch.ones(5, 2))
    assert all(torch.equal(a, b) for a, b in zip(make(0), make(0), strict=True))
    assert not torch.equal(z, make(1)[0])

    class Given(Coded):
        def inputs(self, opts, info):
            return [InputSpec("x", "image", (3,))]

    with pytest.raises(ValueError, match="given, not drawn; override make_inputs"):
        Given().make_inputs(None, info, 2, torch.device("cpu"))


def test_input_kind_registrations_and_samplers_are_checked(site):
    kinds: dict = {}
    register = InputKindRegister(kinds, "mine", "ganpipe-mine 1.0")
    register("twos", lambda rng, n, shape: np.full((n, *shape), 2.0, np.float32))
    for call, needle in (
        (lambda: register("normal", np.zeros), "built into ganpipe"),
        (lambda: register("Bad Kind", np.zeros), "must be lower-case"),
        (lambda: register("three", 3), "must be a function sample(rng, n, shape)"),
        (lambda: register.lazy("nocolon", name="four"), "'package.module:function'"),
        (
            lambda: InputKindRegister(kinds, "other", "x 1")("twos", np.zeros),
            "registered twice: by plugin 'mine' and by plugin 'other' (x 1)",
        ),
    ):
        with pytest.raises(PluginError, match=re.escape(needle)):
            call()
    rng = np.random.default_rng(0)
    assert draw(kinds["twos"], rng, 3, (2,)).tolist() == [[2.0, 2.0]] * 3
    wrong = InputKind("wrong", "", lambda rng, n, shape: np.zeros((n, 1)), owner="mine")
    with pytest.raises(PluginError, match=re.escape("returned float64 (3, 1) for 3 samples")):
        draw(wrong, rng, 3, (2,))
    # a lazy kind of a real (throwaway) distribution: its sampler imported at the first draw
    source = """
        import ganpipe

        @ganpipe.hookimpl
        def ganpipe_register_input_kinds(register):
            register.lazy("xp_kinds_sampling:ones", name="ones", description="all ones")
        """
    sampling = "import numpy as np\n\ndef ones(rng, n, shape):\n    return np.ones((n, *shape), np.float32)\n"
    modules = {"xp_kinds": source, "xp_kinds_sampling": sampling}
    write_dist(site, "xp-kinds", "0.2", modules, {"kinds": "xp_kinds"})
    found = plugin_input_kinds(get_plugin_manager())
    assert "xp_kinds_sampling" not in sys.modules
    assert found["ones"].owner == "kinds" and found["ones"].description == "all ones"
    assert draw(found["ones"], rng, 2, (3,)).sum() == 6
    assert set(found).isdisjoint(BUILTIN_KINDS)


# -- documented and used -----------------------------------------------------------------


def test_extension_hooks_are_documented_and_used_by_the_example_plugins(example_plugins):
    page = PAGE.read_text(encoding="utf-8")
    pm = get_plugin_manager()
    for hook, plugin in EXTENSION_HOOKS.items():
        spec = getattr(hookspecs, hook)
        args = ", ".join(inspect.signature(spec).parameters)
        assert f"`{hook}({args})` (since 0.3)" in page, hook
        assert "since 0.3" in (inspect.getdoc(spec) or ""), hook
        owners = {impl.plugin_name for impl in getattr(pm.hook, hook).get_hookimpls()}
        assert plugin in owners, (hook, owners)
