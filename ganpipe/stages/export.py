"""The export stage: the trained generator (EMA weights when there are) to ONNX."""

from __future__ import annotations

from pydantic import Field

from ganpipe.options import Options
from ganpipe.outputs import ExportOutput, TrainOutput
from ganpipe.stage import Stage, StageContext, StageResult


class ExportOptions(Options):
    filename: str = Field(
        "model.onnx",
        pattern=r"^[A-Za-z0-9._-]+\.onnx$",
        description="name of the .onnx file in the export folder",
    )
    opset: int = Field(18, ge=17, le=23, description="ONNX opset version of the model")
    use_ema: bool = Field(True, description="export the EMA generator when training kept one")
    atol: float = Field(1e-3, gt=0, description="max abs diff allowed between ONNX and torch")


def resolved_options(ctx: StageContext, train: TrainOutput):
    """The model options training resolved (defaults scaled to the data and device, in
    the manifest since they are), else the configured ones (runs from before)."""
    cfg = ctx.config
    saved = train.model_options
    if saved is None:
        return cfg.variant_options
    opts = type(cfg.variant_options).model_validate(saved)
    opts._base_dir = getattr(cfg.variant_options, "_base_dir", None)
    return opts


class ExportStage(Stage):
    name = "export"
    description = "export the generator to ONNX (dynamic batch, parity check, metadata)"
    Options = ExportOptions
    requires = ("train",)
    uses = ("model",)

    def run(self, ctx: StageContext, opts: ExportOptions) -> StageResult:
        from ganpipe.export.onnx_export import build_card, export_onnx
        from ganpipe.training.checkpoint import load_weights
        from ganpipe.training.state import ema_key, generator_net
        from ganpipe.variant import DataInfo

        cfg = ctx.config
        train = ctx.output_of(TrainOutput, needed_by=self.name)
        weights = load_weights(train.checkpoint)
        data = train.data
        info = DataInfo(data.image_size, data.channels, data.class_names)
        variant = cfg.variant
        vopts = resolved_options(ctx, train)
        nets = variant.build(vopts, info)
        for name, net in nets.items():
            net.load_state_dict(weights[name])
        ema = ema_key(variant)
        used_ema = opts.use_ema and ema in weights
        if used_ema:  # the EMA of the generator net in its place
            nets[generator_net(variant)].load_state_dict(weights[ema])
        spec = variant.export_spec(nets, vopts, info)
        spec.metadata.setdefault("model_options", vopts.model_dump(mode="json"))
        card = build_card(
            spec, variant.name, variant.task, info.image_size, info.channels, info.class_names
        )
        folder = ctx.stage_dir(self.name)
        result = export_onnx(spec, folder / opts.filename, card, opset=opts.opset, atol=opts.atol)
        size_kb = result.path.stat().st_size / 1024
        return ctx.result(
            ExportOutput(
                model=folder / opts.filename, max_abs_diff=result.max_abs_diff, ema=used_ema
            ),
            f"{'EMA ' if used_ema else ''}generator -> {result.path} ({size_kb:.0f} KiB, "
            f"ONNX vs torch max abs diff {result.max_abs_diff:.2e})",
        )
