"""Latent-to-image generation with ONNX Runtime (no torch).

:func:`generate_to_folder` is what ``ganpipe generate`` and the ``[generate]`` stage call,
with a :class:`~ganpipe.inference.options.GenerateOptions`; :func:`generate_batches` and
:func:`sample_inputs` are the steps below it, for callers with an open model (evaluate).
Everything the model needs is read from its typed card (:class:`ganpipe.modelcard.ModelCard`).

The model is held to its card (:mod:`ganpipe.inference.contract`): declared sizes are
checked against the memory budget before it runs, each batch's output before anything is
written; a model that fails to run or lies is one :class:`~ganpipe.errors.ModelFileError`
line. Runs are bounded (:mod:`ganpipe.inference.watchdog`): SIGTERM and Ctrl-C stop a run
in flight, and ``timeout`` stops a batch that takes longer. What cannot be written - a
batch over the timeout, an image with non-finite values, every image from the first one
a full disk refuses - is counted in :attr:`GenerateSummary.not_written` with its reason;
the images written are complete (atomic writes) and kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganpipe.cpus import limits
from ganpipe.data.imageio import make_grid, save_image, to_uint8
from ganpipe.errors import GanpipeError, ModelFileError
from ganpipe.fsutil import ensure_writable_dir, write_error
from ganpipe.inference.codes import CODE_KINDS, resolve_codes, resolve_labels
from ganpipe.inference.contract import check_generator, check_images, finite_items
from ganpipe.inference.options import GenerateOptions
from ganpipe.inference.ortlog import describe
from ganpipe.inference.session import OnnxModel, open_model
from ganpipe.inference.truncation import (
    check_truncation,
    psi_values,
    truncate,
    truncation_mode,
)
from ganpipe.inference.watchdog import RunTimeout, deadline
from ganpipe.inputs import draw, input_kind
from ganpipe.options import validate

__all__ = [
    "CODE_KINDS",
    "GenerateSummary",
    "NotWritten",
    "generate_batches",
    "generate_options",
    "generate_to_folder",
    "resolve_codes",
    "resolve_labels",
    "run_batch",
    "sample_inputs",
]

#: most images in grid.png
GRID_MAX = 256
NON_FINITE = "the model's output has non-finite values (NaN or inf)"


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
    noise of a seed does not depend on the codes or the truncation chosen. Each input is
    drawn by its kind's numpy sampler (:mod:`ganpipe.inputs`; a plugin's kind loads the
    plugins, a built-in one does not). ``truncation`` (and ``truncation_cutoff``) as
    :mod:`ganpipe.inference.truncation` says for the model: Gaussian noise redrawn, or psi
    fed to its ``truncation`` input (1 when unset)."""
    check_truncation(model.path.name, model.card, truncation, truncation_cutoff)
    redraw_z = truncation is not None and truncation_mode(model.card) == "z_redraw"
    rng = np.random.default_rng(seed)
    redraws = np.random.default_rng([seed, 0x7C])
    fixed = resolve_codes(model, codes)
    feeds = {}
    for spec in model.card.inputs:
        name, shape = spec.name, spec.shape
        if spec.kind == "truncation":
            feeds[name] = psi_values(spec, n, truncation, truncation_cutoff)
            continue
        if spec.kind == "label":
            feeds[name] = labels if labels is not None else np.zeros(n, np.int64)
            continue
        kind = input_kind(spec.kind)
        if kind is None or not kind.drawn:
            raise GanpipeError(
                f"{model.path.name}: input {name!r} has kind {spec.kind!r}, which neither "
                f"this ganpipe nor an installed plugin draws; install the plugin that "
                f"trained it (variant {model.card.variant or '?'!r}) or upgrade ganpipe"
            )
        values = draw(kind, rng, n, shape)  # the kind's numpy sampler (ganpipe.inputs)
        if spec.kind == "normal" and redraw_z:
            values = truncate(values, truncation, redraws)
        elif spec.kind == "categorical" and name in fixed:
            idx = np.broadcast_to(fixed[name], (n, *shape[:-1]))
            values = np.eye(shape[-1], dtype=np.float32)[idx]
        elif spec.kind == "uniform" and name in fixed:
            values = np.broadcast_to(fixed[name], values.shape).copy()
        feeds[name] = values
    return feeds


def run_batch(model: OnnxModel, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """One batch through the model: float32 ``(batch, channels, height, width)`` as its
    card says (:func:`~ganpipe.inference.contract.check_images`). A run that fails is one
    line: :class:`ModelFileError`, or out of memory a :class:`GanpipeError` that says
    what to lower; :class:`~ganpipe.inference.watchdog.RunTimeout` is the caller's."""
    n = len(next(iter(feeds.values())))
    try:
        y = model.run(dict(feeds))
    except (GanpipeError, RunTimeout):
        raise
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own kinds
        reason = describe(exc)
        name = model.path.name
        if "failed to allocate" in reason.lower() or "out of memory" in reason.lower():
            raise GanpipeError(
                f"{name}: out of memory for a batch of {n} ({reason}); use a smaller "
                f"--batch-size, or --device cpu"
            ) from None
        raise ModelFileError(
            f"{name} fails to run ({reason}); the model is broken: re-export it with ganpipe"
        ) from None
    return check_images(model.path.name, y, n, model.card.channels)


def _all_broken(model: OnnxModel, bad: int, n: int) -> ModelFileError:
    return ModelFileError(
        f"{model.path.name} gives non-finite values (NaN or inf) for {bad} of {n} images; "
        f"the model is broken (did its training diverge?): retrain or re-export it"
    )


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
    ``truncation_cutoff``) truncate as the model's card says (see :func:`sample_inputs`).
    Every image must come out whole: a non-finite value is a :class:`ModelFileError`."""
    step = batch_size or GenerateOptions.model_fields["batch_size"].default
    check_generator(model.path.name, model.card, model.session.get_inputs(), min(step, n), n)
    feeds = sample_inputs(model, n, seed, labels, codes, truncation, truncation_cutoff)
    for start in range(0, n, step):
        y = run_batch(model, {k: v[start : start + step] for k, v in feeds.items()})
        bad = int((~finite_items(y)).sum())
        if bad:
            raise _all_broken(model, bad, len(y))
        yield to_uint8(y, model.card.value_range)


@dataclass(frozen=True)
class NotWritten:
    """Images ``first`` to ``last`` (file names; ``count`` of them) that were not
    written, and why."""

    first: str
    last: str
    count: int
    reason: str

    def line(self) -> str:
        names = self.first if self.count == 1 else f"{self.first} to {self.last}"
        return f"{names} ({self.count} image{'s' * (self.count != 1)}): {self.reason}"


@dataclass
class GenerateSummary:
    out_dir: Path
    files: list[Path]
    grid: Path | None
    providers: list[str]
    #: images not written, in runs of one reason
    not_written: list[NotWritten] = field(default_factory=list)
    #: what is worth a warning line: ONNX Runtime's load messages, outputs far outside
    #: the card's value range (clipped)
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        """How many of the images asked for were not written."""
        return sum(g.count for g in self.not_written)


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


def _far_outside(name: str, y: np.ndarray, ok: np.ndarray, value_range) -> str | None:
    """A note when the finite images' values reach far beyond the card's value range
    (more than its width beyond either end): the card's range is probably wrong."""
    if not ok.any():
        return None
    lo, hi = value_range
    good = y[ok]
    low, high = float(good.min()), float(good.max())
    if low >= lo - (hi - lo) and high <= hi + (hi - lo):
        return None
    return (
        f"{name}: its output spans [{low:.3g}, {high:.3g}], far outside the value_range "
        f"[{lo:g}, {hi:g}] of its model card; values were clipped: check the card"
    )


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
    of each batch done (written or not).

    Images keep their number whatever happens to the others (``sample_00007.png`` is
    always the eighth draw of the seed). A batch over ``timeout`` and images with
    non-finite values are not written, and the others are; a write that fails (a full
    disk) stops the run, with the images written kept: each case is a
    :class:`NotWritten` of the summary. A model whose first batch is all non-finite is
    refused (:class:`ModelFileError`), as is one whose card or output is wrong."""
    opts = generate_options(options, **fields)
    with limits(opts.threads):  # the session's threads (0: the run's, or automatic)
        model = open_model(model_path, opts.device, task="generate")
    name = model.path.name
    check_truncation(name, model.card, opts.truncation, opts.truncation_cutoff)
    n, step = opts.count, min(opts.batch_size, opts.count)
    lab = resolve_labels(model, opts.labels, n)
    fixed = resolve_codes(model, opts.codes)
    check_generator(name, model.card, model.session.get_inputs(), step, n)
    out = ensure_writable_dir(out_dir)
    summary = GenerateSummary(out, [], None, model.providers, notes=list(model.notes))
    width = max(5, len(str(n - 1)))

    def file_name(i: int) -> str:
        return f"{prefix}{i:0{width}d}.png"

    def not_written(first: int, count: int, reason: str) -> None:
        last = summary.not_written[-1] if summary.not_written else None
        if last is not None and last.reason == reason and last.last == file_name(first - 1):
            summary.not_written[-1] = NotWritten(
                last.first, file_name(first + count - 1), last.count + count, reason
            )
        else:
            summary.not_written.append(
                NotWritten(file_name(first), file_name(first + count - 1), count, reason)
            )

    feeds = sample_inputs(model, n, opts.seed, lab, fixed, opts.truncation, opts.truncation_cutoff)
    grid_images: list[np.ndarray] = []
    stopped = warned_range = False
    for start in range(0, n, step):
        size = min(step, n - start)
        try:
            with deadline(opts.timeout):
                y = run_batch(model, {k: v[start : start + step] for k, v in feeds.items()})
        except RunTimeout as exc:
            not_written(start, size, str(exc))
            if on_batch:
                on_batch(size)
            continue
        ok = finite_items(y)
        if not ok.any() and not summary.files:  # nothing comes out whole: the model
            raise _all_broken(model, size, size)
        far = None if warned_range else _far_outside(name, y, ok, model.card.value_range)
        if far:
            summary.notes.append(far)
            warned_range = True
        whole = y if ok.all() else np.where(ok[:, None, None, None], y, 0.0)
        images = to_uint8(whole, model.card.value_range)
        for i, img in enumerate(images):
            if not ok[i]:
                not_written(start + i, 1, NON_FINITE)
                continue
            try:
                summary.files.append(save_image(img, out / file_name(start + i)))
            except OSError as exc:  # disk full, quota, read-only...: one line
                reason = str(write_error(out / file_name(start + i), exc, "image"))
                not_written(start + i, n - start - i, reason)
                stopped = True
                break
            if opts.grid and sum(len(b) for b in grid_images) < GRID_MAX:
                grid_images.append(img[None])
        if on_batch:
            on_batch(size)
        if stopped:
            break
    if opts.grid and grid_images and not stopped:
        try:
            grid = make_grid(np.concatenate(grid_images)[:GRID_MAX])
            summary.grid = save_image(grid, out / "grid.png")
        except OSError as exc:
            summary.notes.append(str(write_error(out / "grid.png", exc, "grid")))
    return summary
