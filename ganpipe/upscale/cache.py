"""Released super-resolution weights (``.pth`` / ``.safetensors``, e.g. Real-ESRGAN's) as
models: converted to ONNX once, with torch (``weights_only=True``), and cached by content
hash, so that later runs open the cached ``.onnx`` without torch.

The only module of :mod:`ganpipe.upscale` that reaches into torch land, and only inside
:func:`converted_model`, when a conversion is needed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganpipe.errors import ConfigError, WriteError
from ganpipe.fsutil import ensure_writable_dir

#: released weight files that :func:`ganpipe.upscale.model.open_sr_model` converts to ONNX
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
#: bump when the conversion changes, so cached conversions are redone (2: window nets are
#: captured with checked dynamic axes; version 1 could fix the batch of SwinIR, HAT, ...)
CONVERSION_VERSION = 2


def cache_dir() -> Path:
    """Where converted weights are kept: ``$GANPIPE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/ganpipe``, else ``~/.cache/ganpipe``."""
    if os.environ.get("GANPIPE_CACHE_DIR"):
        return Path(os.environ["GANPIPE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ganpipe"


def is_weights(path: str | Path) -> bool:
    """True for a released weights file (by suffix), which needs converting first."""
    return Path(path).suffix.lower() in WEIGHT_SUFFIXES


def _digest(*files: Path, extra: str = "") -> str:
    """The content hash of ``files`` (and ``extra``), under the conversion's version."""
    digest = hashlib.sha256(f"ganpipe-import-v{CONVERSION_VERSION}\0".encode())
    for path in files:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    digest.update(extra.encode())
    return digest.hexdigest()[:16]


def converted_model(
    weights: Path,
    log: Callable[[str], Any] | None = None,
    *,
    denoise: tuple[Path, float] | None = None,
) -> Path:
    """The ONNX model of released SR weights (``.pth`` / ``.safetensors``), converted once
    with :mod:`ganpipe.weights` (torch, ``weights_only=True``) and cached by the file's
    content hash: later runs open the cached ``.onnx`` without torch. ``denoise``
    (``(other, S)``): the dni interpolation ``S * weights + (1 - S) * other`` instead,
    cached by both files' hashes and ``S``."""
    files = [weights] + ([denoise[0]] if denoise else [])
    for path in files:
        if not path.is_file():
            raise ConfigError(f"model {path} does not exist")
    if denoise is None:
        name = f"{weights.stem}-{_digest(weights)}"
    else:
        strength = float(denoise[1])
        name = (
            f"{weights.stem}+{denoise[0].stem}-dni{strength:g}-"
            f"{_digest(weights, denoise[0], extra=repr(strength))}"
        )
    target = cache_dir() / "imported" / f"{name}.onnx"
    if target.is_file():
        return target
    writable_cache(target.parent)  # before the minutes a conversion can take
    try:
        from ganpipe.weights import export_net, load_interpolated, load_model
    except ImportError:
        raise ConfigError(
            f"{weights.name}: converting weights to ONNX needs PyTorch, which "
            f"is not installed here; run `ganpipe import {weights.name}` where "
            f"it is and pass the .onnx"
        ) from None
    if denoise is None:
        net, arch = load_model(weights)  # a file that cannot be imported fails here, quietly
        source = weights.name
    else:
        net, arch, source = load_interpolated(weights, denoise[0], denoise[1])
    (log or (lambda msg: None))(
        f"converting {source} ({arch.variant} x{arch.scale}) to ONNX, once; cached as {target}"
    )
    try:
        export_net(net, arch, target, source, log=log, what="conversion cache file")
    except WriteError as exc:  # disk full ...: the cache can live elsewhere
        raise WriteError(f"{exc}; {MOVE_CACHE}", exc.errno, exc.filename) from None
    return target


#: how to put the conversion cache elsewhere, said when it cannot be written
MOVE_CACHE = "set GANPIPE_CACHE_DIR to a writable folder with free space"


def writable_cache(folder: Path) -> Path:
    """``folder`` of the conversion cache, created and checked writable (a file can be
    made there): a one-line error naming it and :envvar:`GANPIPE_CACHE_DIR` if not."""
    return ensure_writable_dir(folder, "conversion cache", f"{MOVE_CACHE}, or fix its permissions")
