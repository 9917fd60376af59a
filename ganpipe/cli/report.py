"""`ganpipe report`: write RUN_DIR/report.html, one self-contained page about a run."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=str))
@click.pass_obj
def report(obj: dict | None, run_dir: str) -> None:
    """Write RUN_DIR/report.html: stages, samples across training, curves, scores, the
    model card and the pipeline.toml of a run, in one self-contained HTML file."""
    from ganpipe.report import write_report

    # --no-plugins: no third-party sections either
    path = write_report(run_dir, entry_points=(obj or {}).get("entry_points", True))
    click.echo(f"report: {path}")
