"""What a score can be compared with, in words, for the evaluate stage's output and the run
report. Torch-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def describe(features: str, size: int | None = None) -> str:
    """What ``evaluate.features`` = ``features`` scores with, for outputs and the report."""
    if features == "random":
        return (
            f"offline RandomFeatures, a seeded random conv net at {size or 64} px, not "
            f"Inception: not comparable with published FIDs"
        )
    return f"ONNX extractor {Path(features).name}"


def fid_note(scores: dict[str, Any], features: str) -> str:
    """What the FID and KID of ``scores`` can be compared with, in one sentence."""
    n_real, n_fake = scores.get("n_real"), scores.get("n_fake")
    if n_real is None or n_fake is None:
        return ""
    text = (
        f"FID from {n_fake} generated vs {n_real} real images ({features}) is biased upward "
        f"against the usual 50k-sample FID, more so at small N: compare it only with FIDs "
        f"at the same N and the same extractor"
    )
    if "kid_subsets" in scores:
        text += (
            f"; KID is unbiased at any N (+- its std over {scores['kid_subsets']} "
            f"subsets of {scores['kid_subset_size']})"
        )
    if "prdc_n" in scores:
        text += f"; precision/recall/density/coverage on {scores['prdc_n']} of each (equal N)"
    return text
