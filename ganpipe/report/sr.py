"""Before/after crops of a super-resolution run: held-out images down-scaled (anti-aliased
bicubic), up-scaled back by the exported model (ONNX Runtime) and by bicubic interpolation
(Pillow), next to the original, with their PSNR on the Y channel, ``scale`` pixels shaved
off each side (as the evaluate stage and BasicSR score them). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ganpipe.errors import GanpipeError, one_line
from ganpipe.metrics.sr_scores import label, psnr
from ganpipe.report.run import RunRecord

#: largest crop side (HR pixels) shown
CROP = 64


@dataclass
class Crop:
    lr: np.ndarray
    bicubic: np.ndarray
    model: np.ndarray
    hr: np.ndarray
    psnr_bicubic: float
    psnr_model: float


def held_out(record: RunRecord, most: int) -> tuple[np.ndarray, str]:
    """Up to ``most`` images of the run's held-out split (its training split without
    one), loaded by the run's dataset source as the pipeline.toml configures it."""
    from ganpipe.config import DataSection
    from ganpipe.registry import load_registry

    data = record.table("data")
    if not data:
        raise GanpipeError("the run did not record its pipeline.toml ([data] unknown)")
    section = {k: v for k, v in data.items() if k in DataSection.model_fields}
    own = {k: v for k, v in data.items() if k not in DataSection.model_fields}
    cfg = DataSection.model_validate(section)
    source = load_registry().datasets.get(cfg.dataset)
    opts = source.Options.model_validate(own)
    images = source.load(opts, cfg.image_size, cfg.channels, record.base_dir)
    seed = int(record.table("run").get("seed", 0))
    which = "held-out"
    if cfg.holdout > 0:
        _, images = images.split(cfg.holdout, seed)
    else:
        which = "training (no data.holdout)"
    return images.images[:most], which


def _fit(hr: np.ndarray, scale: int) -> np.ndarray:
    """A centre crop of at most :data:`CROP` pixels, sides multiples of ``scale``."""
    h, w = hr.shape[:2]
    ch, cw = min(h, CROP) // scale * scale, min(w, CROP) // scale * scale
    top, left = (h - ch) // 2, (w - cw) // 2
    out = hr[top : top + ch, left : left + cw]
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out[:, :, :3]


def sr_crops(record: RunRecord, model_path: Path, most: int = 4) -> tuple[list[Crop], str]:
    """The crops, and which images they are (or why there are none)."""
    from ganpipe.inference.session import open_model
    from ganpipe.upscale.model import SRModel
    from ganpipe.upscale.tiling import whole_image_runner

    try:
        model = SRModel(open_model(model_path, "cpu", task="super_resolve"))
        run = whole_image_runner(model)  # tiled where the model takes one fixed shape
        images, which = held_out(record, most)
    except (GanpipeError, ValueError, OSError, KeyError) as exc:
        return [], f"no crops: {type(exc).__name__}: {one_line(exc)}"
    scale, crops, borders = model.scale, [], set()
    for img in images:
        hr = _fit(np.asarray(img), scale)
        if hr.shape[0] < scale or hr.shape[1] < scale:
            continue
        size = (hr.shape[1] // scale, hr.shape[0] // scale)
        lr_pic = Image.fromarray(hr).resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
        lr = np.asarray(lr_pic)
        bicubic = np.asarray(lr_pic.resize((hr.shape[1], hr.shape[0]), Image.Resampling.BICUBIC))
        x = lr.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        y = run(np.ascontiguousarray(x))[0].transpose(1, 2, 0)
        sr = np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)
        border = scale if min(hr.shape[:2]) > 2 * scale else 0
        borders.add(border)
        crops.append(
            Crop(lr, bicubic, sr, hr, psnr(bicubic, hr, "y", border), psnr(sr, hr, "y", border))
        )
    how = label("y", max(borders, default=scale))
    if len(borders) > 1:
        how += " (0 for crops too small)"
    return crops, f"{len(crops)} {which} image(s), x{scale}; PSNR on {how} (BasicSR's way)"


def crop_summary(crops: list[Crop]) -> dict[str, Any]:
    if not crops:
        return {}
    return {
        "psnr_model": float(np.mean([c.psnr_model for c in crops])),
        "psnr_bicubic": float(np.mean([c.psnr_bicubic for c in crops])),
    }
