"""docs/options.md, the options of every built-in variant, stage and dataset, is generated
from the options models (tools/gen_options_doc.py, the same source as ``ganpipe plugins
show``) and cannot go stale."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import gen_options_doc  # noqa: E402

from ganpipe.options_doc import describe_options  # noqa: E402
from ganpipe.registry import KINDS, load_registry  # noqa: E402


def test_options_page_is_what_the_generator_writes():
    page = gen_options_doc.PAGE.read_text(encoding="utf-8")
    assert gen_options_doc.render() == page, (
        "docs/options.md is out of date with the options of the built-ins; run "
        "`python tools/gen_options_doc.py --write` and review the diff"
    )


def test_every_builtin_and_each_of_its_options_is_on_the_page():
    """Each built-in variant, stage and dataset has its section, each option its row,
    with the type and default ``describe_options`` gives (what plugins show prints)."""
    page = gen_options_doc.PAGE.read_text(encoding="utf-8")
    sections = page.split("\n### ")
    reg = load_registry(entry_points=False)
    for kind in KINDS:
        for name in getattr(reg, kind):
            (section,) = [s for s in sections if s.startswith(f"`{name}`")]
            options = getattr(reg, kind).entries[name].load().Options
            for row in describe_options(options):
                cell = f"| `{row.name}` | `{gen_options_doc._cell(row.type)}`"
                assert cell in section, f"{kind} {name}: option {row.name} missing"
