"""The plugin author's page (docs/plugins.md) and ARCHITECTURE.md follow the code."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

import ganpipe
from ganpipe import hookspecs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import plugin_docs  # noqa: E402

PAGE = ROOT / "docs" / "plugins.md"


def test_reference_section_matches_the_docstrings():
    page = PAGE.read_text(encoding="utf-8")
    assert plugin_docs.render(page) == page, (
        "docs/plugins.md is out of date with the public API; run "
        "`python tools/plugin_docs.py --write` and review the diff"
    )


def test_every_public_name_is_documented_in_the_reference():
    page = PAGE.read_text(encoding="utf-8")
    for modname in plugin_docs.MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            if not name.startswith("__"):
                assert f"`{modname}.{name}" in page, f"{modname}.{name} is not in {PAGE.name}"


def test_public_names_resolve_and_import_no_torch():
    import subprocess

    code = (
        "import sys, ganpipe\n"
        "[getattr(ganpipe, n) for n in ganpipe.__all__]\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "the public API (ganpipe.*) must not import torch"


def test_every_hook_is_on_the_page():
    import inspect

    page = PAGE.read_text(encoding="utf-8")
    hooks = [n for n in dir(hookspecs) if n.startswith("ganpipe_")]
    assert hooks
    for hook in hooks:
        args = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
        assert f"`{hook}({args})`" in page, f"hook {hook} is not documented in {PAGE.name}"


@pytest.mark.parametrize("path", ["docs/plugins.md", "ARCHITECTURE.md", "README.md"])
def test_names_quoted_in_the_docs_exist(path):
    """Every `ganpipe.X` (and `ganpipe.nn.X`, `ganpipe.testing.X`) a page quotes exists."""
    text = (ROOT / path).read_text(encoding="utf-8")
    for modname, attr in set(re.findall(r"`(ganpipe(?:\.nn|\.testing)?)\.([A-Z]\w+)", text)):
        module = importlib.import_module(modname)
        assert hasattr(module, attr), f"{path} names {modname}.{attr}, which does not exist"
    assert ganpipe.__version__
