"""Registers the built-in stages through the same hook as third-party plugins."""

import ganpipe
from ganpipe.stages.augment import AugmentStage
from ganpipe.stages.evaluate import EvaluateStage
from ganpipe.stages.export import ExportStage
from ganpipe.stages.generate import GenerateStage
from ganpipe.stages.train import TrainStage
from ganpipe.stages.tune import TuneStage
from ganpipe.stages.upscale import UpscaleStage


@ganpipe.hookimpl
def ganpipe_register_stages(register):
    for stage in (
        AugmentStage(),
        TrainStage(),
        ExportStage(),
        GenerateStage(),
        EvaluateStage(),
        UpscaleStage(),
        TuneStage(),
    ):
        register(stage)
