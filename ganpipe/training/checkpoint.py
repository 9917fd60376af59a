"""Atomic checkpoints: one folder per step with

* ``model.safetensors``: every net (and the EMA generator), keys ``<net>/<param>``;
* ``state.pt``: optimizer states, step, RNG states, config fingerprint, the variant's own
  ``ctx.state`` (``variant_state``, when it keeps one) - plain tensors and containers
  only, loaded with ``torch.load(..., weights_only=True)``.

A checkpoint is written under a temporary name and renamed when complete, so a crash never
leaves a half-written checkpoint where resume would find it. Replacing and pruning are
crash-safe too: a folder is renamed to a temporary name before it is deleted
(:func:`ganpipe.fsutil.discard`), and the temporary folders of killed runs are removed at
the next save (:func:`ganpipe.fsutil.remove_stale`; a live writer's are kept).
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ganpipe.errors import TrainingError
from ganpipe.fsutil import discard, remove_stale, set_aside, temp_sibling, write_error

_NAME = re.compile(r"^step_(\d{8})$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def flatten_state(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            out[f"{name}/{key}"] = value.detach().to("cpu").clone().contiguous()
    return out


def unflatten_state(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        net, _, param = key.partition("/")
        out.setdefault(net, {})[param] = value
    return out


class _Recorder(io.RawIOBase):
    """A file that keeps the first :class:`OSError` of its writes: ``torch.save`` turns a
    failed write into ``RuntimeError: [enforce fail ...] unexpected pos``, and this says
    what it was (disk full, quota...)."""

    def __init__(self, fh: io.BufferedWriter):
        super().__init__()
        self.fh, self.error = fh, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise


def _write_state(state: dict[str, Any], path: Path) -> None:
    with open(path, "wb") as fh:
        recorder = _Recorder(fh)
        try:
            torch.save(state, recorder)
        except RuntimeError:
            if recorder.error is None:
                raise
            raise recorder.error from None
        fh.flush()
        os.fsync(fh.fileno())


def _write_weights(flat: dict[str, torch.Tensor], step: int, path: Path) -> None:
    # serialised here and written by Python, so a failed write is an OSError with its errno
    data = save(flat, metadata={"step": str(step), "format": "ganpipe-checkpoint-1"})
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    modules: dict[str, torch.nn.Module],
    state: dict[str, Any],
    keep: int = 3,
) -> Path:
    """Write ``ckpt_dir/step_NNNNNNNN`` (see the module docstring) and keep the newest
    ``keep``. A write that fails (disk full, quota, read-only) is one
    :class:`~ganpipe.errors.WriteError` naming the checkpoint and what to free; the
    checkpoints written before are left as they were and no temporary folder remains."""
    final = ckpt_dir / f"step_{step:08d}"
    tmp: Path | None = None
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        remove_stale([ckpt_dir], recursive=False)  # folders of killed runs
        tmp = temp_sibling(final, directory=True)
        _write_weights(flatten_state(modules), step, tmp / "model.safetensors")
        _write_state(state, tmp / "state.pt")
        older = set_aside(final)  # a checkpoint of this step from a re-run: out of the way
        os.rename(tmp, final)
        _fsync_dir(ckpt_dir)
        if older is not None:
            shutil.rmtree(older, ignore_errors=True)
    except OSError as exc:  # named after the checkpoint, not its temporary folder
        plain = OSError(exc.errno, exc.strerror or str(exc))
        raise write_error(final, plain, "checkpoint") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(ckpt_dir)[:-keep] if keep > 0 else []:
        discard(old)
    return final


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders are ignored)."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def load_weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Weights of a checkpoint folder (or a ``.safetensors`` file), grouped by net."""
    file = path / "model.safetensors" if path.is_dir() else path
    try:
        return unflatten_state(load_file(str(file)))
    except (OSError, SafetensorError) as exc:
        raise TrainingError(
            f"{file}: cannot read weights ({exc}); delete the checkpoint or re-run with --force"
        ) from None


def load_state(path: Path) -> dict[str, Any]:
    """The training state of a checkpoint folder (``torch.load(weights_only=True)``); a
    file holding other Python objects is refused, in one line."""
    file = path / "state.pt"
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign files
        from ganpipe.weights.read import load_problem

        unsafe, reason = load_problem(exc)
        what = "refusing to load the training state" if unsafe else "cannot read training state"
        raise TrainingError(
            f"{file}: {what} ({reason}); delete the checkpoint or re-run with --force"
        ) from None


def load_optimizer(path: Path, name: str, opt: torch.optim.Optimizer, saved: dict) -> None:
    """``opt.load_state_dict(saved)``, refused in one line when the checkpoint's optimizer
    ``name`` is another algorithm (its hyper-parameter keys differ: Adam's ``betas`` against
    RMSprop's ``alpha``, e.g. a WGAN run with ``clip`` started before it trained with
    RMSprop), instead of a KeyError at the next step."""
    mine = {k for g in opt.param_groups for k in g if k != "params"}
    theirs = {k for g in saved.get("param_groups", []) for k in g if k != "params"}
    differ = sorted(mine ^ theirs)
    if differ and ({"betas", "alpha", "momentum"} & set(differ)):
        raise TrainingError(
            f"checkpoint {path} was made with another optimizer for {name!r} than this "
            f"run's {type(opt).__name__} (settings {', '.join(differ[:3])} differ); re-run "
            f"with --force to start over"
        )
    opt.load_state_dict(saved)
