"""pipeline.toml -> typed objects; every mistake is a one-line ConfigError with file:line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from ganpipe.config import DataSection, PipelineConfig, RunSection, load_config
from ganpipe.data.sources import FolderOptions, ShapesOptions
from ganpipe.errors import ConfigError
from ganpipe.pipeline import run_file
from ganpipe.registry import load_registry
from ganpipe.stages.export import ExportOptions
from ganpipe.stages.generate import GenerateOptions, GenerateStageOptions
from ganpipe.training.loop import TrainOptions
from ganpipe.variants.dcgan import DCGANOptions


@pytest.fixture(scope="module")
def registries():
    return load_registry(entry_points=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based number of the first line of ``path`` containing ``needle``."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def config_error(path: Path, registries) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, registries)
    msg = str(info.value)
    assert "\n" not in msg.strip(), "errors are one line"
    return msg


# -- valid configs ---------------------------------------------------------------------


def test_tiny_config_loads_into_typed_objects(tiny_pipeline, registries):
    path = tiny_pipeline(steps=6)
    cfg = load_config(path, registries)
    assert isinstance(cfg, PipelineConfig)
    assert isinstance(cfg.run, RunSection) and cfg.run.name == "tiny" and cfg.run.seed == 0
    assert isinstance(cfg.data, DataSection)
    assert cfg.data.image_size == 16 and cfg.data.channels == 3
    assert cfg.dataset is registries.datasets.get("shapes")
    assert isinstance(cfg.data_options, ShapesOptions)
    assert cfg.data_options.count == 64 and cfg.data_options.classes == 2
    # the variant's options object is the variant's own Options class, with the values
    assert cfg.variant is registries.variants.get("dcgan")
    assert type(cfg.variant_options) is cfg.variant.Options is DCGANOptions
    assert cfg.variant_options.latent_dim == 8
    assert cfg.variant_options.g_width == 4 and cfg.variant_options.d_width == 4
    assert cfg.variant_options.lr_g == 2e-4  # default filled in
    # stages in file order, each with its typed options
    assert [s.name for s in cfg.stages] == ["train", "export", "generate"]
    train = cfg.stage("train")
    assert isinstance(train.options, TrainOptions)
    assert train.options.steps == 6 and train.options.batch_size == 8
    assert train.options.progress is False
    assert isinstance(cfg.stage("export").options, ExportOptions)
    assert isinstance(cfg.stage("generate").options, GenerateOptions)
    assert isinstance(cfg.stage("generate").options, GenerateStageOptions)
    assert cfg.stage("generate").options.count == 5
    assert cfg.stage("generate").options.seed is None  # run.seed, when the stage runs
    assert cfg.stage("augment") is None
    # relative paths resolve against the toml's folder, not the working directory
    assert cfg.base_dir == path.parent.resolve()
    assert cfg.run_dir == (path.parent / "runs" / "tiny").resolve()


def test_stage_order_follows_the_file(tmp_path, registries):
    path = write(
        tmp_path / "p.toml",
        """
        [model]
        variant = "dcgan"
        [data]
        dataset = "shapes"
        [generate]
        [augment]
        copies = 2
        [train]
    """,
    )
    cfg = load_config(path, registries)
    assert [s.name for s in cfg.stages] == ["generate", "augment", "train"]
    assert cfg.stage("augment").options.copies == 2


def test_relative_data_path_resolves_against_toml_folder(
    tmp_path, image_folder, registries, monkeypatch
):
    # image_folder is tmp_path/images; the toml lives in tmp_path/conf/, cwd is elsewhere
    path = write(
        tmp_path / "conf" / "pipeline.toml",
        """
        [run]
        name = "r"
        out_dir = "../out"
        [data]
        dataset = "folder"
        path = "../images"
        image_size = 16
        [model]
        variant = "dcgan"
        [train]
    """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "conf" / "pipeline.toml", registries)
    assert isinstance(cfg.data_options, FolderOptions)
    assert cfg.base_dir == path.parent.resolve()
    assert cfg.run_dir == (tmp_path / "out" / "r").resolve()
    data = cfg.dataset.load(cfg.data_options, cfg.data.image_size, cfg.data.channels, cfg.base_dir)
    assert len(data) == 12 and data.class_names == ["cats", "dogs"]


# -- errors ----------------------------------------------------------------------------


def test_misspelled_key_suggests_and_points_at_line(tiny_pipeline, registries):
    path = tiny_pipeline()
    text = path.read_text().replace("batch_size = 8", "batchsize = 8")
    path.write_text(text)
    msg = config_error(path, registries)
    assert "train.batchsize" in msg
    assert "did you mean 'batch_size'" in msg
    assert f"pipeline.toml:{line_of(path, 'batchsize')}:" in msg


def test_wrong_type_names_key_and_line(tiny_pipeline, registries):
    path = tiny_pipeline()
    path.write_text(path.read_text().replace("batch_size = 8", 'batch_size = "big"'))
    msg = config_error(path, registries)
    assert "train.batch_size" in msg
    assert f"pipeline.toml:{line_of(path, 'batch_size = ')}:" in msg
    assert "'big'" in msg


def test_out_of_range_value_in_model_table(tiny_pipeline, registries):
    path = tiny_pipeline()
    path.write_text(path.read_text().replace("latent_dim = 8", "latent_dim = 0"))
    msg = config_error(path, registries)
    assert "model.latent_dim" in msg
    assert f"pipeline.toml:{line_of(path, 'latent_dim')}:" in msg


def test_toml_syntax_error_has_file_line_col(tiny_pipeline, registries):
    path = tiny_pipeline()
    path.write_text(path.read_text().replace("steps = 4", "steps = = 4"))
    msg = config_error(path, registries)
    line = line_of(path, "steps = = 4")
    m = re.search(r"pipeline\.toml:(\d+):(\d+): TOML syntax error", msg)
    assert m, msg
    assert int(m.group(1)) == line and int(m.group(2)) >= 1


def test_missing_file(tmp_path, registries):
    msg = config_error(tmp_path / "nope.toml", registries)
    assert "nope.toml" in msg and "no such file" in msg


def test_unknown_section_suggests(tiny_pipeline, registries):
    path = tiny_pipeline()
    path.write_text(path.read_text().replace("[train]", "[trian]"))
    msg = config_error(path, registries)
    assert "unknown section [trian]" in msg
    assert "did you mean [train]" in msg
    assert f"pipeline.toml:{line_of(path, '[trian]')}" in msg


def test_unknown_variant_lists_known(tiny_pipeline, registries):
    path = tiny_pipeline(variant="dcgann")
    msg = config_error(path, registries)
    assert "unknown variant 'dcgann'" in msg
    assert "did you mean 'dcgan'" in msg
    known = re.search(r"known: ([^;]*);", msg)
    assert known and "dcgan" in known.group(1).split(", ")
    assert f"pipeline.toml:{line_of(path, 'variant =')}" in msg


def test_missing_model_table(tmp_path, registries):
    path = write(
        tmp_path / "pipeline.toml",
        """
        [data]
        dataset = "shapes"
        [train]
    """,
    )
    msg = config_error(path, registries)
    assert "missing [model]" in msg and "variant" in msg


def test_model_without_variant(tmp_path, registries):
    path = write(
        tmp_path / "pipeline.toml",
        """
        [model]
        latent_dim = 8
        [train]
    """,
    )
    msg = config_error(path, registries)
    assert "model.variant" in msg and "missing" in msg


def test_unknown_data_key_for_shapes(tiny_pipeline, registries):
    path = tiny_pipeline()
    path.write_text(path.read_text().replace("classes = 2", "clases = 2"))
    msg = config_error(path, registries)
    assert "data.clases" in msg
    assert "did you mean 'classes'" in msg
    assert f"pipeline.toml:{line_of(path, 'clases')}" in msg


@pytest.mark.parametrize(
    "old,new,key,hint",
    [
        ("image_size = 16", "image_sise = 16", "data.image_sise", "image_size"),
        ('dataset = "shapes"', 'datset = "shapes"', "data.datset", "dataset"),
        ("latent_dim = 8", "latent_dm = 8", "model.latent_dm", "latent_dim"),
        ("g_width = 4", "gwidth = 4", "model.gwidth", "g_width"),
    ],
)
def test_misspelled_key_in_shared_tables(tiny_pipeline, registries, old, new, key, hint):
    # [data] and [model] mix the section's own keys with the dataset's / variant's keys:
    # the hint covers both, and a misspelt key is reported rather than what it hides
    path = tiny_pipeline()
    path.write_text(path.read_text().replace(old, new))
    msg = config_error(path, registries)
    assert f"{key}: unknown key; did you mean {hint!r}?" in msg
    assert f"pipeline.toml:{line_of(path, new)}:" in msg


def test_folder_dataset_requires_path(tmp_path, registries):
    path = write(
        tmp_path / "pipeline.toml",
        """
        [data]
        dataset = "folder"
        [model]
        variant = "dcgan"
        [train]
    """,
    )
    msg = config_error(path, registries)
    assert "data.path" in msg and "missing" in msg


def test_unknown_dataset(tiny_pipeline, registries):
    path = tiny_pipeline()
    path.write_text(path.read_text().replace('dataset = "shapes"', 'dataset = "shape"'))
    msg = config_error(path, registries)
    assert "unknown dataset 'shape'" in msg and "did you mean 'shapes'" in msg


@pytest.mark.parametrize("name", ["a/b", "../escape", "/abs", ""])
def test_run_name_with_slash_rejected(tiny_pipeline, registries, name):
    path = tiny_pipeline()
    path.write_text(path.read_text().replace('name = "tiny"', f'name = "{name}"'))
    msg = config_error(path, registries)
    assert "run.name" in msg
    assert f"pipeline.toml:{line_of(path, 'name = ')}" in msg


@pytest.mark.parametrize(
    "device, why",
    [
        ("gpu", "unknown device 'gpu'"),
        ("cuda:x", "unknown device 'cuda:x'"),
        ("mps:1", "unknown device 'mps:1'"),
        ("tensorrt", "device 'tensorrt' is not available here"),
    ],
)
def test_run_device_goes_through_the_device_grammar(tiny_pipeline, registries, device, why):
    path = tiny_pipeline()
    path.write_text(path.read_text().replace('device = "cpu"', f'device = "{device}"'))
    msg = config_error(path, registries)
    assert f"pipeline.toml:{line_of(path, 'device = ')}: run.device: {why}" in msg
    assert "use one of auto, cpu, cuda, cuda:N, mps" in msg and "tensorrt," not in msg


@pytest.mark.parametrize("device, canonical", [("cuda:1", "cuda:1"), (" mps ", "mps")])
def test_run_device_is_stored_canonically(device, canonical):
    assert RunSection(device=device).device == canonical


def test_generate_device_goes_through_the_device_grammar(tiny_pipeline, registries):
    path = tiny_pipeline()
    path.write_text(path.read_text().replace("count = 5", 'count = 5\ndevice = "mps"'))
    msg = config_error(path, registries)
    assert f"pipeline.toml:{line_of(path, 'mps')}: generate.device: device 'mps'" in msg
    assert "tensorrt" in msg


def test_section_must_be_a_table(tiny_pipeline, registries):
    path = tiny_pipeline()
    text = path.read_text().replace("[export]\n", "")
    path.write_text("export = 3\n" + text)
    msg = config_error(path, registries)
    assert "'export' must be a table" in msg


def test_no_stages(tmp_path, registries):
    path = write(
        tmp_path / "pipeline.toml",
        """
        [data]
        dataset = "shapes"
        [model]
        variant = "dcgan"
    """,
    )
    msg = config_error(path, registries)
    assert "no stages" in msg


def test_everything_validated_before_any_stage_runs(tiny_pipeline):
    # the first stages are fine; only the last one has a bad option
    path = tiny_pipeline()
    path.write_text(path.read_text().replace("count = 5", "count = 5\ncolour = 3"))
    run_dir = path.parent / "runs"
    logs: list[str] = []
    with pytest.raises(ConfigError) as info:
        run_file(path, entry_points=False, log=logs.append)
    assert "generate.colour" in str(info.value)
    assert f"pipeline.toml:{line_of(path, 'colour')}" in str(info.value)
    assert not run_dir.exists(), "no run folder is created for an invalid config"
    assert logs == []


def test_fp16_on_cpu_and_variant_data_checks_fail_at_load(tiny_pipeline, registries):
    """Mistakes only training used to find are found when the file is loaded."""
    path = tiny_pipeline()
    text = path.read_text()
    path.write_text(text.replace("[train]\n", '[train]\namp = "fp16"\n'))
    with pytest.raises(ConfigError, match="fp16.*CUDA") as info:
        load_config(path, registries)
    assert str(info.value).startswith(str(path))
    # a size the variant cannot build (biggan needs a power of two >= 16)
    path.write_text(
        text.replace('variant = "dcgan"', 'variant = "biggan"').replace(
            "image_size = 16", "image_size = 24"
        )
    )
    with pytest.raises(ConfigError, match="power of two"):
        load_config(path, registries)
    assert not (path.parent / "runs").exists()
