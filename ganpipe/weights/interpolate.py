"""Denoise strength: Real-ESRGAN's network interpolation (``dni``) of two weight files of one
architecture, ``S * a + (1 - S) * b`` tensor by tensor (``realesr-general-x4v3`` as ``a``
and its ``-wdn-`` twin as ``b``: S = 1 keeps all of ``a``'s denoising, S = 0 none).

Any architecture that :func:`ganpipe.weights.convert.model_from_state` loads works: the two
files are read safely, brought to one layout (BasicSR's, for Real-ESRGAN's), checked to be
the same net (same architecture, scale, keys and shapes), mixed, and the mix is loaded and
exported like a single file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganpipe.errors import ConfigError, ModelFileError
from ganpipe.weights.convert import AnyArch, ImportResult, export_net, model_from_state
from ganpipe.weights.detect import is_realesrgan, to_basicsr_layout
from ganpipe.weights.read import read_state_dict


def check_alpha(alpha: float, what: str = "--alpha") -> float:
    """``alpha`` as a float in [0, 1], else a one-line :class:`ConfigError`."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(
            f"{what} {alpha:g} is outside [0, 1]; 1 keeps the first weights, 0 the second"
        )
    return float(alpha)


def mix_states(
    a: dict[str, torch.Tensor],
    b: dict[str, torch.Tensor],
    alpha: float,
    names: tuple[str, str] = ("a", "b"),
) -> dict[str, torch.Tensor]:
    """``alpha * a + (1 - alpha) * b`` for every floating-point tensor (computed in float32
    or wider, stored in ``a``'s dtype); other tensors (counters, indices) must be equal
    and are kept. A one-line :class:`ModelFileError` when the keys or shapes differ."""
    alpha = check_alpha(alpha)
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise ModelFileError(
            f"{names[0]} and {names[1]} are not the same net: {len(only)} tensor(s) in only "
            f"one of them ({', '.join(only[:3])}); interpolate two weights of one architecture"
        )
    out = {}
    for key, ta in a.items():
        tb = b[key]
        if ta.shape != tb.shape:
            raise ModelFileError(
                f"{names[0]} and {names[1]} differ in size at {key} ({tuple(ta.shape)} vs "
                f"{tuple(tb.shape)}); interpolate two weights of one architecture and size"
            )
        if ta.is_floating_point() and tb.is_floating_point():
            wide = torch.promote_types(ta.dtype, torch.float32)
            mixed = alpha * ta.to(wide) + (1.0 - alpha) * tb.to(wide)
            out[key] = mixed.to(ta.dtype)
        elif torch.equal(ta, tb):
            out[key] = ta
        else:
            raise ModelFileError(
                f"{names[0]} and {names[1]} differ in the non-float tensor {key}; they are "
                f"not two trainings of one net"
            )
    return out


def _layout(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``state`` in BasicSR's layout when it is a Real-ESRGAN net, else as it is."""
    try:
        basicsr = to_basicsr_layout(state, path)
    except ModelFileError:
        return state
    return basicsr if is_realesrgan(basicsr) else state


def load_interpolated(
    a: str | Path, b: str | Path, alpha: float, scale: int | None = None
) -> tuple[torch.nn.Module, AnyArch, str]:
    """The net of ``alpha * a + (1 - alpha) * b`` (two weight files), its architecture
    and a description of the mix (``"a.pth*0.7+b.pth*0.3"``, the model card's source)."""
    a, b = Path(a), Path(b)
    alpha = check_alpha(alpha)
    _, arch_a = model_from_state(sa := _layout(read_state_dict(a), a), a, scale)
    _, arch_b = model_from_state(sb := _layout(read_state_dict(b), b), b, scale)
    if (arch_a.variant, arch_a.scale) != (arch_b.variant, arch_b.scale):
        raise ModelFileError(
            f"{a.name} is {arch_a.variant} x{arch_a.scale}, {b.name} is {arch_b.variant} "
            f"x{arch_b.scale}; interpolate two weights of one architecture and scale"
        )
    source = f"{a.name}*{alpha:g}+{b.name}*{1 - alpha:g}"
    mixed = mix_states(sa, sb, alpha, (a.name, b.name))
    net, arch = model_from_state(mixed, source, scale)
    return net, arch, source


def import_interpolated(
    a: str | Path,
    b: str | Path,
    alpha: float,
    dst: str | Path,
    *,
    scale: int | None = None,
    fp16: bool = False,
    opset: int = 18,
    atol: float = 1e-3,
) -> ImportResult:
    """:func:`~ganpipe.weights.convert.import_weights` for the interpolation of ``a`` and
    ``b``: ``alpha * a + (1 - alpha) * b``, exported to ``dst`` and parity-checked."""
    net, arch, source = load_interpolated(a, b, alpha, scale)
    return export_net(net, arch, dst, source, fp16=fp16, opset=opset, atol=atol)
