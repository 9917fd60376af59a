"""The import's verdict on a spandrel net: the exported ``.onnx``, run the way ganpipe runs
it (:class:`~ganpipe.upscale.model.SRModel`: padded to the card's multiple and minimum
side, or fed its one fixed tile), against spandrel's own ``ImageModelDescriptor`` on a
fresh copy of the same input (RCAN, among others, scales its input in place).

The sizes (:func:`check_sizes`) are ones the capture never saw: two multiples of the
window, the 64 x 64 patch most released models were trained at (SwinIR and HAT keep an
attention mask for exactly that size and compute it for any other), and an odd size that
is no multiple of anything, which both sides pad. A fixed-tile export is judged at its
tile (twice); a smaller image, padded up to the tile, is compared too and its difference
reported (``Parity.padded``), since a net that sees the whole image (SAFMN, transformers)
computes something else on a padded one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganpipe.errors import ModelFileError, one_line
from ganpipe.weights.spandrel_arch import SpandrelArch

#: architectures whose reference rounds features inside the net (RealCUGAN stores them as
#: 8-bit in upcunet_v3), so that one-ulp float differences between any two runtimes flip
#: roundings and spread small differences over many pixels (measured: mean 2e-4 to 3e-4,
#: max 0.003 at 33x35 and 64x64 with random weights): judged on the mean absolute
#: difference, the maximum held to the given bound (one 8-bit quantum)
QUANTIZED = {"RealCUGAN": 1 / 255}


def _diff(got: np.ndarray, expected: np.ndarray, arch: str) -> float:
    """The difference the verdict is on (see :data:`QUANTIZED`); inf when a quantized
    net's maximum exceeds its quanta."""
    d = np.abs(got - expected)
    if arch not in QUANTIZED:
        return float(d.max())
    return float(d.mean()) if d.max() <= QUANTIZED[arch] else float("inf")


def _up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def check_sizes(
    arch: SpandrelArch, minimum: int = 0, tile: int | None = None
) -> list[tuple[int, int]]:
    """Heights and widths to compare at (none the trace's; see the module docstring);
    ``minimum``: the smallest side the export takes (its card's ``min_size``)."""
    if tile:  # exact at the tile; a smaller odd image is padded up to it (said, not judged)
        small = max(16, tile // 2) | 1
        return [(tile, tile), (tile, tile), (small, small + 2)]
    m = arch.multiple
    base = max(arch.minimum, minimum, 16, 2 * m)
    odd = base + 5 if (base + 5) % 2 else base + 6
    while m > 1 and odd % m == 0:
        odd += 2
    return [
        (_up(base + 14, m), _up(base + 1, m)),
        (_up(2 * base + 5, m), _up(base, m)),
        (_up(64, m), _up(64, m)),
        (odd, odd + 4),
    ]


@dataclass
class Parity:
    """Max abs differences against spandrel: ``native`` at the sizes the graph takes as
    they are (multiples of its tile multiple, or its fixed tile), ``padded`` at the odd
    size that the upscaler pads (reflect) to a multiple first: nets that pad inside
    themselves the same way (SwinIR, HAT) agree there too; DAT, RGT and CRAFT pad each
    attention block with zeros instead, so their last rows and columns differ."""

    native: float
    padded: float


def spandrel_parity(
    path: Path, arch: SpandrelArch, source: str = "weights", seed: int = 11
) -> Parity:
    """:class:`Parity` of the exported ``path`` against spandrel at :func:`check_sizes`;
    a one-line :class:`ModelFileError` when the export fails on one or gives another
    shape."""
    from ganpipe.upscale.model import open_sr_model

    model = open_sr_model(path, "cpu")
    fixed = model.fixed_tile
    static = [d for d in model.session.get_inputs()[0].shape[2:] if isinstance(d, int)]
    if static and not fixed:  # the exporter fixed a side the card does not know of
        raise ModelFileError(
            f"{source}: {arch.name} models cannot be exported to ONNX with a dynamic height "
            f"and width (the export fixed the input to {'x'.join(map(str, static))} pixels); "
            f"import with --tile N"
        )
    g, worst = torch.Generator().manual_seed(seed), Parity(0.0, 0.0)
    m = model.multiple
    for h, w in check_sizes(arch, model.minimum, fixed):
        x = torch.rand(1, arch.channels, h, w, generator=g)
        with torch.no_grad():
            expected = arch.descriptor(x.clone()).float().numpy()
        try:
            got = model(x.numpy())
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors are many
            raise ModelFileError(
                f"{source}: the {arch.name} ONNX export fails on a {h}x{w} input "
                f"({one_line(exc).split(' : ')[-1]}); it cannot take any height and width"
            ) from None
        if got.shape != expected.shape:
            raise ModelFileError(
                f"{source}: the {arch.name} ONNX export gives {got.shape} for a {h}x{w} "
                f"input, spandrel {expected.shape}; this architecture cannot be exported"
            )
        diff = _diff(got, expected, arch.name)
        padded = (h, w) != (fixed, fixed) if fixed else bool(h % m or w % m)
        if padded:
            worst.padded = max(worst.padded, diff)
        else:
            worst.native = max(worst.native, diff)
    return worst
