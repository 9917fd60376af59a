"""`ganpipe run`: the stages of a pipeline.toml."""

from __future__ import annotations

import click


@click.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Redo every stage, even those up to date.")
@click.option("--from", "from_stage", metavar="STAGE", help="Redo STAGE and the stages after.")
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress bars (the stage summary lines stay)."
)
@click.pass_obj
def run(obj, pipeline: str, force: bool, from_stage: str | None, quiet: bool) -> None:
    """Run the stages of PIPELINE (a pipeline.toml) in order.

    Outputs go to <out_dir>/<name>/ (default runs/<name>); stages already done with the
    same configuration and inputs are skipped.
    """
    from ganpipe import cpus

    # before torch loads: OpenMP threads sleep at barriers when others keep the CPUs busy
    cpus.spin_less_when_busy()
    from ganpipe import progress, signals
    from ganpipe.pipeline import run_file
    from ganpipe.training.launch import from_env

    if quiet:
        progress.set_quiet()

    try:
        run_file(
            pipeline,
            force=force,
            from_stage=from_stage,
            entry_points=obj["entry_points"],
            log=lambda m: click.echo(m),
        )
    except signals.Interrupted as exc:
        launched = from_env()
        if launched is not None and not launched.main:  # torchrun: process 0 says it
            raise SystemExit(exc.exit_code) from None
        raise
