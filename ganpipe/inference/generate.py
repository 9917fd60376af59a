"""Latent-to-image generation with ONNX Runtime (no torch).

:func:`generate_to_folder` is what ``ganpipe generate`` and the ``[generate]`` stage call,
with a :class:`~ganpipe.inference.options.GenerateOptions`; :func:`generate_batches` and
:func:`sample_inputs` are the steps below it, for callers with an open model (evaluate).
Everything the model needs is read from its typed card (:class:`ganpipe.modelcard.ModelCard`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganpipe.data.imageio import make_grid, save_image, to_uint8
from ganpipe.errors import GanpipeError
from ganpipe.fsutil import ensure_writable_dir
from ganpipe.inference.options import ALL_LABELS, GenerateOptions
from ganpipe.inference.session import OnnxModel, open_model
from ganpipe.inference.truncation import (
    check_truncation,
    psi_values,
    truncate,
    truncation_mode,
)
from ganpipe.modelcard import InputSpec
from ganpipe.options import validate

#: most images in grid.png
GRID_MAX = 256


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


def sample_inputs(
    model: OnnxModel,
    n: int,
    seed: int,
    labels: np.ndarray | None,
    codes: Mapping[str, Any] | None = None,
    truncation: float | None = None,
    truncation_cutoff: int | None = None,
) -> dict[str, np.ndarray]:
    """Inputs for ``n`` samples. Random draws happen for every input in order even where a
    code is fixed or the noise truncated (redraws come from a stream of their own), so the
    noise of a seed does not depend on the codes or the truncation chosen. ``truncation``
    (and ``truncation_cutoff``) as :mod:`ganpipe.inference.truncation` says for the model:
    Gaussian noise redrawn, or psi fed to its ``truncation`` input (1 when unset)."""
    check_truncation(model.path.name, model.card, truncation, truncation_cutoff)
    redraw_z = truncation is not None and truncation_mode(model.card) == "z_redraw"
    rng = np.random.default_rng(seed)
    redraws = np.random.default_rng([seed, 0x7C])
    fixed = resolve_codes(model, codes)
    feeds = {}
    for spec in model.card.inputs:
        name, shape = spec.name, spec.shape
        if spec.kind == "normal":
            feeds[name] = rng.standard_normal((n, *shape), dtype=np.float32)
            if redraw_z:
                feeds[name] = truncate(feeds[name], truncation, redraws)
        elif spec.kind == "truncation":
            feeds[name] = psi_values(spec, n, truncation, truncation_cutoff)
        elif spec.kind == "label":
            feeds[name] = labels if labels is not None else np.zeros(n, np.int64)
        elif spec.kind == "categorical":
            idx = rng.integers(0, shape[-1], (n, *shape[:-1]))
            if name in fixed:
                idx = np.broadcast_to(fixed[name], idx.shape)
            feeds[name] = np.eye(shape[-1], dtype=np.float32)[idx]
        elif spec.kind == "uniform":
            values = rng.uniform(-1.0, 1.0, (n, *shape)).astype(np.float32)
            if name in fixed:
                values = np.broadcast_to(fixed[name], values.shape).copy()
            feeds[name] = values
        else:
            raise GanpipeError(
                f"{model.path.name}: input kind {spec.kind!r} is not "
                f"supported by this version of ganpipe; upgrade ganpipe"
            )
    return feeds


def generate_batches(
    model: OnnxModel,
    n: int,
    seed: int,
    labels: np.ndarray | None = None,
    batch_size: int | None = None,
    codes: Mapping[str, Any] | None = None,
    truncation: float | None = None,
    truncation_cutoff: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield uint8 NHWC batches, ``n`` images in all; the same for any ``batch_size``
    (default: :class:`GenerateOptions`'). ``labels`` as :func:`resolve_labels` gives them;
    ``codes`` fixes latent codes (see :func:`resolve_codes`); ``truncation`` (and
    ``truncation_cutoff``) truncate as the model's card says (see :func:`sample_inputs`)."""
    step = batch_size or GenerateOptions.model_fields["batch_size"].default
    feeds = sample_inputs(model, n, seed, labels, codes, truncation, truncation_cutoff)
    for start in range(0, n, step):
        batch = {k: v[start : start + step] for k, v in feeds.items()}
        yield to_uint8(model.run(batch), model.card.value_range)


@dataclass
class GenerateSummary:
    out_dir: Path
    files: list[Path]
    grid: Path | None
    providers: list[str]


def generate_options(
    options: GenerateOptions | int | None = None, **fields: Any
) -> GenerateOptions:
    """``options`` with ``fields`` (names of :class:`GenerateOptions`) set on top, checked;
    a plain ``int`` is the count. A bad value is a one-line ConfigError naming the key."""
    if isinstance(options, int) and not isinstance(options, bool):
        options, fields = None, {"count": options, **fields}
    if options is None:
        return validate(GenerateOptions, fields, "")
    if not isinstance(options, GenerateOptions):
        raise TypeError(f"options must be GenerateOptions, got {type(options).__name__}")
    if not fields and type(options) is GenerateOptions:
        return options
    # a subclass (the stage's, whose seed may be None) becomes the library's own options
    return validate(GenerateOptions, {**options.model_dump(exclude_unset=True), **fields}, "")


def generate_to_folder(
    model_path: str | Path,
    out_dir: str | Path,
    options: GenerateOptions | int | None = None,
    *,
    prefix: str = "sample_",
    on_batch: Callable[[int], Any] | None = None,
    **fields: Any,
) -> GenerateSummary:
    """Write ``count`` PNGs (and ``grid.png``) into ``out_dir``; every file written
    atomically. ``options`` is a :class:`GenerateOptions` (or just the count), ``fields``
    set some of its fields: ``generate_to_folder(m, out, count=8, seed=1, labels=["cat"])``.

    ``codes`` fixes latent codes of InfoGAN-style models: ``{"c_cat": 3}`` (class index;
    one per code, or one for all) and ``{"c_cont": [0.5, -1.0]}`` (one float per
    dimension, or one for all); strings such as ``"0.5,-1"`` are accepted. ``truncation``
    is the truncation trick, as the model's card says: Gaussian noise values beyond it
    redrawn (dcgan, biggan, ...), or w pulled towards the average w by psi = it
    (stylegan; ``truncation_cutoff``: only the first style layers); see
    :mod:`ganpipe.inference.truncation`. ``on_batch`` is called with the number of images
    of each batch written."""
    opts = generate_options(options, **fields)
    model = open_model(model_path, opts.device, task="generate")
    check_truncation(model.path.name, model.card, opts.truncation, opts.truncation_cutoff)
    n = opts.count
    lab = resolve_labels(model, opts.labels, n)
    fixed = resolve_codes(model, opts.codes)
    out = ensure_writable_dir(out_dir)
    files: list[Path] = []
    grid_images: list[np.ndarray] = []
    width = max(5, len(str(n - 1)))
    batches = generate_batches(
        model,
        n,
        opts.seed,
        lab,
        opts.batch_size,
        codes=fixed,
        truncation=opts.truncation,
        truncation_cutoff=opts.truncation_cutoff,
    )
    for batch in batches:
        for img in batch:
            files.append(save_image(img, out / f"{prefix}{len(files):0{width}d}.png"))
        if opts.grid and sum(len(b) for b in grid_images) < GRID_MAX:
            grid_images.append(batch)
        if on_batch:
            on_batch(len(batch))
    grid_path = None
    if opts.grid:
        grid = make_grid(np.concatenate(grid_images)[:GRID_MAX])
        grid_path = save_image(grid, out / "grid.png")
    return GenerateSummary(out, files, grid_path, model.providers)
