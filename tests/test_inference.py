"""ONNX Runtime inference: torch-free, provider choice, safe loading, reproducible output.

Conditional models are built by hand with ``onnx.helper`` (no torch); the unconditional
generator is a real DCGAN exported once per module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from ganpipe.devices import Device
from ganpipe.errors import ConfigError, GanpipeError, ModelFileError
from ganpipe.inference.generate import generate_options, generate_to_folder, resolve_labels
from ganpipe.inference.options import GenerateOptions
from ganpipe.inference.session import choose_providers, cuda_driver_usable, open_model

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["apple", "banana", "cherry"]
GPU_HERE = cuda_driver_usable()


# -- hand-made models ------------------------------------------------------------------
def make_generator_onnx(
    path: Path,
    class_names: list[str] | None = None,
    conditional=True,
    latent: int = 4,
    size: int = 4,
    channels: int = 3,
) -> Path:
    """A tiny latent-to-image ONNX model with ganpipe metadata.

    image = tanh(reshape(z @ W + table[label])) for a conditional model, without the
    table lookup (and without a label input) otherwise.
    """
    rng = np.random.default_rng(7)
    pixels = channels * size * size
    inits = [
        numpy_helper.from_array(
            rng.standard_normal((latent, pixels)).astype(np.float32) * 0.3, "W"
        ),
        numpy_helper.from_array(np.array([-1, channels, size, size], np.int64), "shape"),
    ]
    nodes = [helper.make_node("MatMul", ["z", "W"], ["zw"])]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent])]
    specs = [{"name": "z", "kind": "normal", "shape": [latent]}]
    last = "zw"
    if conditional:
        k = len(class_names or [])
        # Well separated class offsets so that every class gives visibly other images.
        table = np.repeat(np.linspace(-2, 2, max(k, 1), dtype=np.float32)[:, None], pixels, 1)
        inits.append(numpy_helper.from_array(table, "table"))
        nodes += [
            helper.make_node("Gather", ["table", "label"], ["emb"], axis=0),
            helper.make_node("Add", ["zw", "emb"], ["sum"]),
        ]
        inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
        specs.append({"name": "label", "kind": "label", "shape": []})
        last = "sum"
    nodes += [
        helper.make_node("Tanh", [last], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], ["image"]),
    ]
    graph = helper.make_graph(
        nodes,
        "handmade",
        inputs,
        [
            helper.make_tensor_value_info(
                "image", TensorProto.FLOAT, ["batch", channels, size, size]
            )
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8, producer_name="test"
    )
    meta = {
        "format_version": "1",
        "variant": "handmade",
        "task": "generate",
        "image_size": size,
        "channels": channels,
        "num_classes": len(class_names or []),
        "class_names": list(class_names or []),
        "value_range": [-1.0, 1.0],
        "inputs": specs,
        "output": "image",
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key = "ganpipe." + key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def make_add_model_with_external_data(
    model_path: Path, location: str, data_file: Path
) -> np.ndarray:
    """``y = x + B`` where initializer ``B`` lives in external data at ``location``; the
    bytes of B are written to ``data_file``. Returns B."""
    b_value = np.array([1.0, 2.0, 3.0], np.float32)
    tensor = numpy_helper.from_array(b_value, "B")
    raw = tensor.raw_data
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "B"], ["y"])],
        "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(model.SerializeToString())
    data_file.parent.mkdir(parents=True, exist_ok=True)
    data_file.write_bytes(raw)
    return b_value


@pytest.fixture(scope="module")
def dcgan_onnx(tmp_path_factory) -> Path:
    """A real tiny DCGAN generator exported by ganpipe (16x16 RGB, latent 8)."""
    import torch

    from ganpipe.export.onnx_export import build_card, export_onnx
    from ganpipe.variant import DataInfo
    from ganpipe.variants.dcgan import DCGAN

    torch.manual_seed(0)
    variant = DCGAN()
    opts = variant.Options(**variant.tiny_options)
    info = DataInfo(16, 3)
    nets = variant.build(opts, info)
    spec = variant.export_spec(nets, opts, info)
    meta = build_card(spec, variant.name, variant.task, 16, 3, ())
    path = tmp_path_factory.mktemp("dcgan") / "model.onnx"
    export_onnx(spec, path, meta)
    return path


@pytest.fixture
def cond_onnx(tmp_path) -> Path:
    return make_generator_onnx(tmp_path / "cond.onnx", CLASSES)


def read_pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def pixels(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("sample_*.png"))])


def run_python(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


# -- torch-free ----------------------------------------------------------------------
def test_inference_and_cli_never_import_torch(dcgan_onnx, tmp_path):
    code = f"""
        import importlib.abc, json, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError("torch is blocked in this test", name=name)
                return None

        sys.meta_path.insert(0, NoTorch())
        import ganpipe.inference.generate as gen
        import ganpipe.cli
        summary = gen.generate_to_folder({str(dcgan_onnx)!r}, "out", 6, seed=1,
                                         batch_size=4, device="auto")
        print(json.dumps({{"files": len(summary.files), "grid": str(summary.grid),
                          "onnx": "onnx" in sys.modules,
                          "torch": sorted(m for m in sys.modules
                                          if m == "torch" or m.startswith("torch."))}}))
        """
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["torch"] == []
    assert result["onnx"] is False  # the model card is read without it (0.7 s to import)
    assert result["files"] == 6
    assert len(list((tmp_path / "out").glob("sample_*.png"))) == 6
    assert (tmp_path / "out" / "grid.png").is_file()


# -- providers -----------------------------------------------------------------------
def test_cpu_device_gives_cpu_provider_only():
    assert choose_providers("cpu") == ["CPUExecutionProvider"]


def test_unknown_device_is_a_one_line_error():
    with pytest.raises(GanpipeError) as err:
        choose_providers("gpu0")
    assert "unknown device 'gpu0'" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "device, why",
    [
        ("mps", "device 'mps' is not available here"),
        ("cpu:1", "unknown device 'cpu:1'"),
        ("cuda:", "unknown device 'cuda:'"),
        (Device("mps"), "device 'mps' is not available here"),
    ],
)
def test_devices_follow_the_one_grammar(device, why):
    # ganpipe.devices.parse_device with ONNX Runtime's kinds: a ConfigError (exit 2)
    with pytest.raises(ConfigError) as err:
        choose_providers(device)
    assert str(err.value).startswith(f"--device: {why}; use one of auto, cpu, cuda, cuda:N")


def test_device_objects_and_spacing_are_accepted():
    assert choose_providers(Device("cpu")) == ["CPUExecutionProvider"]
    assert choose_providers(" cpu ") == ["CPUExecutionProvider"]


@pytest.mark.skipif(GPU_HERE, reason="needs a machine without a usable CUDA driver")
def test_auto_on_cpu_machine_is_cpu_and_silent(dcgan_onnx, tmp_path):
    assert choose_providers("auto") == ["CPUExecutionProvider"]
    code = f"""
        import json
        import numpy as np
        from ganpipe.inference.session import open_model
        from ganpipe.inference.generate import generate_batches
        model = open_model({str(dcgan_onnx)!r}, "auto", task="generate")
        images = np.concatenate(list(generate_batches(model, 3, 0)))
        print(json.dumps({{"providers": model.providers, "shape": list(images.shape)}}))
        """
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"providers": ["CPUExecutionProvider"], "shape": [3, 16, 16, 3]}
    # onnxruntime-gpu without a driver prints provider-load failures when CUDA is tried.
    assert "cuda" not in proc.stderr.lower(), proc.stderr
    assert proc.stderr.strip() == ""


@pytest.mark.skipif(GPU_HERE, reason="needs a machine without a usable CUDA driver")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "tensorrt"])
def test_cuda_without_gpu_is_a_one_line_error(device, dcgan_onnx):
    with pytest.raises(GanpipeError) as err:
        choose_providers(device)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"--device {device}" in msg and "--device cpu" in msg
    with pytest.raises(GanpipeError):
        open_model(dcgan_onnx, device)


# -- safe loading --------------------------------------------------------------------
def test_external_data_outside_model_folder_is_refused(tmp_path):
    model = tmp_path / "model" / "add.onnx"
    make_add_model_with_external_data(model, "../outside.bin", tmp_path / "outside.bin")
    with pytest.raises(ModelFileError) as err:
        open_model(model, "cpu")
    assert "points outside the model's folder" in str(err.value)
    assert "../outside.bin" in str(err.value)


def test_external_data_absolute_path_is_refused(tmp_path):
    data = tmp_path / "elsewhere" / "weights.bin"
    model = tmp_path / "model" / "add.onnx"
    make_add_model_with_external_data(model, str(data), data)
    with pytest.raises(ModelFileError, match="points outside the model's folder"):
        open_model(model, "cpu")


def test_external_data_symlink_escaping_the_folder_is_refused(tmp_path):
    model = tmp_path / "model" / "add.onnx"
    make_add_model_with_external_data(model, "weights.bin", tmp_path / "secret.bin")
    (tmp_path / "model" / "weights.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(ModelFileError, match="points outside the model's folder"):
        open_model(model, "cpu")


@pytest.mark.parametrize("location", ["weights.bin", "data/weights.bin"])
def test_external_data_next_to_the_model_loads(tmp_path, location):
    model = tmp_path / "model" / "add.onnx"
    b = make_add_model_with_external_data(model, location, tmp_path / "model" / location)
    opened = open_model(model, "cpu")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(opened.run({"x": x}), x + b)


def test_model_without_ganpipe_metadata_is_refused_for_generate(tmp_path):
    model = tmp_path / "add.onnx"
    make_add_model_with_external_data(model, "w.bin", tmp_path / "w.bin")
    with pytest.raises(ModelFileError, match="not a ganpipe model"):
        open_model(model, "cpu", task="generate")


# -- reproducibility -----------------------------------------------------------------
def test_same_seed_gives_identical_images(dcgan_onnx, tmp_path):
    a = generate_to_folder(dcgan_onnx, tmp_path / "a", 6, seed=5, device="cpu")
    b = generate_to_folder(dcgan_onnx, tmp_path / "b", 6, seed=5, device="cpu")
    c = generate_to_folder(dcgan_onnx, tmp_path / "c", 6, seed=6, device="cpu")
    assert [p.name for p in a.files] == [f"sample_{i:05d}.png" for i in range(6)]
    assert a.grid == tmp_path / "a" / "grid.png" and a.grid.is_file()
    assert [p.name for p in b.files] == [p.name for p in a.files]
    assert read_pngs(tmp_path / "a") == read_pngs(tmp_path / "b")
    assert not np.array_equal(pixels(tmp_path / "a"), pixels(tmp_path / "c"))
    assert len(c.files) == 6
    with Image.open(a.files[0]) as im:
        assert im.size == (16, 16) and im.mode == "RGB"


def test_batch_size_does_not_change_images(dcgan_onnx, tmp_path):
    results = {}
    for bs in (1, 3, 64):
        generate_to_folder(
            dcgan_onnx, tmp_path / f"bs{bs}", 7, seed=2, batch_size=bs, device="cpu", grid=False
        )
        results[bs] = pixels(tmp_path / f"bs{bs}")
        assert not (tmp_path / f"bs{bs}" / "grid.png").exists()
    assert results[1].shape == (7, 16, 16, 3)
    np.testing.assert_array_equal(results[1], results[3])
    np.testing.assert_array_equal(results[1], results[64])
    # Not a trivial model: the images differ from each other.
    assert len({img.tobytes() for img in results[1]}) == 7


def test_truncation_trick(dcgan_onnx, tmp_path):
    from ganpipe.inference.generate import sample_inputs, truncate

    model = open_model(dcgan_onnx, "cpu", task="generate")
    name = next(s.name for s in model.card.inputs if s.kind == "normal")
    plain = sample_inputs(model, 50, seed=3, labels=None)[name]
    # no truncation: exactly the seed's standard normal draws
    np.testing.assert_array_equal(
        plain, np.random.default_rng(3).standard_normal(plain.shape, dtype=np.float32)
    )
    for t in (2.0, 0.5, 0.05):
        z = sample_inputs(model, 50, seed=3, labels=None, truncation=t)[name]
        inside = np.abs(plain) <= t
        assert np.abs(z).max() <= t and 0 < inside.mean() < 1
        np.testing.assert_array_equal(z[inside], plain[inside])  # kept where inside
        assert not np.array_equal(z[~inside], plain[~inside])
        again = sample_inputs(model, 50, seed=3, labels=None, truncation=t)[name]
        np.testing.assert_array_equal(z, again)
    # redrawn values follow the normal restricted to [-t, t], not a clip to the edges
    z = truncate(np.full(20000, 9.0, np.float32), 1.0, np.random.default_rng(0))
    assert np.abs(z).max() <= 1.0 and (np.abs(z) == 1.0).mean() < 0.01
    assert 0.25 < z.var() < 0.33  # variance of N(0, 1) truncated to +-1: 0.291
    # through the CLI: less spread between images, one-line errors for bad values
    out = {}
    for t in (None, 0.1):
        extra = [] if t is None else ["--truncation", str(t)]
        proc = run_cli(
            "generate",
            "-m",
            str(dcgan_onnx),
            "-n",
            "24",
            "--seed",
            "1",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / str(t)),
            *extra,
        )
        assert proc.returncode == 0, proc.stderr
        out[t] = pixels(tmp_path / str(t)).astype(np.float64)
    assert out[0.1].std(axis=0).mean() < out[None].std(axis=0).mean()
    for bad in ("0", "-1", "x"):
        proc = run_cli(
            "generate", "-m", str(dcgan_onnx), "--truncation", bad, "-o", str(tmp_path / "bad")
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "truncation" in proc.stderr
    assert not (tmp_path / "bad").exists()


# -- labels --------------------------------------------------------------------------
def test_labels_resolve_from_names_and_indices(cond_onnx):
    model = open_model(cond_onnx, "cpu", task="generate")
    assert resolve_labels(model, ["banana"], 4).tolist() == [1, 1, 1, 1]
    assert resolve_labels(model, ["2"], 3).tolist() == [2, 2, 2]
    assert resolve_labels(model, [0], 2).tolist() == [0, 0]
    assert resolve_labels(model, ["apple", "2"], 5).tolist() == [0, 2, 0, 2, 0]
    assert resolve_labels(model, "cherry", 2).tolist() == [2, 2]
    # No labels or "all": every class in turn.
    assert resolve_labels(model, None, 5).tolist() == [0, 1, 2, 0, 1]
    assert resolve_labels(model, "all", 4).tolist() == [0, 1, 2, 0]


def test_label_name_and_index_give_the_same_images(cond_onnx, tmp_path):
    generate_to_folder(cond_onnx, tmp_path / "name", 4, seed=1, labels=["banana"], device="cpu")
    generate_to_folder(cond_onnx, tmp_path / "index", 4, seed=1, labels=[1], device="cpu")
    generate_to_folder(cond_onnx, tmp_path / "other", 4, seed=1, labels=["apple"], device="cpu")
    assert read_pngs(tmp_path / "name") == read_pngs(tmp_path / "index")
    assert not np.array_equal(pixels(tmp_path / "name"), pixels(tmp_path / "other"))


@pytest.mark.parametrize("label", ["3", "-1", "durian", "99"])
def test_unknown_label_lists_the_classes(cond_onnx, tmp_path, label):
    with pytest.raises(GanpipeError) as err:
        generate_to_folder(cond_onnx, tmp_path / "out", 2, labels=[label], device="cpu")
    msg = str(err.value)
    assert f"--label {label!r}" in msg
    assert "0=apple, 1=banana, 2=cherry" in msg and "0..2" in msg
    assert "\n" not in msg
    assert not (tmp_path / "out").exists()


def test_label_on_unconditional_model_is_an_error(tmp_path, dcgan_onnx):
    # Class names in the metadata (a model trained on a labelled folder) do not make a
    # model conditional: only a label input does.
    plain = make_generator_onnx(tmp_path / "plain.onnx", CLASSES, conditional=False)
    for model in (plain, dcgan_onnx):
        with pytest.raises(GanpipeError, match="is not conditional; drop --label"):
            generate_to_folder(model, tmp_path / "out", 2, labels=["0"], device="cpu")
    assert not (tmp_path / "out").exists()
    # Without labels it generates.
    summary = generate_to_folder(plain, tmp_path / "ok", 2, device="cpu")
    assert len(summary.files) == 2


def test_conditional_model_without_class_names_is_an_error(tmp_path):
    model = make_generator_onnx(tmp_path / "nonames.onnx", None, conditional=True)
    with pytest.raises(GanpipeError, match="without class names"):
        generate_to_folder(model, tmp_path / "out", 2, device="cpu")


# -- one option schema -----------------------------------------------------------------
def test_options_are_stated_once():
    """The CLI's flags, the stage's table and the library take the same model."""
    import click

    from ganpipe.cli.generate import generate as command
    from ganpipe.stages.generate import GenerateStage

    stage = GenerateStage.Options
    assert issubclass(stage, GenerateOptions) and set(stage.model_fields) == set(
        GenerateOptions.model_fields
    )
    params = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for name, info in GenerateOptions.model_fields.items():
        assert name in params, name
        if not params[name].multiple and info.default is not None:
            assert params[name].default == info.default, name
        if name != "seed":  # the stage's seed defaults to run.seed
            assert stage.model_fields[name].default == info.default, name
    assert stage.model_fields["seed"].default is None
    assert params["count"].opts == ["-n", "--count"] and params["labels"].opts == ["--label"]
    assert params["codes"].opts == ["--code"] and "--no-grid" in params["grid"].secondary_opts


def test_labels_split_on_commas_and_all_means_every_class():
    assert GenerateOptions(labels=["cat,dog", 2]).labels == ["cat", "dog", 2]
    assert GenerateOptions(labels="cat, 1").labels == ["cat", "1"]
    assert GenerateOptions(labels="all").labels is None
    assert GenerateOptions(labels=["all"]).labels is None
    assert GenerateOptions(device=" cuda:1 ").device == "cuda:1"


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"count": 0}, "count"),
        ({"batch_size": 0}, "batch_size"),
        ({"truncation": 0}, "truncation"),
        ({"device": "mps"}, "device"),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_options_name_the_key(dcgan_onnx, tmp_path, fields, key):
    with pytest.raises(ConfigError) as err:
        generate_to_folder(dcgan_onnx, tmp_path / "out", **fields)
    assert str(err.value).startswith(f"{key}: ") and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_options_object_fields_and_count_shorthand_agree(dcgan_onnx, tmp_path):
    opts = GenerateOptions(count=3, seed=4, batch_size=2, device="cpu", grid=False)
    a = generate_to_folder(dcgan_onnx, tmp_path / "a", opts)
    b = generate_to_folder(dcgan_onnx, tmp_path / "b", count=3, seed=4, device="cpu", grid=False)
    c = generate_to_folder(dcgan_onnx, tmp_path / "c", 3, seed=4, device="cpu", grid=False)
    assert len(a.files) == len(b.files) == len(c.files) == 3 and a.grid is None
    assert read_pngs(tmp_path / "a") == read_pngs(tmp_path / "b") == read_pngs(tmp_path / "c")
    # fields on top of an options object; the object itself is left alone
    assert generate_options(opts, seed=9).seed == 9 and opts.seed == 4
    assert generate_options(opts, seed=9).count == 3
    assert generate_options() == GenerateOptions()


def test_stage_seed_defaults_to_run_seed(dcgan_onnx, tmp_path):
    from types import SimpleNamespace

    from ganpipe.outputs import ExportOutput
    from ganpipe.stage import StageContext
    from ganpipe.stages.generate import GenerateStage

    stage = GenerateStage()
    run_dir = tmp_path / "run"
    ctx = SimpleNamespace(
        config=SimpleNamespace(run=SimpleNamespace(seed=5)),
        run_dir=run_dir,
        output_of=lambda cls, needed_by: ExportOutput(model=dcgan_onnx),
        stage_dir=lambda name: run_dir / name,
    )
    ctx.result = lambda record, summary: StageContext.result(ctx, record, summary)
    result = stage.run(ctx, stage.Options(count=4, device="cpu"))
    assert result.info == {"count": 4} and result.outputs["grid"] == "generate/grid.png"
    generate_to_folder(dcgan_onnx, tmp_path / "seed5", 4, seed=5, device="cpu")
    assert read_pngs(tmp_path / "run" / "generate") == read_pngs(tmp_path / "seed5")
    stage.run(ctx, stage.Options(count=4, device="cpu", seed=0))  # an explicit seed wins
    assert read_pngs(tmp_path / "run" / "generate") != read_pngs(tmp_path / "seed5")
