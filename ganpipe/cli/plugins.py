"""`ganpipe plugins`: what is installed (no torch, unless --check loads everything)."""

from __future__ import annotations

import json

import click


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
    from ganpipe.registry import KINDS, load_registry

    reg = load_registry(entry_points=obj["entry_points"])
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
