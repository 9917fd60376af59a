"""`ganpipe import`: released super-resolution weights to ONNX (torch)."""

from __future__ import annotations

import click

from ganpipe.errors import ConfigError


def _list() -> None:
    """Print the architectures ``ganpipe import`` reads."""
    from ganpipe.weights.spandrel_arch import (
        INSTALL,
        RESTRICTED,
        registered,
        spandrel_version,
        status,
    )

    click.echo("built in (bit-exact, no spandrel needed):")
    click.echo("  ESRGAN / Real-ESRGAN RRDBNet  x1 x2 x4 (BasicSR and original ESRGAN layouts)")
    click.echo("  SRVGGNetCompact               realesr-general, animevideo")
    version = spandrel_version()
    if version is None:
        click.echo(f"through spandrel: not installed ({INSTALL})")
        return
    click.echo(
        f"through spandrel {version} (tested: export and parity checked in ganpipe's tests):"
    )
    for name in registered():
        click.echo(f"  {name:<30}{status(name)}")
    click.echo(
        f"not supported (restrictive licences, spandrel_extra_arches): {', '.join(RESTRICTED)}"
    )


@click.command("import")
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
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
@click.option(
    "--interpolate",
    nargs=2,
    type=click.Path(dir_okay=False),
    metavar="A B",
    default=None,
    help="Import ALPHA * A + (1 - ALPHA) * B, two weights of one net (Real-ESRGAN's denoise "
    "strength: A = realesr-general-x4v3, B = its -wdn- twin).",
)
@click.option(
    "--alpha",
    type=float,
    default=None,
    help="The share of A with --interpolate, in [0, 1] (the denoise strength).",
)
@click.option(
    "--tile",
    type=click.IntRange(min=16),
    default=None,
    metavar="N",
    help="Export at one N x N input shape (batch 1), recorded in the model card: the "
    "upscaler pads edge tiles to it and blends overlaps. Default: any size where the net "
    "allows it (checked against spandrel), else a fixed 256 px tile.",
)
@click.option(
    "--ncnn",
    is_flag=True,
    help="Also convert the model for --runtime ncnn now (pnnx, checked against ONNX "
    "Runtime; kept in the conversion cache), so that its first upscale starts at once.",
)
@click.option("--list", "list_", is_flag=True, help="List the supported architectures and exit.")
def import_(weights, out, scale, fp16, opset, interpolate, alpha, tile, ncnn, list_) -> None:
    """Convert released super-resolution WEIGHTS (.pth / .pt / .ckpt / .safetensors) to ONNX.

    \b
    Built in: RRDBNet (ESRGAN, Real-ESRGAN x4plus / x2plus) and SRVGGNetCompact
    (realesr-general, animevideo), wrapped in params_ema / params or bare. With spandrel
    (pip install 'ganpipe[spandrel]'): SwinIR, Swin2SR, HAT, DAT, SPAN, RealCUGAN, OmniSR,
    PLKSR, RCAN, DRCT, ATD, SAFMN, ... (--list). Files are read with
    torch.load(weights_only=True) or safetensors: files holding other Python objects are
    refused.
    """
    from pathlib import Path

    if list_:
        _list()
        return
    if interpolate and weights:
        raise ConfigError("give WEIGHTS or --interpolate A B, not both")
    if not interpolate and not weights:
        raise ConfigError("give WEIGHTS (a .pth / .safetensors), --interpolate A B or --list")
    if (alpha is None) != (not interpolate):
        raise ConfigError("--interpolate A B and --alpha S go together")
    if tile is not None and interpolate:
        raise ConfigError("--tile works with WEIGHTS, not with --interpolate")

    def note(msg: str) -> None:
        click.echo(msg, err=True)

    # a file that cannot be imported is a ModelFileError: exit 2, like `upscale -m`
    if interpolate:
        from ganpipe.weights.interpolate import check_alpha, import_interpolated

        a, b = map(Path, interpolate)
        alpha = check_alpha(alpha)
        dst = Path(out) if out else a.with_name(f"{a.stem}-dni{alpha:g}.onnx")
        result = import_interpolated(a, b, alpha, dst, scale=scale, fp16=fp16, opset=opset)
    else:
        from ganpipe.weights import import_weights

        dst = Path(out) if out else Path(weights).with_suffix(".onnx")
        result = import_weights(
            weights, dst, scale=scale, fp16=fp16, opset=opset, tile=tile, log=note
        )
    arch = result.arch
    sizes = ", ".join(f"{k} {v}" for k, v in arch.kwargs.items())
    half = f"; float16 max abs diff {result.fp16_max_abs_diff:.2e}" if fp16 else ""
    shape = (
        f"fixed {result.tile}x{result.tile} tile"
        if result.tile
        else f"any size, multiples of {arch.tile_multiple}"
        if arch.tile_multiple > 1
        else "any size"
    )
    click.echo(
        f"{arch.variant} x{arch.scale} ({sizes}) -> {result.path} "
        f"({result.path.stat().st_size / 2**20:.1f} MiB, {shape}, max abs diff "
        f"{result.max_abs_diff:.2e} against the reference{half})"
    )
    if ncnn:
        from ganpipe.inference.ncnn_convert import checked_session
        from ganpipe.inference.ncnn_open import ncnn_threads
        from ganpipe.inference.session import open_model

        card = open_model(result.path, "cpu", task=("super_resolve", "translate")).card
        _, worst = checked_session(
            result.path,
            card,
            vulkan=None,
            device_name="cpu",
            precision="fp32",
            threads=ncnn_threads(),
            log=note,
        )
        click.echo(f"ncnn: converted and checked, max abs diff {worst:.2e} against ONNX Runtime")
