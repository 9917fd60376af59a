"""``ganpipe zip-info ARCHIVE``: what the ``zip`` dataset source would read from an
archive (classes, image counts, members skipped and why), from its central directory
only, before a pipeline trains on it. Declared to ``ganpipe`` by the plugin's
``ganpipe_register_commands`` hook (``cli.lazy``): this module is imported only when the
command runs, and numpy, Pillow and json only inside it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="zip-info")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--recursive/--no-recursive",
    default=True,
    show_default=True,
    help="Also images in sub-folders of class folders (as data.recursive).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def zip_info(archive: Path, recursive: bool, as_json: bool) -> None:
    """What dataset = "zip" would read from ARCHIVE: classes, images, skipped members."""
    import json

    from ganpipe_zip.source import ZipOptions
    from ganpipe_zip.summary import summarize

    summary = summarize(archive, ZipOptions(path=archive, recursive=recursive))
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
        return
    click.echo(summary.line())
    width = max((len(c) for c in summary.classes), default=0)
    for name, count in summary.classes.items():
        click.echo(f"  {name:<{width}}  {count}")
    if summary.skipped:
        click.echo("skipped:")
        for member, reason in summary.skipped:
            click.echo(f"  {member}: {reason}")
