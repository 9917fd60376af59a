"""Start-up time of the ``ganpipe`` command, against ``import torch`` and a bare interpreter.

Run:  python bench/startup.py [--runs 7] [--skip-generate]

Every timed command is a fresh subprocess; the commands are run round-robin (the order
rotates every round) after one untimed warm-up round, and the table shows the median and
the minimum of ``--runs`` wall times. The ratio ``ganpipe --help / import torch`` is below
1 when the CLI starts faster than torch alone can be imported.

The script then checks, in subprocesses, which heavy modules (torch, onnx, onnxruntime,
onnxscript) the CLI's help and the ONNX generation path import:

* ``ganpipe --help`` (console script and ``python -m ganpipe.cli``) and the subcommands'
  ``--help``, through ``PYTHONPROFILEIMPORTTIME=1`` (the real command, unmodified);
* ``import ganpipe.inference.generate`` (``sys.modules`` after the import);
* a real ``ganpipe generate`` on a tiny DCGAN exported to ONNX here (unless
  ``--skip-generate``): torch must not be imported, onnxruntime must be.

Nothing here asserts on time; the exit status is non-zero only if a command fails or the
torch-free check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "onnx", "onnxruntime", "onnxscript")


def console_script() -> str | None:
    """The ``ganpipe`` console script: on PATH, else next to this interpreter."""
    found = shutil.which("ganpipe")
    if found:
        return found
    sibling = Path(sys.executable).parent / ("ganpipe.exe" if os.name == "nt" else "ganpipe")
    return str(sibling) if sibling.exists() else None


def run_once(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )
    return dt, proc.stdout, proc.stderr


def parse_importtime(stderr: str) -> tuple[set[str], list[tuple[int, str]]]:
    """Modules imported (all depths) and (cumulative us, name) of the top-level imports."""
    modules, top = set(), []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        parts = line.split("|")
        if len(parts) != 3:
            continue
        raw = parts[2].rstrip()
        name = raw.strip()
        modules.add(name)
        if len(raw) - len(raw.lstrip(" ")) == 1:  # depth 0
            top.append((int(parts[1].strip()), name))
    return modules, sorted(top, reverse=True)


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(h for h in HEAVY if h in modules)


def fmt_ms(s: float) -> str:
    return f"{s * 1000:8.1f}"


def export_tiny_model(folder: Path) -> Path:
    """A tiny, untrained DCGAN generator exported with ganpipe's own exporter."""
    import torch

    from ganpipe.export.onnx_export import build_card, export_onnx
    from ganpipe.registry import load_registry
    from ganpipe.variant import DataInfo

    variant = load_registry(entry_points=False).variants.get("dcgan")
    opts = variant.Options(**variant.tiny_options)
    info = DataInfo(16, 3)
    torch.manual_seed(0)
    nets = variant.build(opts, info)
    spec = variant.export_spec(nets, opts, info)
    meta = build_card(
        spec, variant.name, variant.task, info.image_size, info.channels, info.class_names
    )
    return export_onnx(spec, folder / "tiny.onnx", meta).path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per command (median)")
    ap.add_argument(
        "--skip-generate",
        action="store_true",
        help="skip exporting a tiny model and timing/checking `ganpipe generate`",
    )
    args = ap.parse_args()

    exe = sys.executable
    script = console_script()
    tmp = Path(tempfile.mkdtemp(prefix="ganpipe-bench-startup-"))
    try:
        model = None
        export_note = ""
        if not args.skip_generate:
            t0 = time.perf_counter()
            try:
                model = export_tiny_model(tmp)
                export_note = f"tiny DCGAN exported to ONNX in {time.perf_counter() - t0:.1f} s"
            except Exception as exc:  # noqa: BLE001 - report and go on without it
                export_note = f"export of the tiny model failed ({type(exc).__name__}: {exc})"

        commands: list[tuple[str, list[str]]] = [
            ("python -c pass (floor)", [exe, "-c", "pass"]),
            ("python -c 'import torch'", [exe, "-c", "import torch"]),
            ("python -m ganpipe.cli --help", [exe, "-m", "ganpipe", "--help"]),
        ]
        if script:
            commands.append(("ganpipe --help (console script)", [script, "--help"]))
        commands.append(
            (
                "python -c 'import ganpipe.inference.generate'",
                [exe, "-c", "import ganpipe.inference.generate"],
            )
        )
        if model is not None:
            gen = [script, "generate"] if script else [exe, "-m", "ganpipe", "generate"]
            commands.append(
                (
                    "ganpipe generate -n 16 --device cpu (tiny model)",
                    gen + ["-m", str(model), "-n", "16", "-o", str(tmp / "gen"), "--device", "cpu"],
                )
            )

        print(f"python {sys.version.split()[0]}  ({exe})")
        print(f"console script: {script or 'not found (rows skipped)'}")
        print(f"cpus: {os.cpu_count()}   runs per command: {args.runs} (+1 warm-up round)")
        if export_note:
            print(export_note)
        print()

        times: dict[str, list[float]] = {label: [] for label, _ in commands}
        for rnd in range(args.runs + 1):
            k = rnd % len(commands)
            for label, cmd in commands[k:] + commands[:k]:
                dt, _, _ = run_once(cmd)
                if rnd > 0:
                    times[label].append(dt)

        med = {label: statistics.median(v) for label, v in times.items()}
        floor = med["python -c pass (floor)"]
        torch_t = med["python -c 'import torch'"]
        width = max(len(label) for label in times)
        print(
            f"{'command':<{width}}  {'median ms':>9}  {'min ms':>8}  {'-floor ms':>9}  "
            f"{'/ import torch':>14}"
        )
        print("-" * (width + 48))
        for label, v in times.items():
            print(
                f"{label:<{width}}  {fmt_ms(med[label]):>9}  {fmt_ms(min(v))}  "
                f"{fmt_ms(med[label] - floor):>9}  {med[label] / torch_t:14.3f}"
            )
        print()
        help_label = "ganpipe --help (console script)" if script else "python -m ganpipe.cli --help"
        h = med[help_label]
        hm = med["python -m ganpipe.cli --help"]
        ratios = [
            (
                f"{help_label} / import torch",
                h / torch_t,
                f"torch import alone is {torch_t / h:.1f}x slower",
            ),
            (
                f"{help_label} / import torch, floor subtracted",
                (h - floor) / max(torch_t - floor, 1e-9),
                "(t - floor) / (t_torch - floor)",
            ),
            ("python -m ganpipe.cli --help / import torch", hm / torch_t, ""),
        ]
        rw = max(len(r[0]) for r in ratios)
        for label, value, note in ratios:
            print(f"ratio  {label:<{rw}} = {value:.3f}  {note}".rstrip())
        print()

        # -- which heavy modules do the torch-free paths import? -------------------------
        print("heavy modules imported (torch, onnx, onnxruntime, onnxscript):")
        env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
        checks: list[tuple[str, list[str], tuple[str, ...], tuple[str, ...]]] = []
        if script:
            checks.append(("ganpipe --help", [script, "--help"], HEAVY, ()))
        checks.append(("python -m ganpipe.cli --help", [exe, "-m", "ganpipe", "--help"], HEAVY, ()))
        cli = [script] if script else [exe, "-m", "ganpipe"]
        for sub in ("run", "generate", "plugins"):
            checks.append((f"ganpipe {sub} --help", cli + [sub, "--help"], HEAVY, ()))
        checks.append(
            (
                "import ganpipe.inference.generate",
                [exe, "-c", "import ganpipe.inference.generate"],
                ("torch",),
                (),
            )
        )
        if model is not None:
            checks.append(
                (
                    "ganpipe generate (tiny model, cpu)",
                    cli
                    + [
                        "generate",
                        "-m",
                        str(model),
                        "-n",
                        "4",
                        "-o",
                        str(tmp / "gen-check"),
                        "--device",
                        "cpu",
                    ],
                    ("torch",),
                    ("onnxruntime",),
                )
            )
        ok = True
        top_of_help: list[tuple[int, str]] = []
        for label, cmd, forbidden, required in checks:
            _, _, err = run_once(cmd, env)
            modules, top = parse_importtime(err)
            if label in ("ganpipe --help", "python -m ganpipe.cli --help") and not top_of_help:
                top_of_help = top
            heavy = heavy_in(modules)
            bad = [m for m in forbidden if m in modules]
            missing = [m for m in required if m not in modules]
            verdict = "OK" if not bad and not missing else "FAIL"
            ok &= verdict == "OK"
            must = f"; must import {', '.join(required)}" if required else ""
            print(
                f"  {verdict:<4} {label:<36} {len(modules):4d} modules, heavy: "
                f"{', '.join(heavy) or 'none'}  (must not import {', '.join(forbidden)}"
                f"{must})"
            )
        # The same for the module the CLI's generate command uses, via sys.modules.
        probe = (
            "import sys, ganpipe.inference.generate; "
            "print(','.join(m for m in " + repr(HEAVY) + " if m in sys.modules))"
        )
        _, out, _ = run_once([exe, "-c", probe])
        heavy = out.strip()
        verdict = "OK" if "torch" not in heavy.split(",") else "FAIL"
        ok &= verdict == "OK"
        print(
            f"  {verdict:<4} {'sys.modules after import (generate)':<36} heavy: {heavy or 'none'}"
        )
        if top_of_help:
            print()
            print("slowest top-level imports of `ganpipe --help` (-X importtime, cumulative):")
            for us, name in top_of_help[:6]:
                print(f"  {us / 1000:7.1f} ms  {name}")
        print()
        print("torch-free check:", "PASSED" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
