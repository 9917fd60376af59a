"""The mistakes a plugin author makes, each caught with the fix named: a forgotten
``@ganpipe.hookimpl``, a misspelled hook name or argument, ``Options`` that do not cover
what the code reads, ``build()`` returning a tuple. Each plugin is a real distribution (a
``*.dist-info`` folder on ``sys.path`` or PYTHONPATH, :func:`test_plugins.write_dist`)
found through its ``ganpipe`` entry point, in process or by a real ``ganpipe`` subprocess.

Also: a broken plugin is skipped, not fatal (``ganpipe run`` of a pipeline that does not
need it works); ``ganpipe plugins show NAME``; exit codes decided by the error class;
``--debug``.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Literal

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field
from test_plugins import with_site, write_dist

from ganpipe import errors
from ganpipe.cli import main
from ganpipe.errors import ConfigError, GanpipeError, ModelFileError, PluginError
from ganpipe.options_doc import describe_options
from ganpipe.plugins import get_plugin_manager
from ganpipe.registry import load_registry
from ganpipe.testing import ContractError, registered

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _plugins_enabled(monkeypatch):
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("GANPIPE_DEBUG", raising=False)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Installs plugin distributions for this process: ``installed(ep_name, source)``
    writes ``my-<ep_name>`` 0.1.0 with the module ``my_<ep_name>`` as its entry point."""
    site = tmp_path / "site"
    modules: list[str] = []
    monkeypatch.syspath_prepend(str(site))

    def install(ep_name: str, source: str) -> tuple[str, str]:
        module = "my_" + ep_name.replace("-", "_")
        write_dist(site, f"my-{ep_name}", "0.1.0", {module: source}, {ep_name: module})
        modules.append(module)
        return module, f"my-{ep_name} 0.1.0"

    install.site = site  # type: ignore[attr-defined]
    yield install
    for module in modules:
        sys.modules.pop(module, None)


def problem_of(ep_name: str) -> str:
    """The problem of the plugin ``ep_name``: raised by a strict load, and the same kept
    by a non-strict one (which skips it)."""
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"plugin {ep_name!r}"), message
    pm = get_plugin_manager(strict=False)
    assert pm.get_plugin(ep_name) is None
    assert str(pm.ganpipe_problems[ep_name]) == message
    return message


#: a lazy SNGAN registration, as the author wrote it, but without the marker
UNMARKED = """
import ganpipe


def ganpipe_register_variants(register):
    register.lazy("my_sngan.variant:SNGAN", name="sngan", task="generate")
"""


# -- 1. an entry point that registers nothing -----------------------------------------------


def test_forgotten_hookimpl_is_named_with_the_fix(installed):
    module, dist = installed("sngan", UNMARKED)
    message = problem_of("sngan")
    assert message == (
        f"plugin 'sngan' (distribution {dist}) is invalid: ganpipe_register_variants in "
        f"{module} is not marked with @ganpipe.hookimpl, so ganpipe never calls it; add "
        f"the decorator"
    )
    # what `ganpipe run` does: the other plugins work; the variant it would provide is
    # refused naming it (was: "unknown variant 'sngan'; did you mean 'srgan'?")
    reg = load_registry(warn=False)
    assert "dcgan" in reg.variants and list(reg.problems) == ["sngan"]
    with pytest.raises(PluginError) as info:
        reg.variants.get("sngan", where="pipeline.toml:9: model.variant")
    line = str(info.value)
    assert line.startswith("pipeline.toml:9: model.variant: unknown variant 'sngan'")
    assert "it may come from a broken plugin" in line and message in line
    # a name no plugin could be the user's typo: the usual hint, still a usage error
    with pytest.raises(ConfigError, match="did you mean 'dcgan'"):
        load_registry(entry_points=False).variants.get("dcgna")
    # the author's test of the installed entry point says the same (was: "is the
    # distribution installed ... and its [project.entry-points.ganpipe] right?")
    with pytest.raises(ContractError) as info:
        registered("variant", "sngan")
    assert str(info.value) == f"variant 'sngan' is not registered, and {message}"


def test_entry_point_without_any_hook(installed):
    module, dist = installed("empty", "import ganpipe\n\nVERSION = 1\n")
    message = problem_of("empty")
    assert message.startswith(
        f"plugin 'empty' (distribution {dist}) registers nothing: {module} has no function "
        f"marked with @ganpipe.hookimpl (the hooks: "
    )
    assert "ganpipe_register_variants, ganpipe_register_stages" not in message  # sorted
    assert "ganpipe_register_datasets" in message and "ganpipe_register_variants" in message
    assert message.endswith("); add one, or point the entry point at the module that has them")


# -- 2. hook-name typos, 3. wrong argument names ----------------------------------------------

MISTAKES = {
    "unmarked-typo": (
        "def ganpipe_register_variant(register):\n    pass\n",
        "ganpipe_register_variant in {module} is not a ganpipe hook, and ganpipe never "
        "calls it; did you mean ganpipe_register_variants? Rename it and mark it with "
        "@ganpipe.hookimpl",
    ),
    "unmarked-regster": (
        "def ganpipe_regster_stages(register):\n    pass\n",
        "ganpipe_regster_stages in {module} is not a ganpipe hook, and ganpipe never calls "
        "it; did you mean ganpipe_register_stages?",
    ),
    "unmarked-no-prefix": (
        "def register_datasets(register):\n    pass\n",
        "register_datasets in {module} is not a ganpipe hook, and ganpipe never calls it; "
        "did you mean ganpipe_register_datasets?",
    ),
    "marked-typo": (
        "@ganpipe.hookimpl\ndef ganpipe_register_variant(register):\n    pass\n",
        "unknown hook 'ganpipe_register_variant' in {module}; did you mean "
        "ganpipe_register_variants?",
    ),
    "argument": (
        "@ganpipe.hookimpl\ndef ganpipe_register_variants(registry):\n    pass\n",
        "ganpipe_register_variants(registry) in {module} takes 'registry', which the hook "
        "does not pass; name it 'register'",
    ),
    "argument-of-commands": (
        "@ganpipe.hookimpl\ndef ganpipe_register_commands(group):\n    pass\n",
        "ganpipe_register_commands(group) in {module} takes 'group', which the hook does "
        "not pass; name it 'cli'",
    ),
    "extra-argument": (
        "@ganpipe.hookimpl\ndef ganpipe_register_stages(register, config):\n    pass\n",
        "ganpipe_register_stages(register, config) in {module} takes 'config', which the "
        "hook does not pass; the hook passes only 'register'",
    ),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_hook_mistake_is_one_line_naming_the_fix(installed, case):
    source, says = MISTAKES[case]
    ep_name = f"m-{case}"
    module, dist = installed(ep_name, "import ganpipe\n\n\n" + source)
    message = problem_of(ep_name)
    assert message.startswith(f"plugin {ep_name!r} (distribution {dist}) is invalid: ")
    assert says.format(module=module) in message, message


def test_a_helper_function_with_another_name_is_no_mistake(installed):
    installed(
        "helper",
        "import ganpipe\n\n\ndef ganpipe_version_note():\n    return 'mine'\n\n\n"
        "@ganpipe.hookimpl\ndef ganpipe_register_variants(register):\n    pass\n",
    )
    assert get_plugin_manager().get_plugin("helper") is not None


# -- 4. a broken plugin does not stop the others, nor a run that does not need it -------------

AUGMENT_ONLY = """
[run]
name = "aug"
out_dir = "runs"
device = "cpu"

[data]
dataset = "shapes"
image_size = 16
count = 8
classes = 2

[augment]
"""


def test_run_that_does_not_need_the_broken_plugin_works_with_one_warning(cli, tmp_path):
    site = write_dist(tmp_path / "site", "my-sngan", "0.1.0", {"my_sngan": UNMARKED},
                      {"sngan": "my_sngan"})  # fmt: skip
    (tmp_path / "pipeline.toml").write_text(AUGMENT_ONLY, encoding="utf-8")
    proc = cli("run", "pipeline.toml", cwd=tmp_path, env=with_site(site))
    assert proc.returncode == 0, proc.stderr
    assert "[augment] done" in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "ganpipe: warning: plugin 'sngan' (distribution my-sngan 0.1.0) is invalid: "
        "ganpipe_register_variants in my_sngan is not marked with @ganpipe.hookimpl, so "
        "ganpipe never calls it; add the decorator; it is skipped"
    ]  # once, though the run and its report both load the plugins


def test_plugin_failing_in_one_hook_is_dropped_whole(installed):
    """What it registered before the failing hook is gone too: nothing half-registered."""
    installed(
        "half",
        """
import ganpipe
from ganpipe.variants.dcgan import DCGAN


class Half(DCGAN):
    name = "half"


@ganpipe.hookimpl
def ganpipe_register_variants(register):
    register(Half())


@ganpipe.hookimpl
def ganpipe_register_stages(register):
    raise RuntimeError("no licence server")
""",
    )
    reg = load_registry(warn=False)
    assert "half" not in reg.variants and "dcgan" in reg.variants
    assert "failed in ganpipe_register_stages: RuntimeError: no licence server" in str(
        reg.problems["half"]
    )
    assert isinstance(reg.problems["half"].__cause__, RuntimeError)
    with pytest.raises(PluginError, match="no licence server"):
        load_registry(strict=True)


# -- 5. --check runs each variant's quick checks -----------------------------------------------

#: SNGAN as the issue tried it: Options = GANOptions while build reads opts.loss; and a
#: variant whose build returns a tuple
QUICK = """
import ganpipe
from ganpipe.variants.dcgan import DCGAN


class SNGAN(DCGAN):
    name = "sngan"
    Options = ganpipe.GANOptions
    tiny_options = {"latent_dim": 8}

    def build(self, opts, info):
        if opts.loss == "hinge":
            raise NotImplementedError
        return super().build(opts, info)


class TupleGAN(DCGAN):
    name = "tuplegan"

    def build(self, opts, info):
        nets = super().build(opts, info)
        return nets["G"], nets["D"]


@ganpipe.hookimpl
def ganpipe_register_variants(register):
    register(SNGAN())
    register(TupleGAN())
"""


def test_check_runs_the_quick_checks_of_each_variant(installed):
    installed("sngan", QUICK)
    code, out, err = _invoke("plugins")  # listing checks nothing: all is fine
    assert code == 0 and err == "", err
    code, out, err = _invoke("plugins", "--check", "--json")
    assert code == 1 and "Traceback" not in err, err
    problems = {p["message"] for p in json.loads(out)["problems"]}
    lines = err.strip().splitlines()
    assert {ln.removeprefix("ganpipe: error: ") for ln in lines} == problems, lines
    sngan, tuplegan = sorted(problems)
    where = "plugin 'sngan' (my-sngan 0.1.0): variant"
    assert sngan.startswith(f"{where} 'sngan': Variant.build raised AttributeError"), sngan
    assert "opts.loss" in sngan and "add it to the variant's options" in sngan, sngan
    assert tuplegan.startswith(f"{where} 'tuplegan': "), tuplegan
    assert "returned a tuple" in tuplegan and "must return a dict of nets" in tuplegan


# -- 6. --debug, and exit codes decided by the error class --------------------------------------


def test_debug_prints_the_traceback_of_the_cause_then_the_one_line(cli, tmp_path):
    plain = cli("run", "missing.toml", cwd=tmp_path)
    debug = cli("--debug", "run", "missing.toml", cwd=tmp_path)
    by_env = cli("run", "missing.toml", cwd=tmp_path, env={"GANPIPE_DEBUG": "1"})
    line = plain.stderr.strip()
    assert line.startswith("ganpipe: error: missing.toml: ") and "\n" not in line, line
    for proc in (debug, by_env):
        assert proc.returncode == plain.returncode == 2, proc.stderr
        assert proc.stderr.startswith("Traceback (most recent call last):"), proc.stderr
        assert "ganpipe.errors.ConfigError: missing.toml" in proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == line


def test_debug_shows_where_a_plugin_failed(cli, tmp_path):
    source = (
        "import ganpipe\n\n\n@ganpipe.hookimpl\ndef ganpipe_register_variants(register):\n"
        "    raise RuntimeError('no licence server')\n"
    )
    site = write_dist(tmp_path / "site", "my-lic", "0.1.0", {"my_lic": source}, {"lic": "my_lic"})
    proc = cli("--debug", "plugins", env=with_site(site))
    assert proc.returncode == 0, proc.stderr
    assert 'my_lic.py", line 6, in ganpipe_register_variants' in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("ganpipe: warning: plugin 'lic'")


def test_exit_codes_are_the_error_classes():
    assert GanpipeError.exit_code == PluginError.exit_code == errors.DataError.exit_code == 1
    assert ConfigError.exit_code == ModelFileError.exit_code == 2
    assert errors.WriteError.exit_code == errors.TrainingError.exit_code == 1


def _rewraps(path: Path) -> list[str]:
    """``except <GanpipeError subclass>: raise <another one>(...)`` in ``path``: an exit
    status changed by re-wrapping."""
    ours = {
        n for n, c in vars(errors).items() if isinstance(c, type) and issubclass(c, GanpipeError)
    }
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ExceptHandler) or node.type is None:
            continue
        types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        caught = {getattr(t, "id", getattr(t, "attr", "")) for t in types} & ours
        for inner in ast.walk(ast.Module(body=node.body, type_ignores=[])):
            if isinstance(inner, ast.Raise) and isinstance(inner.exc, ast.Call):
                raised = getattr(inner.exc.func, "id", getattr(inner.exc.func, "attr", ""))
                if caught and raised in ours and raised not in caught:
                    found.append(f"{path.relative_to(ROOT)}:{inner.lineno}: {caught} -> {raised}")
    return found


def test_no_command_rewraps_an_error_to_change_its_exit_status():
    found = [hit for path in sorted((ROOT / "ganpipe").rglob("*.py")) for hit in _rewraps(path)]
    assert found == [], found


# -- 7. plugins show NAME ---------------------------------------------------------------------


def _invoke(*args: str):
    result = CliRunner().invoke(main, list(args), prog_name="ganpipe")
    return result.exit_code, result.stdout, result.stderr


def test_show_prints_options_with_types_defaults_and_descriptions():
    code, out, _ = _invoke("--no-plugins", "plugins", "show", "folder")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("dataset folder: images in a folder")
    assert lines[1] == "  plugin ganpipe.datasets, distribution ganpipe (built-in)"
    assert lines[2] == '  options, in [data] of pipeline.toml, with dataset = "folder":'
    assert "    path: path required" in lines
    assert lines[lines.index("    path: path required") + 1].strip() == (
        "folder of images; subfolders are class labels"
    )
    assert '    resize: "crop" | "stretch" = "crop"' in lines

    code, out, _ = _invoke("--no-plugins", "plugins", "show", "dcgan", "--json")
    assert code == 0
    (dcgan,) = json.loads(out)
    assert {k: dcgan[k] for k in ("name", "kind", "plugin", "task", "table")} == {
        "name": "dcgan",
        "kind": "variant",
        "plugin": "ganpipe.dcgan",
        "task": "generate",
        "table": "[model]",
    }
    options = {o["name"]: o for o in dcgan["options"]}
    assert options["g_width"] == {
        "name": "g_width",
        "type": "int",
        "default": "64",
        "description": "channels of the generator's last block",
        "bounds": ">= 1",
        "required": False,
    }


def test_show_unknown_name_suggests():
    code, _, err = _invoke("--no-plugins", "plugins", "show", "dcgna")
    assert code == 2
    assert err.strip() == (
        "ganpipe: error: no variant, stage or dataset named 'dcgna'; did you mean 'dcgan'? "
        "(`ganpipe plugins` lists them)"
    )


class _Demo(BaseModel):
    steps: int = Field(100, ge=1, le=10**6, description="training   steps\n(all of them)")
    loss: str = "hinge"
    mode: Literal["a", "b"] = "a"
    seed: int | None = None
    path: Path = Field(description="where")
    betas: tuple[float, float] = (0.5, 0.999)
    sizes: list[int] = Field(default_factory=lambda: [1, 2])
    flag: bool = False


def test_describe_options_in_toml_terms():
    docs = {d.name: d for d in describe_options(_Demo)}
    assert list(docs) == list(_Demo.model_fields)
    steps = docs["steps"]
    assert (steps.type, steps.default, steps.bounds) == ("int", "100", ">= 1, <= 1000000")
    assert steps.description == "training steps (all of them)" and not steps.required
    assert (docs["loss"].type, docs["loss"].default) == ("str", '"hinge"')
    assert docs["mode"].type == '"a" | "b"'
    assert (docs["seed"].type, docs["seed"].default) == ("int or unset", "unset")
    assert docs["path"].required and docs["path"].default is None
    assert docs["path"].type == "path" and docs["path"].description == "where"
    assert (docs["betas"].type, docs["betas"].default) == ("[float, float]", "[0.5, 0.999]")
    assert (docs["sizes"].type, docs["sizes"].default) == ("list of int", "[1, 2]")
    assert (docs["flag"].type, docs["flag"].default) == ("bool", "false")
    assert docs["flag"].to_dict()["required"] is False
