"""`ganpipe upscale`: batch super-resolution of images (ONNX Runtime, no torch).

Its options are derived from :class:`ganpipe.upscale.options.UpscaleOptions` (types,
bounds, defaults and help are stated there once); only ``-i``, ``-o`` and ``--progress``
are the command's own.
"""

from __future__ import annotations

import sys

import click

from ganpipe.cli.schema import build, options_from
from ganpipe.upscale.options import UpscaleOptions

#: flags that are not the field name with dashes
FLAGS = {
    "model": ("-m", "--model"),
    "overlap": ("--tile-overlap",),
    "recursive": ("-r", "--recursive"),
    "verbose": ("-v", "--verbose"),
}
HELP = {
    "model": "Super-resolution model (task super_resolve), e.g. from the export stage; or "
    "released weights (.pth / .safetensors), converted to ONNX once and cached. Repeat for "
    "an ensemble (outputs averaged). Required.",
}


@click.command()
@click.option(
    "-i",
    "--input",
    "input_",
    required=True,
    metavar="PATH",
    help="Image or video file, or folder of images and videos (formats detected by content).",
)
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    metavar="DIR",
    help="Output folder (created; not inside the input folder), or an output "
    "file name when -i is a file (a video keeps its container: clip.mp4 -> OUT/clip.mp4).",
)
@options_from(
    UpscaleOptions,
    flags=FLAGS,
    help=HELP,
    metavars={"model": "MODEL", "shard": "I/N", "report": "FILE", "frames": "DIR"},
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar [default: when stderr is a terminal].",
)
def upscale(input_: str, out: str, progress: bool | None, **values) -> None:
    """Upscale images with a super-resolution model, or translate them with a CycleGAN
    model (ONNX Runtime; no torch needed).

    Exit status: 0 all done (or skipped), 1 some files failed (listed at the end; the
    others are written) or the report could not be written, 2 bad arguments, input or
    model. Names that are not UTF-8 are printed with \\xNN escapes.
    """
    from ganpipe.fsutil import shown
    from ganpipe.imaging.capture import quiet_decoder_warnings
    from ganpipe.upscale.batch import upscale_path

    opts = build(UpscaleOptions, values, FLAGS)
    # What decoders and libraries say about a file is captured for it: counted in the
    # summary, printed with --verbose, never raw.
    quiet_decoder_warnings()
    summary = upscale_path(
        input_,
        out,
        options=opts,
        progress=progress,
        log=lambda m: click.echo(f"ganpipe: {shown(m)}", err=True),
    )
    if opts.verbose:
        for path, note in summary.warnings:
            click.echo(f"ganpipe: warning: {shown(path)}: {shown(note)}", err=True)
    for path, reason in summary.failures:
        click.echo(f"ganpipe: failed: {shown(path)}: {shown(reason)}", err=True)
    if summary.report is not None:
        click.echo(
            f"ganpipe: report: {shown(summary.report)} ({len(summary.records)} records)", err=True
        )
    click.echo(shown(summary.line()))
    if not summary.ok:
        sys.exit(1)
