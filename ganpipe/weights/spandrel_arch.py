"""Every other architecture through spandrel (the loader chaiNNer and ComfyUI use): SPAN,
SwinIR, HAT, DAT, OmniSR, RealCUGAN, PLKSR, RCAN, ... detected from the state dict that
:mod:`ganpipe.weights.read` read safely. spandrel never opens a file here: its own
``load_from_file`` unpickles with a custom unpickler, not ``weights_only=True``, and runs
``torch.jit.load`` on ``.pt`` files.

spandrel is optional (``pip install 'ganpipe[spandrel]'``, which brings torchvision: spandrel
imports it when imported, for two of its architectures); the Real-ESRGAN layouts never
need it. The export (:class:`SpandrelExport`) runs the net as spandrel's
``ImageModelDescriptor`` does and clamps to [0, 1]; it pads to the size multiple inside the
graph too, so the ``.onnx`` takes any height and width. The multiple is the model card's
``tile_multiple`` and the minimum side its ``min_size``: the upscaler pads to both.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganpipe.errors import ModelFileError, one_line

INSTALL = "pip install 'ganpipe[spandrel]'"

#: architectures whose export and parity ``tests/test_spandrel.py`` checks on every run
TESTED = (
    "DAT",
    "HAT",
    "MoSR",
    "OmniSR",
    "PLKSR",
    "RCAN",
    "RealCUGAN",
    "SPAN",
    "SwiftSRGAN",
    "SwinIR",
)
#: spandrel architecture id -> why ganpipe cannot use it (found by trying the export with
#: spandrel 0.4 and torch 2.14; the import checks every export anyway). Nets whose code
#: fixes the input size (SAFMN) are exported at a fixed tile instead.
UNSUPPORTED: dict[str, str] = {
    "ATD": "its token grouping depends on the order an unstable sort (torch.sort, "
    "stable=False) gives equal category ids, which differs between runtimes: spandrel's "
    "own model changes by 0.01 with a stable sort, so no export can match it",
}
#: architectures that spandrel leaves to ``spandrel_extra_arches`` (non-commercial or
#: otherwise restrictive licences); ganpipe does not install or load them
RESTRICTED = ("CodeFormer", "SRFormer", "FeMaSR", "M3SNet", "MAT", "MIRNet2", "MPRNet", "Restormer")


def spandrel_version() -> str | None:
    """The installed spandrel's version, ``None`` when it (or torchvision) is missing."""
    try:
        import spandrel
    except ImportError:
        return None
    return str(getattr(spandrel, "__version__", "?"))


def registered() -> list[str]:
    """The ids of the architectures that the installed spandrel detects (empty without it)."""
    try:
        from spandrel import MAIN_REGISTRY
    except ImportError:
        return []
    return sorted({str(a.architecture.id) for a in MAIN_REGISTRY.architectures("detection")})


def status(arch_id: str) -> str:
    """What ganpipe knows of a spandrel architecture: ``tested``, ``untested`` (exported
    and parity-checked on import like the others, but not in ganpipe's tests) or why not."""
    if arch_id in UNSUPPORTED:
        return f"not supported: {UNSUPPORTED[arch_id]}"
    return "tested" if arch_id in TESTED else "untested"


@contextlib.contextmanager
def _quiet():
    """spandrel's architectures warn (meshgrid, init) and some print while being built."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@dataclass
class SpandrelArch:
    """A net spandrel detected: its id, scale, channels, size requirements (``multiple``
    of the sides, ``minimum`` side) and spandrel's descriptor (``descriptor``: callable on
    NCHW images in [0, 1], padding as spandrel does, the reference of the parity checks)."""

    name: str
    scale: int
    channels: int
    multiple: int = 1
    minimum: int = 0
    descriptor: Any = field(default=None, repr=False, compare=False)
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return f"spandrel:{self.name}"

    @property
    def tile_multiple(self) -> int:
        return self.multiple


def no_spandrel(path: str | Path) -> ModelFileError:
    return ModelFileError(
        f"{path}: not a Real-ESRGAN layout (RRDBNet / SRVGGNetCompact); other "
        f"architectures (SwinIR, HAT, SPAN, ...) need spandrel: {INSTALL}"
    )


def load_spandrel(
    state: dict[str, torch.Tensor],
    path: str | Path,
    scale: int | None = None,
    expected: str = "",
) -> tuple[nn.Module, SpandrelArch]:
    """The spandrel net of ``state`` (a state dict read by :mod:`ganpipe.weights.read`), in
    eval mode, and its :class:`SpandrelArch`; a one-line :class:`ModelFileError` when
    spandrel is missing, detects nothing (``expected``: the other layouts, described, for
    that message), or finds a net ganpipe cannot export."""
    try:
        from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError
    except ImportError:
        raise no_spandrel(path) from None
    try:
        with _quiet():
            desc = ModelLoader().load_from_state_dict(dict(state))
    except UnsupportedModelError:
        keys = ", ".join(list(state)[:3])
        raise ModelFileError(
            f"{path}: unknown weight layout (first keys: {keys}); "
            f"{expected or 'not Real-ESRGAN'}, nor one of spandrel's {len(registered())} "
            f"architectures (`ganpipe import --list`); restrictively licensed ones "
            f"({', '.join(RESTRICTED[:4])}, ...) are not supported"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a detected arch whose shapes do not fit
        raise ModelFileError(
            f"{path}: spandrel could not load these weights ({type(exc).__name__}: {one_line(exc)})"
        ) from None
    name = str(desc.architecture.id)
    if not isinstance(desc, ImageModelDescriptor):
        raise ModelFileError(
            f"{path}: a {name} {str(desc.purpose).lower()} model (image + mask); ganpipe "
            f"upscales single images only"
        )
    if name in UNSUPPORTED:
        raise ModelFileError(f"{path}: {name} models cannot be used: {UNSUPPORTED[name]}")
    if desc.input_channels != 3 or desc.output_channels != 3:
        raise ModelFileError(
            f"{path}: a {name} model for {desc.input_channels}-channel images; "
            f"ganpipe upscales RGB (3-channel) images only"
        )
    req = desc.size_requirements
    if req.square:
        raise ModelFileError(
            f"{path}: {name} models need square inputs, which tiled upscaling cannot give"
        )
    if scale is not None and scale != desc.scale:
        raise ModelFileError(
            f"{path}: these {name} weights are x{desc.scale}, not x{scale}; "
            f"drop --scale or pass --scale {desc.scale}"
        )
    desc.model.eval()
    arch = SpandrelArch(
        name,
        int(desc.scale),
        3,
        multiple=int(req.multiple_of),
        minimum=int(req.minimum),
        descriptor=desc,
        kwargs={"spandrel": spandrel_version() or "?", "purpose": str(desc.purpose)},
    )
    return desc.model, arch


def freeze_reparameterised(net: nn.Module) -> None:
    """Fuse re-parameterised convolutions once (SPAN's ``Conv3XC`` recomputes its fused
    kernel from the branch weights on every eval-mode call, writing ``.data``, which the
    exporter cannot trace): ``update_params`` runs now, and is a no-op on later calls."""
    for module in net.modules():
        update = getattr(module, "update_params", None)
        if callable(update) and hasattr(module, "eval_conv"):
            with torch.no_grad():
                update()
            module.update_params = lambda: None  # the fused kernel stays as computed


class SpandrelExport(nn.Module):
    """What is exported: spandrel's call of the net (``call_fn``: most nets are called
    as they are), the input padded (replicate) to a multiple of ``arch.multiple`` and the
    output cropped back, clamped to [0, 1]; the caller's tensor is never changed. The upscaler pads to the multiple (and the
    minimum side) itself, so inside ganpipe the padding here is a no-op."""

    def __init__(self, net: nn.Module, arch: SpandrelArch):
        super().__init__()
        freeze_reparameterised(net)
        self.net, self.scale, self.multiple = net, arch.scale, arch.multiple
        desc = arch.descriptor
        self.call = getattr(desc, "_call_fn", None) if desc is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m = self.multiple
        if m > 1:
            x = nn.functional.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        else:
            x = x.clone()  # some nets scale their input in place (RCAN: x *= rgb_range)
        out = self.call(self.net, x) if self.call is not None else self.net(x)
        if m > 1:
            out = out[..., : h * self.scale, : w * self.scale]
        return out.clamp(0.0, 1.0)


def trace_size(arch: SpandrelArch) -> tuple[int, int]:
    """The height and width the export is traced at: multiples of ``arch.multiple``, at
    least its minimum and two windows (one is a special case); the parity check's sizes
    (:func:`ganpipe.weights.spandrel_parity.check_sizes`) are all different from it."""
    m = arch.multiple
    base = max(arch.minimum, 16, 2 * m)
    return -(-(base + 3) // m) * m, -(-(base + 9) // m) * m
