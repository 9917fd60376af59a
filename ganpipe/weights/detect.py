"""Which net a state dict is, from its keys and shapes: RRDBNet (ESRGAN, Real-ESRGAN x4plus /
x2plus) or SRVGGNetCompact (realesr-general / animevideo), with its scale and sizes.

The two layouts of the original ESRGAN repository are renamed to BasicSR's first
(:func:`to_basicsr_layout`): the old ``model.0`` / ``model.1.sub.N.RDBk.convm.0`` one
(``RRDB_ESRGAN_x4.pth`` and most community x4 models built on it) and the later
``RRDB_trunk`` / ``trunk_conv`` / ``upconv1`` / ``HRconv`` one. They are the same net as
BasicSR's RRDBNet at x4.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganpipe.errors import ModelFileError

#: keys of a BasicSR RRDBNet (what the error for an unknown layout lists)
RRDB_KEYS = (
    "conv_first.weight",
    "body.0.rdb1.conv1.weight",
    "conv_body.weight",
    "conv_up1.weight",
    "conv_up2.weight",
    "conv_hr.weight",
    "conv_last.weight",
)
#: keys of an SRVGGNetCompact, described
COMPACT_KEYS = ("body.0.weight", "body.1.weight (PReLU)", "body.N.weight (last conv)")


@dataclass
class Architecture:
    """A detected net: the ganpipe variant it is, its scale, image channels and the
    constructor's size arguments (``num_feat``, ``num_block`` ...)."""

    variant: str  # "esrgan" (RRDBNet) or "compact" (SRVGGNetCompact)
    scale: int
    channels: int
    kwargs: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The architecture's own name (as spandrel's ids name theirs)."""
        return "RRDBNet" if self.variant == "esrgan" else "SRVGGNetCompact"

    @property
    def tile_multiple(self) -> int:
        from ganpipe.nn.sr import RRDB_UNSHUFFLE

        return RRDB_UNSHUFFLE[self.scale] if self.variant == "esrgan" else 1

    def build(self) -> torch.nn.Module:
        from ganpipe.nn.sr import RRDBNet, SRVGGNetCompact

        if self.variant == "esrgan":
            return RRDBNet(self.channels, self.channels, self.scale, **self.kwargs)
        return SRVGGNetCompact(self.channels, self.channels, upscale=self.scale, **self.kwargs)


def is_realesrgan(state: dict[str, torch.Tensor]) -> bool:
    """True when ``state`` (in BasicSR's layout) is an RRDBNet or an SRVGGNetCompact."""
    rrdb = "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state
    compact = "body.0.weight" in state and getattr(state.get("body.1.weight"), "ndim", 0) == 1
    return rrdb or compact


def expected_layouts() -> str:
    """The Real-ESRGAN layouts, described (for errors about an unknown layout)."""
    return (
        f"expected RRDBNet keys ({', '.join(RRDB_KEYS[:2])}, ...; or ESRGAN's model.0, "
        f"model.1.sub... or RRDB_trunk...) or SRVGGNetCompact keys "
        f"({', '.join(COMPACT_KEYS)})"
    )


#: the later ESRGAN-repository RRDBNet names -> BasicSR's
_ESRGAN_NAMES = {
    "RRDB_trunk.": "body.",
    "trunk_conv.": "conv_body.",
    "upconv1.": "conv_up1.",
    "upconv2.": "conv_up2.",
    "HRconv.": "conv_hr.",
}
#: the old ESRGAN ``model.N`` sequential at x4 -> BasicSR's names
_OLD_ESRGAN_X4 = {
    "0": "conv_first",
    "3": "conv_up1",
    "6": "conv_up2",
    "8": "conv_hr",
    "10": "conv_last",
}


def to_basicsr_layout(
    state: dict[str, torch.Tensor], path: str | Path = "weights"
) -> dict[str, torch.Tensor]:
    """``state`` with the original ESRGAN repository's RRDBNet names renamed to BasicSR's
    (``state`` itself when it uses neither)."""
    if "RRDB_trunk.0.RDB1.conv1.weight" in state:
        out = {}
        for key, value in state.items():
            for old, new in _ESRGAN_NAMES.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
            out[re.sub(r"\.RDB(\d)\.", r".rdb\1.", key)] = value
        return out
    if "model.0.weight" not in state or "model.1.sub.0.RDB1.conv1.0.weight" not in state:
        return state
    tops = {k.split(".")[1] for k in state if re.match(r"^model\.\d+\.weight$", k)}
    if tops != set(_OLD_ESRGAN_X4):
        ups = len([t for t in tops if t not in ("0", "1")]) - 2
        raise ModelFileError(
            f"{path}: old-layout ESRGAN weights with {max(ups, 0)} upsampling "
            f"stage(s) (layers model.{', model.'.join(sorted(tops, key=int))})"
            f"; only the x4 layout (model.0, 3, 6, 8, 10) can be imported"
        )
    out = {}
    for key, value in state.items():
        if m := re.match(r"^model\.(\d+)\.(weight|bias)$", key):
            out[f"{_OLD_ESRGAN_X4[m.group(1)]}.{m.group(2)}"] = value
        elif m := re.match(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", key):
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif m := re.match(r"^model\.1\.sub\.(\d+)\.(weight|bias)$", key):  # the trunk conv
            out[f"conv_body.{m.group(2)}"] = value
        else:
            out[key] = value  # unknown: load_state_dict(strict=True) names it
    return out


def detect_architecture(
    state: dict[str, torch.Tensor], path: str | Path = "weights", scale: int | None = None
) -> Architecture:
    """Architecture, scale and sizes from the keys and shapes of ``state`` (in BasicSR's
    layout: see :func:`to_basicsr_layout`)."""
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        first = state["conv_first.weight"]
        channels = int(state["conv_last.weight"].shape[0]) if "conv_last.weight" in state else 3
        ratio, rem = divmod(int(first.shape[1]), channels)
        found = {1: 4, 4: 2, 16: 1}.get(ratio) if rem == 0 else None
        if found is None:
            raise ModelFileError(
                f"{path}: RRDBNet conv_first takes {first.shape[1]} channels "
                f"for {channels}-channel images; expected {channels} (x4), "
                f"{4 * channels} (x2) or {16 * channels} (x1)"
            )
        blocks = {
            int(m.group(1))
            for k in state
            if (m := re.match(r"^body\.(\d+)\.rdb1\.conv1\.weight$", k))
        }
        arch = Architecture(
            "esrgan",
            found,
            channels,
            {
                "num_feat": int(first.shape[0]),
                "num_block": len(blocks),
                "num_grow_ch": int(state["body.0.rdb1.conv1.weight"].shape[0]),
            },
        )
    elif "body.0.weight" in state and getattr(state.get("body.1.weight"), "ndim", 0) == 1:
        convs = sorted(
            int(m.group(1))
            for k, v in state.items()
            if (m := re.match(r"^body\.(\d+)\.weight$", k)) and v.ndim == 4
        )
        if len(convs) < 2 or convs[0] != 0:
            raise ModelFileError(
                f"{path}: SRVGGNetCompact needs 4-D conv weights body.0.weight "
                f"... body.N.weight; found {len(convs)} conv weight(s)"
            )
        first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
        channels = int(first.shape[1])
        s2, rem = divmod(int(last.shape[0]), channels)
        found = math.isqrt(s2) if rem == 0 else 0
        if found < 1 or found * found != s2:
            raise ModelFileError(
                f"{path}: SRVGGNetCompact's last conv has {last.shape[0]} "
                f"output channels, not {channels} x scale^2"
            )
        arch = Architecture(
            "compact",
            found,
            channels,
            {"num_feat": int(first.shape[0]), "num_conv": len(convs) - 2},
        )
    else:
        keys = ", ".join(list(state)[:3])
        raise ModelFileError(
            f"{path}: unknown weight layout (first keys: {keys}); {expected_layouts()}"
        )
    if scale is not None and scale != arch.scale:
        raise ModelFileError(
            f"{path}: these {arch.variant} weights are x{arch.scale}, "
            f"not x{scale}; drop --scale or pass --scale {arch.scale}"
        )
    return arch
