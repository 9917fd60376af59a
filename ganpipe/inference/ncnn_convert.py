"""An ``.onnx`` image model converted to ncnn once, with pnnx, and checked against ONNX
Runtime before ncnn may run it.

* **Conversion.** pnnx (PyPI's ``pnnx``, Tencent's converter to ncnn) reads the model, traced
  at two example shapes so that height and width stay dynamic (a fixed-tile model: its one
  shape), and writes ncnn's ``.param`` / ``.bin``. pnnx is a program shipped inside that
  package, the one conversion ganpipe does not run in-process: it is given a copy of the
  ``.onnx`` that ganpipe itself opened and checked (card, external data inside the model's
  folder), in a private temporary folder, with a fixed argument list (no shell), a scrubbed
  environment and a time limit; nothing it writes is used before the parity check below.
* **Cache.** The result lives in ``<conversion cache>/ncnn/<stem>-<hash>/`` (the cache of
  :mod:`ganpipe.upscale.cache`, ``GANPIPE_CACHE_DIR``), keyed by the ``.onnx``'s content
  hash and the pnnx and ncnn versions: a changed model or a new converter converts again,
  an unchanged one never does. The folder appears whole (built under a temporary name,
  then renamed).
* **Parity.** ncnn's output for a test image (a size that is neither example shape, so a
  lost dynamic axis shows) is compared with ONNX Runtime's on the CPU; the largest absolute
  difference is kept in ``parity.json`` per device and precision and the model is refused,
  with the difference, above :data:`TOLERANCE` (fp32: float rounding; fp16 storage: the
  measured loss, opt-in). A conversion that drops or changes an operation cannot pass.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ganpipe.errors import ConfigError, ModelFileError
from ganpipe.inference.ncnn_runtime import INSTALL, NcnnSession

#: bump when the conversion changes, so that cached conversions are redone
CONVERTER_VERSION = 1
#: the largest absolute difference from ONNX Runtime allowed, per precision, in units of
#: the output's value range (fp32: rounding, measured at 1e-7 to 1e-5; fp16 storage:
#: measured at up to 2e-3 on Real-ESRGAN's nets)
TOLERANCE = {"fp32": 1e-3, "fp16": 1.5e-2}
#: seconds pnnx may take (a large transformer takes tens of seconds)
PNNX_TIMEOUT = 900


@functools.cache
def _version(dist: str) -> str:  # read once: the lookup scans site-packages (~6 ms)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def _digest(path: Path) -> str:
    digest = hashlib.sha256(
        f"ganpipe-ncnn-v{CONVERTER_VERSION}\0pnnx {_version('pnnx')}\0"
        f"ncnn {_version('ncnn')}\0".encode()
    )
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _side(side: int, multiple: int, minimum: int) -> int:
    side = max(side, minimum)
    return -(-side // multiple) * multiple


def example_shapes(card: Any) -> list[tuple[int, int]]:
    """The shapes pnnx traces at: two (so height and width stay dynamic), or a fixed-tile
    model's one."""
    if card.fixed_tile:
        return [(card.fixed_tile, card.fixed_tile)]
    m, lo = card.tile_multiple, card.min_size
    return [(_side(64, m, lo), _side(64, m, lo)), (_side(96, m, lo), _side(80, m, lo))]


def probe_image(card: Any) -> np.ndarray:
    """The parity test image: smooth shapes plus fine noise, in [0, 1] mapped to the card's
    input range, at a size that is neither example shape."""
    if card.fixed_tile:
        h = w = card.fixed_tile
    else:
        m, lo = card.tile_multiple, card.min_size
        h, w = _side(56, m, lo), _side(72, m, lo)
        if (h, w) in example_shapes(card):
            h = _side(h + m, m, lo)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / 7 + c) * np.cos(yy / 5 - c) for c in range(card.channels)])
    x = 0.5 + 0.35 * base + 0.1 * rng.standard_normal(base.shape, dtype=np.float32)
    x = np.clip(x, 0, 1)[None]
    lo_v, hi_v = _input_range(card)
    return (lo_v + (hi_v - lo_v) * x).astype(np.float32)


def _input_range(card: Any) -> tuple[float, float]:
    explicit = "value_range" in card.model_fields_set
    return tuple(card.value_range) if explicit else (0.0, 1.0)  # type: ignore[return-value]


def _pnnx_executable() -> str:
    """The converter program inside the ``pnnx`` package, found without importing the
    package (its ``__init__`` imports torch)."""
    import importlib.util
    import sys

    spec = importlib.util.find_spec("pnnx")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    name = "pnnx.exe" if sys.platform == "win32" else "pnnx"
    for folder in folders:
        exe = Path(folder) / name
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    raise ConfigError(
        f"--runtime ncnn converts models with pnnx, which is not installed; {INSTALL}"
    )


def _stage_model(onnx_path: Path, work: Path) -> Path:
    """A copy of the model in ``work`` for pnnx (which writes beside its input); a model
    with external data becomes one file."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    target = work / "model.onnx"
    head = onnx.load_model(str(onnx_path), load_external_data=False)
    tensors = list(head.graph.initializer)
    if any(uses_external_data(t) for t in tensors):
        onnx.save_model(onnx.load_model(str(onnx_path)), str(target))
    else:
        shutil.copyfile(onnx_path, target)
    return target


def _run_pnnx(model: Path, card: Any, threads: int, shown: str) -> None:
    """pnnx on ``model`` (in its private folder): ncnn files beside it, or a one-line
    :class:`ModelFileError` with pnnx's last words."""
    work = model.parent
    shapes = [f"[1,{card.channels},{h},{w}]" for h, w in example_shapes(card)]
    argv = [_pnnx_executable(), model.name, f"inputshape={shapes[0]}"]
    argv += [f"inputshape2={s}" for s in shapes[1:]]
    argv += ["fp16=0", "device=cpu", "ncnnparam=model.ncnn.param", "ncnnbin=model.ncnn.bin"]
    argv += ["pnnxparam=model.pnnx.param", "pnnxbin=model.pnnx.bin", "pnnxpy=model_pnnx.py"]
    argv += ["pnnxonnx=model.pnnx.onnx", "ncnnpy=model_ncnn.py"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "OMP_NUM_THREADS": str(threads)}
    log = work / "pnnx.log"
    budget = pnnx_memory_budget()
    try:
        with open(log, "wb") as out:
            proc = subprocess.run(  # noqa: S603 - fixed argv, no shell (module docstring)
                argv,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=PNNX_TIMEOUT,
                check=False,
                preexec_fn=_memory_limit(budget) if sys.platform != "win32" else None,
            )
        ok = proc.returncode == 0 and (work / "model.ncnn.param").is_file()
        why = f"exit status {proc.returncode}"
        if proc.returncode < 0:
            why = f"stopped by signal {-proc.returncode}"
        if proc.returncode in (-9, -11) or b"bad_alloc" in log.read_bytes()[-4096:]:
            why += f", perhaps at its memory limit of {budget / 2**30:.1f} GiB (half the memory)"
    except subprocess.TimeoutExpired:
        ok, why = False, f"no result after {PNNX_TIMEOUT} s"
    if not ok:
        text = log.read_text("utf-8", "replace").strip().splitlines()
        last = next((ln.strip() for ln in reversed(text) if ln.strip()), "")[:200]
        raise ModelFileError(
            f"{shown}: pnnx cannot convert it to ncnn ({why}{': ' if last else ''}{last}); "
            f"use --runtime onnxruntime for this model"
        )


def pnnx_memory_budget() -> int:
    """The address space pnnx may take: half this machine's memory (or the cgroup's
    limit). Its ncnn pass grows fast on long densely connected nets: RealESRGAN_x4plus'
    23 RRDB blocks took 23 GiB and 90 s (6 blocks: 0.9 GiB), which would starve or kill
    a machine of 24 GiB."""
    from ganpipe.inference.contract import memory_budget

    return memory_budget()


def _memory_limit(budget: int) -> Callable[[], None]:
    def limit() -> None:  # in the child, before pnnx starts
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (budget, budget))

    return limit


def _reference(onnx_path: Path, card: Any, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's output for ``x`` on the CPU: what ncnn must reproduce."""
    import onnxruntime as ort

    from ganpipe.inference.ortlog import captured, session_options
    from ganpipe.inference.watchdog import run_session

    with captured([]):
        session = ort.InferenceSession(
            str(onnx_path), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    spec = card.image_input()
    names = [i.name for i in session.get_inputs()]
    name = spec.name if spec is not None and spec.name in names else names[0]
    outputs = [o.name for o in session.get_outputs()]
    output = card.output if card.output in outputs else outputs[0]
    return run_session(session, [output], {name: x})[0]


def parity(session: NcnnSession, onnx_path: Path, card: Any) -> float:
    """The largest absolute difference between ncnn's and ONNX Runtime's output on
    :func:`probe_image`, in units of the card's value range."""
    x = probe_image(card)
    want = _reference(onnx_path, card, x)
    got = session.run(None, {"x": x})[0]
    if got.shape != want.shape:
        raise ModelFileError(
            f"{onnx_path.name}: the ncnn conversion gives {tuple(got.shape)} for a "
            f"{x.shape[2]}x{x.shape[3]} image, ONNX Runtime {tuple(want.shape)}; "
            f"use --runtime onnxruntime for this model"
        )
    lo, hi = _input_range(card)
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    worst = float(np.nanmax(diff)) if np.isfinite(got).all() else float("inf")
    return worst / max(hi - lo, 1e-12)


def converted(
    onnx_path: Path, card: Any, threads: int = 1, log: Callable[[str], Any] | None = None
) -> Path:
    """The cached ncnn folder (``model.ncnn.param``, ``model.ncnn.bin``, ``parity.json``) of
    ``onnx_path``, converting it first if needed (see the module docstring)."""
    from ganpipe.upscale.cache import cache_dir, writable_cache

    folder = cache_dir() / "ncnn" / f"{onnx_path.stem}-{_digest(onnx_path)}"
    if (folder / "model.ncnn.param").is_file() and (folder / "model.ncnn.bin").is_file():
        return folder
    failed = folder.with_name(f"{folder.name}.failed")
    if failed.is_file():  # pnnx cannot: said at once, not after minutes of trying again
        said = failed.read_text("utf-8", "replace").strip()[:500]
        raise ModelFileError(f"{said} (from {failed}; delete it to try again)")
    root = writable_cache(folder.parent)
    (log or (lambda m: None))(f"converting {onnx_path.name} to ncnn with pnnx, once; {folder}")
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=root) as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        try:
            _run_pnnx(_stage_model(onnx_path, work), card, threads, onnx_path.name)
        except ModelFileError as exc:
            said = Path(tmp) / "failed"
            said.write_text(f"{exc}\n", encoding="utf-8")
            os.replace(said, failed)
            raise
        done = Path(tmp) / "done"
        done.mkdir()
        for name in ("model.ncnn.param", "model.ncnn.bin", "pnnx.log"):
            os.replace(work / name, done / name)
        (done / "parity.json").write_text("{}\n", encoding="utf-8")
        try:
            os.rename(done, folder)
        except OSError:  # another process finished the same conversion first
            if not (folder / "model.ncnn.param").is_file():
                raise
    return folder


def foreign_layers(param: Path) -> list[str]:
    """The layer types of an ncnn ``.param`` that ncnn does not have: what pnnx could not
    lower (``pnnx.Expression`` for shape arithmetic it could not fold, say)."""
    from ganpipe.inference.ncnn_runtime import ncnn_module

    ncnn = ncnn_module()
    kinds = {line.split(maxsplit=1)[0] for line in param.read_text("utf-8").splitlines()[2:]}
    return sorted(k for k in kinds if k and ncnn.layer_to_index(k) < 0)


def checked_session(
    onnx_path: Path,
    card: Any,
    *,
    vulkan: int | None,
    device_name: str,
    precision: str,
    threads: int,
    log: Callable[[str], Any] | None = None,
) -> tuple[NcnnSession, float]:
    """An :class:`NcnnSession` of ``onnx_path``'s conversion whose parity with ONNX
    Runtime on this device and precision is known (measured once, then read from
    ``parity.json``) and within :data:`TOLERANCE`; the session and the difference."""
    folder = converted(onnx_path, card, threads, log)
    missing = foreign_layers(folder / "model.ncnn.param")
    if missing:
        raise ModelFileError(
            f"{onnx_path.name}: ncnn has no layer for part of this net (pnnx left "
            f"{', '.join(missing)}); use --runtime onnxruntime for this model"
        )
    session = NcnnSession(
        folder / "model.ncnn.param",
        folder / "model.ncnn.bin",
        vulkan=vulkan,
        precision=precision,
        threads=threads,
        channels=card.channels,
    )
    record = folder / "parity.json"
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    key = f"{device_name}/{precision}"
    if not isinstance(known.get(key), float):
        known[key] = parity(session, onnx_path, card)
        tmp = record.with_name(f".parity-{os.getpid()}.json")
        tmp.write_text(json.dumps(known, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, record)
    worst = known[key]
    if not worst <= TOLERANCE[precision]:
        raise ModelFileError(
            f"{onnx_path.name}: its ncnn conversion differs from ONNX Runtime by {worst:.3g} "
            f"on {device_name} at {precision} (more than {TOLERANCE[precision]:g}); "
            f"use --runtime onnxruntime" + (" or --precision fp32" if precision != "fp32" else "")
        )
    return session, worst
