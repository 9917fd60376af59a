"""Transfer learning: start training from existing weights (``[train] init_from``).

``init_from`` may be

* a ganpipe checkpoint: a ``train/checkpoints/step_N`` folder, or its ``model.safetensors``
  (keys ``<net>/<param>``). Each net of the new run (G, D, ...) takes the tensors of the
  net of the same name (the EMA generator starts as a copy of the initialised one);
* released super-resolution weights (``.pth`` / ``.safetensors``; Real-ESRGAN / BasicSR
  layouts, ``params_ema`` / ``params`` wrappers, the original ESRGAN names - read by
  :mod:`ganpipe.weights`, ``torch.load(weights_only=True)`` only): they go into the
  variant's generator net (:attr:`ganpipe.Variant.generator_net`, ``G``), so
  ``esrgan`` and ``compact`` fine-tune ``RealESRGAN_x4plus.pth`` or
  ``realesr-general-x4v3.pth`` on your own photos.

A tensor is taken when its name and shape match, so a model trained on other classes
(BigGAN's class embedding) still gives everything else; what is skipped is listed in the
log. A net of which less than half fits, or a file with nothing for any net, is an error
(another architecture or other sizes, not a transfer). Only a fresh run is
initialised: a resumed run continues from its own checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganpipe.errors import ConfigError, ModelFileError
from ganpipe.variant import Variant

#: suffixes of released weight files (anything else must be a checkpoint)
RELEASED = (".pth", ".pt", ".ckpt", ".bin")


def read_init_weights(
    path: Path, generator: str = Variant.generator_net
) -> tuple[dict[str, dict[str, torch.Tensor]], str]:
    """``({net: state_dict}, what it is)`` from a checkpoint folder or file, or released
    SR weights (as ``{generator: ...}``)."""
    from ganpipe.training import checkpoint as ckpt

    if not path.exists():
        raise ConfigError(
            f"train.init_from: {path} does not exist; give a ganpipe checkpoint "
            f"(train/checkpoints/step_N) or a .pth / .safetensors weights file"
        )
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise ConfigError(
                f"train.init_from: {path} is a folder without model.safetensors; "
                f"give a ganpipe checkpoint folder (train/checkpoints/step_N)"
            )
        return ckpt.load_weights(path), "checkpoint"
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as fh:
                keys = list(fh.keys())
        except Exception as exc:  # noqa: BLE001 - not a safetensors file
            raise ModelFileError(
                f"train.init_from: {path} is not a readable .safetensors "
                f"file ({type(exc).__name__})"
            ) from None
        if keys and all("/" in k for k in keys):  # ganpipe's <net>/<param> layout
            return ckpt.load_weights(path), "checkpoint"
    elif path.suffix.lower() not in RELEASED:
        raise ConfigError(
            f"train.init_from: unknown weights format {path.suffix!r} ({path}); "
            f"use a checkpoint folder, .safetensors or .pth"
        )
    from ganpipe.weights import read_state_dict, to_basicsr_layout

    return {generator: to_basicsr_layout(read_state_dict(path), path)}, "released weights"


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """Copy the tensors of ``state`` whose names and shapes match ``module``'s; returns
    (how many were copied, descriptions of the module's tensors that were not)."""
    own = module.state_dict()
    taken, skipped = {}, []
    for key, value in own.items():
        other = state.get(key)
        if other is None:
            skipped.append(f"{key} (missing)")
        elif tuple(other.shape) != tuple(value.shape):
            skipped.append(f"{key} ({tuple(other.shape)} vs {tuple(value.shape)})")
        else:
            taken[key] = other.to(value.dtype)
    if taken:
        module.load_state_dict(taken, strict=False)
    return len(taken), skipped


def initialise(
    path: Path, nets: dict[str, torch.nn.Module], log, generator: str = Variant.generator_net
) -> None:
    """Load ``path`` into ``nets`` (see the module docstring; released weights go into
    net ``generator``); logs what was taken."""
    weights, kind = read_init_weights(path, generator)
    total = 0
    for name, module in nets.items():
        source = weights.get(name)
        if source is None:
            continue
        count, skipped = load_matching(module, source)
        if count * 2 < len(module.state_dict()):  # a stray bias or two: another model
            raise ModelFileError(
                f"train.init_from: {path} fits only {count} of the "
                f"{len(module.state_dict())} tensors of {name} (first misfit: "
                f"{skipped[0]}); check the variant and its sizes (num_feat, num_block, ...)"
            )
        total += count
        note = ""
        if skipped:
            shown = ", ".join(skipped[:3]) + (
                f", ... ({len(skipped)} in all)" if len(skipped) > 3 else ""
            )
            note = f"; kept fresh: {shown}"
        log(
            f"train: {name} initialised from {path.name} ({kind}): {count} of "
            f"{len(module.state_dict())} tensors{note}"
        )
    if total == 0:
        nets_there = ", ".join(sorted(weights)) or "none"
        raise ModelFileError(
            f"train.init_from: no tensor of {path} fits this model (nets in "
            f"the file: {nets_there}; names or shapes differ); check the "
            f"variant and its sizes (num_feat, num_block, ...)"
        )
