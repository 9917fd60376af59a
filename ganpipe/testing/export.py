"""The export half of :func:`~ganpipe.testing.check_variant`: ONNX export, ONNX Runtime
parity on fresh inputs, output shapes and value range, and the model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganpipe.testing._checker import Checker
from ganpipe.variant import DataInfo

CPU = torch.device("cpu")
#: ONNX Runtime against torch on the same inputs (float32, tiny nets)
PARITY_ATOL = 1e-4


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fresh_feeds(c, spec, card, variant, opts, info: DataInfo, n: int, hw: tuple[int, int]):
    """Inputs for ``n`` samples: the variant's own (``make_inputs``) for latent inputs,
    images of height, width ``hw`` in the card's value range for image inputs."""
    made = variant.make_inputs(opts, info, n, CPU, _gen(10 + n))
    c.expect(
        len(made) == len(spec.inputs),
        f"make_inputs gives {len(made)} tensors but export_spec has {len(spec.inputs)} "
        f"inputs; `ganpipe generate` feeds the exported model what the card's inputs say",
    )
    lo, hi = card.value_range
    out = []
    for s, t in zip(spec.inputs, made, strict=True):
        if s.kind == "image":
            shape = (n, info.channels, *hw)
            t = torch.rand(shape, generator=_gen(20 + n)) * (hi - lo) + lo
        out.append(t)
    return out


def check_export(c: Checker, variant, opts, info: DataInfo, nets, tmp: Path) -> None:
    from ganpipe.export.onnx_export import build_card, export_onnx
    from ganpipe.inference.session import open_model
    from ganpipe.modelcard import ModelCard

    with c.step("export"):
        for net in nets.values():
            net.eval()
        spec = variant.export_spec(nets, opts, info)
        c.expect(
            len(spec.example_inputs) == len(spec.inputs),
            f"export_spec has {len(spec.example_inputs)} example inputs for "
            f"{len(spec.inputs)} inputs",
        )
        card = build_card(
            spec, variant.name, variant.task, info.image_size, info.channels, info.class_names
        )
        c.expect(
            ModelCard.from_props(card.to_props()) == card, "the model card does not round-trip"
        )
        tmp.mkdir(parents=True, exist_ok=True)
        result = export_onnx(spec, tmp / "model.onnx", card)
        c.expect(result.path.is_file(), f"export_onnx wrote no {result.path}")
        c.expect(
            result.max_abs_diff < PARITY_ATOL,
            f"ONNX and torch differ by {result.max_abs_diff:.3g} on the parity inputs",
        )
    with c.step("onnx runtime"):
        model = open_model(result.path, "cpu", task=variant.task)
        got_card = model.card
        _check_card(c, variant, opts, info, spec, got_card)
        names = [i.name for i in model.session.get_inputs()]
        c.expect(names == [s.name for s in spec.inputs], f"ONNX inputs {names} != spec.inputs")
        scale = got_card.scale or 1
        side = info.image_size // scale if variant.task == "super_resolve" else info.image_size
        m = max(1, got_card.tile_multiple)
        shapes = [(1, (side, side)), (5, (side, side))]
        if got_card.image_input() is not None:  # any height and width, not only square
            shapes.append((2, (side + m, side)))
        module = spec.module.eval()
        lo, hi = got_card.value_range
        for n, hw in shapes:
            tensors = _fresh_feeds(c, spec, got_card, variant, opts, info, n, hw)
            with torch.no_grad():
                expected = module(*tensors).float().numpy()
            feeds = {s.name: t.numpy() for s, t in zip(spec.inputs, tensors, strict=True)}
            out = model.run(feeds)
            if variant.task == "generate":
                want = (n, info.channels, info.image_size, info.image_size)
            else:
                want = (n, info.channels, hw[0] * scale, hw[1] * scale)
            c.expect(out.shape == want, f"ONNX output shape {out.shape}, expected {want}")
            diff = float(np.max(np.abs(out - expected)))
            c.expect(diff < PARITY_ATOL, f"ONNX and torch differ by {diff:.3g} for {n} x {hw}")
            c.expect(
                out.min() >= lo - 1e-5 and out.max() <= hi + 1e-5,
                f"ONNX output in [{out.min():.4g}, {out.max():.4g}] outside the card's "
                f"value_range {got_card.value_range}",
            )
        if variant.task == "generate":
            from ganpipe.inference.generate import generate_batches

            images = np.concatenate(list(generate_batches(model, 3, seed=0, batch_size=2)))
            want = (3, info.image_size, info.image_size, info.channels)
            c.expect(
                images.dtype == np.uint8 and images.shape == want,
                f"ganpipe generate gave {images.dtype} {images.shape}, expected uint8 {want}",
            )


def _check_card(c: Checker, variant, opts, info: DataInfo, spec, card) -> None:
    expect = {
        "variant": variant.name,
        "task": variant.task,
        "image_size": info.image_size,
        "channels": info.channels,
        "class_names": tuple(info.class_names),
        "inputs": tuple(spec.inputs),
        "value_range": tuple(spec.value_range),
        "output": spec.output_name,
    }
    for key, value in expect.items():
        got = getattr(card, key)
        c.expect(got == value, f"model card {key} = {got!r}, expected {value!r}")
    if variant.task == "super_resolve":
        c.expect(
            card.scale is not None and card.scale >= 2,
            f"a super_resolve model card needs scale >= 2 (export_spec metadata), "
            f"got {card.scale!r}",
        )
        if hasattr(opts, "scale"):
            c.expect(card.scale == opts.scale, f"card scale {card.scale} != options {opts.scale}")
        c.expect(card.image_input() is not None, "a super_resolve model needs an image input")
    elif variant.task == "translate":
        c.expect(card.scale == 1, f"a translate model card needs scale 1, got {card.scale!r}")
        c.expect(card.image_input() is not None, "a translate model needs an image input")
    else:
        c.expect(card.image_input() is None, "a generate model takes no image input")
        if getattr(variant, "conditional", False):
            c.expect(card.conditional, "a conditional variant's model needs a label input")
