"""The evaluate stage: sample quality of the exported model against real images.

Super-resolution models get PSNR/SSIM on the real images (down-scaled, then up-scaled by
the model) next to the bicubic baseline instead, on the Y channel with ``crop_border =
scale`` by default (BasicSR's way; ``sr_metric_space``, ``crop_border``).

Generated images come from the exported ``.onnx`` (the artifact users ship) through ONNX
Runtime; real images are the held-out split (``data.holdout``) or, without one, the
training images. Scores: FID, KID, precision/recall, density/coverage and diversity,
overall and, for conditional models, per class, with the sample counts each used and what
the FID can be compared with (``note``). Written to ``evaluate/metrics.json`` and printed
as a table.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ganpipe import progress
from ganpipe.devices import ORT_KINDS, Device, grammar, ort_device
from ganpipe.errors import ConfigError
from ganpipe.fsutil import write_json
from ganpipe.options import Options
from ganpipe.outputs import EvaluateOutput, ExportOutput
from ganpipe.stage import Stage, StageContext, StageResult

if TYPE_CHECKING:
    from ganpipe.upscale.model import SRModel


class EvaluateOptions(Options):
    count: int = Field(1000, ge=2, le=200_000, description="generated images to score")
    real: Literal["auto", "holdout", "train"] = Field(
        "auto",
        description="real images: the held-out split (auto when data.holdout > 0) "
        "or the training images",
    )
    features: str = Field(
        "random",
        description="'random' (offline default) or the path of "
        "a local ONNX feature extractor, e.g. InceptionV3 pool3",
    )
    feature_size: int | None = Field(None, ge=8, description="input size of the extractor")
    feature_range: tuple[float, float] = Field(
        (-1.0, 1.0), description="input value range the ONNX extractor expects"
    )
    per_class: bool = Field(True, description="also score each class of conditional models")
    k: int = Field(5, ge=1, description="neighbours for precision/recall/density/coverage")
    kid_subset_size: int = Field(
        1000, ge=2, description="images per KID subset (clipped to the smaller set)"
    )
    sr_metric_space: Literal["y", "rgb"] = Field(
        "y",
        description="super-resolution PSNR/SSIM on the BT.601 Y channel "
        "(BasicSR's default, as SR papers report) or on RGB",
    )
    crop_border: int | None = Field(
        None,
        ge=0,
        description="super-resolution: pixels shaved off each side before PSNR/SSIM; "
        "default: the model's scale (BasicSR's convention)",
    )
    batch_size: int = Field(64, ge=1, description="images per batch of generation and features")
    seed: int | None = Field(None, description="noise seed; default: run.seed + 1")
    device: Device = Field(
        Device("auto"), description=f"where the models run: {grammar(ORT_KINDS)}"
    )

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: Any) -> Any:
        return ort_device(value) if isinstance(value, str | Device) else value

    @model_validator(mode="after")
    def _random_size(self) -> EvaluateOptions:
        # the random extractor halves the size four times and takes spreads of its last
        # maps: below 32 px they are single pixels (NaN features, which crash FID)
        if self.features == "random" and self.feature_size is not None and self.feature_size < 32:
            raise ValueError(
                f"feature_size {self.feature_size} is too small for the random feature "
                f"extractor; use 32 or more, or leave it unset (64)"
            )
        return self

    def extractor(self, base_dir: Path):
        from ganpipe.metrics.features import OnnxFeatures, RandomFeatures

        if self.features == "random":
            return RandomFeatures(size=self.feature_size or 64)
        path = Path(self.features)
        path = path if path.is_absolute() else base_dir / path
        return OnnxFeatures(path, self.feature_range, self.feature_size, self.device)


def _table(rows: dict[str, dict[str, float]]) -> str:
    cols = ["fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "diversity"]
    cols += ["n_real", "n_fake", "prdc_n"]
    lines = [f"  {'':<14}" + "".join(f"{c:>10}" for c in cols)]
    for name, scores in rows.items():
        cells = "".join(
            f"{scores[c]:>10.4g}" if isinstance(scores[c], float) else f"{scores[c]:>10}"
            for c in cols
        )
        lines.append(f"  {name[:14]:<14}{cells}")
    return "\n".join(lines)


class EvaluateStage(Stage):
    name = "evaluate"
    description = (
        "score the model on held-out images: FID, KID, precision/recall for "
        "generators; PSNR/SSIM next to bicubic for super-resolution"
    )
    Options = EvaluateOptions
    requires = ("export",)
    uses = ("data", "seed")

    def check(self, config, opts: EvaluateOptions) -> None:
        if opts.real == "holdout" and config.data.holdout <= 0:
            raise ConfigError(
                f"{config.path}: evaluate.real = 'holdout' needs data.holdout "
                f"> 0 (e.g. holdout = 0.1)"
            )
        if opts.features != "random":
            path = Path(opts.features)
            path = path if path.is_absolute() else config.base_dir / path
            if not path.is_file():
                raise ConfigError(
                    f"{config.path}: evaluate.features: {path} is not a file; "
                    f'use "random" or the path of a local ONNX extractor'
                )

    def _super_resolve(
        self, ctx: StageContext, opts: EvaluateOptions, model: SRModel, real, which: str
    ) -> StageResult:
        """SR models: PSNR/SSIM on the real images against the bicubic baseline, as
        BasicSR computes them (Y channel, border = scale, unless the options say else)."""
        from ganpipe.metrics.sr import sr_validation
        from ganpipe.metrics.sr_scores import label, ssim_window

        scale, space = model.scale, opts.sr_metric_space
        border = scale if opts.crop_border is None else opts.crop_border
        h, w = (s // scale * scale - 2 * border for s in real.images.shape[1:3])
        if h < 1 or w < 1:
            raise ConfigError(
                f"[{self.name}] crop_border {border} (default: the scale) leaves no pixels "
                f"of the {real.images.shape[2]}x{real.images.shape[1]} {which} images; "
                f"set evaluate.crop_border to a smaller value"
            )
        scores = sr_validation(model, real.images, scale, space=space, crop_border=border)
        window = ssim_window(h, w)
        how = label(space, border, window)
        folder = ctx.stage_dir(self.name)
        write_json(
            folder / "metrics.json",
            {
                "real": which,
                "scale": scale,
                "metric_space": space,
                "crop_border": border,
                "ssim_window": window,
                "metric": how,
                "scores": scores,
            },
        )
        gain = scores["psnr"] - scores["bicubic_psnr"]
        ctx.log(
            f"  PSNR / SSIM ({how}; BasicSR's way: outputs rounded to uint8)\n"
            f"  {'':<10}{'PSNR dB':>10}{'SSIM':>8}\n"
            f"  {'model':<10}{scores['psnr']:>10.2f}{scores['ssim']:>8.4f}\n"
            f"  {'bicubic':<10}{scores['bicubic_psnr']:>10.2f}{scores['bicubic_ssim']:>8.4f}"
        )
        return ctx.result(
            EvaluateOutput(metrics=folder / "metrics.json", psnr=scores["psnr"], psnr_gain=gain),
            f"x{scale} PSNR ({how}) {scores['psnr']:.2f} dB ({gain:+.2f} dB vs bicubic), "
            f"SSIM {scores['ssim']:.4f} on {len(real)} {which} images",
        )

    def _translate(
        self, ctx: StageContext, opts: EvaluateOptions, model: SRModel, real, which: str
    ) -> StageResult:
        """Translation models: FID / KID of the translated source-domain images against
        the real target-domain images."""
        from ganpipe.metrics.features import extract
        from ganpipe.metrics.notes import describe, fid_note
        from ganpipe.metrics.scores import all_scores
        from ganpipe.upscale.tiling import whole_image_runner

        run = whole_image_runner(model)  # tiled where the model takes one fixed shape
        src = 1 if model.card.direction == "BtoA" else 0
        if len(real.class_names) != 2:
            raise ConfigError(
                f"[{self.name}] a translate model is scored on two domains; "
                f"the {which} images have {len(real.class_names)} class(es)"
            )
        source, target = real.images[real.labels == src], real.images[real.labels != src]
        if len(source) < 2 or len(target) < 2:
            raise ConfigError(
                f"[{self.name}] needs at least 2 {which} images of each domain; "
                f"raise data.holdout or add images"
            )
        fake = []
        for start in range(0, len(source), opts.batch_size):
            x = source[start : start + opts.batch_size].transpose(0, 3, 1, 2) / np.float32(255)
            y = run(np.ascontiguousarray(x, dtype=np.float32))
            fake.append(np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))
        extractor = opts.extractor(ctx.config.base_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            s = all_scores(
                extract(extractor, target, opts.batch_size),
                extract(extractor, np.concatenate(fake), opts.batch_size),
                opts.k,
                opts.kid_subset_size,
            )
        features = describe(opts.features, opts.feature_size)
        note = fid_note(s, features)
        folder = ctx.stage_dir(self.name)
        write_json(
            folder / "metrics.json",
            {
                "real": which,
                "features": opts.features,
                "features_detail": features,
                "direction": model.card.direction,
                "scores": s,
                "note": note,
            },
        )
        ctx.log(_table({"translated": s}) + f"\n  {note}")
        return ctx.result(
            EvaluateOutput(metrics=folder / "metrics.json", fid=s["fid"], kid=s["kid"]),
            f"FID {s['fid']:.3f} from {len(source)} translated vs {len(target)} {which} "
            f"target-domain images (biased upward at small N: compare only at the same N "
            f"and extractor), KID {s['kid']:.4f} +- {s['kid_std']:.4f}",
        )

    def run(self, ctx: StageContext, opts: EvaluateOptions) -> StageResult:
        from ganpipe.inference.generate import generate_batches
        from ganpipe.inference.session import open_model
        from ganpipe.metrics.features import extract
        from ganpipe.metrics.notes import describe, fid_note
        from ganpipe.metrics.scores import all_scores
        from ganpipe.modelcard import TASKS
        from ganpipe.upscale.model import SRModel

        cfg = ctx.config
        which = (
            opts.real if opts.real != "auto" else ("holdout" if cfg.data.holdout > 0 else "train")
        )
        real = ctx.load_source(which)
        path = ctx.output_of(ExportOutput, needed_by=self.name).model
        model = open_model(path, opts.device, task=TASKS)
        card = model.card
        if card.task == "super_resolve":
            return self._super_resolve(ctx, opts, SRModel(model), real, which)
        if card.task == "translate":
            return self._translate(ctx, opts, SRModel(model), real, which)
        seed = cfg.run.seed + 1 if opts.seed is None else opts.seed
        names = list(card.class_names)
        conditional = card.conditional
        labels = np.arange(opts.count) % len(names) if conditional and names else None
        batches = generate_batches(model, opts.count, seed, labels, opts.batch_size)
        steps = -(-opts.count // opts.batch_size)
        fake = np.concatenate(list(progress.track(batches, steps, "evaluate: generate", "batch")))
        extractor = opts.extractor(cfg.base_dir)
        with progress.bar(2, "evaluate: features", "set") as b:
            f_real = extract(extractor, real.images, opts.batch_size)
            b.update(1)
            f_fake = extract(extractor, fake, opts.batch_size)
            b.update(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchmetrics' KID memory note
            rows = {"all": all_scores(f_real, f_fake, opts.k, opts.kid_subset_size)}
            if conditional and opts.per_class and real.class_names == names:
                for i, name in enumerate(names):
                    r, f = f_real[real.labels == i], f_fake[labels == i]
                    if len(r) >= 2 and len(f) >= 2:
                        rows[name] = all_scores(r, f, opts.k, opts.kid_subset_size)
        s = rows["all"]
        features = describe(opts.features, opts.feature_size)
        note = fid_note(s, features)
        folder = ctx.stage_dir(self.name)
        write_json(
            folder / "metrics.json",
            {
                "real": which,
                "features": opts.features,
                "features_detail": features,
                "seed": seed,
                "scores": s,
                "per_class": {k: v for k, v in rows.items() if k != "all"},
                "note": note,
            },
        )
        ctx.log(_table(rows) + f"\n  {note}")
        return ctx.result(
            EvaluateOutput(metrics=folder / "metrics.json", fid=s["fid"], kid=s["kid"]),
            f"FID {s['fid']:.3f} from {len(fake)} generated vs {len(real)} {which} images "
            f"({opts.features} features; biased upward at small N: compare only at the "
            f"same N and extractor), KID {s['kid']:.4f} +- {s['kid_std']:.4f}, precision "
            f"{s['precision']:.2f}, recall {s['recall']:.2f} (on {s['prdc_n']} of each)",
        )
