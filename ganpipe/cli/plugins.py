"""`ganpipe plugins`: what is installed (no torch, unless --check loads everything)."""

from __future__ import annotations

import json
from typing import Any

import click


def _gather(entry_points: bool, check: bool) -> tuple[Any, dict]:
    """The registries and the listing of what they hold (``check``: every lazily
    registered object loaded and checked too)."""
    from ganpipe.registry import KINDS, load_registry

    reg = load_registry(entry_points=entry_points)
    if check:
        reg.load_all()
    data: dict = {"plugins": [], **{kind: [] for kind in KINDS}}
    for name, _plugin in reg.pm.list_name_plugin():
        data["plugins"].append({"name": name, "distribution": reg.dist(name)})
    for kind in KINDS:
        registry = getattr(reg, kind)
        for item_name in registry:
            entry = registry.entries[item_name]
            row = {"name": item_name, "plugin": entry.owner, "description": entry.description}
            if kind == "variants":
                row["task"] = entry.task
            data[kind].append(row)
    return reg, data


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--check",
    is_flag=True,
    help="Also import every lazily registered variant, stage and dataset and check it "
    "against its contract (imports the plugins' modules, torch included).",
)
@click.pass_obj
def plugins(obj, as_json: bool, check: bool) -> None:
    """List installed plugins and the variants, stages and datasets they provide."""
    from ganpipe.plugins import stdout_to_stderr
    from ganpipe.registry import KINDS

    # plugins' code runs while the registry is built (imports, hooks, --check's lazy
    # imports): whatever it prints goes to stderr, so --json's stdout stays JSON
    with stdout_to_stderr():
        reg, data = _gather(obj["entry_points"], check)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo("plugins:")
    for p in data["plugins"]:
        click.echo(f"  {p['name']:<24} {p['distribution']}")
    for kind in KINDS:
        click.echo(f"{kind}:")
        for e in data[kind]:
            task = f"[{e['task']}] " if "task" in e else ""
            click.echo(f"  {e['name']:<16} {task}{e['description']}  ({e['plugin']})")
    if check:
        click.echo(f"checked {sum(len(getattr(reg, k)) for k in KINDS)} objects: all conform")
