"""The options of generation, defined once: ``ganpipe generate`` derives its flags from
:class:`GenerateOptions` (:func:`ganpipe.cli.schema.options_from`), the ``[generate]``
stage takes it as its table (with ``seed`` defaulting to ``run.seed``) and
:func:`ganpipe.inference.generate.generate_to_folder` takes it as its argument.

Torch-free and light (pydantic only), so ``ganpipe generate --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ganpipe.devices import ORT_KINDS, Device, grammar, ort_device
from ganpipe.options import Options

#: ``labels`` meaning every class in turn (also what no labels means)
ALL_LABELS = "all"


class GenerateOptions(Options):
    """What to generate from a ``generate`` model; every default is stated here only."""

    count: int = Field(64, ge=1, le=1_000_000, description="number of images")
    seed: int = Field(0, description="noise seed: the same seed gives the same images")
    labels: list[int | str] | None = Field(
        None,
        description="classes of a conditional model, by index or name (repeat or "
        "comma-separate; 'all': every class); default: every class in turn",
    )
    codes: dict[str, int | float | str | list[int | float]] | None = Field(
        None,
        description="fixed latent codes of an InfoGAN model: a class index for a "
        "categorical code (c_cat=3), floats for a continuous one (c_cont=0.5,-1, or "
        "c_cont=0.5 for every dimension)",
    )
    truncation: float | None = Field(
        None,
        ge=0,
        description="truncation trick, less variety for cleaner images: models with "
        "Gaussian noise (dcgan, biggan, ...) redraw noise values beyond +-truncation (e.g. "
        "0.5); stylegan pulls w towards the average w by psi = truncation (1: none, 0: the "
        "average image, e.g. 0.7); pggan has none",
    )
    truncation_cutoff: int | None = Field(
        None,
        ge=1,
        description="stylegan: truncate only the first N style layers (the coarse ones: "
        "pose, shape), as StyleGAN's truncation_cutoff; default: every layer",
    )
    batch_size: int = Field(64, ge=1, description="images per ONNX Runtime call")
    timeout: float | None = Field(
        None,
        gt=0,
        description="seconds one batch may take in the model: a batch that takes longer is "
        "stopped and its images are not written, the others are; default: no limit "
        "(SIGTERM and Ctrl-C stop a run at any time)",
    )
    device: Device = Field(Device("auto"), description=f"one of {grammar(ORT_KINDS)}")
    threads: int = Field(
        0,
        ge=0,
        description="threads of the model session (ONNX Runtime); 0: [run] threads in a "
        "pipeline, else the cores this process may use (CPU affinity and container quota)",
    )
    grid: bool = Field(True, description="also write grid.png (up to 256 images)")

    @field_validator("labels", mode="before")
    @classmethod
    def _split_labels(cls, value: Any) -> Any:
        """``"cat,dog"`` and ``["cat,dog", 2]`` are ``["cat", "dog", 2]``; ``"all"`` (or
        nothing) is ``None``: every class in turn."""
        if value is None:
            return None
        items = value if isinstance(value, list | tuple) else [value]
        flat: list[Any] = []
        for item in items:
            if isinstance(item, str):
                flat += [p.strip() for p in item.split(",") if p.strip()]
            else:
                flat.append(item)
        return None if flat in ([], [ALL_LABELS]) else flat

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: Any) -> Any:
        return ort_device(value) if isinstance(value, str | Device) else value
