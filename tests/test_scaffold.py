"""``ganpipe new-plugin``: the packages it writes install with pip, pass their own tests
unchanged, show in ``ganpipe plugins`` and run in a pipeline; bad names and existing
folders are one-line errors. The end-to-end tests pip-install the generated package into
this interpreter (not editable, as from PyPI) and uninstall it in ``finally``.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganpipe.scaffold import FILES, KINDS, create

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "ganpipe" / "scaffold" / "templates"
#: what generated code may import from ganpipe: the public API
PUBLIC = {"ganpipe", "ganpipe.nn", "ganpipe.testing"}
#: a name per kind, unlikely to clash with anything installed
NAMES = {"variant": "scaffold-gan", "stage": "scaffold-stats", "dataset": "scaffold-list"}


@pytest.fixture(autouse=True)
def _plugins_enabled(monkeypatch):
    monkeypatch.delenv("GANPIPE_DISABLE_PLUGINS", raising=False)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, code: int = 2):
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganpipe: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, proc.stderr)


# -- what is written -----------------------------------------------------------------------


def test_every_template_is_package_data():
    """The wheel must ship every template: the package-data globs match them all."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["ganpipe.scaffold"]
    base = TEMPLATES.parent
    files = [p.relative_to(base).as_posix() for p in TEMPLATES.rglob("*") if p.is_file()]
    files = [f for f in files if "__pycache__" not in f]
    assert files
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
    used = {t for kind in KINDS for t, _ in FILES[kind]}
    assert {f.removeprefix("templates/") for f in files} == used  # and none is dead


@pytest.mark.parametrize("kind", KINDS)
def test_generated_package_layout_and_public_imports(kind, tmp_path):
    name = "my-thing"
    root = create(name, kind, tmp_path)
    assert root == tmp_path / "ganpipe-my-thing"
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "ganpipe-my-thing"
    major, minor = metadata.version("ganpipe").split(".")[:2]
    # this minor up to (not including) the first that may remove what the plugin uses
    assert project["project"]["dependencies"] == [f"ganpipe>={major}.{minor},<0.{int(minor) + 2}"]
    assert project["project"]["entry-points"]["ganpipe"] == {name: "ganpipe_my_thing.plugin"}
    assert project["tool"]["setuptools"]["packages"] == ["ganpipe_my_thing"]
    assert (root / "README.md").read_text().startswith("# ganpipe-my-thing\n")
    sources = sorted(root.rglob("*.py"))
    assert {p.relative_to(root).as_posix() for p in sources} == {
        "ganpipe_my_thing/__init__.py",
        "ganpipe_my_thing/plugin.py",
        f"ganpipe_my_thing/{kind}.py",
        f"tests/test_{kind}.py",
    }
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))  # valid Python, placeholders filled
        assert "$" not in path.read_text(), path
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module]
            for mod in mods:
                if mod.split(".")[0] == "ganpipe":
                    assert mod in PUBLIC, f"{path.name} imports the internal module {mod}"
    plugin = (root / "ganpipe_my_thing" / "plugin.py").read_text()
    assert "register.lazy(" in plugin and "torch" not in plugin.replace("(and torch)", "")
    tests = (root / "tests" / f"test_{kind}.py").read_text()
    assert f"check_{kind}(" in tests and "registered(" in tests


def test_generated_code_is_ruff_clean(tmp_path):
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[lint]')")
    for name in ("ab", "my-gan", "abcdefghij-klmnopqrstuvw"):  # names of 2 to 24 characters
        for kind in KINDS:
            root = create(name, kind, tmp_path / kind)
            for args in (["format", "--check", "."], ["check", "."]):
                proc = subprocess.run([ruff, *args], cwd=root, capture_output=True, text=True)
                assert proc.returncode == 0, (name, kind, proc.stdout + proc.stderr)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["My_GAN"], ["plugin name 'My_GAN' must be lower-case letters and digits"]),
        (["9lives"], ["plugin name '9lives' must be"]),
        (["a--b"], ["plugin name 'a--b' must be"]),
        (["x" * 25], ["at most 24 characters"]),
        (["ganpipe-foo"], ["leave out the 'ganpipe' prefix"]),
        (["class"], ["'class' is a Python keyword"]),
        (["dcgan"], ["variant name 'dcgan' is taken by a built-in variant"]),
        (["train", "--kind", "stage"], ["stage name 'train' is taken by a built-in stage"]),
        (["model", "--kind", "stage"], ["[model] is not a stage table"]),
        (["shapes", "--kind", "dataset"], ["dataset name 'shapes' is taken by a built-in"]),
        (["ok", "--kind", "widget"], ["Invalid value for '--kind'", "'widget' is not one of"]),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) and len(v[0]) < 20 else None,
)
def test_bad_names_are_one_line_errors_writing_nothing(cli, tmp_path, args, needles):
    proc = cli("new-plugin", *args, "-o", str(tmp_path / "out"))
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_target_is_refused_and_left_alone(cli, tmp_path):
    (tmp_path / "ganpipe-mine").mkdir()
    (tmp_path / "ganpipe-mine" / "keep.txt").write_text("mine")
    proc = cli("new-plugin", "mine", "-o", str(tmp_path))
    assert_one_line_error(proc, f"{tmp_path / 'ganpipe-mine'} already exists")
    assert [p.name for p in (tmp_path / "ganpipe-mine").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ganpipe-mine"]  # no temp left


def test_new_plugin_imports_no_torch(tmp_path):
    code = (
        "import sys\nfrom ganpipe.cli import main\n"
        "try:\n    main(['new-plugin', 'quick', '-o', sys.argv[1]], prog_name='ganpipe')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ganpipe-quick" / "pyproject.toml").is_file()


def test_new_plugin_is_listed_in_help_and_prints_next_steps(cli, tmp_path):
    proc = cli("--help")
    assert proc.returncode == 0 and "new-plugin" in proc.stdout
    proc = cli("new-plugin", "fresh", "--kind", "dataset", "-o", str(tmp_path / "a" / "b"))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {tmp_path / 'a' / 'b' / 'ganpipe-fresh'}/" in proc.stdout
    assert "python -m pytest -q" in proc.stdout
    assert (tmp_path / "a" / "b" / "ganpipe-fresh" / "ganpipe_fresh" / "dataset.py").is_file()


# -- end to end: install, its own tests, listed, a pipeline ------------------------------------


def pip(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def install(path: Path) -> None:
    """Not editable, like a wheel from PyPI; offline first, then with build isolation."""
    errors = []
    for extra in (["--no-build-isolation"], []):
        proc = pip("install", "--no-deps", *extra, str(path))
        if proc.returncode == 0:
            importlib.invalidate_caches()
            return
        errors.append((proc.stdout + proc.stderr)[-1500:])
    pytest.fail(f"pip install {path} failed:\n" + "\n".join(errors), pytrace=False)


def images(folder: Path, n: int = 8) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            path = folder / label / f"{i}.png"
            Image.fromarray(rng.integers(0, 256, (18, 20, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    return paths


def pipeline(kind: str, name: str, tmp_path: Path) -> str:
    head = '[run]\nname = "e2e"\ndevice = "cpu"\n'
    data = '[data]\ndataset = "shapes"\nimage_size = 16\ncount = 16\nclasses = 2\n'
    model = '[model]\nvariant = "dcgan"\nlatent_dim = 8\ng_width = 4\nd_width = 4\n'
    train = "[train]\nsteps = 2\nbatch_size = 4\nsample_every = 0\nprogress = false\n"
    if kind == "variant":
        model = model.replace('"dcgan"', f'"{name}"')
        return head + data + model + train + '[export]\n[generate]\ncount = 3\ndevice = "cpu"\n'
    if kind == "stage":
        return head + data + f"[{name}]\nmax_images = 10\n"
    listed = images(tmp_path / "images")
    (tmp_path / "images.txt").write_text(
        "".join(f"{p.relative_to(tmp_path).as_posix()}, {p.parent.name}\n" for p in listed)
    )
    data = f'[data]\ndataset = "{name}"\npath = "images.txt"\nimage_size = 16\n'
    return head + data + model + train


@pytest.mark.slow
# one pip at a time in this environment: under pytest-xdist a file's tests share a worker
# (``--dist loadfile``, README)
@pytest.mark.parametrize("kind", KINDS)
def test_scaffolded_plugin_installs_passes_its_tests_and_runs(kind, cli, tmp_path):
    name = NAMES[kind]
    dist = f"ganpipe-{name}"
    proc = cli("new-plugin", name, "--kind", kind, "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / dist
    install(root)
    try:
        # its own tests, unchanged, from its own folder
        env = {k: v for k, v in os.environ.items() if k != "GANPIPE_DISABLE_PLUGINS"}
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout

        # listed with its distribution, without importing its module
        proc = cli("plugins", "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert {"name": name, "distribution": f"{dist} 0.1.0"} in data["plugins"]
        row = next(r for r in data[f"{kind}s"] if r["name"] == name)
        assert row["plugin"] == name and dist in row["description"]
        proc = cli("plugins", "--check")
        assert proc.returncode == 0, proc.stderr

        # and used by a pipeline
        toml = tmp_path / "pipeline.toml"
        toml.write_text(pipeline(kind, name, tmp_path))
        proc = cli("run", str(toml))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        run_dir = tmp_path / "runs" / "e2e"
        stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
        if kind == "variant":
            assert f"2 steps of {name}" in proc.stdout
            assert len(list((run_dir / "generate").glob("sample_*.png"))) == 3
        elif kind == "stage":
            stats = json.loads((run_dir / stages[name]["outputs"]["stats"]).read_text())
            assert stats["count"] == 10 and set(stats["classes"]) == {"circle", "square"}
        else:
            assert "train" in stages and "on 8 images" in proc.stdout
    finally:
        proc = pip("uninstall", "-y", dist)
        importlib.invalidate_caches()
        assert proc.returncode == 0, proc.stderr
