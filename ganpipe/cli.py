"""The ``ganpipe`` command. Thin: parse, call the library, print.

Heavy modules (torch, onnxruntime) are imported inside the commands that need them, so
``ganpipe --help`` starts fast, and ``generate`` never imports torch.
"""

from __future__ import annotations

import json
import sys

import click

from ganpipe import __version__
from ganpipe.errors import GanpipeError


def _fail(exc: GanpipeError) -> None:
    click.echo(f"ganpipe: error: {exc}", err=True)
    sys.exit(exc.exit_code)


class _Group(click.Group):
    """Turns user errors (GanpipeError, bad arguments) into one line on stderr and a
    non-zero exit."""

    def main(self, args=None, prog_name=None, **extra):
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("ganpipe: aborted", err=True)
            sys.exit(1)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `ganpipe`: show the help
                click.echo(exc.format_message())
                sys.exit(0)
            cmd = exc.ctx.command_path if exc.ctx else "ganpipe"
            click.echo(
                f"ganpipe: error: {exc.format_message().rstrip('.')}; see '{cmd} --help'", err=True
            )
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"ganpipe: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GanpipeError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo(
                "ganpipe: interrupted; finished outputs and checkpoints are kept, "
                "run the same command again to resume",
                err=True,
            )
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ganpipe")
@click.option(
    "--no-plugins",
    is_flag=True,
    help="Skip third-party plugins (entry points); built-ins still load.",
)
@click.pass_context
def main(ctx: click.Context, no_plugins: bool) -> None:
    """Train GAN variants on image folders, export them to ONNX, generate and upscale.

    \b
    ganpipe run pipeline.toml          run the stages of a pipeline
    ganpipe generate -m model.onnx     images from an exported model
    ganpipe upscale -i IN -o OUT -m M  batch super-resolution of images
    ganpipe import weights.pth -o M    Real-ESRGAN-style weights to ONNX
    ganpipe plugins                    installed variants, stages, datasets
    """
    ctx.obj = {"entry_points": not no_plugins}


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Redo every stage, even those up to date.")
@click.option("--from", "from_stage", metavar="STAGE", help="Redo STAGE and the stages after.")
@click.pass_obj
def run(obj, pipeline: str, force: bool, from_stage: str | None) -> None:
    """Run the stages of PIPELINE (a pipeline.toml) in order.

    Outputs go to <out_dir>/<name>/ (default runs/<name>); stages already done with the
    same configuration and inputs are skipped.
    """
    from ganpipe.pipeline import run_file

    run_file(
        pipeline,
        force=force,
        from_stage=from_stage,
        entry_points=obj["entry_points"],
        log=lambda m: click.echo(m),
    )


@main.command()
@click.option(
    "-m",
    "--model",
    "model",
    required=True,
    metavar="MODEL.onnx",
    help="ONNX model written by the export stage.",
)
@click.option(
    "-n",
    "--count",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Number of images.",
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
@click.option("--seed", default=0, show_default=True, type=int, help="Noise seed.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="K",
    help="Class index or name (repeat or comma-separate; 'all' for every class).",
)
@click.option(
    "--code",
    "codes",
    multiple=True,
    metavar="NAME=VALUE",
    help="Fix a latent code of an InfoGAN model (repeatable): a class index for "
    "a categorical code (c_cat=3), floats for a continuous one "
    "(c_cont=0.5,-1, or c_cont=0.5 for every dimension).",
)
@click.option(
    "--truncation",
    type=click.FloatRange(min=0, min_open=True),
    metavar="T",
    help="Truncation trick: redraw noise values beyond +-T (e.g. 0.5: less "
    "variety, cleaner images).",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or tensorrt."
)
@click.option("--no-grid", is_flag=True, help="Do not write grid.png.")
def generate(
    model, count, out, seed, labels, codes, truncation, batch_size, device, no_grid
) -> None:
    """Generate images with an exported model (ONNX Runtime; no torch needed)."""
    from ganpipe.inference.generate import generate_to_folder

    chosen: list[str] | str | None = None
    flat = [p.strip() for item in labels for p in item.split(",") if p.strip()]
    if flat:
        chosen = "all" if flat == ["all"] else flat
    fixed: dict[str, str] = {}
    for item in codes:
        name, sep, value = (p.strip() for p in item.partition("="))
        if not sep or not name or not value:
            raise GanpipeError(
                f"--code {item!r}: use NAME=VALUE, e.g. --code c_cat=3 or --code c_cont=0.5,-1"
            )
        if name in fixed:
            raise GanpipeError(f"--code {name} is given twice; give each code once")
        fixed[name] = value
    summary = generate_to_folder(
        model,
        out,
        count,
        seed=seed,
        labels=chosen,
        batch_size=batch_size,
        device=device,
        grid=not no_grid,
        codes=fixed or None,
        truncation=truncation,
    )
    grid = f" and {summary.grid.name}" if summary.grid else ""
    click.echo(
        f"wrote {len(summary.files)} images{grid} to {summary.out_dir} ({summary.providers[0]})"
    )


@main.command()
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


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(obj, as_json: bool) -> None:
    """List installed plugins and the variants, stages and datasets they provide."""
    from ganpipe.plugins import load_registry

    reg = load_registry(entry_points=obj["entry_points"])
    dists = getattr(reg.pm, "ganpipe_dists", {})
    data: dict = {"plugins": [], "variants": [], "stages": [], "datasets": []}
    for name, _plugin in reg.pm.list_name_plugin():
        data["plugins"].append(
            {"name": name, "distribution": dists.get(name, "ganpipe (built-in)")}
        )
    for kind, registry in (
        ("variants", reg.variants),
        ("stages", reg.stages),
        ("datasets", reg.datasets),
    ):
        for item_name in registry:
            obj_ = registry.items[item_name]
            entry = {
                "name": item_name,
                "plugin": registry.owners[item_name],
                "description": getattr(obj_, "description", ""),
            }
            if kind == "variants":
                entry["task"] = obj_.task
            data[kind].append(entry)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo("plugins:")
    for p in data["plugins"]:
        click.echo(f"  {p['name']:<24} {p['distribution']}")
    for kind in ("variants", "stages", "datasets"):
        click.echo(f"{kind}:")
        for e in data[kind]:
            task = f"[{e['task']}] " if "task" in e else ""
            click.echo(f"  {e['name']:<16} {task}{e['description']}  ({e['plugin']})")


@main.command("import")
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    "out",
    metavar="MODEL.onnx",
    help="ONNX file to write (default: WEIGHTS with the suffix .onnx).",
)
@click.option(
    "--scale",
    type=click.IntRange(min=1),
    default=None,
    help="Expected scale; an error if the weights are another (default: detected).",
)
@click.option(
    "--fp16",
    is_flag=True,
    help="Float16 weights and activations (about half the size; inputs and outputs stay float32).",
)
@click.option("--opset", default=18, show_default=True, type=click.IntRange(17, 23))
def import_(weights, out, scale, fp16, opset) -> None:
    """Convert released super-resolution WEIGHTS (.pth / .safetensors) to ONNX.

    \b
    Recognised: RRDBNet (ESRGAN, Real-ESRGAN x4plus / x2plus) and SRVGGNetCompact
    (realesr-general, animevideo), wrapped in params_ema / params or bare. .pth files are
    read with torch.load(weights_only=True): files holding other Python objects are refused.
    """
    from pathlib import Path

    from ganpipe.weights import import_weights

    dst = Path(out) if out else Path(weights).with_suffix(".onnx")
    result = import_weights(weights, dst, scale=scale, fp16=fp16, opset=opset)
    arch = result.arch
    sizes = ", ".join(f"{k} {v}" for k, v in arch.kwargs.items())
    half = f"; float16 max abs diff {result.fp16_max_abs_diff:.2e}" if fp16 else ""
    click.echo(
        f"{arch.variant} x{arch.scale} ({sizes}) -> {result.path} "
        f"({result.path.stat().st_size / 2**20:.1f} MiB, ONNX vs torch max abs diff "
        f"{result.max_abs_diff:.2e}{half})"
    )


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="ganpipe")
