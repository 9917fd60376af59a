"""Which variants a change of the training code leaves bit-identical at their defaults.

Run:  python bench/same_weights.py OTHER_TREE [--variants gan,dcgan,...] [--steps 12]
      (OTHER_TREE: a checkout of another commit, e.g. ``git worktree add /tmp/base REV``)

Trains every variant (default: every generative one) for ``--steps`` steps of batch 16 on
sklearn's digits (``bench/digits.py``, 32 px, one thread, ``run.device = "cpu"``, seed 0)
with only ``variant`` set, once with this tree and once with OTHER_TREE (``PYTHONPATH``
in a fresh ``ganpipe run`` subprocess each), and compares the final checkpoints' tensors
(names and bytes; the file's metadata is not compared). A variant whose weights are
identical trains exactly as before, so its rows of the quality tables stand; a variant
that differs needs them re-measured (``bench/variant_quality.py``). Nothing asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python bench/same_weights.py`` without an install
    sys.path.insert(0, str(ROOT))

from bench.digits import build_digits_folder  # noqa: E402

VARIANTS = "gan,dcgan,cgan,wgan-gp,infogan,vae,lsgan,biggan,stylegan,pggan"

PIPELINE = """[run]
name = "r"
device = "cpu"
seed = 0
[data]
dataset = "folder"
path = "{data}"
image_size = 32
[model]
variant = "{variant}"
[train]
steps = {steps}
batch_size = 16
progress = false
sample_every = 0
checkpoint_every = 0
"""


def weights_digest(run: Path) -> str:
    """A hash of the final checkpoint's tensors (sorted by name)."""
    from safetensors.numpy import load_file

    (path,) = sorted((run / "runs/r/train/checkpoints").glob("step_*/model.safetensors"))[-1:]
    tensors = load_file(path)
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].tobytes())
    return h.hexdigest()[:16]


def train(tree: Path, folder: Path, data: Path, variant: str, steps: int) -> str:
    folder.mkdir(parents=True)
    (folder / "pipeline.toml").write_text(PIPELINE.format(data=data, variant=variant, steps=steps))
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "ganpipe.cli", "run", "pipeline.toml"]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode:
        return "FAILED: " + " ".join(done.stderr.split())[-200:]
    return weights_digest(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--variants", default=VARIANTS)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = build_digits_folder(Path(tmp) / "digits", 32)
        print(f"| variant | this tree | {args.other} | same weights |\n|---|---|---|---|")
        for v in args.variants.split(","):
            mine = train(ROOT, Path(tmp) / "this" / v, data, v, args.steps)
            theirs = train(args.other.resolve(), Path(tmp) / "other" / v, data, v, args.steps)
            print(f"| {v} | {mine} | {theirs} | {'yes' if mine == theirs else 'NO'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
