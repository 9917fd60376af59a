"""The GPU check's report: what the machine is (``INFO_SCRIPT``, run in a subprocess with
the check's environment), the test outcomes from pytest's JUnit XML, and the Markdown of
``bench/results/gpu-<date>.md``."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: ``python -c INFO_SCRIPT out.json``: versions, the GPU, the providers; never fails
INFO_SCRIPT = r"""
import json, subprocess, sys
info = {"python": sys.version.split()[0], "executable": sys.executable}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(), cuda_available=torch.cuda.is_available())
    if info["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpus=torch.cuda.device_count(),
                    gpu_mib=p.total_memory // 2**20, bf16=torch.cuda.is_bf16_supported())
    import torch.distributed as dist
    info["nccl"] = dist.is_available() and dist.is_nccl_available()
except Exception as exc:
    info["torch_error"] = repr(exc)[:300]
try:
    import onnxruntime as ort
    info.update(ort=ort.__version__, ort_at=ort.__file__, ort_device=ort.get_device(),
                ort_providers=ort.get_available_providers())
    from ganpipe.inference.session import cuda_driver_usable
    info["ort_cuda_driver"] = cuda_driver_usable()
except Exception as exc:
    info["ort_error"] = repr(exc)[:300]
try:
    q = "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu"
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", q, "--format=csv,noheader"],
        capture_output=True, text=True, timeout=20).stdout.strip()
except Exception as exc:
    info["nvidia_smi"] = f"not available ({type(exc).__name__})"
json.dump(info, open(sys.argv[1], "w"), indent=1)
"""


def junit_tests(path: Path) -> dict:
    """Counts and one entry per test case from pytest's ``--junitxml`` file."""
    counts = {"passed": 0, "skipped": 0, "failed": 0}
    cases = []
    if not path.exists():
        return {"counts": counts, "cases": cases, "error": "no JUnit XML (the tests part died)"}
    for case in ET.parse(path).iter("testcase"):
        outcome, note = "passed", ""
        for child in case:
            if child.tag in ("skipped", "failure", "error"):
                outcome = "skipped" if child.tag == "skipped" else "failed"
                note = (child.get("message") or child.text or "").strip().splitlines()
                note = note[0][:200] if note else ""
        counts[outcome] += 1
        cases.append({"test": case.get("name"), "outcome": outcome, "note": note})
    return {"counts": counts, "cases": cases}


def _commit() -> str:
    """The checkout's commit; ``GANPIPE_COMMIT`` names it where no ``.git`` travelled."""
    if os.environ.get("GANPIPE_COMMIT"):
        return os.environ["GANPIPE_COMMIT"] + " (GANPIPE_COMMIT)"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown (no git)"
    if head.returncode != 0:
        return "unknown (no git repository here)"
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def _machine(info: dict) -> list[str]:
    if info.get("cuda_available"):
        gpu = (
            f"{info.get('gpu')} (compute {info.get('capability')}, {info.get('gpu_mib')} MiB, "
            f"{info.get('gpus')} GPU(s)); nvidia-smi: {info.get('nvidia_smi', '?')}"
        )
    else:
        gpu = f"none usable by torch; nvidia-smi: {info.get('nvidia_smi', '?')}"
    torch = "-"
    if "torch" in info:
        torch = (
            f"{info['torch']} (CUDA {info['torch_cuda']}, cuDNN {info['cudnn']}), "
            f"bf16 {info.get('bf16', '-')}, NCCL {info.get('nccl', '-')}"
        )
    torch += f" ({info['torch_error']})" if "torch_error" in info else ""
    ort = "-"
    if "ort" in info:
        ort = (
            f"{info['ort']} ({info['ort_device']}; {info['ort_at']}), providers "
            f"{', '.join(info['ort_providers'])}; CUDA driver usable: "
            f"{info.get('ort_cuda_driver', '?')}"
        )
    ort += f" ({info['ort_error']})" if "ort_error" in info else ""
    return [
        "| | |",
        "|---|---|",
        f"| GPU | {gpu} |",
        f"| torch | {torch} |",
        f"| onnxruntime | {ort} |",
        f"| python | {info.get('python')} ({info.get('executable')}) |",
        f"| ganpipe | {_commit()} |",
    ]


def cell(value) -> str:
    """A table cell: no pipes or line breaks."""
    return " ".join(str(value).split()).replace("|", "\\|")


def render(dry, date, info, parts, tests, rows, notes, total, budget) -> str:
    out = [f"# ganpipe GPU check, {date}" + (": CPU DRY RUN" if dry else ""), ""]
    if dry:
        out += [
            "> **Dry run on the CPU: no GPU was used.** No installs; the CUDA tests skip; the",
            "> benchmarks ran with `--device cpu --tiny` to exercise their code. These figures",
            "> say nothing about GPU speed.",
            "",
        ]
    out += [*_machine(info), "", f"Run: `bash bench/gpu_check.sh{' --dry-run' if dry else ''}`, "
            f"{total:.0f} s of the {budget} s budget.", ""]  # fmt: skip
    out += ["## Parts", "", "| part | budget s | took s | status |", "|---|---|---|---|"]
    out += [
        f"| {p['part']} | {p['budget_s']:.0f} | {p['took_s']:.0f} | {cell(p['status'])} |"
        for p in parts
    ]
    c = tests["counts"]
    out += ["", f"## Tests: `tests/test_cuda.py`: {c['passed']} passed, {c['skipped']} skipped, "
            f"{c['failed']} failed", ""]  # fmt: skip
    if tests.get("error"):
        out += [tests["error"], ""]
    out += ["| test | outcome | note |", "|---|---|---|"]
    out += [f"| {t['test']} | {t['outcome']} | {cell(t['note'])} |" for t in tests["cases"]]
    out += ["", "## Benchmarks", "", "ratio = ganpipe / baseline throughput (above 1: ganpipe is "
            "faster), both sides measured in this run; medians.", ""]  # fmt: skip
    out += ["| what | baseline | ganpipe | ratio | note |", "|---|---|---|---|---|"]
    for r in rows:
        shown = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        cells = [cell(r[k]) for k in ("what", "baseline", "ganpipe")] + [shown, cell(r["note"])]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"
