"""Batch super-resolution with an exported ``.onnx`` (ONNX Runtime, numpy, Pillow; never
torch).

The model contract (``ganpipe.*`` metadata, read by :func:`open_sr_model`): ``task`` =
``"super_resolve"`` (or ``"translate"``: CycleGAN's image-to-image models, scale 1; their
alpha channel is kept as it is), ``scale`` 1, 2, 3, 4 or 8, ``channels`` 3, ``value_range`` (default
[0, 1]), one ``image`` input (NCHW float32, or float16 - inputs are cast), dynamic batch,
height and width, output NCHW at ``scale`` times the size; optional ``tile_multiple``: the
input height and width must be multiples of it (each tile is padded by reflection and the
output cropped).

What happens to an image:

* **Decoding** goes by content, not by file name (PNG, JPEG, WebP, TIFF, BMP, GIF), keeps
  Pillow's decompression-bomb limit, applies the EXIF orientation, and keeps the ICC
  profile (and the EXIF data, orientation tag removed, for PNG/JPEG/WebP).
* **Gray** images (L, I;16...) come out gray: they go through the model as three equal
  channels, and the mean of the three output channels is kept.
* **Alpha** (RGBA, LA, PA, palette or colour-key transparency): the colour and the alpha
  channel are upscaled separately. Before that, the colour of fully transparent pixels
  (which is arbitrary, often black) is replaced by the colour of the nearest visible pixels
  (push-pull fill), so the model never mixes it into the edges: no dark fringes. The alpha
  channel goes through the model as a gray image (``alpha="model"``, sharp edges) or is
  resized bicubically (``alpha="bicubic"``, faster); a constant alpha is just enlarged.
  Palette images come out RGB or RGBA. JPEG cannot hold alpha: it is composited on white.
* **16 bits** per channel (I;16/I;16B PNG and TIFF; 48/64-bit RGB(A) PNGs, read with
  :mod:`ganpipe.inference.png16`, and 48/64-bit RGB(A) and gray+alpha TIFFs, read with
  :mod:`ganpipe.inference.tiff16`, because Pillow reduces them to 8 bits) stay 16-bit in
  PNG and TIFF output; JPEG and WebP get 8 bits. A 16-bit TIFF compressed with LZW or JPEG
  is read by Pillow at 8 bits unless ``imagecodecs`` is installed.
* **Tiling** (:mod:`ganpipe.inference.tiling`): only tiles go through the model; on an
  out-of-memory error the tile size is halved and the image redone, and the smaller tile
  is kept for the following images.

Batches: the input is a file or a folder (``recursive`` keeps the sub-folder tree);
outputs get the input's format (BMP and GIF become PNG) or ``format``, and the input's
name plus ``suffix``. An output never overwrites an input, a folder's output folder must
not be inside it, files are written atomically (temporary name, then rename) and
``skip_existing`` makes an interrupted batch resumable. A file that cannot be read,
upscaled or written is reported and the batch goes on. ``shard=(i, n)`` processes the
files whose index in the sorted list is ``i`` modulo ``n``. Decoding runs in a thread pool
ahead of inference and encoding in another behind it, both bounded, so the accelerator is
not idle while files are read and written.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, features

from ganpipe.data.imageio import IMAGE_SUFFIXES, check_pixels, save_image
from ganpipe.errors import ConfigError, GanpipeError, ModelFileError
from ganpipe.fsutil import ensure_writable_dir, write_bytes
from ganpipe.inference import png16
from ganpipe.inference.session import OnnxModel, open_model
from ganpipe.inference.tiling import MIN_TILE, as_unit, is_oom, store, upscale_plane

TASK = "super_resolve"
#: tasks whose models map an image to an image (CycleGAN's ``translate``: scale 1)
TASKS = (TASK, "translate")
SCALES = (1, 2, 3, 4, 8)
DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|tensorrt)$")
#: --format values -> Pillow format names
FORMATS = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "tiff": "TIFF",
    "tif": "TIFF",
}
#: file name suffixes per output format; the first is used for new names
SUFFIXES = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "WEBP": (".webp",),
    "TIFF": (".tif", ".tiff"),
}
#: largest width or height each format can hold
MAX_SIDE = {"JPEG": 65500, "WEBP": 16383, "PNG": 2**31 - 1, "TIFF": 2**31 - 1}
INPUT_SUFFIXES = IMAGE_SUFFIXES | {".jpe", ".jfif", ".gif"}
#: decoded images waiting for the model, and upscaled images waiting to be written
MAX_PENDING_BYTES = 2 << 30
#: zlib level of PNG outputs: on photos upscaled x4, level 4 writes files 3-4 % larger
#: than Pillow's default 6 in less than half the time (1: 4x faster, 15-20 % larger)
PNG_COMPRESSION = 4


# -- the model -------------------------------------------------------------------------
class SRModel:
    """An opened super-resolution model: ``model(x)`` maps NCHW float32 in [0, 1] to NCHW
    float32 in [0, 1] at ``scale`` times the height and width."""

    def __init__(self, onnx_model: OnnxModel):
        self.onnx = onnx_model
        self.path = onnx_model.path
        self.session = onnx_model.session
        meta = onnx_model.card.model_dump(mode="json")  # TODO(split): read the card
        name = self.path.name
        scale = meta.get("scale")
        if isinstance(scale, bool) or scale not in SCALES:
            raise ConfigError(
                f"{name}: metadata 'scale' is {scale!r}, expected 1, 2, 3, 4 or 8; "
                f"re-export the model with ganpipe"
            )
        self.scale = int(scale)
        channels = meta.get("channels", 3)
        if channels != 3:
            raise ConfigError(
                f"{name}: {channels}-channel super-resolution models are not "
                f"supported (expected channels = 3)"
            )
        try:
            lo, hi = (float(v) for v in meta.get("value_range", (0.0, 1.0)))
        except (TypeError, ValueError):
            lo, hi = 0.0, 0.0
        if not hi > lo:
            raise ConfigError(
                f"{name}: metadata 'value_range' {meta.get('value_range')!r} is not [low, high]"
            )
        self.value_range = (lo, hi)
        multiple = meta.get("tile_multiple", 1) or 1
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise ConfigError(
                f"{name}: metadata 'tile_multiple' {multiple!r} is not a positive integer"
            )
        self.multiple = multiple
        inputs = self.session.get_inputs()
        wanted = next(
            (
                s.get("name")
                for s in meta.get("inputs", [])
                if isinstance(s, dict) and s.get("kind") == "image"
            ),
            None,
        )
        chosen = next((i for i in inputs if i.name == wanted), inputs[0] if inputs else None)
        if chosen is None or len(inputs) != 1:
            raise ConfigError(
                f"{name}: expected one image input, the model has {len(inputs)} inputs"
            )
        self.input_name = chosen.name
        self.dtype = np.float16 if chosen.type == "tensor(float16)" else np.float32
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = meta.get("output") if meta.get("output") in outputs else outputs[0]

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        m, s = self.multiple, self.scale
        ph, pw = -h % m, -w % m
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
        lo, hi = self.value_range
        if (lo, hi) != (0.0, 1.0):
            x = x * (hi - lo) + lo
        y = self.session.run(
            [self.output_name], {self.input_name: x.astype(self.dtype, copy=False)}
        )[0]
        y = np.asarray(y, dtype=np.float32)
        if y.shape != (n, c, (h + ph) * s, (w + pw) * s):
            raise ModelFileError(
                f"{self.path.name}: output shape {tuple(y.shape)} for input "
                f"{(n, c, h + ph, w + pw)} does not match scale {s} from "
                f"its metadata"
            )
        if ph or pw:
            y = y[:, :, : h * s, : w * s]
        if (lo, hi) != (0.0, 1.0):
            y = (y - lo) / (hi - lo)
        return y


#: released weight files that ``open_sr_model`` converts to ONNX on first use
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
#: bump when the conversion changes, so cached conversions are redone
CONVERSION_VERSION = 1


def cache_dir() -> Path:
    """Where converted weights are kept: ``$GANPIPE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/ganpipe``, else ``~/.cache/ganpipe``."""
    if os.environ.get("GANPIPE_CACHE_DIR"):
        return Path(os.environ["GANPIPE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ganpipe"


def converted_model(weights: Path, log: Callable[[str], Any] | None = None) -> Path:
    """The ONNX model of released SR weights (``.pth`` / ``.safetensors``), converted once
    with :func:`ganpipe.weights.import_weights` (torch, ``weights_only=True``) and cached
    by the file's content hash: later runs open the cached ``.onnx`` without torch."""
    import hashlib

    if not weights.is_file():
        raise ConfigError(f"model {weights} does not exist")
    digest = hashlib.sha256(f"ganpipe-import-v{CONVERSION_VERSION}\0".encode())
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    target = cache_dir() / "imported" / f"{weights.stem}-{digest.hexdigest()[:16]}.onnx"
    if target.is_file():
        return target
    try:
        from ganpipe.weights import import_weights, load_model
    except ImportError:
        raise ConfigError(
            f"{weights.name}: converting weights to ONNX needs PyTorch, which "
            f"is not installed here; run `ganpipe import {weights.name}` where "
            f"it is and pass the .onnx"
        ) from None
    _, arch = load_model(weights)  # a file that cannot be imported fails here, quietly
    (log or (lambda msg: None))(
        f"converting {weights.name} ({arch.variant} x{arch.scale}) "
        f"to ONNX, once; cached as {target}"
    )
    ensure_writable_dir(target.parent)
    import_weights(weights, target)
    return target


def open_sr_model(
    path: str | Path, device: str = "auto", log: Callable[[str], Any] | None = None
) -> SRModel:
    """Open a ``super_resolve`` model - an ``.onnx``, or released weights converted on
    first use (see :func:`converted_model`); every problem is a one-line
    :class:`ConfigError`."""
    if not DEVICE_RE.match(device):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or tensorrt")
    try:
        if Path(path).suffix.lower() in WEIGHT_SUFFIXES:
            path = converted_model(Path(path), log)
        return SRModel(open_model(path, device, task=TASKS))
    except ConfigError:
        raise
    except GanpipeError as exc:  # wrong task, missing file, no GPU: usage errors (exit 2)
        raise ConfigError(str(exc)) from None


def _dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """Transform ``k`` (0..7) of the 8 flips / rotations of NCHW ``x``."""
    if k >= 4:
        x = x[..., ::-1]
    return np.ascontiguousarray(np.rot90(x, k % 4, axes=(2, 3)))


def _undo_dihedral(y: np.ndarray, k: int) -> np.ndarray:
    y = np.rot90(y, -(k % 4), axes=(2, 3))
    return y[..., ::-1] if k >= 4 else y


class Ensemble:
    """Several models of one scale used as one (model ensembling: their outputs are
    averaged), and/or each model run on the 8 flips and rotations of its input with the
    results turned back and averaged (``tta``: the self-ensemble of EDSR / RCAN, usually a
    little sharper and cleaner, 8x the compute). Works per tile, so tiling and memory are
    unchanged; quacks like :class:`SRModel` for :class:`Upscaler`."""

    def __init__(self, models: list[SRModel], tta: bool = False):
        scales = {m.scale for m in models}
        if len(scales) > 1:
            listing = ", ".join(f"{m.path.name} x{m.scale}" for m in models)
            raise ConfigError(f"models of an ensemble must have one scale; got {listing}")
        self.models, self.tta = models, tta
        self.scale = models[0].scale
        self.multiple = math.lcm(*(m.multiple for m in models))
        self.path = models[0].path

    @property
    def providers(self) -> list[str]:
        return self.models[0].providers

    def __call__(self, x: np.ndarray) -> np.ndarray:
        total, count = None, 0
        for model in self.models:
            for k in range(8) if self.tta else (0,):
                y = _undo_dihedral(model(_dihedral(x, k)), k) if k else model(x)
                total = y.astype(np.float32, copy=True) if total is None else total + y
                count += 1
        return total / count


# -- images ----------------------------------------------------------------------------
@dataclass
class Picture:
    """A decoded or upscaled image and what to carry over. Decoded planes are uint8 or
    uint16 as in the file (a quarter or half the memory of floats while they wait in the
    queue; only tiles become float32), upscaled planes float32 in [0, 1]."""

    color: np.ndarray  # H x W x C, C = 1 (gray) or 3
    alpha: np.ndarray | None = None  # H x W
    bits: int = 8  # 16 for 16-bit sources
    icc: bytes | None = None
    exif: bytes | None = None
    format: str | None = None  # the source's format, by content

    @property
    def gray(self) -> bool:
        return self.color.shape[2] == 1

    @property
    def megapixels(self) -> float:
        return self.color.shape[0] * self.color.shape[1] / 1e6


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file (never from its name)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    return None


def _sniff(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return sniff_format(fh.read(16))
    except OSError:
        return None


_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _icc_for(icc: bytes | None, gray: bool) -> bytes | None:
    """The profile when its colour space matches the output (GRAY or RGB), else None."""
    if not icc or len(icc) < 20:
        return None
    return icc if icc[16:20] == (b"GRAY" if gray else b"RGB ") else None


def _from_pil(im: Image.Image) -> Picture:
    mode = im.mode
    if mode.startswith("I;16"):
        return Picture(np.asarray(im).astype(np.uint16)[:, :, None], bits=16)
    if mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        top = float(arr.max()) if arr.size else 0.0
        hi = 1.0 if mode == "F" and top <= 1.0 else 255.0 if top <= 255 else 65535.0
        return Picture(np.clip(arr / hi, 0, 1)[:, :, None], bits=8 if hi == 255.0 else 16)
    transparent = "transparency" in im.info
    if mode in ("1", "L", "LA", "La") and (mode in ("LA", "La") or transparent):
        target = "LA"
    elif mode in ("1", "L"):
        target = "L"
    elif mode in ("RGBA", "RGBa", "PA") or transparent:
        target = "RGBA"
    else:
        target = "RGB"  # RGB, P, CMYK, YCbCr, LAB, HSV, RGBX
    arr = np.asarray(im.convert(target) if target != mode else im, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if target in ("LA", "RGBA"):
        return Picture(np.ascontiguousarray(arr[:, :, :-1]), np.ascontiguousarray(arr[:, :, -1]))
    return Picture(arr)


def _decode_tiff16(path: Path) -> Picture:
    """A 48/64-bit RGB(A) or 16-bit gray+alpha TIFF, which Pillow would reduce or refuse."""
    from ganpipe.inference import tiff16

    arr, info = tiff16.read_tiff16(path)
    arr = _ORIENT.get(info.orientation, lambda a: a)(arr)
    n = 3 if arr.shape[2] >= 3 else 1
    alpha = np.ascontiguousarray(arr[:, :, n]) if arr.shape[2] > n else None
    color = np.ascontiguousarray(arr[:, :, :n])
    return Picture(color, alpha, bits=16, icc=_icc_for(info.icc, n == 1), format="TIFF")


def decode_image(path: str | Path) -> Picture:
    """Read an image by content, oriented; raises on anything that is not a usable image."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(33)
    if not head:
        raise ValueError("empty file (0 bytes)")
    if sniff_format(head) == "TIFF":
        from ganpipe.inference import tiff16  # tifffile: only for TIFF inputs

        if tiff16.tiff16_needed(path):
            try:
                return _decode_tiff16(path)
            except tiff16.MissingCodec:
                pass  # e.g. LZW without imagecodecs: Pillow reads it, at 8 bits
    with Image.open(path) as im:
        check_pixels(im.width, im.height)
        fmt = im.format
        icc = im.info.get("icc_profile")
        exif = im.getexif()
        orientation = exif.get(0x0112, 1)
        if png16.png16_header(head):  # 16-bit RGB(A)/LA: Pillow would keep 8 bits only
            arr, _ = png16.read_png16(path)
            arr = _ORIENT.get(orientation, lambda a: a)(arr)
            pic = Picture(
                np.ascontiguousarray(arr[:, :, : 3 if arr.shape[2] >= 3 else 1]),
                None if arr.shape[2] in (1, 3) else np.ascontiguousarray(arr[:, :, -1]),
                bits=16,
            )
        else:
            im.load()
            pic = _from_pil(ImageOps.exif_transpose(im) if orientation != 1 else im)
    keep_exif = None
    if fmt in ("PNG", "JPEG", "WEBP", "MPO") and len(exif):
        exif.pop(0x0112, None)
        data = exif.tobytes()
        keep_exif = data if 0 < len(data) < 60000 else None
    return replace(pic, icc=_icc_for(icc, pic.gray), exif=keep_exif, format=fmt)


def fill_transparent(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour of fully transparent pixels from their visible neighbours (push-pull: an
    alpha-weighted image pyramid, then the coarser levels fill the holes of the finer
    ones). Visible pixels keep their colour. Returns float32 in [0, 1], or ``color``
    unchanged when no pixel (or every pixel) is fully transparent."""
    known = alpha > 0
    if known.all() or not known.any():
        return color
    color = as_unit(color)
    levels = []
    c = color * known[:, :, None]
    w = known.astype(np.float32)
    while not (w > 0).all():
        levels.append((c, w))
        ph, pw = w.shape[0] % 2, w.shape[1] % 2
        if ph or pw:
            c = np.pad(c, ((0, ph), (0, pw), (0, 0)))
            w = np.pad(w, ((0, ph), (0, pw)))
        h2, w2 = w.shape[0] // 2, w.shape[1] // 2
        c = c.reshape(h2, 2, w2, 2, -1).sum(axis=(1, 3))
        w = w.reshape(h2, 2, w2, 2).sum(axis=(1, 3))
    fill = c / w[:, :, None]
    for c_l, w_l in reversed(levels):
        up = np.repeat(np.repeat(fill, 2, axis=0), 2, axis=1)[: w_l.shape[0], : w_l.shape[1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            fill = np.where((w_l > 0)[:, :, None], c_l / w_l[:, :, None], up)
    return np.where(known[:, :, None], color, fill).astype(np.float32)


def _to_bits(a: np.ndarray, bits: int) -> np.ndarray:
    """An upscaled plane (uint8, uint16, or float32 in [0, 1], consumed) at ``bits``."""
    want = np.uint16 if bits == 16 else np.uint8
    if a.dtype == want:
        return a
    if a.dtype == np.uint16:  # 16-bit result, 8-bit format: round to the nearest level
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    out = np.empty(a.shape, want)
    store(out, as_unit(a))
    return out


def output_bits(pic: Picture, fmt: str) -> int:
    """16 where the source has 16 bits and ``fmt`` can hold them (PNG, TIFF), else 8."""
    return 16 if pic.bits == 16 and fmt in ("PNG", "TIFF") else 8


def _on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 colour composited over white with uint8 alpha (JPEG has no alpha)."""
    a = alpha[:, :, None].astype(np.uint16)
    return ((color * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def encode_image(
    pic: Picture,
    path: str | Path,
    fmt: str,
    quality: int = 95,
    png_compression: int = PNG_COMPRESSION,
) -> None:
    """Write ``pic`` atomically as ``fmt`` (PNG, JPEG, WEBP, TIFF), at 16 bits where the
    source had 16 and the format can hold them. Planes are normally already integers (see
    :meth:`Upscaler.upscale`); float planes in [0, 1] are converted (and consumed)."""
    bits = output_bits(pic, fmt)
    color = _to_bits(pic.color, bits)
    alpha = None if pic.alpha is None else _to_bits(pic.alpha, bits)
    if alpha is not None and fmt == "JPEG":  # no alpha in JPEG: composite on white
        color, alpha = _on_white(color, alpha), None
    arr = color if alpha is None else np.concatenate([color, alpha[:, :, None]], axis=2)
    exif = pic.exif if fmt in ("PNG", "JPEG", "WEBP") else None
    if bits == 16 and fmt == "PNG":  # Pillow cannot write 16-bit RGB(A) or gray+alpha
        write_bytes(path, png16.encode_png16(arr, icc=pic.icc, exif=exif, level=png_compression))
        return
    if bits == 16 and fmt == "TIFF" and arr.shape[2] > 1:  # nor 16-bit RGB(A) TIFFs
        from ganpipe.inference import tiff16

        write_bytes(path, tiff16.encode_tiff16(arr, icc=pic.icc))
        return
    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)  # L, LA, RGB, RGBA, I;16
    params: dict[str, Any] = {}
    if pic.icc:
        params["icc_profile"] = pic.icc
    if exif:
        params["exif"] = exif
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = quality
    if fmt == "PNG":
        params["compress_level"] = png_compression
    if fmt == "TIFF" and features.check("libtiff"):
        params["compression"] = "tiff_adobe_deflate"
    save_image(im, path, format=fmt, **params)


# -- upscaling ---------------------------------------------------------------------------
class Upscaler:
    """Tiles, out-of-memory fallback and alpha around an :class:`SRModel`.

    An ``overlap`` too large for ``tile`` (at least half of it) becomes a quarter of the
    tile, with a note through ``log``: ``--tile 64`` works with the default overlap."""

    def __init__(
        self,
        model: SRModel | Ensemble,
        tile: int = 512,
        overlap: int = 32,
        alpha: str = "model",
        log: Callable[[str], Any] | None = None,
    ):
        check_tiling(tile, overlap)
        if alpha not in ("model", "bicubic"):
            raise ConfigError(f"alpha must be 'model' or 'bicubic', got {alpha!r}")
        self.model = model
        self.scale = model.scale
        self.log = log or (lambda msg: None)
        m = model.multiple
        self.tile = max(m, tile - tile % m) if tile else 0
        if self.tile and 2 * overlap >= self.tile:
            fitted = self.tile // 4
            self.log(
                f"tile overlap {overlap} is too large for {self.tile}x{self.tile} "
                f"tiles; using {fitted}"
            )
            overlap = fitted
        self.overlap = overlap
        self.alpha = alpha

    def plane(self, image: np.ndarray, dtype: type | np.dtype = np.float32) -> np.ndarray:
        """Upscale one HWC plane (C = 1 or 3) into ``dtype`` (float32 in [0, 1], uint8 or
        uint16), halving the tile after out-of-memory."""
        m = self.model.multiple
        while True:
            try:
                return upscale_plane(
                    self.model, image, self.scale, self.tile, self.overlap, multiple=m, dtype=dtype
                )
            except Exception as exc:
                if not is_oom(exc):
                    raise
                current = min(self.tile or max(image.shape[:2]), max(image.shape[:2]))
                smaller = max(m, (current // 2) - (current // 2) % m)
                if smaller < MIN_TILE or smaller >= current:
                    raise GanpipeError(
                        f"out of memory even with {current}x{current} tiles "
                        f"({str(exc).strip().splitlines()[0][:200]}); try "
                        f"--device cpu or a smaller model"
                    ) from None
                self.tile = smaller
                self.overlap = min(self.overlap, smaller // 4)
                self.log(
                    f"out of memory with {current}x{current} tiles; retrying with "
                    f"{smaller}x{smaller} tiles (overlap {self.overlap})"
                )

    def upscale(self, pic: Picture, bits: int | None = None) -> Picture:
        """The upscaled picture: planes float32 in [0, 1], or with ``bits`` 8 or 16
        integers, converted band by band so no float copy of the output is ever held."""
        dtype = np.float32 if bits is None else np.uint16 if bits == 16 else np.uint8
        color = pic.color if pic.alpha is None else fill_transparent(pic.color, pic.alpha)
        up = self.plane(color, dtype)
        alpha = None
        if pic.alpha is not None:
            a = pic.alpha
            h, w = up.shape[:2]
            if self.scale == 1:  # same geometry: the alpha channel stays as it is
                alpha = np.empty((h, w), dtype)
                store(alpha, as_unit(a).copy())
            elif a.min() == a.max():
                value = as_unit(a.reshape(-1)[:1]).astype(np.float32, copy=True)
                alpha = np.empty((h, w), dtype)
                store(alpha[:1, :1], value.reshape(1, 1))
                alpha.fill(alpha[0, 0])
            elif self.alpha == "bicubic":
                big = Image.fromarray(as_unit(a), "F").resize((w, h), Image.Resampling.BICUBIC)
                alpha = np.empty((h, w), dtype)
                store(alpha, np.clip(np.array(big, dtype=np.float32), 0.0, 1.0))
            else:
                alpha = self.plane(a[:, :, None], dtype)[:, :, 0]
                if bits is None:
                    np.clip(alpha, 0.0, 1.0, out=alpha)
        return replace(pic, color=up, alpha=alpha, bits=pic.bits if bits is None else bits)


def check_tiling(tile: int, overlap: int) -> None:
    if tile < 0 or (0 < tile < MIN_TILE):
        raise ConfigError(f"tile size must be 0 (whole image) or at least {MIN_TILE}, got {tile}")
    if overlap < 0:
        raise ConfigError(f"tile overlap must be at least 0, got {overlap}")


# -- planning a batch ------------------------------------------------------------------
@dataclass
class Job:
    src: Path
    dst: Path
    fmt: str


@dataclass
class Plan:
    out_dir: Path
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    ignored: int = 0


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/N"`` -> ``(i, N)`` with 0 <= i < N."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, tuple):
        i, n = spec
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
        if not m:
            raise ConfigError(
                f"--shard {spec!r}: expected I/N, e.g. 0/4 for the first of 4 workers"
            )
        i, n = int(m.group(1)), int(m.group(2))
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard {i}/{n}: need N >= 1 and 0 <= I < N, e.g. 0/{max(n, 2)}")
    return i, n


def list_images(root: Path, recursive: bool) -> tuple[list[tuple[Path, str | None]], int]:
    """Files under ``root`` that are images by content or by name (hidden files and
    folders skipped), sorted by relative path; and the number of other files ignored."""
    found, ignored = [], 0
    walk = os.walk(root) if recursive else iter([(root, [], os.listdir(root))])
    for folder, subdirs, files in walk:
        subdirs[:] = [s for s in subdirs if not s.startswith(".")]  # prunes os.walk
        for name in files:
            path = Path(folder) / name
            if name.startswith(".") or not path.is_file():
                continue
            fmt = _sniff(path)
            if fmt is None and path.suffix.lower() not in INPUT_SUFFIXES:
                ignored += 1
                continue
            found.append((path, fmt))
    found.sort(key=lambda item: item[0].relative_to(root).as_posix())
    return found, ignored


def _output_format(src_fmt: str | None, explicit: str | None) -> str:
    if explicit:
        return explicit
    return src_fmt if src_fmt in SUFFIXES else "PNG"


def _output_name(src: Path, fmt: str, suffix: str) -> str:
    ext = src.suffix if src.suffix.lower() in SUFFIXES[fmt] else SUFFIXES[fmt][0]
    return f"{src.stem}{suffix}{ext}"


def plan_jobs(
    src: str | Path,
    out: str | Path,
    *,
    format: str | None = None,
    suffix: str = "",
    recursive: bool = False,
    skip_existing: bool = False,
    shard: tuple[int, int] | None = None,
) -> Plan:
    """Which files to upscale to which outputs. A file input may have an output file
    (``out`` with an image suffix that is not a folder) or an output folder."""
    src, out = Path(src), Path(out)
    explicit = None
    if format is not None:
        explicit = FORMATS.get(format.lower().lstrip("."))
        if explicit is None:
            raise ConfigError(f"unknown output format {format!r}; use png, jpg, webp or tiff")
    if "/" in suffix or "\\" in suffix or "\0" in suffix:
        raise ConfigError(f"--suffix {suffix!r} must not contain a path separator")
    if not src.exists():
        raise ConfigError(f"input {src} does not exist; pass an image file or a folder")
    entries: list[tuple[Path, Path, str]] = []
    if src.is_file():
        sniffed = _sniff(src)
        by_name = next((f for f, sx in SUFFIXES.items() if out.suffix.lower() in sx), None)
        if by_name and not out.is_dir():  # -o photo_x4.png: an output file
            entries.append((src, out, explicit or by_name))
            out_dir = out.parent
        else:
            fmt = _output_format(sniffed, explicit)
            entries.append((src, out / _output_name(src, fmt, suffix), fmt))
            out_dir = out
        ignored = 0
        inputs = {src.resolve()}
    elif src.is_dir():
        rin, rout = src.resolve(), out.resolve()
        if rout == rin or rin in rout.parents:
            raise ConfigError(
                f"output folder {out} is inside the input folder {src}; choose "
                f"a folder outside it (outputs would be read as inputs next "
                f"time)"
            )
        listed, ignored = list_images(src, recursive)
        if not listed:
            where = " or its sub-folders" if recursive else ""
            hint = "" if recursive else " (add --recursive for sub-folders)"
            raise ConfigError(
                f"no images in {src}{where}{hint}; looked for PNG, JPEG, WebP, "
                f"TIFF, BMP and GIF files"
            )
        for path, sniffed in listed:
            fmt = _output_format(sniffed, explicit)
            rel = path.relative_to(src)
            entries.append((path, out / rel.parent / _output_name(rel, fmt, suffix), fmt))
        out_dir = out
        inputs = {p.resolve() for p, _ in listed}
    else:
        raise ConfigError(f"input {src} is neither a file nor a folder")

    plan = Plan(out_dir, ignored=ignored)
    claimed: dict[str, Path] = {}
    for index, (path, dst, fmt) in enumerate(entries):
        key = os.path.normcase(str(dst.resolve()))
        reason = None
        if dst.resolve() in inputs:
            reason = (
                f"output {dst} would overwrite an input file; use --suffix, --format "
                f"or another output folder"
            )
        elif key in claimed:
            reason = f"output {dst} is also the output of {claimed[key]}; rename one of them"
        else:
            claimed[key] = path
        if shard and index % shard[1] != shard[0]:
            continue
        if reason:
            plan.failures.append((path, reason))
        elif skip_existing and dst.exists():
            plan.skipped.append(path)
        else:
            plan.jobs.append(Job(path, dst, fmt))
    return plan


# -- running a batch -------------------------------------------------------------------
@dataclass
class UpscaleSummary:
    out_dir: Path
    written: list[Path]
    skipped: list[Path]
    failures: list[tuple[Path, str]]
    ignored: int
    providers: list[str]
    scale: int
    seconds: float
    megapixels: float  # input megapixels upscaled
    tile: int  # tile size in use at the end (smaller after out-of-memory)

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        rate = len(self.written) / self.seconds if self.seconds > 0 else 0.0
        mps = self.megapixels / self.seconds if self.seconds > 0 else 0.0
        parts = [
            f"upscaled {len(self.written)} image{'s' * (len(self.written) != 1)} "
            f"(x{self.scale}) to {self.out_dir} in {self.seconds:.1f}s "
            f"({rate:.2f} img/s, {mps:.2f} MP/s in)"
        ]
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} existing")
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        provider = self.providers[0] if self.providers else "?"
        return "; ".join(parts) + f" [{provider}]"


def describe_error(exc: BaseException) -> str:
    """One line for a file that failed; the exception type only where it says more."""
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    if text and isinstance(exc, OSError | ValueError | SyntaxError | Image.DecompressionBombError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Progress:
    """tqdm bar with images/s and input megapixels/s; thread-safe updates."""

    def __init__(self, total: int, enabled: bool | None):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            unit="img",
            disable=(None if enabled is None else not enabled),
            dynamic_ncols=True,
            smoothing=0.1,
            file=sys.stderr,
        )
        self.lock = threading.Lock()
        self.start = time.perf_counter()
        self.megapixels = 0.0

    def done(self, megapixels: float) -> None:
        with self.lock:
            self.megapixels += megapixels
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{self.megapixels / elapsed:.2f} MP/s", refresh=False)
            self.bar.update(1)

    def failed(self) -> None:
        with self.lock:
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_jobs(
    upscaler: Upscaler,
    jobs: list[Job],
    *,
    quality: int = 95,
    png_compression: int = PNG_COMPRESSION,
    workers: int | None = None,
    progress: bool | None = None,
) -> tuple[list[Path], list[tuple[Path, str]], float]:
    """Decode (thread pool, ahead) -> upscale (this thread) -> encode (thread pool,
    behind). Returns the written paths, the failures and the input megapixels."""
    workers = workers or min(4, os.cpu_count() or 2)
    written: list[Path] = []
    failures: list[tuple[Path, str]] = []
    bar = _Progress(len(jobs), progress)
    lock = threading.Lock()

    def encode(job: Job, pic: Picture, megapixels: float) -> None:
        try:
            job.dst.parent.mkdir(parents=True, exist_ok=True)
            encode_image(pic, job.dst, job.fmt, quality, png_compression)
        except Exception as exc:  # noqa: BLE001 - one file's problem, reported
            fail(job, f"cannot write {job.dst}: {describe_error(exc)}")
            return
        with lock:
            written.append(job.dst)
        bar.done(megapixels)

    def fail(job: Job, reason: str) -> None:
        with lock:
            failures.append((job.src, reason))
        bar.failed()

    decoders = ThreadPoolExecutor(workers, thread_name_prefix="ganpipe-decode")
    encoders = ThreadPoolExecutor(workers, thread_name_prefix="ganpipe-encode")
    ahead: deque[tuple[Job, Future]] = deque()
    behind: deque[tuple[Future, int]] = deque()
    pending = iter(jobs)
    try:

        def refill() -> None:
            while len(ahead) < workers + 1:
                job = next(pending, None)
                if job is None:
                    return
                ahead.append((job, decoders.submit(decode_image, job.src)))

        refill()
        while ahead:
            job, fut = ahead.popleft()
            refill()
            try:
                pic = fut.result()
            except Exception as exc:  # noqa: BLE001 - one file's problem, reported
                fail(job, describe_error(exc))
                continue
            h, w = pic.color.shape[:2]
            s = upscaler.scale
            if max(h, w) * s > MAX_SIDE[job.fmt]:
                fail(
                    job,
                    f"the output ({w * s}x{h * s}) is too large for {job.fmt} (at "
                    f"most {MAX_SIDE[job.fmt]} pixels a side); use --format png",
                )
                continue
            try:
                result = upscaler.upscale(pic, output_bits(pic, job.fmt))
            except GanpipeError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the model rejects this size
                fail(job, f"upscaling failed: {describe_error(exc)}")
                continue
            size = result.color.nbytes + (result.alpha.nbytes if result.alpha is not None else 0)
            while behind and (
                len(behind) >= workers or sum(b for _, b in behind) + size > MAX_PENDING_BYTES
            ):
                behind.popleft()[0].result()
            behind.append((encoders.submit(encode, job, result, pic.megapixels), size))
            del pic, result
        while behind:
            behind.popleft()[0].result()
    finally:
        decoders.shutdown(wait=True, cancel_futures=True)
        encoders.shutdown(wait=True, cancel_futures=True)  # started writes finish
        bar.close()
    return written, failures, bar.megapixels


def upscale_path(
    input: str | Path,
    output: str | Path,
    model: str | Path | list[str | Path],
    *,
    device: str = "auto",
    tile: int = 512,
    overlap: int = 32,
    format: str | None = None,
    suffix: str = "",
    recursive: bool = False,
    skip_existing: bool = False,
    shard: str | tuple[int, int] | None = None,
    quality: int = 95,
    png_compression: int = PNG_COMPRESSION,
    alpha: str = "model",
    tta: bool = False,
    workers: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> UpscaleSummary:
    """Upscale an image file or a folder of images with a ``super_resolve`` model.

    ``model`` may be a list: the models' outputs are averaged (:class:`Ensemble`);
    ``tta`` averages each over the 8 flips / rotations of its input. Problems with the
    arguments, the input or the model raise :class:`ConfigError` before anything is
    written. Files that cannot be read, upscaled or written are listed in
    ``failures`` and the others are still done.
    """
    if not 1 <= quality <= 100:
        raise ConfigError(f"quality must be 1..100, got {quality}")
    if not 0 <= png_compression <= 9:
        raise ConfigError(f"PNG compression must be 0..9, got {png_compression}")
    check_tiling(tile, overlap)
    plan = plan_jobs(
        input,
        output,
        format=format,
        suffix=suffix,
        recursive=recursive,
        skip_existing=skip_existing,
        shard=parse_shard(shard),
    )
    paths = list(model) if isinstance(model, list | tuple) else [model]
    if not paths:
        raise ConfigError("no model given; pass -m MODEL (repeat it for an ensemble)")
    models = [open_sr_model(p, device, log) for p in paths]
    sr: SRModel | Ensemble = models[0] if len(models) == 1 and not tta else Ensemble(models, tta)
    upscaler = Upscaler(sr, tile, overlap, alpha, log)
    ensure_writable_dir(plan.out_dir)
    t0 = time.perf_counter()
    written, failures, megapixels = run_jobs(
        upscaler,
        plan.jobs,
        quality=quality,
        png_compression=png_compression,
        workers=workers,
        progress=progress,
    )
    order = {job.src: i for i, job in enumerate(plan.jobs)}
    failures = plan.failures + sorted(failures, key=lambda f: order.get(f[0], -1))
    return UpscaleSummary(
        plan.out_dir,
        written,
        plan.skipped,
        failures,
        plan.ignored,
        sr.providers,
        sr.scale,
        time.perf_counter() - t0,
        megapixels,
        upscaler.tile,
    )
