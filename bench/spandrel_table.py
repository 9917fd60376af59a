"""The parity table over every architecture spandrel detects, at the hyper-parameters of
its released checkpoints (``bench/spandrel_configs.py``; random seeded weights).

For each entry, in a child process of its own (so the peak memory is the import's and one
net that hangs or crashes the exporter costs only its row):

* ``ganpipe import`` of the saved state dict: time, peak RSS, ONNX size, and the verdict
  (imported, dynamic or fixed tile, or the one-line refusal);
* max abs difference of the ``.onnx`` run as ganpipe runs it (SRModel) against
  spandrel's own ``ImageModelDescriptor`` at three sizes, one of them odd;
* tiled (48 px tiles, overlap 16) against whole-image on a 96 x 80 image;
* float16: the ``--fp16`` conversion against the float32 ``.onnx``;
* CPU throughput of the float32 ``.onnx`` on 64 x 64 tiles (input megapixels / s, the
  threads given with ``--threads``).

    python bench/spandrel_table.py --out bench/results/spandrel-table.json
    python bench/spandrel_table.py --only SwinIR,HAT --timeout 900
    python bench/spandrel_table.py --only HAT --tile 256   # rows at a fixed tile
    python bench/spandrel_table.py --markdown bench/results/spandrel-table.json

Rows are appended to the JSON file as they finish; a rerun skips rows already there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

SIZES = ((40, 48), (64, 64), (45, 51))


def _max_diff(a, b) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def measure(index: int, threads: int, tile: int | None = None) -> dict:
    """One row (runs in the child process)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from spandrel_configs import CONFIGS, build

    from ganpipe.upscale.model import open_sr_model
    from ganpipe.upscale.tiling import Upscaler
    from ganpipe.weights import import_weights, load_model, to_float16
    from ganpipe.weights.convert import export_spec

    cfg = CONFIGS[index]
    label = cfg.label + (f", --tile {tile}" if tile else "")
    row: dict = {"arch": cfg.arch, "label": label, "scale": cfg.scale, "source": cfg.source}
    folder = Path(tempfile.mkdtemp(prefix="spandrel-table-"))
    src = folder / "weights.pth"
    net = build(cfg, seed=index)
    row["params_m"] = round(sum(p.numel() for p in net.parameters()) / 1e6, 2)
    torch.save(net.state_dict(), src)
    del net
    notes: list[str] = []
    t0 = time.perf_counter()
    try:
        result = import_weights(src, folder / "model.onnx", tile=tile, log=notes.append)
    except Exception as exc:  # noqa: BLE001 - the refusal is the row
        row.update(status="refused", reason=str(exc).replace(str(src), "weights.pth"))
        row["import_s"] = round(time.perf_counter() - t0, 1)
        return row
    row["import_s"] = round(time.perf_counter() - t0, 1)
    row["import_peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    row.update(
        status="fixed tile" if result.tile else "dynamic",
        tile=result.tile,
        multiple=result.arch.tile_multiple,
        import_diff=result.max_abs_diff,
        padded_diff=result.padded_diff,
        onnx_mib=round(result.path.stat().st_size / 2**20, 1),
        notes=notes,
    )
    model = open_sr_model(result.path, "cpu")
    from spandrel import ModelLoader

    # spandrel's own model of the same file, fresh (for the Real-ESRGAN layouts too, which
    # ganpipe loads into its own nets)
    reference = ModelLoader().load_from_state_dict(torch.load(src, weights_only=True))
    reference.model.eval()
    net, arch = load_model(src)
    g = torch.Generator().manual_seed(3)
    diffs = []
    for h, w in SIZES:
        x = torch.rand(1, 3, h, w, generator=g)
        with torch.no_grad():
            expected = reference(x.clone()).numpy()
        diffs.append(_max_diff(model(x.numpy()), expected))
    row["diff_sizes"] = diffs
    image = np.random.default_rng(0).random((96, 80, 3), dtype=np.float32)
    whole = Upscaler(model, tile=0).plane(image)
    tiled = Upscaler(model, tile=48, overlap=16).plane(image)
    row["tiled_vs_whole"] = _max_diff(tiled, whole)
    try:
        spec = export_spec(net, arch, src.name, result.tile)
        to_float16(result.path, folder / "half.onnx", spec)
        half = open_sr_model(folder / "half.onnx", "cpu")
        x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
        row["fp16_diff"] = _max_diff(half(x), model(x))
    except Exception as exc:  # noqa: BLE001 - a refused conversion is a result
        row["fp16_diff"] = None
        row["fp16_error"] = str(exc)[:200]
    x = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    model(x)  # warm-up
    runs, t0 = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - t0 < 3.0:
        model(x)
        runs += 1
    row["cpu_mp_s"] = round(64 * 64 * runs / (time.perf_counter() - t0) / 1e6, 4)
    return row


def _row(i: int, timeout: int, threads: int, tile: int | None) -> dict:
    from spandrel_configs import CONFIGS

    cfg = CONFIGS[i]
    cmd = [sys.executable, __file__, "--row", str(i), "--threads", str(threads)]
    cmd += ["--tile", str(tile)] if tile else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    label = cfg.label + (f", --tile {tile}" if tile else "")
    base = {"arch": cfg.arch, "label": label, "scale": cfg.scale}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**base, "status": "timeout", "reason": f"more than {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {**base, "status": "crashed", "reason": tail[:200]}


def run_all(
    out: Path, only: set[str], timeout: int, threads: int, big: bool, jobs: int, tile: int | None
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from spandrel_configs import CONFIGS

    rows = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["label"], r["scale"]) for r in rows}
    suffix = f", --tile {tile}" if tile else ""
    todo = [
        i
        for i, cfg in enumerate(CONFIGS)
        if (cfg.label + suffix, cfg.scale) not in done
        and (not only or cfg.arch in only)
        and (big or only or not cfg.big)
    ]
    with ThreadPoolExecutor(jobs) as pool:
        for row in pool.map(lambda i: _row(i, timeout, threads, tile), todo):
            keys = ("status", "import_s", "import_diff", "padded_diff")
            print(row["arch"], row["label"], {k: row.get(k) for k in keys}, flush=True)
            rows.append(row)
            out.write_text(json.dumps(rows, indent=1))


def _f(v, fmt: str = ".1e") -> str:
    return "-" if v is None else format(v, fmt)


def markdown(rows: list[dict]) -> str:
    """The table as GitHub markdown."""
    head = (
        "| arch | scale | config (params) | verdict | import s | peak MiB | ONNX MiB "
        "| diff 40x48 / 64x64 / 45x51 | tiled vs whole | fp16 | CPU MP/s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = []
    for r in rows:
        status = r["status"]
        if status == "fixed tile":
            status = f"fixed tile {r['tile']}"
        elif status == "dynamic" and r.get("multiple", 1) > 1:
            status = f"dynamic (x{r['multiple']})"
        elif status not in ("dynamic",):
            status = f"{status}: {r.get('reason', '')[:120]}"
        diffs = " / ".join(_f(d) for d in r.get("diff_sizes", [])) or "-"
        body.append(
            f"| {r['arch']} | x{r['scale']} | {r['label']} | {status} | {_f(r.get('import_s'), '.0f')} "
            f"| {r.get('import_peak_mib', '-')} | {_f(r.get('onnx_mib'), '.1f')} | {diffs} "
            f"| {_f(r.get('tiled_vs_whole'))} | {_f(r.get('fp16_diff'))} "
            f"| {_f(r.get('cpu_mp_s'), '.3f')} |"
        )
    return head + "\n".join(body) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/spandrel-table.json")
    ap.add_argument("--only", default="", help="comma-separated spandrel ids")
    ap.add_argument("--big", action="store_true", help="include the big (>= 14M) nets")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads per row")
    ap.add_argument("--jobs", type=int, default=2, help="rows measured at once")
    ap.add_argument("--tile", type=int, default=None, help="import at a fixed tile")
    ap.add_argument("--row", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--markdown", type=Path, default=None, help="print the table of a JSON")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(json.loads(a.markdown.read_text())))
    elif a.row is not None:
        print(json.dumps(measure(a.row, a.threads, a.tile)), flush=True)
    else:
        run_all(
            a.out, {s for s in a.only.split(",") if s}, a.timeout, a.threads, a.big, a.jobs, a.tile
        )


if __name__ == "__main__":
    main()
