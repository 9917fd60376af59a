"""torch -> ONNX export: parity check, metadata inside the file, atomic failure."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from ganpipe.errors import GanpipeError
from ganpipe.export.onnx_export import build_card, export_onnx
from ganpipe.inference.session import open_model
from ganpipe.variant import DataInfo, ExportSpec, InputSpec
from ganpipe.variants.dcgan import DCGAN

CLASSES = ("cats", "dogs")


@pytest.fixture(scope="module")
def dcgan_spec():
    torch.manual_seed(0)
    variant = DCGAN()
    opts = variant.Options(**variant.tiny_options)
    info = DataInfo(16, 3, CLASSES)
    nets = variant.build(opts, info)
    spec = variant.export_spec(nets, opts, info)
    meta = build_card(spec, variant.name, variant.task, 16, 3, CLASSES)
    return spec, meta


@pytest.fixture(scope="module")
def exported(dcgan_spec, tmp_path_factory):
    spec, meta = dcgan_spec
    folder = tmp_path_factory.mktemp("export")
    result = export_onnx(spec, folder / "model.onnx", meta)
    return result


def _tiny_spec(module: nn.Module) -> ExportSpec:
    return ExportSpec(
        module,
        [InputSpec("z", "normal", (4,))],
        (torch.randn(2, 4, generator=torch.Generator().manual_seed(0)),),
    )


class RandomInForward(nn.Module):
    """ONNX gets a RandomUniformLike node: ORT's random numbers are not torch's."""

    def forward(self, z):
        return torch.tanh(z) + torch.rand_like(z)


class ExportOnlyBranch(nn.Module):
    """Traces one branch, runs the other in eager torch."""

    def forward(self, z):
        if torch.compiler.is_exporting():
            return z * 2.0
        return z


class DataDependent(nn.Module):
    """Python control flow on tensor values: torch.export cannot capture it."""

    def forward(self, z):
        if z.sum() > 0:
            return z * 2.0
        return z


def test_parity_is_reported_and_small(exported, dcgan_spec):
    spec, _ = dcgan_spec
    assert isinstance(exported.max_abs_diff, float)
    assert 0.0 <= exported.max_abs_diff < 1e-4
    # The number is real: recompute it independently on other inputs.
    sess = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        expected = spec.module(z).numpy()
    got = sess.run(None, {"z": z.numpy()})[0]
    assert got.shape == (4, 3, 16, 16)
    assert np.max(np.abs(got - expected)) < 1e-4


def test_metadata_is_inside_the_file(exported):
    folder = exported.path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx"]  # no sidecar, no tmp
    model = onnx.load(str(exported.path))
    props = {p.key: p.value for p in model.metadata_props}
    assert model.producer_name == "ganpipe"
    assert props == exported.card.to_props()
    assert props["ganpipe.variant"] == "dcgan"
    assert props["ganpipe.task"] == "generate"
    assert json.loads(props["ganpipe.image_size"]) == 16
    assert json.loads(props["ganpipe.channels"]) == 3
    assert json.loads(props["ganpipe.class_names"]) == list(CLASSES)
    assert json.loads(props["ganpipe.num_classes"]) == 2
    assert json.loads(props["ganpipe.value_range"]) == [-1.0, 1.0]
    assert json.loads(props["ganpipe.inputs"]) == [{"name": "z", "kind": "normal", "shape": [8]}]
    assert json.loads(props["ganpipe.latent_dim"]) == 8
    # The inference side reads the same values back, typed.
    card = open_model(exported.path, "cpu", task="generate").card
    assert card.class_names == tuple(CLASSES) and card.image_size == 16
    assert card.inputs[0].shape == (8,)


def test_onnx_checker_passes(exported):
    onnx.checker.check_model(str(exported.path), full_check=True)
    model = onnx.load(str(exported.path))
    assert [i.name for i in model.graph.input] == ["z"]
    assert [o.name for o in model.graph.output] == ["image"]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")  # dynamic batch


def test_dynamic_batch_runs_for_other_batch_sizes(exported):
    sess = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    for n in (1, 5, 17):
        out = sess.run(None, {"z": np.zeros((n, 8), np.float32)})[0]
        assert out.shape == (n, 3, 16, 16)


def test_parity_failure_with_tiny_atol_raises_and_writes_nothing(dcgan_spec, tmp_path):
    spec, meta = dcgan_spec
    # ExportOnlyBranch guarantees a non-zero diff; the DCGAN's float diff is checked too
    # when it happens to be non-zero on this machine.
    with pytest.raises(GanpipeError, match="parity check failed"):
        export_onnx(_tiny_spec(ExportOnlyBranch()), tmp_path / "branch.onnx", meta, atol=1e-12)
    probe = export_onnx(spec, tmp_path / "probe.onnx", meta)
    (tmp_path / "probe.onnx").unlink()
    if probe.max_abs_diff > 1e-12:
        with pytest.raises(GanpipeError, match=r"max abs diff .* > 1e-12"):
            export_onnx(spec, tmp_path / "model.onnx", meta, atol=1e-12)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "module", [RandomInForward(), ExportOnlyBranch()], ids=["random", "export-only-branch"]
)
def test_module_differing_from_its_trace_fails_parity(module, tmp_path):
    meta = build_card(_tiny_spec(module), "x", "generate", 4, 3, ())
    with pytest.raises(GanpipeError) as err:
        export_onnx(_tiny_spec(module), tmp_path / "model.onnx", meta)
    msg = str(err.value)
    assert msg.startswith("ONNX parity check failed for model.onnx: max abs diff")
    assert "nothing was written" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # no final file, no temporary left behind


def test_failed_export_keeps_the_previous_model(tmp_path):
    final = tmp_path / "model.onnx"
    final.write_bytes(b"previous good model")
    meta = build_card(_tiny_spec(ExportOnlyBranch()), "x", "generate", 4, 3, ())
    with pytest.raises(GanpipeError):
        export_onnx(_tiny_spec(ExportOnlyBranch()), final, meta)
    assert final.read_bytes() == b"previous good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_unexportable_module_is_a_clean_one_line_error(tmp_path, capfd):
    meta = build_card(_tiny_spec(DataDependent()), "x", "generate", 4, 3, ())
    with pytest.raises(GanpipeError) as err:
        export_onnx(_tiny_spec(DataDependent()), tmp_path / "model.onnx", meta)
    msg = str(err.value)
    assert msg.startswith("ONNX export of DataDependent failed:")
    assert "\n" not in msg and "\x1b" not in msg  # no terminal colour codes
    out, errtext = capfd.readouterr()
    assert "GraphModule" not in out + errtext and "def forward" not in out + errtext
    assert list(tmp_path.iterdir()) == []


def test_matching_module_passes_with_default_atol(tmp_path):
    class Plain(nn.Module):
        def forward(self, z):
            return torch.tanh(z * 0.5)

    spec = _tiny_spec(Plain())
    result = export_onnx(spec, tmp_path / "plain.onnx", build_card(spec, "x", "generate", 4, 3, ()))
    assert result.path.is_file() and result.max_abs_diff < 1e-6


def test_build_card_sets_card_fields_and_keeps_plugin_keys():
    spec = _tiny_spec(nn.Identity())
    spec.metadata = {"latent_dim": 4, "direction": "AtoB", "arch": {"depth": 2}, "note": "x"}
    card = build_card(spec, "x", "generate", 8, 1, ("a",))
    assert (card.variant, card.task, card.image_size, card.channels) == ("x", "generate", 8, 1)
    assert card.class_names == ("a",) and card.inputs == (InputSpec("z", "normal", (4,)),)
    assert card.latent_dim == 4 and card.direction == "AtoB"
    assert card.extra == {"arch": {"depth": 2}, "note": "x"}
    props = card.to_props()
    assert json.loads(props["ganpipe.arch"]) == {"depth": 2} and props["ganpipe.note"] == "x"
    assert "ganpipe.extra" not in props
