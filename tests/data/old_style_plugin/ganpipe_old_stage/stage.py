"""The [old-stage] stage: statistics of the training images (count, per-class counts, mean
and standard deviation per channel) written to ``old-stage/stats.json`` in the run folder.

A stage is a table of pipeline.toml: its keys are the fields of ``Options``. ``run`` gets
a :class:`ganpipe.StageContext` (the config, the run folder, earlier stages' outputs) and
returns a :class:`ganpipe.StageResult` with its outputs as paths relative to the run
folder. ``uses = ("data",)``: a change of the data re-runs the stage; ``optional``: it
reads the augment stage's images when the pipeline has one.
"""

from __future__ import annotations

import json

import ganpipe
import numpy as np
from pydantic import Field


class OldStageOptions(ganpipe.Options):
    """The keys of ``[old-stage]``; unknown keys are errors."""

    max_images: int = Field(1000, ge=1, description="images to look at (the first ones)")


class OldStage(ganpipe.Stage):
    name = "old-stage"
    description = "statistics of the training images (ganpipe-old-stage)"
    Options = OldStageOptions
    optional = ("augment",)
    uses = ("data",)

    def run(self, ctx: ganpipe.StageContext, opts: OldStageOptions):
        data = ctx.load_data()
        images = data.images[: opts.max_images].astype(np.float64) / 255.0
        labels = data.labels[: opts.max_images]
        stats = {
            "count": int(len(images)),
            "image_size": data.image_size,
            "channels": data.channels,
            "classes": {n: int((labels == i).sum()) for i, n in enumerate(data.class_names)},
            "mean": [round(float(v), 6) for v in images.mean(axis=(0, 1, 2))],
            "std": [round(float(v), 6) for v in images.std(axis=(0, 1, 2))],
        }
        path = ctx.stage_dir(self.name) / "stats.json"
        path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        return ganpipe.StageResult(
            {"stats": path.relative_to(ctx.run_dir).as_posix()},
            f"{stats['count']} images, mean {stats['mean']}",
            {"count": stats["count"]},
        )
