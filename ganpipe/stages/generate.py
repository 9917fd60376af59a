"""The generate stage: images from the exported ONNX model (ONNX Runtime, no torch)."""

from __future__ import annotations

from pydantic import Field

from ganpipe.options import Options
from ganpipe.stage import Stage, StageContext, StageResult


class GenerateOptions(Options):
    count: int = Field(64, ge=1, le=1_000_000, description="images to write")
    seed: int | None = Field(None, description="noise seed; default: run.seed")
    labels: list[int | str] | None = Field(
        None, description="classes (index or name); default: all classes in turn"
    )
    codes: dict[str, int | float | str | list[int | float]] | None = Field(
        None,
        description="fixed latent codes of InfoGAN models, e.g. {c_cat = 3, c_cont = [0.5, -1.0]}",
    )
    truncation: float | None = Field(
        None, gt=0, description="truncation trick: redraw noise values beyond +-truncation"
    )
    batch_size: int = Field(64, ge=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|tensorrt)$")
    grid: bool = True


class GenerateStage(Stage):
    name = "generate"
    description = "generate images from the exported ONNX model with ONNX Runtime"
    Options = GenerateOptions
    requires = ("export",)
    uses = ("seed",)

    def run(self, ctx: StageContext, opts: GenerateOptions) -> StageResult:
        from ganpipe.inference.generate import generate_to_folder

        model = ctx.output("export", "model", needed_by=self.name)
        folder = ctx.stage_dir(self.name)
        seed = ctx.config.run.seed if opts.seed is None else opts.seed
        summary = generate_to_folder(
            model,
            folder,
            opts.count,
            seed=seed,
            labels=opts.labels,
            batch_size=opts.batch_size,
            device=opts.device,
            grid=opts.grid,
            codes=opts.codes,
            truncation=opts.truncation,
        )
        outputs = {"images": self.name}
        if summary.grid:
            outputs["grid"] = f"{self.name}/grid.png"
        return StageResult(
            outputs,
            f"{len(summary.files)} images in {folder} ({summary.providers[0]})",
            {"count": len(summary.files)},
        )
