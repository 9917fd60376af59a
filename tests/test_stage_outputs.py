"""Typed stage outputs (ganpipe.outputs), the typed StageContext and the parsed Device:
records round-trip the manifest JSON that earlier versions wrote, a run folder of the
previous version still skips and feeds later stages, and a missing, malformed or deleted
upstream output is one line naming the fix."""

from __future__ import annotations

import json
import pickle
import typing
from pathlib import Path

import pytest
import torch

import ganpipe.devices
from ganpipe.config import PipelineConfig, RunSection, load_config
from ganpipe.devices import Device, parse_device
from ganpipe.errors import ConfigError
from ganpipe.outputs import (
    BUILTIN,
    AugmentOutput,
    EvaluateOutput,
    ExportOutput,
    TrainData,
    TrainOutput,
    TuneOutput,
    UpscaleOutput,
)
from ganpipe.pipeline import MANIFEST, Manifest, run_file
from ganpipe.registry import load_registry
from ganpipe.stage import Log, StageContext
from ganpipe.training.devices import torch_device

#: the train entry as ganpipe 0.1 wrote it (no model_options, no scaled_defaults)
OLD_TRAIN = {
    "status": "done",
    "fingerprint": "f" * 64,
    "outputs": {"checkpoint": "train/checkpoints/step_00000004", "metrics": "train/metrics.jsonl"},
    "info": {
        "steps": 4,
        "device": "cpu",
        "data": {"image_size": 16, "channels": 3, "class_names": ["circle", "square"]},
        "images_per_s": 120.5,
    },
    "summary": "4 steps of dcgan on 64 images (cpu, 120 images/s)",
    "seconds": 1.5,
    "finished_at": "2026-11-23T12:00:00+0000",
}


def quiet(*_):
    pass


def test_old_train_entry_reads_typed_and_writes_back_the_same(tmp_path):
    rec = TrainOutput.from_dict(OLD_TRAIN, tmp_path)
    assert rec.checkpoint == tmp_path / "train/checkpoints/step_00000004"
    assert rec.data == TrainData(image_size=16, channels=3, class_names=("circle", "square"))
    assert rec.model_options is None and rec.scaled_defaults == {} and rec.samples is None
    back = rec.to_dict(tmp_path)
    assert back["outputs"] == OLD_TRAIN["outputs"]  # samples (None) left out, not null
    assert {k: back["info"][k] for k in OLD_TRAIN["info"]} == OLD_TRAIN["info"]


@pytest.mark.parametrize(
    "record",
    [
        AugmentOutput(dataset=Path("augment/dataset.npz"), preview=Path("augment/p.png")),
        ExportOutput(model=Path("export/model.onnx"), max_abs_diff=1e-6, ema=True),
        EvaluateOutput(metrics=Path("evaluate/metrics.json"), psnr=30.5, psnr_gain=1.25),
        UpscaleOutput(images=Path("upscale"), failed=[("a.png", "truncated")], scale=2.0),
        TuneOutput(
            best_file=Path("tune/best.json"),
            best_toml=Path("tune/best.toml"),
            trials=Path("tune/trials.csv"),
            metric="fid",
            best=12.5,
            params={"model.lr_g": 0.001},
        ),
    ],
    ids=lambda r: r.stage,
)
def test_records_round_trip_through_manifest_json(tmp_path, record):
    entry = json.loads(json.dumps(record.to_dict(tmp_path)))
    assert all(not Path(p).is_absolute() for p in entry["outputs"].values())
    again = type(record).from_dict(entry, tmp_path)
    assert again.to_dict(tmp_path) == entry
    assert all(p.is_absolute() for p in again.paths().values())


def test_record_keys_are_the_manifest_keys(tmp_path):
    """Tune's best.json is output ``best`` while info ``best`` is the score; an optional
    score the stage did not set is left out, as the stage always did."""
    entry = TuneOutput(
        best_file=tmp_path / "tune/best.json",
        best_toml=tmp_path / "tune/best.toml",
        trials=tmp_path / "tune/trials.csv",
        best=3.0,
    ).to_dict(tmp_path)
    assert entry["outputs"]["best"] == "tune/best.json" and entry["info"]["best"] == 3.0
    gen = EvaluateOutput(metrics=tmp_path / "evaluate/metrics.json", fid=9.0, kid=0.1)
    assert gen.to_dict(tmp_path)["info"] == {"fid": 9.0, "kid": 0.1}
    outside = UpscaleOutput(images=tmp_path.parent / "elsewhere").to_dict(tmp_path / "run")
    assert outside["outputs"]["images"] == str((tmp_path.parent / "elsewhere").resolve())
    assert set(BUILTIN) == {"augment", "train", "export", "generate", "evaluate", "upscale", "tune"}


@pytest.fixture
def ctx(tiny_pipeline, tmp_path):
    cfg = load_config(tiny_pipeline(), load_registry(entry_points=False))
    run_dir = tmp_path / "run"
    (run_dir / "train/checkpoints/step_00000004").mkdir(parents=True)
    (run_dir / "train/metrics.jsonl").write_text("")
    manifest = Manifest(run_dir / MANIFEST, {"train": json.loads(json.dumps(OLD_TRAIN))})
    return StageContext(cfg, run_dir, manifest, {}, log=quiet)


def test_context_gives_typed_records_and_keeps_the_dict_api(ctx):
    train = ctx.output_of(TrainOutput, needed_by="export")
    assert train.checkpoint.is_dir() and train.data.class_names == ("circle", "square")
    # third-party stages: the same output by its key
    assert ctx.output("train", "checkpoint", needed_by="mine") == train.checkpoint
    result = ctx.result(ExportOutput(model=ctx.run_dir / "export/model.onnx", ema=False), "ok")
    assert result.outputs == {"model": "export/model.onnx"} and result.summary == "ok"
    assert result.info == {"ema": False}


def test_context_errors_name_the_fix(ctx):
    with pytest.raises(ConfigError, match=r"^\[generate\] needs the output of \[export\], "):
        ctx.output_of(ExportOutput, needed_by="generate")
    (ctx.run_dir / "train/metrics.jsonl").unlink()
    with pytest.raises(
        ConfigError, match=r"metrics.jsonl \(from \[train\]\), which is gone; re-run"
    ):
        ctx.output_of(TrainOutput, needed_by="export")
    ctx.manifest.stages["train"]["info"]["data"] = {"channels": 3}
    with pytest.raises(ConfigError) as err:
        ctx.output_of(TrainOutput, needed_by="export")
    msg = str(err.value)
    assert "\n" not in msg and "data.image_size: Field required" in msg
    assert msg.endswith("re-run with --from train")


def test_context_is_typed():
    import ganpipe.pipeline
    import ganpipe.stage

    names = vars(ganpipe.stage) | {"PipelineConfig": PipelineConfig, "Manifest": Manifest}
    hints = typing.get_type_hints(StageContext, localns=names)
    assert hints["config"] is PipelineConfig and hints["manifest"] is ganpipe.pipeline.Manifest
    assert hints["log"] is Log and isinstance(print, typing.Callable)


def test_run_folder_of_the_previous_version_skips_and_feeds_export(tiny_pipeline):
    """A manifest written before typed outputs (train without model_options) still skips
    the stage, and export's reading of it (options, data, weights into the nets) works."""
    from ganpipe.stages.export import resolved_options
    from ganpipe.training.checkpoint import load_weights
    from ganpipe.variant import DataInfo

    path = tiny_pipeline(steps=1)
    path.write_text(path.read_text().split("[export]")[0])  # train only: seconds
    run_file(path, entry_points=False, log=quiet)
    mpath = path.parent / "runs" / "tiny" / MANIFEST
    data = json.loads(mpath.read_text())
    for key in ("model_options", "scaled_defaults"):
        del data["stages"]["train"]["info"][key]
    mpath.write_text(json.dumps(data))
    lines: list[str] = []
    run_file(path, entry_points=False, log=lines.append)
    assert any(ln.startswith("[train] up to date, skipped") for ln in lines), lines
    cfg = load_config(path, load_registry(entry_points=False))
    ctx = StageContext(cfg, mpath.parent, Manifest.load(mpath), {}, log=quiet)
    train = ctx.output_of(TrainOutput, needed_by="export")
    assert train.model_options is None and train.data.class_names == ("circle", "square")
    vopts = resolved_options(ctx, train)
    assert vopts is cfg.variant_options  # runs from before: the configured options
    info = DataInfo(train.data.image_size, train.data.channels, train.data.class_names)
    weights = load_weights(train.checkpoint)
    for name, net in cfg.variant.build(vopts, info).items():
        net.load_state_dict(weights[name])  # the nets export builds fit the weights


def test_device_is_parsed_once_and_carried(tiny_pipeline):
    cfg = load_config(tiny_pipeline(), load_registry(entry_points=False))
    device = cfg.run.device
    assert isinstance(device, Device) and (device.kind, device.index) == ("cpu", None)
    assert parse_device(device) is device  # carried, not parsed again
    # still its text wherever text was used: comparisons, JSON, torch, pickling
    cuda = RunSection(device=" cuda:01 ").device
    assert cuda == "cuda:1" and (cuda.kind, cuda.index) == ("cuda", 1)
    assert RunSection(device=cuda).model_dump(mode="json")["device"] == "cuda:1"
    assert pickle.loads(pickle.dumps(cuda)) == Device("cuda", 1)
    assert torch.device(cuda) == torch_device(cuda) == torch.device("cuda", 1)
    # one meaning per name: ganpipe.devices validates, training.devices maps to torch
    assert not hasattr(ganpipe.devices, "torch_device")
    assert ganpipe.devices.training_device("mps") == Device("mps")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        Device("gpu")
