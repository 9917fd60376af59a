"""`ganpipe generate`: images from an exported model (ONNX Runtime, no torch).

The options are :class:`~ganpipe.inference.options.GenerateOptions`' fields (flags, types,
defaults and help derived from it); only the model and the output folder are the
command's own.
"""

from __future__ import annotations

import sys

import click

from ganpipe.cli.schema import build, options_from
from ganpipe.inference.options import GenerateOptions

#: fields whose flags are not ``--field-name``
FLAGS: dict[str, tuple[str, ...]] = {
    "count": ("-n", "--count"),
    "labels": ("--label",),
    "codes": ("--code",),
}
METAVARS = {
    "labels": "K",
    "codes": "NAME=VALUE",
    "truncation": "T",
    "truncation_cutoff": "N",
    "device": "DEVICE",
    "timeout": "SECONDS",
}


@click.command()
@click.option(
    "-m",
    "--model",
    "model",
    required=True,
    metavar="MODEL.onnx",
    help="ONNX model written by the export stage.",
)
@click.option(
    "-o",
    "--out",
    "out",
    default="samples",
    show_default=True,
    metavar="DIR",
    help="Output folder (created).",
)
@options_from(GenerateOptions, flags=FLAGS, metavars=METAVARS)
def generate(model: str, out: str, **values) -> None:
    """Generate images with an exported model (ONNX Runtime only; PyTorch is not needed).

    Exit status: 0 done, 1 a generation problem (labels, codes) or images not written (a
    full disk, --timeout: listed, the others are written), 2 bad arguments (a --device not
    here too) or a model file that cannot be used (broken, or its output not what its
    card says).
    """
    from ganpipe.inference.generate import generate_to_folder

    opts = build(GenerateOptions, values, FLAGS)
    summary = generate_to_folder(model, out, opts)  # a bad -m: ModelFileError, exit 2
    for note in summary.notes:
        click.echo(f"ganpipe: warning: {note}", err=True)
    for group in summary.not_written:
        click.echo(f"ganpipe: not written: {group.line()}", err=True)
    grid = f" and {summary.grid.name}" if summary.grid else ""
    missing = f"; {summary.missing} not written" if summary.missing else ""
    click.echo(
        f"wrote {len(summary.files)} images{grid} to {summary.out_dir} "
        f"({summary.providers[0]}){missing}"
    )
    if summary.missing:
        sys.exit(1)
