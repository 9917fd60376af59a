"""The one image-to-image runner: :class:`SRModel` runs an exported ``.onnx`` on NCHW float32
images in [0, 1], used by ``ganpipe upscale``, the evaluate stage and the SR metrics alike.

The model contract, read from the file's model card (:class:`ganpipe.modelcard.ModelCard`,
through :func:`ganpipe.inference.session.open_model`): ``task`` = ``"super_resolve"`` (or
``"translate"``: CycleGAN's image-to-image models, scale 1; their alpha channel is kept as
it is), ``scale`` 1, 2, 3, 4 or 8, ``channels`` 3, ``value_range`` (default [0, 1]), one
``image`` input (NCHW float32, or float16 - inputs are cast), dynamic batch, height and
width, output NCHW at ``scale`` times the size; optional ``tile_multiple``: the input
height and width must be multiples of it (each input is padded by reflection, by repeating
the edge beyond what the image can reflect, and the output cropped), and ``min_size``: the
smallest height and width the net takes (smaller inputs are padded the same way).

The model is held to its card: declared sizes against the memory budget at load
(:func:`ganpipe.inference.contract.check_image_model`), then one small test image
(:meth:`SRModel.check`): an output of the wrong shape, channels or scale, or with
non-finite values, is wrong for every image, so the model is refused once in one line
instead of failing each file. Past that, an output that is wrong for one input is a
:class:`ModelOutputError` (a ``ValueError``): that file's failure. Values outside [0, 1]
are clipped when written, as for any SR net. Runs are bounded
(:mod:`ganpipe.inference.watchdog`): SIGTERM and Ctrl-C stop one in flight, and a file's
deadline (``--timeout``) stops its tiles.

``fixed_tile`` T (transformer nets such as SwinIR or HAT whose ONNX export holds only at
one shape): the graph takes exactly (1, 3, T, T). Every input no larger than T a side is
padded the same way up to T x T, its batch items run one at a time and the outputs are
cropped; a larger input is refused: :class:`~ganpipe.upscale.tiling.Upscaler` (and
:func:`~ganpipe.upscale.tiling.whole_image_runner`, for callers that run whole images) tile it
in windows of at most T. Released weights (``.pth`` /
``.safetensors``, any architecture :mod:`ganpipe.weights` reads) are converted to such a
model once (:mod:`ganpipe.upscale.cache`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ganpipe.devices import INFERENCE_KINDS, Device, parse_device
from ganpipe.errors import ConfigError, GanpipeError, ModelFileError
from ganpipe.inference.contract import check_image_model, finite_items
from ganpipe.inference.session import GpuTuning, OnnxModel, open_model
from ganpipe.inference.watchdog import RunTimeout, deadline, run_binding, run_session
from ganpipe.upscale.cache import converted_model, is_weights

#: tasks whose models map an image to an image (CycleGAN's ``translate``: scale 1), the
#: ones upscale runs; every task a model card may name is :data:`ganpipe.modelcard.TASKS`
IMAGE_TASKS = ("super_resolve", "translate")
SCALES = (1, 2, 3, 4, 8)
#: side of the test image every model runs once when opened (or its fixed tile,
#: min_size, rounded up to its tile_multiple)
PROBE_SIDE = 32


class ModelOutputError(ValueError):
    """The model's output for one input is not what its card says (shape, scale,
    channels, non-finite values): that input's failure."""


class SRModel:
    """An opened image-to-image model: ``model(x)`` maps NCHW float32 in [0, 1] to NCHW
    float32 in [0, 1] at ``scale`` times the height and width, whatever the model's own
    value range, input dtype and size multiple."""

    def __init__(self, onnx_model: OnnxModel):
        self.onnx = onnx_model
        self.path = onnx_model.path
        self.session = onnx_model.session
        card = onnx_model.card
        name = self.path.name
        if card is None or card.task not in IMAGE_TASKS:
            task = "no ganpipe" if card is None else repr(card.task)
            raise ConfigError(
                f"{name} is a {task} model; this needs a super_resolve or translate model"
            )
        self.card = card
        if card.scale not in SCALES:
            raise ConfigError(
                f"{name}: model card 'scale' is {card.scale!r}, expected 1, 2, 3, 4 or 8; "
                f"re-export the model with ganpipe"
            )
        self.scale: int = card.scale
        if card.channels != 3:
            raise ConfigError(
                f"{name}: {card.channels}-channel image models are not supported "
                f"(expected channels = 3)"
            )
        # The card's own default range is the generators' [-1, 1]; an image model that
        # states none takes and gives [0, 1].
        explicit = "value_range" in card.model_fields_set
        self.value_range: tuple[float, float] = card.value_range if explicit else (0.0, 1.0)
        self.multiple: int = card.tile_multiple
        # the smallest side the net takes (imported spandrel nets: SwinIR, HAT ... 16 px)
        self.minimum: int = card.min_size
        # a net exported at one shape (1, 3, T, T): inputs are padded to T, one at a time
        self.fixed_tile: int | None = card.fixed_tile
        if self.fixed_tile is not None:
            self.multiple = 1  # every input becomes T x T, whatever multiple the net needs
        inputs = self.session.get_inputs()
        spec = card.image_input()
        chosen = next(
            (i for i in inputs if spec is not None and i.name == spec.name),
            inputs[0] if inputs else None,
        )
        if chosen is None or len(inputs) != 1:
            raise ConfigError(
                f"{name}: expected one image input, the model has {len(inputs)} inputs"
            )
        self.input_name = chosen.name
        check_image_model(name, card)
        if self.fixed_tile is not None:
            _check_fixed_shape(name, chosen.name, list(chosen.shape or []), self.fixed_tile)
        self.dtype = np.float16 if chosen.type == "tensor(float16)" else np.float32
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = card.output if card.output in outputs else outputs[0]

        # On an accelerator, inputs and outputs go through an I/O binding: the output is
        # allocated on the device and copied once, instead of ONNX Runtime's per-run copies.
        self.io_binding = self.providers[0] in (
            "CUDAExecutionProvider",
            "TensorrtExecutionProvider",
        )

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _run(self, x: np.ndarray) -> np.ndarray:
        if not self.io_binding:
            return run_session(self.session, [self.output_name], {self.input_name: x})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, np.ascontiguousarray(x))
        on_gpu = self.providers[0] != "CPUExecutionProvider"
        binding.bind_output(self.output_name, "cuda" if on_gpu else "cpu")
        run_binding(self.session, binding)
        return binding.copy_outputs_to_cpu()[0]

    def check(self, timeout: float | None = None) -> None:
        """Run one small test image (:data:`PROBE_SIDE`, or the fixed tile or min_size)
        and refuse the model in one line (:class:`ModelFileError`) when its output is
        wrong for it: shape, channels, scale or non-finite values would be wrong for
        every image. A run that fails is left to the files (it may depend on the size);
        one longer than ``timeout`` (the per-file limit) is refused too."""
        side = self.fixed_tile or max(PROBE_SIDE, self.minimum)
        side = -(-side // self.multiple) * self.multiple
        x = probe_image(side)
        try:
            with deadline(timeout):
                self(x)
        except ModelOutputError as exc:
            raise ModelFileError(
                f"{exc} (a {side}x{side} test image); the model or its card is wrong: "
                f"re-export or re-import it"
            ) from None
        except RunTimeout:
            raise ModelFileError(
                f"{self.path.name}: a {side}x{side} test image took longer than --timeout "
                f"{timeout:g}s; the model hangs or is too slow for it: raise --timeout or "
                f"use another model"
            ) from None
        except GanpipeError:
            raise
        except Exception:  # noqa: BLE001 - a run that fails: each file will say so
            return

    def warm_up(self, side: int) -> None:
        """Run one ``side`` x ``side`` tile, so that cuDNN's algorithm search or TensorRT's
        engine build for that shape happens before the first image, not inside it (a
        fixed-tile model runs its one shape)."""
        side = min(side, self.fixed_tile or side)
        self(np.zeros((1, 3, side, side), np.float32))

    def _padding(self, h: int, w: int) -> tuple[int, int]:
        """Rows and columns to add below and right of an ``h`` x ``w`` input."""
        t = self.fixed_tile
        if t is not None:
            if h > t or w > t:
                raise ModelFileError(
                    f"{self.path.name} takes at most {t}x{t} inputs (fixed_tile in its model "
                    f"card), got {h}x{w}; tile the image (ganpipe upscale and Upscaler do)"
                )
            return t - h, t - w
        m = self.multiple
        ph, pw = max(self.minimum - h, 0), max(self.minimum - w, 0)
        return ph + -(h + ph) % m, pw + -(w + pw) % m  # then up to a multiple of m

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        s = self.scale
        ph, pw = self._padding(h, w)
        if ph or pw:  # reflect as far as the image reaches, then repeat the edge (spandrel's)
            rh, rw = min(ph, h - 1), min(pw, w - 1)
            x = np.pad(x, ((0, 0), (0, 0), (0, rh), (0, rw)), mode="reflect")
            if (rh, rw) != (ph, pw):
                x = np.pad(x, ((0, 0), (0, 0), (0, ph - rh), (0, pw - rw)), mode="edge")
        lo, hi = self.value_range
        if (lo, hi) != (0.0, 1.0):
            x = x * (hi - lo) + lo
        x = x.astype(self.dtype, copy=False)
        if self.fixed_tile is not None and n > 1:  # the graph's batch is 1
            y = np.concatenate([self._run(x[i : i + 1]) for i in range(n)])
        else:
            y = self._run(x)
        y = np.asarray(y, dtype=np.float32)
        want = (n, c, (h + ph) * s, (w + pw) * s)
        if y.shape != want:
            raise ModelOutputError(
                f"{self.path.name}: its output has shape {tuple(y.shape)} for input "
                f"{(n, c, h + ph, w + pw)}, not {want} (channels {c}, scale {s} from its "
                f"model card)"
            )
        if not finite_items(y).all():
            raise ModelOutputError(
                f"{self.path.name}: its output has non-finite values (NaN or inf)"
            )
        if ph or pw:
            y = y[:, :, : h * s, : w * s]
        if (lo, hi) != (0.0, 1.0):
            y = (y - lo) / (hi - lo)
        return y


def probe_image(side: int) -> np.ndarray:
    """The (1, 3, ``side``, ``side``) test image of :meth:`SRModel.check`: values spread
    over [0, 1) (the golden-ratio sequence, fixed), without importing ``numpy.random``
    (10 ms of every command's start)."""
    n = 3 * side * side
    return (
        (np.arange(n, dtype=np.float64) * 0.6180339887498949 % 1.0)
        .astype(np.float32)
        .reshape(1, 3, side, side)
    )


def _check_fixed_shape(name: str, input_name: str, shape: list[Any], tile: int) -> None:
    """A ``fixed_tile`` card must match the graph: batch 1 and ``tile`` x ``tile`` where the
    input's dimensions are fixed (dynamic ones, or an unknown rank, take that shape too)."""
    want = (1, None, tile, tile)
    if (
        not shape
        or len(shape) == 4
        and all(
            not isinstance(d, int) or e is None or d == e for d, e in zip(shape, want, strict=True)
        )
    ):
        return
    got = "x".join(str(d) if isinstance(d, int) else "?" for d in shape) or "unknown"
    raise ModelFileError(
        f"{name}: model card says fixed_tile {tile} (input 1x3x{tile}x{tile}), but its "
        f"input {input_name!r} is {got}; re-import or re-export the model"
    )


def gpu_tuning(tile: int, overlap: int, device: str) -> GpuTuning | None:
    """Provider settings for tiles of ``tile`` (+ ``overlap``) pixels on a GPU ``device``:
    a TensorRT profile covering every window :func:`~ganpipe.upscale.tiling.tile_windows`
    makes (at most about ``tile + overlap`` a side), and TensorRT's engine and timing
    caches under the ganpipe cache folder; ``None`` on the CPU."""
    if device.startswith("cpu"):
        return None
    from ganpipe.upscale.cache import cache_dir

    side = tile + overlap + 16 if tile else 0
    return GpuTuning("HEURISTIC", "image", 16, tile or 0, side, cache_dir() / "tensorrt")


def open_sr_model(
    path: str | Path,
    device: str | Device,
    log: Callable[[str], Any] | None = None,
    *,
    task: str | tuple[str, ...] = IMAGE_TASKS,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
    tuning: GpuTuning | None = None,
    denoise: tuple[Path, float] | None = None,
    timeout: float | None = None,
) -> SRModel:
    """Open an image-to-image model (``task``: by default ``super_resolve`` or
    ``translate``) - an ``.onnx``, or released weights converted on first use (see
    :func:`ganpipe.upscale.cache.converted_model`; ``denoise``: ``(other weights, S)``,
    the interpolation ``S * path + (1 - S) * other``) - on ONNX Runtime or another
    ``runtime`` at ``precision`` (:mod:`ganpipe.inference.runtimes`), and check it on a
    test image (:meth:`SRModel.check`, within ``timeout`` seconds); every problem is a
    one-line :class:`~ganpipe.errors.GanpipeError` whose class decides the exit status
    (a model that cannot be used: :class:`ModelFileError`). What ONNX Runtime logged
    while loading it goes to ``log``, one line each."""
    try:  # parsed once here (a Device from the options is taken as it is), then carried
        device = parse_device(device, INFERENCE_KINDS, where="device")
    except ValueError as exc:
        raise ConfigError(str(exc).removeprefix("device: ")) from None
    if is_weights(path):
        path = converted_model(Path(path), log, denoise=denoise)
    opened = open_model(
        path, device, task=task, runtime=runtime, precision=precision, tuning=tuning
    )
    for note in opened.notes if log is not None else ():
        log(f"{opened.path.name}: {note}")
    model = SRModel(opened)
    model.check(timeout)
    return model


def open_model_of(
    path: str | Path,
    opts: Any,
    log: Callable[[str], Any] | None = None,
    denoise: tuple[Path, float] | None = None,
) -> SRModel:
    """:func:`open_sr_model` with the ``device``, ``runtime``, ``precision`` and tile
    geometry of ``opts`` (:class:`~ganpipe.upscale.options.UpscaleOptions`)."""
    return open_sr_model(
        path,
        opts.device,
        log,
        runtime=opts.runtime,
        precision=opts.precision,
        tuning=gpu_tuning(opts.tile, opts.overlap, str(opts.device)),
        denoise=denoise,
        timeout=getattr(opts, "timeout", None),
    )


def open_models_of(opts: Any, log: Callable[[str], Any] | None = None) -> list[SRModel]:
    """The models of ``opts.model``: each opened (several: an ensemble), or with
    ``opts.denoise`` = S two weight files of one net as one model, the interpolation
    ``S * first + (1 - S) * second`` (Real-ESRGAN's denoise strength)."""
    strength = opts.denoise
    if strength is None:
        return [open_model_of(p, opts, log) for p in opts.model]
    paths = [Path(p) for p in opts.model]
    if len(paths) != 2 or not all(is_weights(p) for p in paths):
        given = ", ".join(p.name for p in paths) or "none"
        raise ConfigError(
            f"--denoise needs exactly two weight files (.pth / .safetensors) of one net, "
            f"e.g. -m realesr-general-x4v3.pth -m realesr-general-wdn-x4v3.pth; got {given}"
        )
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"--denoise {strength:g} is outside [0, 1]")
    return [open_model_of(paths[0], opts, log, denoise=(paths[1], float(strength)))]
