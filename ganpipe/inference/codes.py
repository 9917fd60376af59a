"""What a user picks of a generator's inputs: class labels (``--label``) and fixed latent
codes (``--code``), checked against the model's card and turned into arrays. Torch-free.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ganpipe.errors import GanpipeError
from ganpipe.inference.options import ALL_LABELS
from ganpipe.inference.session import OnnxModel
from ganpipe.modelcard import InputSpec

__all__ = ["CODE_KINDS", "resolve_codes", "resolve_labels"]


def resolve_labels(
    model: OnnxModel, labels: Sequence[str | int] | str | None, n: int
) -> np.ndarray | None:
    """Labels for ``n`` samples from class indices or names, ``"all"`` or ``None``.

    ``None`` on a conditional model cycles through all classes. The labels repeat to ``n``.
    """
    names = list(model.card.class_names)
    if not model.card.conditional:
        if labels not in (None, ALL_LABELS, []):
            raise GanpipeError(f"{model.path.name} is not conditional; drop --label")
        return None
    if not names:
        raise GanpipeError(
            f"{model.path}: conditional model without class names in its "
            f"metadata; re-export it with ganpipe"
        )
    if labels in (None, ALL_LABELS, []):
        chosen = list(range(len(names)))
    else:
        if isinstance(labels, str | int):
            labels = [labels]
        chosen = []
        for item in labels:
            text = str(item).strip()
            if text in names:
                chosen.append(names.index(text))
            elif text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
                chosen.append(int(text))
            else:
                listing = ", ".join(f"{i}={c}" for i, c in enumerate(names))
                raise GanpipeError(
                    f"--label {text!r} is not a class of {model.path.name}; "
                    f"use an index 0..{len(names) - 1} or a name ({listing})"
                )
    return np.resize(np.array(chosen, dtype=np.int64), n)


#: Input kinds that are latent codes a user may fix (InfoGAN-style models).
CODE_KINDS = ("categorical", "uniform")


def _describe_code(spec: InputSpec) -> str:
    name, shape = spec.name, spec.shape
    if spec.kind == "categorical":
        count, k = math.prod(shape[:-1]), shape[-1]
        what = (
            f"{count} comma-separated class indices or one for all, each"
            if count > 1
            else "class index"
        )
        return f"{name} (categorical: {what} 0..{k - 1})"
    count = math.prod(shape)
    what = f"{count} comma-separated floats or one for all" if count > 1 else "one float"
    return f"{name} (continuous: {what}, trained on -1..1)"


def _parts(value: Any) -> list:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",")]
    if isinstance(value, list | tuple | np.ndarray):
        return list(np.ravel(np.asarray(value, dtype=object)))
    return [value]


def _parse_code(spec: InputSpec, value: Any) -> np.ndarray:
    """The fixed per-sample value of one code: int64 class indices of shape
    ``shape[:-1]`` (categorical) or float32 values of ``shape`` (uniform)."""
    shape = spec.shape
    parts = _parts(value)
    if spec.kind == "categorical":
        lead, k = shape[:-1], shape[-1]
        idx = []
        for p in parts:
            text = str(p).strip()
            if isinstance(p, bool) or not re.fullmatch(r"[+-]?\d+", text):
                raise ValueError(f"{text!r} is not a class index")
            if not 0 <= int(text) < k:
                raise ValueError(f"class index {text} is out of range 0..{k - 1}")
            idx.append(int(text))
        values, count = np.array(idx, dtype=np.int64), math.prod(lead)
    else:
        floats = []
        for p in parts:
            try:
                f = float(str(p).strip()) if isinstance(p, str) else float(p)
            except (TypeError, ValueError):
                raise ValueError(f"{str(p).strip()!r} is not a number") from None
            if not math.isfinite(f):
                raise ValueError(f"{f} is not finite")
            floats.append(f)
        values, count, lead = np.array(floats, dtype=np.float32), math.prod(shape), shape
    if len(values) not in (1, count):
        raise ValueError(f"{len(values)} values given, it takes 1 or {count}")
    if len(values) == 1:
        return np.full(lead, values[0], dtype=values.dtype)
    return values.reshape(lead)


def resolve_codes(model: OnnxModel, codes: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """Check and convert user-fixed latent codes (``{"c_cat": 3, "c_cont": [0.5, -1]}``;
    strings like ``"0.5,-1"`` too) against the model's code inputs."""
    if not codes:
        return {}
    specs = {s.name: s for s in model.card.inputs if s.kind in CODE_KINDS}
    if not specs:
        raise GanpipeError(f"{model.path.name} has no latent code inputs; drop --code")
    listing = "; ".join(_describe_code(s) for s in specs.values())
    out = {}
    for name, value in codes.items():
        if name not in specs:
            raise GanpipeError(
                f"--code {name}: {model.path.name} has no code {name!r}; its codes are: {listing}"
            )
        try:
            out[name] = _parse_code(specs[name], value)
        except ValueError as exc:
            shown = value if isinstance(value, str) else repr(value)
            raise GanpipeError(
                f"--code {name}={shown}: {exc}; {model.path.name} codes: {listing}"
            ) from None
    return out
