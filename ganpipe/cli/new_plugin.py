"""`ganpipe new-plugin`: write a plugin package to start from (torch-free)."""

from __future__ import annotations

from pathlib import Path

import click

from ganpipe.scaffold import KINDS


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to write ganpipe-NAME/ into (created if missing).",
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="variant",
    show_default=True,
    help="What the plugin provides.",
)
def new_plugin(name: str, out_dir: Path, kind: str) -> None:
    """Write a plugin package ganpipe-NAME/ providing a variant, stage or dataset NAME.

    \b
    It has a pyproject.toml with the `ganpipe` entry point, the plugin module (which
    registers its object lazily), the object built on the public API, a README and
    tests that run ganpipe.testing against it:
    \b
      ganpipe new-plugin my-gan && cd ganpipe-my-gan
      pip install -e . && python -m pytest -q
      ganpipe plugins
    """
    from ganpipe.scaffold import FILES, create

    target = create(name, kind, out_dir)
    click.echo(f"wrote {target}/ ({len(FILES[kind])} files): a {kind} plugin named {name!r}")
    click.echo("next:")
    click.echo(f"  cd {target}")
    click.echo('  pip install -e ".[test]"')
    click.echo("  python -m pytest -q")
    click.echo(f"  ganpipe plugins            # lists {name}")
