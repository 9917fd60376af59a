"""Every bundled example pipeline stays valid against the installed plugins."""

from pathlib import Path

import pytest

from ganpipe.config import load_config
from ganpipe.registry import load_registry

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))


def test_examples_exist():
    assert any(p.name == "quickstart.toml" for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_loads(path):
    cfg = load_config(path, load_registry(entry_points=False))
    assert cfg.stages, path
    assert cfg.run_dir.parent == (path.parent / cfg.run.out_dir).resolve()
