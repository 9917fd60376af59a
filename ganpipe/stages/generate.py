"""The generate stage: images from the exported ONNX model (ONNX Runtime, no torch).

Its table is :class:`~ganpipe.inference.options.GenerateOptions`, the options of
``ganpipe generate``, except that ``seed`` defaults to ``run.seed``. Images that could not
be written (a full disk, ``timeout``, non-finite outputs) fail the stage in one line; those
written are kept.
"""

from __future__ import annotations

from pydantic import Field

from ganpipe.errors import GanpipeError
from ganpipe.inference.options import GenerateOptions
from ganpipe.outputs import ExportOutput, GenerateOutput
from ganpipe.stage import Stage, StageContext, StageResult

__all__ = ["GenerateOptions", "GenerateStage", "GenerateStageOptions"]


class GenerateStageOptions(GenerateOptions):
    """``[generate]``: :class:`GenerateOptions`, with the run's seed as the default seed."""

    seed: int | None = Field(None, description="noise seed; default: run.seed")


class GenerateStage(Stage):
    name = "generate"
    description = "generate images from the exported ONNX model with ONNX Runtime"
    Options = GenerateStageOptions
    requires = ("export",)
    uses = ("seed",)

    def run(self, ctx: StageContext, opts: GenerateStageOptions) -> StageResult:
        from ganpipe.inference.generate import generate_options, generate_to_folder

        model = ctx.output_of(ExportOutput, needed_by=self.name).model
        folder = ctx.stage_dir(self.name)
        seed = ctx.config.run.seed if opts.seed is None else opts.seed
        summary = generate_to_folder(model, folder, generate_options(opts, seed=seed))
        if summary.missing:  # the images written are kept; the stage did not finish
            first = summary.not_written[0]
            raise GanpipeError(
                f"generate: {summary.missing} of {summary.missing + len(summary.files)} "
                f"images not written, e.g. {first.line()}"
            )
        return ctx.result(
            GenerateOutput(
                images=folder,
                grid=folder / "grid.png" if summary.grid else None,
                count=len(summary.files),
            ),
            f"{len(summary.files)} images in {folder} ({summary.providers[0]})",
        )
