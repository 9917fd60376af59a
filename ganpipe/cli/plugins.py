"""`ganpipe plugins`: what is installed (no torch, unless --check or show loads a variant).

* ``ganpipe plugins [--json]``: every plugin with its distribution, and the variants,
  stages and datasets they provide. A broken plugin does not hide the others: it is
  listed with its one-line problem (a warning on stderr too), and the exit status is 0.
* ``ganpipe plugins --check``: also loads every lazily declared object, checks it
  against its contract, and runs the cheap checks of each variant
  (:func:`ganpipe.testing.quick_check`: ``Options()`` defaults, ``build`` on tiny
  options, net keys, optimizer names, input kinds, one ``train_step``); each problem is
  one ``ganpipe: error:`` line on stderr, and any problem exits 1.
* ``ganpipe plugins show NAME [--json]``: the options of a variant, stage or dataset
  (:mod:`ganpipe.options_doc`: key, type, default, bounds, description), with its
  plugin, distribution, task and description.
"""

from __future__ import annotations

import difflib
import json
import sys
import textwrap
from typing import Any

import click

from ganpipe.errors import ConfigError, PluginError

#: the pipeline.toml table each kind's options go in
TABLES = {"variants": "[model]", "stages": "[{name}]", "datasets": "[data]"}


def _registries(obj: dict) -> Any:
    """The registries, broken plugins skipped (their problems kept, said by the caller).
    Plugins' code runs here: what it prints goes to stderr, so stdout stays clean."""
    from ganpipe.plugins import stdout_to_stderr
    from ganpipe.registry import load_registry

    with stdout_to_stderr():
        return load_registry(entry_points=obj["entry_points"], warn=False)


def _listing(reg: Any, problems: list[dict]) -> dict:
    from ganpipe.registry import KINDS

    data: dict = {"plugins": [], **{kind: [] for kind in KINDS}}
    for name, _plugin in reg.pm.list_name_plugin():
        data["plugins"].append({"name": name, "distribution": reg.dist(name)})
    for name, problem in sorted(reg.problems.items()):
        row = {"name": name, "distribution": reg.dist(name), "problem": str(problem)}
        data["plugins"].append(row)
    for kind in KINDS:
        registry = getattr(reg, kind)
        for item_name in registry:
            entry = registry.entries[item_name]
            row = {"name": item_name, "plugin": entry.owner, "description": entry.description}
            if kind == "variants":
                row["task"] = entry.task
            data[kind].append(row)
    data["problems"] = problems
    return data


def _problem(plugin: str, dist: str, message: str) -> dict:
    return {"plugin": plugin, "distribution": dist, "message": message}


def _check(reg: Any) -> tuple[int, list[dict]]:
    """Load and check every object; the number checked and the problems found."""
    from ganpipe.cli.main import print_debug
    from ganpipe.plugins import stdout_to_stderr
    from ganpipe.registry import KINDS

    quick = _quick_check()
    found, checked = [], 0
    for kind in KINDS:
        registry = getattr(reg, kind)
        for name in registry:
            entry = registry.entries[name]
            checked += 1
            try:
                with stdout_to_stderr():
                    obj = entry.load()
                    texts = quick(obj) if kind == "variants" else []
            except PluginError as exc:
                print_debug(exc)
                found.append(_problem(entry.owner, entry.dist, str(exc)))
                continue
            where = f"plugin {entry.owner!r} ({entry.dist})"
            for text in texts:  # a guarded variant's failure names its plugin already
                text = text.removeprefix(f"{where}: ")
                message = f"{where}: variant {name!r}: {text}"
                found.append(_problem(entry.owner, entry.dist, message))
    return checked, found


def _quick_check() -> Any:
    """:func:`ganpipe.testing.quick_check` (imports torch)."""
    from ganpipe.testing.quick import quick_check

    return quick_check


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--check",
    is_flag=True,
    help="Also import every lazily registered variant, stage and dataset, check it "
    "against its contract, and run each variant's quick checks (tiny nets, one "
    "training step; imports torch). Exit status 1 on any problem.",
)
@click.pass_context
def plugins(ctx: click.Context, as_json: bool, check: bool) -> None:
    """List installed plugins and the variants, stages and datasets they provide.

    A broken plugin is listed with its problem (and skipped by every command that does
    not need it); `--check` fails on it. `ganpipe plugins show NAME` prints the options
    of one variant, stage or dataset.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ganpipe.plugins import report_problems

    reg = _registries(ctx.obj)
    broken = [_problem(n, reg.dist(n), str(p)) for n, p in sorted(reg.problems.items())]
    checked, problems = _check(reg) if check else (0, [])
    problems = broken + problems
    data = _listing(reg, problems)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        _print_listing(data)
    if not check:
        report_problems(reg.problems.values())
        return
    from ganpipe.cli.main import print_debug

    for exc in reg.problems.values():
        print_debug(exc)
    for problem in problems:
        click.echo(f"ganpipe: error: {problem['message']}", err=True)
    if not problems:
        if not as_json:
            click.echo(f"checked {checked} objects: all conform")
        return
    if not as_json:
        click.echo(f"checked {checked} objects: {len(problems)} problem(s), listed on stderr")
    sys.exit(1)


def _print_listing(data: dict) -> None:
    from ganpipe.registry import KINDS

    click.echo("plugins:")
    for p in data["plugins"]:
        broken = f"  [broken, skipped] {p['problem']}" if "problem" in p else ""
        click.echo(f"  {p['name']:<24} {p['distribution']}{broken}")
    for kind in KINDS:
        click.echo(f"{kind}:")
        for e in data[kind]:
            task = f"[{e['task']}] " if "task" in e else ""
            click.echo(f"  {e['name']:<16} {task}{e['description']}  ({e['plugin']})")


@plugins.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show(obj: dict, name: str, as_json: bool) -> None:
    """Show the options of the variant, stage or dataset NAME: types, defaults and
    descriptions, with its plugin, distribution and task (imports a variant's module,
    torch included)."""
    from ganpipe.plugins import report_problems, stdout_to_stderr
    from ganpipe.registry import KINDS

    reg = _registries(obj)
    report_problems(reg.problems.values())
    found = []
    for kind in KINDS:
        registry = getattr(reg, kind)
        if name in registry:
            with stdout_to_stderr():
                item = registry.get(name)
            found.append(_described(reg, kind, name, item))
    if not found:
        raise _unknown(reg, name)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for i, item in enumerate(found):
        if i:
            click.echo("")
        _print_shown(item)


def _described(reg: Any, kind: str, name: str, item: Any) -> dict:
    from ganpipe.options_doc import describe_options

    entry = getattr(reg, kind).entries[name]
    out = {
        "name": name,
        "kind": kind[:-1],
        "plugin": entry.owner,
        "distribution": entry.dist,
        "description": entry.description,
        "table": TABLES[kind].format(name=name),
    }
    if kind == "variants":
        out["task"] = entry.task
    out["options"] = [o.to_dict() for o in describe_options(item.Options)]
    return out


def _print_shown(item: dict) -> None:
    task = f" [{item['task']}]" if item.get("task") else ""
    about = f": {item['description']}" if item["description"] else ""
    click.echo(f"{item['kind']} {item['name']}{task}{about}")
    click.echo(f"  plugin {item['plugin']}, distribution {item['distribution']}")
    where = f"in {item['table']} of pipeline.toml"
    if item["kind"] == "dataset":
        where += f", with dataset = {json.dumps(item['name'])}"
    if not item["options"]:
        click.echo(f"  no options ({where})")
        return
    click.echo(f"  options, {where}:")
    for o in item["options"]:
        default = "required" if o["required"] else f"= {o['default']}"
        bounds = f"  ({o['bounds']})" if o["bounds"] else ""
        click.echo(f"    {o['name']}: {o['type']} {default}{bounds}")
        if o["description"]:
            click.echo(
                textwrap.fill(
                    o["description"], 88, initial_indent=" " * 8, subsequent_indent=" " * 8
                )
            )


def _unknown(reg: Any, name: str) -> Exception:
    from ganpipe.registry import KINDS

    known = sorted({n for kind in KINDS for n in getattr(reg, kind)})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if reg.problems:
        broken = "; and ".join(map(str, reg.problems.values()))
        return PluginError(
            f"no variant, stage or dataset named {name!r}{hint} (it may come from a broken "
            f"plugin, skipped: {broken})"
        )
    return ConfigError(
        f"no variant, stage or dataset named {name!r}{hint} (`ganpipe plugins` lists them)"
    )
