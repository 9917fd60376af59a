"""`ganpipe upscale`: batch super-resolution of images (ONNX Runtime, no torch)."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option(
    "-i",
    "--input",
    "input_",
    required=True,
    metavar="PATH",
    help="Image file, or folder of images (formats detected by content).",
)
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    metavar="DIR",
    help="Output folder (created; not inside the input folder), or an output "
    "file name when -i is a file.",
)
@click.option(
    "-m",
    "--model",
    "model",
    required=True,
    multiple=True,
    metavar="MODEL",
    help="Super-resolution model (task super_resolve), e.g. from the export "
    "stage; or released weights (.pth / .safetensors), converted to ONNX once "
    "and cached. Repeat for an ensemble (outputs averaged).",
)
@click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or tensorrt."
)
@click.option(
    "--tile",
    default=512,
    show_default=True,
    type=click.IntRange(min=0),
    help="Tile grid in input pixels (each tile also reads the overlap with its "
    "neighbours); 0 = whole image at once.",
)
@click.option(
    "--tile-overlap",
    "overlap",
    default=32,
    show_default=True,
    type=click.IntRange(min=0),
    help="Overlap of neighbouring tiles, blended.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "jpg", "webp", "tiff"]),
    help="Output format [default: the input's; BMP/GIF become PNG].",
)
@click.option("--suffix", default="", metavar="TEXT", help="Added to output names, e.g. _x4.")
@click.option("-r", "--recursive", is_flag=True, help="Include sub-folders; keeps the tree.")
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Skip files whose output exists (resume an interrupted batch).",
)
@click.option(
    "--shard",
    metavar="I/N",
    help="Only the files with index % N == I in the sorted list (N workers).",
)
@click.option(
    "--quality",
    default=95,
    show_default=True,
    type=click.IntRange(1, 100),
    help="JPEG/WebP quality.",
)
@click.option(
    "--png-compression",
    default=4,
    show_default=True,
    type=click.IntRange(0, 9),
    help="zlib level of PNG outputs: 0 none, 1 fastest, 9 smallest.",
)
@click.option(
    "--tta",
    is_flag=True,
    help="Self-ensemble: average over the 8 flips/rotations (8x slower, usually a little cleaner).",
)
@click.option(
    "--alpha",
    "alpha",
    default="model",
    show_default=True,
    type=click.Choice(["model", "bicubic"]),
    help="How the alpha channel is enlarged.",
)
@click.option(
    "--workers",
    default=0,
    type=click.IntRange(min=0),
    help="Decode and encode threads each [default: min(4, CPUs)].",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar [default: when stderr is a terminal].",
)
def upscale(
    input_,
    out,
    model,
    device,
    tile,
    overlap,
    fmt,
    suffix,
    recursive,
    skip_existing,
    shard,
    quality,
    png_compression,
    tta,
    alpha,
    workers,
    progress,
) -> None:
    """Upscale images with a super-resolution model, or translate them with a CycleGAN
    model (ONNX Runtime; no torch needed).

    Exit status: 0 all done (or skipped), 1 some files failed (listed at the end; the
    others are written), 2 bad arguments, input or model.
    """
    import warnings

    from PIL import Image

    from ganpipe.inference.upscale import upscale_path

    # Images over Pillow's limit are reported as failed; the warning would be noise.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    summary = upscale_path(
        input_,
        out,
        list(model),
        device=device,
        tile=tile,
        overlap=overlap,
        format=fmt,
        suffix=suffix,
        recursive=recursive,
        skip_existing=skip_existing,
        shard=shard,
        quality=quality,
        png_compression=png_compression,
        tta=tta,
        alpha=alpha,
        workers=workers or None,
        progress=progress,
        log=lambda m: click.echo(f"ganpipe: {m}", err=True),
    )
    for path, reason in summary.failures:
        click.echo(f"ganpipe: failed: {path}: {reason}", err=True)
    click.echo(summary.line())
    if summary.failures:
        sys.exit(1)
