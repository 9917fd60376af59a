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


def test_every_builtin_option_is_described():
    """What users read: no built-in option without a description (a subclass that only
    changes a default inherits the description of the field it overrides)."""
    from ganpipe.config import DataSection, RunSection

    reg = load_registry(entry_points=False)
    models = [RunSection, DataSection]
    models += [getattr(reg, k).entries[n].load().Options for k in KINDS for n in getattr(reg, k)]
    bare = [
        f"{m.__name__}.{r.name}" for m in models for r in describe_options(m) if not r.description
    ]
    assert bare == [], f"give these options a Field(description=...): {bare}"


def test_an_option_redeclared_in_a_subclass_keeps_its_description():
    from pydantic import Field

    from ganpipe import GANOptions

    class Faster(GANOptions):
        lr_g: float = Field(1e-3, gt=0)  # only the default changes
        lr_d: float = Field(1e-3, gt=0, description="its own words")

    fields = Faster.model_fields
    assert fields["lr_g"].description == GANOptions.model_fields["lr_g"].description != ""
    assert fields["lr_d"].description == "its own words"
    assert Faster().lr_g == 1e-3 and Faster.model_json_schema()["properties"]["lr_g"]["description"]
