"""Reading weight files safely: ``.pth`` / ``.pt`` with ``torch.load(weights_only=True)``
only (no arbitrary code runs while unpickling), ``.safetensors`` with safetensors (the
preferred format: no pickle at all); the state dict unwrapped from ``params_ema``
(preferred) / ``params`` / ``state_dict`` / ... and stripped of a ``module.`` prefix
(DataParallel). spandrel's architectures are detected from these tensors too: spandrel
itself never opens a file (its loader unpickles with its own unpickler)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ganpipe.errors import ModelFileError, one_line

PTH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


#: torch's own advice around a refused file (never shown: it says to turn the check off)
_ADVICE = re.compile(
    r"weights.only|Weights only load failed|Check the documentation|file an issue|"
    r"arbitrary code|trusted source|safe_globals",
    re.IGNORECASE,
)


def load_problem(exc: BaseException) -> tuple[bool, str]:
    """``(unsafe, one-line reason)`` for a failed ``torch.load(weights_only=True)``:
    ``unsafe`` when the file holds Python objects (a pickled global) that could run code
    when unpickled. The reason never repeats torch's advice to set ``weights_only=False``."""
    text = str(exc)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return True, (
            f"the file holds Python objects besides tensors ({m.group(1)}), which could run "
            f"code when unpickled"
        )
    lines = [" ".join(ln.split()) for ln in text.splitlines()]
    kept = [ln for ln in lines if ln and not _ADVICE.search(ln)]
    detail = one_line(kept[0]) if kept else ""
    return False, f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file, unwrapped from ``params_ema`` / ``params``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"weights file {path} does not exist or is not a file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelFileError(
                f"{path}: not a readable .safetensors file ({one_line(exc)})"
            ) from None
    elif path.suffix.lower() in PTH_SUFFIXES:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle raises many kinds
            unsafe, reason = load_problem(exc)
            if unsafe:
                raise ModelFileError(
                    f"{path}: refusing to load: {reason}; only plain state dicts (or "
                    f".safetensors) can be imported"
                ) from None
            raise ModelFileError(
                f"{path}: not a readable PyTorch weights file ({reason})"
            ) from None
    else:
        raise ModelFileError(
            f"{path}: unknown weights format {path.suffix!r}; use .pth or .safetensors"
        )
    return unwrap(raw, path)


#: the wrappers a state dict is found in, in order of preference (BasicSR's EMA weights
#: first; the others are what spandrel's canonicalisation unwraps too)
WRAPPERS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net")
#: prefixes stripped when every key has them (DataParallel, some GAN trainers)
PREFIXES = ("module.", "netG.")


def unwrap(raw: Any, path: str | Path = "weights") -> dict[str, torch.Tensor]:
    """The state dict inside ``raw``: the first of :data:`WRAPPERS` that holds a mapping
    (``params_ema`` before ``params``), else the only entry when it is a mapping, else
    ``raw``; non-tensor entries are dropped and a common prefix (:data:`PREFIXES`) is
    stripped."""
    if isinstance(raw, dict):
        inner = next((raw[k] for k in WRAPPERS if isinstance(raw.get(k), dict)), None)
        if inner is None and len(raw) == 1 and isinstance(next(iter(raw.values())), dict):
            inner = next(iter(raw.values()))
        raw = raw if inner is None else inner
    if not isinstance(raw, dict):
        raise ModelFileError(
            f"{path}: expected a state dict (a mapping of names to tensors), "
            f"found {type(raw).__name__}"
        )
    state = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ModelFileError(
            f"{path}: no tensors found (keys: {', '.join(map(str, list(raw)[:5])) or 'none'})"
        )
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state
