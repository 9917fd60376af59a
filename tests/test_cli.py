"""The ``ganpipe`` command, run as a real subprocess (``python -m ganpipe.cli``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

STAGES = ("train", "export", "generate")


# -- helpers -------------------------------------------------------------------------
def make_generator_onnx(path: Path, class_names: list[str] | None) -> Path:
    """A hand-made 4x4 RGB generator with ganpipe metadata (no torch); conditional with a
    ``label`` input when ``class_names`` is given."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 48)).astype(np.float32), "W"),
        numpy_helper.from_array(np.array([-1, 3, 4, 4], np.int64), "shape"),
    ]
    nodes = [helper.make_node("MatMul", ["z", "W"], ["zw"])]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4])]
    specs = [{"name": "z", "kind": "normal", "shape": [4]}]
    last = "zw"
    if class_names:
        table = np.linspace(-1, 1, len(class_names) * 48, dtype=np.float32).reshape(-1, 48)
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
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    meta = {
        "task": "generate",
        "variant": "handmade",
        "image_size": 4,
        "channels": 3,
        "class_names": list(class_names or []),
        "value_range": [-1.0, 1.0],
        "inputs": specs,
        "output": "image",
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = "ganpipe." + key, json.dumps(value)
    path.write_bytes(model.SerializeToString())
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Non-zero exit, exactly one stderr line starting 'ganpipe: error:', no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("ganpipe: error: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def stage_outputs(run_dir: Path) -> list[Path]:
    """Everything a stage writes (models, checkpoints, images, data sets, metrics)."""
    return [p for p in files_under(run_dir) if p.name != "manifest.json"]


def folder_pipeline(tmp_path: Path, data_path: str, extra: str = "") -> Path:
    text = f"""
[run]
name = "folder"
out_dir = "runs"
seed = 0
device = "cpu"

[data]
dataset = "folder"
path = "{data_path}"
image_size = 16
channels = 3

[model]
variant = "dcgan"
latent_dim = 8
g_width = 4
d_width = 4
{extra}
[train]
steps = 2
batch_size = 4
log_every = 1
sample_every = 0
checkpoint_every = 0
num_samples = 4
progress = false

[export]

[generate]
count = 3
"""
    path = tmp_path / "folder.toml"
    path.write_text(text.lstrip(), encoding="utf-8")
    return path


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def torch_modules_in_importtime(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r"\|\s+torch(\.|$)", line.rstrip())]


# -- help, plugins ---------------------------------------------------------------------
def test_help_works_without_importing_torch(cli, tmp_path):
    proc = cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "generate", "plugins"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.M), proc.stdout

    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ganpipe", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert timed.returncode == 0
    assert "ganpipe" in timed.stderr  # importtime did report our imports
    assert torch_modules_in_importtime(timed.stderr) == []

    code = (
        "import sys\nfrom ganpipe.cli import main\n"
        "try:\n    main(['--help'], prog_name='ganpipe')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'onnxruntime', 'onnx'))\nprint('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


@pytest.mark.parametrize("command", ["run", "generate", "plugins"])
def test_subcommand_help(cli, command, tmp_path):
    proc = cli(command, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"Usage: ganpipe {command}" in proc.stdout


def test_plugins_lists_builtins(cli, tmp_path):
    proc = cli("plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sections = {}
    current = None
    for line in proc.stdout.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":")
            sections[current] = []
        elif line.strip():
            sections[current].append(line.split()[0])
    assert "dcgan" in sections["variants"]
    assert {"augment", "train", "export", "generate"} <= set(sections["stages"])
    assert {"folder", "shapes"} <= set(sections["datasets"])
    assert {"ganpipe.dcgan", "ganpipe.stages", "ganpipe.datasets"} <= set(sections["plugins"])
    assert "[generate]" in proc.stdout


def test_plugins_json(cli, tmp_path):
    proc = cli("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    variants = {v["name"]: v for v in data["variants"]}
    assert variants["dcgan"]["task"] == "generate"
    assert variants["dcgan"]["plugin"] == "ganpipe.dcgan"
    assert variants["dcgan"]["description"]
    stages = {s["name"]: s for s in data["stages"]}
    assert {"augment", "train", "export", "generate"} <= set(stages)
    assert all(
        stages[s]["plugin"] == "ganpipe.stages" for s in ("augment", "train", "export", "generate")
    )
    datasets = {d["name"]: d for d in data["datasets"]}
    assert {"folder", "shapes"} <= set(datasets)
    plugins = {p["name"]: p["distribution"] for p in data["plugins"]}
    assert plugins["ganpipe.dcgan"] == "ganpipe (built-in)"


# -- end to end ------------------------------------------------------------------------
def stage_lines(stdout: str, stage: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(f"[{stage}]")]


@pytest.mark.slow
def test_run_end_to_end_rerun_and_generate(cli, tiny_pipeline, tmp_path):
    pipeline = tiny_pipeline()
    run_dir = tmp_path / "runs" / "tiny"

    first = cli("run", str(pipeline), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    for stage in STAGES:
        lines = stage_lines(first.stdout, stage)
        assert any("running" in line for line in lines), first.stdout
        assert any("done in" in line for line in lines), first.stdout
    assert "max abs diff" in first.stdout

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == set(STAGES)
    checkpoint = run_dir / manifest["stages"]["train"]["outputs"]["checkpoint"]
    assert checkpoint.exists()
    assert list(checkpoint.rglob("*.safetensors")) or checkpoint.is_file()
    samples = sorted((run_dir / "train" / "samples").glob("*.png"))
    assert samples
    with Image.open(samples[-1]) as im:
        assert im.mode == "RGB" and im.size[0] > 16
    metrics = [
        json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in metrics] == [2, 4]
    assert all(np.isfinite(m["d_loss"]) and np.isfinite(m["g_loss"]) for m in metrics)
    model = run_dir / "export" / "model.onnx"
    onnx.checker.check_model(str(model))
    generated = sorted((run_dir / "generate").glob("sample_*.png"))
    assert len(generated) == 5
    assert (run_dir / "generate" / "grid.png").is_file()
    for png in generated:
        with Image.open(png) as im:
            assert im.size == (16, 16) and im.mode == "RGB"
    # Atomic writes leave no temporary files behind.
    assert not [p for p in files_under(run_dir) if p.name.endswith(".tmp")]

    model_bytes = model.read_bytes()
    model_mtime = model.stat().st_mtime_ns
    second = cli("run", str(pipeline), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    for stage in STAGES:
        assert any("up to date" in line for line in stage_lines(second.stdout, stage)), (
            second.stdout
        )
    assert "running" not in second.stdout
    assert model.stat().st_mtime_ns == model_mtime

    forced = cli("run", str(pipeline), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    for stage in STAGES:
        assert any("running" in line for line in stage_lines(forced.stdout, stage))
    assert "up to date" not in forced.stdout
    # Same seed, same config: the retrained model is the same.
    assert (
        onnx.load_from_string(model.read_bytes()).graph == onnx.load_from_string(model_bytes).graph
    )

    partial = cli("run", str(pipeline), "--from", "export", cwd=tmp_path)
    assert partial.returncode == 0, partial.stderr
    assert any("up to date" in line for line in stage_lines(partial.stdout, "train"))
    for stage in ("export", "generate"):
        assert any("running" in line for line in stage_lines(partial.stdout, stage))

    # Standalone generation from the exported model; no torch import on this path.
    outs = []
    for name in ("out", "out2"):
        proc = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "ganpipe.cli",
                "generate",
                "-m",
                str(model),
                "-n",
                "7",
                "-o",
                name,
                "--seed",
                "3",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert torch_modules_in_importtime(proc.stderr) == []
        assert "cuda" not in proc.stderr.lower()
        assert "wrote 7 images and grid.png" in proc.stdout
        out = tmp_path / name
        pngs = sorted(p.name for p in out.glob("sample_*.png"))
        assert len(pngs) == 7
        assert (out / "grid.png").is_file()
        outs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert outs[0] == outs[1]

    other = cli("generate", "-m", str(model), "-n", "7", "-o", "out3", "--seed", "4", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "out3").iterdir()} != outs[0]


@pytest.mark.slow
def test_folder_pipeline_skips_corrupt_file(cli, image_folder, tmp_path):
    (image_folder / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (image_folder / "dogs" / "notes.txt").write_text("not an image, not counted")
    pipeline = folder_pipeline(tmp_path, "images", extra="\n[augment]\ncopies = 1\n")
    proc = cli("run", str(pipeline), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped 1 unreadable image(s) of 13" in proc.stderr
    assert "broken.png" in proc.stderr
    assert "12 images, 1 unreadable skipped -> 24" in proc.stdout
    run_dir = tmp_path / "runs" / "folder"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["augment"]["info"]["skipped"] == 1
    assert manifest["stages"]["train"]["info"]["data"]["class_names"] == ["cats", "dogs"]
    assert len(list((run_dir / "generate").glob("sample_*.png"))) == 3
    model = onnx.load(str(run_dir / "export" / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["ganpipe.class_names"]) == ["cats", "dogs"]


# -- bad input: one line, non-zero exit, nothing under final names ---------------------
def test_missing_data_folder(cli, tmp_path):
    pipeline = folder_pipeline(tmp_path, "no_such_images")
    proc = cli("run", str(pipeline), cwd=tmp_path)
    assert_one_line_error(proc, "no_such_images", "does not exist", "data.path")
    assert not (tmp_path / "runs").exists()


def test_empty_data_folder(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    pipeline = folder_pipeline(tmp_path, "empty")
    proc = cli("run", str(pipeline), cwd=tmp_path)
    assert_one_line_error(proc, "empty", "has no images")
    run_dir = tmp_path / "runs" / "folder"
    assert stage_outputs(run_dir) == []
    if (run_dir / "manifest.json").exists():
        assert json.loads((run_dir / "manifest.json").read_text())["stages"] == {}


def test_unknown_variant_lists_known(cli, tiny_pipeline, tmp_path):
    proc = cli("run", str(tiny_pipeline(variant="dcgna")), cwd=tmp_path)
    line = assert_one_line_error(
        proc,
        "unknown variant 'dcgna'",
        "did you mean 'dcgan'",
        "known: ",
        "dcgan",
        "pipeline.toml:",
    )
    assert re.search(r"pipeline\.toml:\d+", line)
    assert proc.returncode == 2
    assert not (tmp_path / "runs").exists()


def test_misspelled_option_suggests(cli, tiny_pipeline, tmp_path):
    pipeline = edit(tiny_pipeline(), "batch_size = 8", "batch_sise = 8")
    proc = cli("run", str(pipeline), cwd=tmp_path)
    line_no = pipeline.read_text().splitlines().index("batch_sise = 8") + 1
    assert_one_line_error(
        proc,
        f"pipeline.toml:{line_no}",
        "train.batch_sise",
        "unknown key",
        "did you mean 'batch_size'",
    )
    assert not (tmp_path / "runs").exists()


def test_misspelled_model_option_suggests(cli, tiny_pipeline, tmp_path):
    pipeline = edit(tiny_pipeline(), "g_width = 4", "g_widht = 4")
    proc = cli("run", str(pipeline), cwd=tmp_path)
    assert_one_line_error(proc, "model.g_widht", "did you mean 'g_width'")
    assert not (tmp_path / "runs").exists()


def test_wrong_type(cli, tiny_pipeline, tmp_path):
    pipeline = edit(tiny_pipeline(), "steps = 4", 'steps = "many"')
    proc = cli("run", str(pipeline), cwd=tmp_path)
    line_no = pipeline.read_text().splitlines().index('steps = "many"') + 1
    assert_one_line_error(proc, f"pipeline.toml:{line_no}", "train.steps", "'many'")
    assert not (tmp_path / "runs").exists()


def test_toml_syntax_error_has_line_and_column(cli, tiny_pipeline, tmp_path):
    pipeline = edit(tiny_pipeline(), "steps = 4", "steps = = 4")
    line_no = pipeline.read_text().splitlines().index("steps = = 4") + 1
    proc = cli("run", str(pipeline), cwd=tmp_path)
    line = assert_one_line_error(proc, "TOML syntax error")
    assert re.search(rf"pipeline\.toml:{line_no}:\d+: ", line), line
    assert not (tmp_path / "runs").exists()


def test_pipeline_file_missing(cli, tmp_path):
    proc = cli("run", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert_one_line_error(proc, "nope.toml", "no such file")
    assert not (tmp_path / "runs").exists()


def test_from_unknown_stage(cli, tiny_pipeline, tmp_path):
    proc = cli("run", str(tiny_pipeline()), "--from", "exprot", cwd=tmp_path)
    assert_one_line_error(proc, "--from exprot", "train, export, generate")
    assert not (tmp_path / "runs").exists()


def test_generate_missing_model(cli, tmp_path):
    proc = cli("generate", "-m", str(tmp_path / "missing.onnx"), "-o", "out", cwd=tmp_path)
    assert_one_line_error(proc, "missing.onnx", "does not exist")
    assert proc.returncode == 2  # a model that cannot be used is a bad argument
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", ["png", "text", "empty"])
def test_generate_non_onnx_file(cli, tmp_path, content):
    fake = tmp_path / "model.onnx"
    if content == "png":
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
        (tmp_path / "x.png").rename(fake)
    elif content == "text":
        fake.write_text("this is not a model\n" * 20)
    else:
        fake.write_bytes(b"")
    proc = cli("generate", "-m", str(fake), "-o", "out", cwd=tmp_path)
    assert_one_line_error(proc, "model.onnx", "not a valid ONNX model")
    assert not (tmp_path / "out").exists()


def test_generate_model_folder_instead_of_file(cli, tmp_path):
    (tmp_path / "dir.onnx").mkdir()
    proc = cli("generate", "-m", str(tmp_path / "dir.onnx"), "-o", "out", cwd=tmp_path)
    assert_one_line_error(proc, "is not a file")


def test_generate_into_unwritable_folder(cli, tmp_path):
    model = make_generator_onnx(tmp_path / "plain.onnx", None)
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("a regular file")
    proc = cli("generate", "-m", str(model), "-n", "2", "-o", str(blocker / "out"), cwd=tmp_path)
    assert_one_line_error(proc, "is not writable", "somefile.txt")
    assert blocker.read_text() == "a regular file"

    if os.geteuid() != 0:  # permission bits do not stop root
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            proc = cli(
                "generate", "-m", str(model), "-n", "2", "-o", str(locked / "out"), cwd=tmp_path
            )
            assert_one_line_error(proc, "is not writable")
            assert list(locked.iterdir()) == []
        finally:
            locked.chmod(0o700)

    ok = cli("generate", "-m", str(model), "-n", "2", "-o", "fine", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "fine").glob("sample_*.png"))) == 2


def test_generate_label_out_of_range(cli, tmp_path):
    model = make_generator_onnx(tmp_path / "cond.onnx", ["red", "green", "blue"])
    proc = cli("generate", "-m", str(model), "-n", "3", "-o", "out", "--label", "9", cwd=tmp_path)
    assert_one_line_error(proc, "--label '9'", "0=red, 1=green, 2=blue")
    assert not (tmp_path / "out").exists()

    ok = cli(
        "generate",
        "-m",
        str(model),
        "-n",
        "3",
        "-o",
        "out",
        "--label",
        "green,0",
        "--no-grid",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "sample_00000.png",
        "sample_00001.png",
        "sample_00002.png",
    ]


def test_generate_label_on_unconditional_model(cli, tmp_path):
    model = make_generator_onnx(tmp_path / "plain.onnx", None)
    proc = cli("generate", "-m", str(model), "-o", "out", "--label", "1", cwd=tmp_path)
    assert_one_line_error(proc, "not conditional")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(
    __import__("ganpipe.inference.session", fromlist=["x"]).cuda_driver_usable(),
    reason="a CUDA GPU is usable here",
)
def test_generate_cuda_without_gpu(cli, tmp_path):
    model = make_generator_onnx(tmp_path / "plain.onnx", None)
    proc = cli("generate", "-m", str(model), "-o", "out", "--device", "cuda", cwd=tmp_path)
    assert_one_line_error(proc, "--device cuda", "--device cpu")
    assert not (tmp_path / "out").exists()


def test_generate_count_must_be_positive(cli, tmp_path):
    model = make_generator_onnx(tmp_path / "plain.onnx", None)
    proc = cli("generate", "-m", str(model), "-n", "0", "-o", "out", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--device", "gpu0"], ["--device: unknown device 'gpu0'", "cuda:N, tensorrt"]),
        (["--device", "mps"], ["--device: device 'mps' is not available here"]),
        (["--code", "c_cat"], ["--code 'c_cat': use NAME=VALUE"]),
        (["--code", "a=1", "--code", "a=2"], ["--code a is given twice"]),
        (["--batch-size", "0"], ["--batch-size", "0"]),
        (["--seed", "x"], ["--seed", "'x' is not a valid integer"]),
    ],
)
def test_generate_bad_options_are_usage_errors(cli, tmp_path, args, fragments):
    model = make_generator_onnx(tmp_path / "plain.onnx", None)
    proc = cli("generate", "-m", str(model), "-o", "out", *args, cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert proc.returncode == 2
    assert not (tmp_path / "out").exists()


def test_generate_defaults_come_from_the_options(cli, tmp_path):
    from ganpipe.inference.options import GenerateOptions

    defaults = GenerateOptions()
    model = make_generator_onnx(tmp_path / "cond.onnx", ["red", "green"])
    proc = cli("generate", "-m", str(model), "--label", "all", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in (tmp_path / "samples").iterdir())  # -o's default
    assert len(files) == defaults.count + 1 and files[0] == "grid.png"
    help_text = cli("generate", "--help").stdout
    assert f"[default: {defaults.count};" in help_text
    assert f"[default: {defaults.device}]" in help_text and "--no-grid" in help_text
