"""`ganpipe generate`: images from an exported model (ONNX Runtime, no torch)."""

from __future__ import annotations

import click

from ganpipe.errors import GanpipeError


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
