"""Wheels for the GPU check, fetched HERE (where pip reaches PyPI) and carried to the GPU
machine, which reaches no package registry (``/work/.library/device``: KINDS.md).

Run:  python bench/gpu_wheels.py            # build/gpu-wheels/ (about 3 MB)
      python bench/gpu_wheels.py --ort-gpu  # also build/gpu-ort/part-N/ (onnxruntime-gpu)

The machine's image has CUDA PyTorch (2.11, cu130), onnx, onnxscript, numpy, Pillow,
pluggy, click, tifffile, safetensors, tqdm, torchmetrics and pytest, but no pydantic: its
wheels (pydantic, pydantic-core, annotated-types, typing-inspection, typing-extensions;
the versions installed here, for CPython 3.12 manylinux x86_64) go to
``build/gpu-wheels/`` (ignored by git through ``build/``). Carry that folder.

The image's ``onnxruntime`` is the CPU package. The CUDA 13 build, ``onnxruntime-gpu``
(the version installed here), is a 256 MB wheel, over what one call carries (64 MiB), so
``--ort-gpu`` cuts it into parts of at most ``--part-mib`` (60) MiB under
``build/gpu-ort/part-N/`` with its SHA-256 in ``part-0``: carry one part per call, the
calls back to back (a machine stays warm 30 s after a call); each call but the last copies
its part to ``/tmp/gpu-ort`` there, the last carries its part with the check itself (the
script prints the calls). ``bench/gpu_check.py`` joins the parts, checks the hash and installs
the wheel; with parts missing it installs nothing and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS, ORT_PARTS = ROOT / "build" / "gpu-wheels", ROOT / "build" / "gpu-ort"
#: what ganpipe needs and the machine's image lacks (typing-extensions: pydantic needs a new one)
MISSING_THERE = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def download(name: str, dest: Path) -> None:
    """``name`` at the version installed here, as a CPython 3.12 x86_64 Linux wheel."""
    spec = f"{name}=={metadata.version(name)}"
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(dest), spec]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    print("pip download", spec, flush=True)
    subprocess.run(cmd, check=True)


def split(wheel: Path, part_bytes: int) -> list[Path]:
    """``wheel`` cut into ``part-N/<wheel name>.N`` files; its SHA-256 and the number of
    parts in ``part-0/<wheel name>.sha256``."""
    shutil.rmtree(ORT_PARTS, ignore_errors=True)
    data, parts = wheel.read_bytes(), []
    for i, start in enumerate(range(0, len(data), part_bytes)):
        folder = ORT_PARTS / f"part-{i}"
        folder.mkdir(parents=True)
        parts.append(folder / f"{wheel.name}.{i}")
        parts[-1].write_bytes(data[start : start + part_bytes])
    digest = hashlib.sha256(data).hexdigest()
    (ORT_PARTS / "part-0" / f"{wheel.name}.sha256").write_text(f"{digest} {len(parts)}\n")
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ort-gpu", action="store_true", help="also cut onnxruntime-gpu into parts")
    ap.add_argument("--part-mib", type=int, default=60)
    args = ap.parse_args()
    shutil.rmtree(WHEELS, ignore_errors=True)
    WHEELS.mkdir(parents=True)
    for name in MISSING_THERE:
        download(name, WHEELS)
    size = sum(p.stat().st_size for p in WHEELS.iterdir()) / 2**20
    print(f"{WHEELS.relative_to(ROOT)}: {len(list(WHEELS.iterdir()))} wheels, {size:.1f} MiB")
    if args.ort_gpu:
        tmp = ROOT / "build" / "gpu-ort-download"
        shutil.rmtree(tmp, ignore_errors=True)
        download("onnxruntime-gpu", tmp)
        (wheel,) = tmp.glob("*.whl")
        parts = split(wheel, args.part_mib * 2**20)
        shutil.rmtree(tmp)
        for p in parts:
            print(f"{p.parent.relative_to(ROOT)}: {p.stat().st_size / 2**20:.1f} MiB")
        print("device calls, back to back (a machine stays warm 30 s after a call):")
        keep = "mkdir -p /tmp/gpu-ort && cp -r build/gpu-ort/. /tmp/gpu-ort/"
        for p in parts[:-1]:
            print(f'  run(command="{keep}", carry=["{p.parent.relative_to(ROOT)}"])')
        last = [str(parts[-1].parent.relative_to(ROOT)), str(WHEELS.relative_to(ROOT))]
        print(f'  run(command="bash bench/gpu_check.sh", carry={json.dumps(last)}, timeout_s=560)')


if __name__ == "__main__":
    main()
