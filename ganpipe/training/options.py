"""The ``[train]`` options (torch-free, so that loading a pipeline imports no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ganpipe.options import Options

#: DiffAugment policies (:mod:`ganpipe.training.diffaugment`)
POLICY_NAMES = ("color", "translation", "cutout")


class TrainOptions(Options):
    steps: int = Field(
        1000,
        ge=1,
        description="training steps: generator updates (a variant with n D updates per G "
        "update, e.g. wgan-gp's n_critic, runs n x steps train_step calls)",
    )
    batch_size: int = Field(64, ge=1, description="images per training step")
    ema_decay: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="EMA of generator weights (export uses it), one update per generator "
        "update, averaging over ~1/(1-decay) updates; 0 turns it off",
    )
    ema_rampup: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="EMA warm-up as in StyleGAN2-ADA: its half-life is at most this share "
        "of the updates done so far (the first copies G), until ema_decay's; 0: plain "
        "ema_decay from the first update",
    )
    log_every: int = Field(50, ge=1, description="steps between metrics-log lines")
    sample_every: int = Field(500, ge=0, description="steps between sample grids; 0: end only")
    checkpoint_every: int = Field(500, ge=0, description="steps between checkpoints; 0: end")
    keep_checkpoints: int = Field(3, ge=1, description="latest checkpoints kept on disk")
    num_samples: int = Field(64, ge=1, le=1024, description="images in each sample grid")
    resume: bool = Field(True, description="continue from the latest compatible checkpoint")
    progress: bool = Field(True, description="show a progress bar")
    tensorboard: bool = Field(
        False,
        description="also log losses, diversity and sample grids to train/tensorboard/ "
        "(needs the tensorboard package: pip install 'ganpipe[tensorboard]')",
    )
    diffaugment: list[str] = Field(
        [], description="DiffAugment policies for D's inputs: color, translation, cutout"
    )
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto",
        description="mixed precision: auto = bf16/fp16 on CUDA, off on CPU "
        "(bf16 on a CPU with AVX512/AMX: opt-in, see bench/cpu_speed.py)",
    )
    channels_last: bool | None = Field(
        None,
        description="NHWC memory format; default: on CUDA, and on the CPU for the variants "
        "measured faster there (bench/cpu_speed.py)",
    )
    diversity_every: int = Field(
        0, ge=0, description="steps between mode-collapse checks; 0: at every log line"
    )
    init_from: Path | None = Field(
        None,
        description="start a fresh run from these weights: "
        "a ganpipe checkpoint, or released SR weights (.pth / "
        ".safetensors) for G; relative to the pipeline.toml",
    )
    devices: int = Field(
        1,
        ge=1,
        le=64,
        description="data-parallel processes: GPUs "
        'cuda:0..N-1, or CPU processes with run.device = "cpu"; '
        "batch_size is the global batch",
    )

    @field_validator("diffaugment")
    @classmethod
    def _known_policies(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in POLICY_NAMES]
        if unknown:
            raise ValueError(
                f"unknown DiffAugment policy {unknown[0]!r}; use any of {', '.join(POLICY_NAMES)}"
            )
        return value
