"""`ganpipe import`: released super-resolution weights to ONNX (torch)."""

from __future__ import annotations

import click


@click.command("import")
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
