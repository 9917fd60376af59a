"""The exported EMA generator against the live one (issue 23, item 1): DCGAN on the
quickstart's data (``examples/quickstart.toml``: shapes, 32 px, its ``[model]`` widths and
learning rates and ``[augment]``), a short run with a long ``train.ema_decay``, exported
twice (``[export] use_ema`` true and false), each scored by the offline FID of
``bench/quality.py`` (RandomFeatures) against the training images.

Each case runs with ``train.ema_rampup = 0`` - plain decay from the random init, what the
loop did before the ramp (for DCGAN, one train_step call per step, exactly) - and with the
default ramp. The live G is the same in both (the EMA does not feed back into training).

    OMP_NUM_THREADS=1 python bench/ema_check.py [--cases 300:0.999,100:0.995] [--grids DIR]

Prints one line per run and a Markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import quality as q  # noqa: E402
from bench.common import ROOT  # noqa: E402

QUICKSTART = ROOT / "examples" / "quickstart.toml"


def pipeline(steps: int, decay: float, rampup: float, use_ema: bool, filename: str) -> str:
    """The quickstart with variant dcgan, the given EMA, and an export only."""
    cfg = tomllib.loads(QUICKSTART.read_text())
    model = {**cfg["model"], "variant": "dcgan"}
    train = {
        "steps": steps,
        "batch_size": cfg["train"]["batch_size"],
        "ema_decay": decay,
        "ema_rampup": rampup,
        "sample_every": 0,
        "checkpoint_every": 0,
        "progress": False,
    }
    tables = {
        "run": {"name": "ema", "out_dir": "runs", "seed": 0, "device": "cpu"},
        "data": cfg["data"],
        "model": model,
        "augment": cfg["augment"],
        "train": train,
        "export": {"use_ema": use_ema, "filename": filename},
    }
    return "\n\n".join(
        "\n".join([f"[{t}]", *(f"{k} = {q.toml_value(v)}" for k, v in values.items())])
        for t, values in tables.items()
    )


def run_case(work: Path, steps: int, decay: float, rampup: float, fid, grids) -> dict:
    from ganpipe.pipeline import run_file

    folder = work / f"s{steps}_d{decay}_r{rampup}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.toml"
    row: dict = {"steps": steps, "decay": decay, "rampup": rampup, "warnings": []}
    for use_ema, name in ((True, "ema.onnx"), (False, "live.onnx")):
        path.write_text(pipeline(steps, decay, rampup, use_ema, name))
        logs: list[str] = []
        run_file(path, log=logs.append)  # the second run reuses the training
        row["warnings"] += [line for line in logs if "warning: train.ema_decay" in line]
        images, _ = q.generate(folder / "runs" / "ema" / "export" / name, 1000)
        row["ema" if use_ema else "live"] = fid(images)
        if grids is not None:
            q.save_grid(images, grids / f"{folder.name}_{name[:-5]}.png", columns=16)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="300:0.999,100:0.995", help="steps:ema_decay,...")
    parser.add_argument("--rampups", default="0,0.05", help="train.ema_rampup values")
    parser.add_argument("--grids", type=Path, help="write PNG grids of each export here")
    parser.add_argument("--work", type=Path, help="work folder (default: temporary)")
    args = parser.parse_args(argv)
    cases = [(int(s), float(d)) for s, d in (c.split(":") for c in args.cases.split(","))]
    rampups = [float(r) for r in args.rampups.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data = q.load_dataset("shapes", work)
        fid = q.FID(data.images)
        half = data.images[len(data.images) // 2 :]
        floor = q.FID(data.images[: len(data.images) // 2])(half)
        rows = []
        for steps, decay in cases:
            for rampup in rampups:
                row = run_case(work, steps, decay, rampup, fid, args.grids)
                print(row, flush=True)
                rows.append(row)
    print(f"\nFID (RandomFeatures, 1000 samples vs the 1024 shapes; real half vs half {floor:.2f})")
    print("| steps | ema_decay | ema_rampup | live G | exported EMA G |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['steps']} | {r['decay']} | {r['rampup']:g} | {r['live']:.1f} | {r['ema']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
