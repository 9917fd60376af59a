"""The variant contract, checked on one variant object (imports torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganpipe.conformance import variant_problems
from ganpipe.contract import hooks
from ganpipe.testing._checker import (
    Checker,
    CheckReport,
    check_conformance,
    check_options,
    scratch,
)
from ganpipe.testing.data import make_image_set
from ganpipe.testing.export import check_export
from ganpipe.testing.quick import task_info
from ganpipe.variant import Batch, DataInfo, StepContext, Variant
from ganpipe.variant_adapter import LegacyVariant, likely_fix, nets_problem

CPU = torch.device("cpu")
#: train steps given to a variant to change every net (some update G every k-th step)
TRAIN_STEPS = 5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


#: the data a variant of its task trains on here (kept under its old name)
data_info = task_info


def _labels(n: int, info: DataInfo) -> torch.Tensor:
    return torch.arange(n) % max(1, info.num_classes)


def _discriminate(variant, nets, images: torch.Tensor, labels: torch.Tensor):
    if variant.conditional:
        return nets["D"](images, labels)
    return nets["D"](images)


def _params(nets: dict[str, torch.nn.Module]) -> dict[str, list[torch.Tensor]]:
    return {k: [p.detach().clone() for p in net.parameters()] for k, net in nets.items()}


def _changed(before: list[torch.Tensor], net: torch.nn.Module) -> bool:
    return any(
        not torch.equal(a, b.detach()) for a, b in zip(before, net.parameters(), strict=True)
    )


def check_variant(
    variant: Any,
    *,
    tmp_path: str | Path | None = None,
    options: dict[str, Any] | None = None,
    image_size: int | None = None,
    class_names: tuple[str, ...] | None = None,
) -> CheckReport:
    """Check the whole contract of ``variant`` (an object, not a name); raise
    :class:`~ganpipe.testing.ContractError` naming the variant and the step that broke.

    ``options``: keys on top of ``variant.tiny_options``; ``image_size``: default
    ``variant.test_image_size``; ``class_names``: default three classes for conditional
    variants, two domains for ``translate``, none otherwise; ``tmp_path``: a scratch
    folder (default: a temporary one). Returns a :class:`~ganpipe.testing.CheckReport`.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: one thread is fastest, and far faster when busy
    try:
        return _check_variant(variant, tmp_path, options, image_size, class_names)
    finally:
        torch.set_num_threads(threads)


def _check_variant(variant, tmp_path, options, image_size, class_names) -> CheckReport:
    if not isinstance(variant, Variant):  # the duck-typed contract of ganpipe 0.2
        check_conformance(Checker("variant", variant), variant_problems(variant))
        variant = LegacyVariant(variant)
    methods = hooks(Variant)

    def explain(step: str, exc: BaseException) -> str:
        marker = methods.get(step)
        return likely_fix(marker, exc, variant) if marker is not None else ""

    c = Checker("variant", variant, explain)
    check_conformance(c, variant_problems(variant))
    given = {**variant.tiny_options, **(options or {})}
    opts = check_options(c, variant.Options, given)
    size = image_size or variant.test_image_size
    info = data_info(variant, size, class_names)
    with c.step("check_data"):
        variant.check_data(opts, info)
    gname = variant.generator_net
    with c.step("build"):
        torch.manual_seed(0)
        nets = variant.build(opts, info)
        problem = nets_problem(nets, gname)
        c.expect(problem is None, "build {}; {}".format(*problem or ("", "")))
    _check_forward(c, variant, opts, info, nets)
    _check_train_step(c, variant, opts, info, nets, gname)
    with scratch(tmp_path, "variant") as tmp:
        _check_resume(c, variant, opts, info, tmp / "resume")
        check_export(c, variant, opts, info, nets, tmp / "export")
    return c.report


def _check_forward(c: Checker, variant, opts, info: DataInfo, nets) -> None:
    with c.step("forward"):
        size, specs = info.image_size, variant.inputs(opts, info)
        for mode in ("train", "eval"):
            for net in nets.values():
                net.train(mode == "train")
            for n in (1, 4):
                if mode == "train" and n == 1:
                    continue  # batch norm needs more than one sample in training mode
                inputs = variant.make_inputs(opts, info, n, CPU, _gen(n))
                c.expect(
                    len(inputs) == len(specs),
                    f"make_inputs gave {len(inputs)} tensors for {len(specs)} inputs() {specs}",
                )
                with torch.no_grad():
                    out = variant.generate(nets, inputs)
                _check_images(c, "generate(make_inputs(...))", out, n, info)
                if variant.task == "generate":  # fresh SR nets may clamp everything to 0
                    c.expect(out.std() > 0, "generate made constant images")
                if "D" in nets:
                    with torch.no_grad():
                        d_out = _discriminate(variant, nets, out, _labels(n, info))
                    c.expect(
                        d_out.shape[0] == n and d_out.reshape(n, -1).shape[1] >= 1,
                        f"D gave shape {tuple(d_out.shape)} for {n} images",
                    )
                    c.expect(torch.isfinite(d_out).all(), "D gave non-finite scores")
        # the loop's sample grids
        real = torch.rand(4, info.channels, size, size, generator=_gen(5)) * 2 - 1
        fixed = variant.fixed_inputs(opts, info, 4, CPU, _gen(6), real)
        with torch.no_grad():
            out = variant.generate(nets, fixed)
        _check_images(c, "generate(fixed_inputs(...))", out, 4, info)


def _check_images(c: Checker, what: str, out, n: int, info: DataInfo) -> None:
    size = info.image_size
    c.expect(isinstance(out, torch.Tensor), f"{what} returned {type(out).__name__}")
    c.expect(
        tuple(out.shape) == (n, info.channels, size, size),
        f"{what} gave shape {tuple(out.shape)}, expected {(n, info.channels, size, size)}",
    )
    c.expect(out.dtype == torch.float32, f"{what} gave {out.dtype}, expected float32")
    c.expect(torch.isfinite(out).all(), f"{what} gave non-finite values")
    lo, hi = float(out.min()), float(out.max())
    c.expect(
        lo >= -1.0 and hi <= 1.0,
        f"{what} gave values in [{lo:.4g}, {hi:.4g}]; the loop's images are in [-1, 1]",
    )


def _check_train_step(c: Checker, variant, opts, info: DataInfo, nets, gname: str) -> None:
    with c.step("optimizers"):
        optimizers = variant.optimizers(nets, opts)
        c.expect(
            isinstance(optimizers, dict)
            and optimizers
            and all(isinstance(o, torch.optim.Optimizer) for o in optimizers.values()),
            f"optimizers must return {{name: torch.optim.Optimizer}}, got {optimizers!r}",
        )
        optimized = {
            id(p) for o in optimizers.values() for g in o.param_groups for p in g["params"]
        }
        for name, net in nets.items():
            missing = [
                n for n, p in net.named_parameters() if p.requires_grad and id(p) not in optimized
            ]
            c.expect(not missing, f"parameters of net {name!r} have no optimizer: {missing[:3]}")
    with c.step("train_step"):
        for net in nets.values():
            net.train()
        ctx = StepContext(nets, optimizers, opts, info, CPU)
        before = _params(nets)
        n = 8
        shape = (n, info.channels, info.image_size, info.image_size)
        images = torch.rand(shape, generator=_gen(1)) * 2 - 1
        batch = Batch(images, _labels(n, info))
        first = "D" if "D" in nets else next((k for k in nets if k != gname), gname)
        for step in range(TRAIN_STEPS):
            ctx.step = step
            losses = variant.train_step(ctx, batch)
            c.expect(
                isinstance(losses, dict) and losses,
                f"train_step must return {{name: loss}}, got {losses!r}",
            )
            for name, value in losses.items():
                c.expect(
                    isinstance(value, torch.Tensor) and value.numel() == 1,
                    f"loss {name!r} must be a one-element tensor, got {value!r}",
                )
                c.expect(not value.requires_grad, f"loss {name!r} is not detached")
                c.expect(torch.isfinite(value).all(), f"loss {name!r} = {value} at step {step}")
            if step == 0:
                c.expect(_changed(before[first], nets[first]), f"one step did not change {first!r}")
        unchanged = [k for k, net in nets.items() if not _changed(before[k], net)]
        c.expect(not unchanged, f"{TRAIN_STEPS} train steps never changed nets {unchanged}")


def _trainer(variant, opts, data, out: Path, steps: int):
    from ganpipe.training.loop import Trainer
    from ganpipe.training.options import TrainOptions

    train = TrainOptions(
        steps=steps,
        batch_size=4,
        ema_decay=0.9,
        log_every=1,
        sample_every=0,
        checkpoint_every=2,
        num_samples=4,
        progress=False,
    )
    return Trainer(
        variant, opts, train, data, out, device="cpu", fingerprint="contract", log=_quiet
    )


def _quiet(*_args) -> None:
    pass


def _check_resume(c: Checker, variant, opts, info: DataInfo, tmp: Path) -> None:
    """The real loop: 4 steps straight equal 2 steps, a new process's worth of setup, and
    2 more resumed from the checkpoint, bit for bit (weights, EMA, losses)."""
    from ganpipe.training.checkpoint import load_weights

    with c.step("resume"):
        data = make_image_set(12, info.image_size, info.channels, info.class_names)
        straight = _trainer(variant, opts, data, tmp / "straight", 4).run()
        first = _trainer(variant, opts, data, tmp / "split", 2).run()
        c.expect(first.steps == 2, f"the first half ran {first.steps} steps, expected 2")
        second = _trainer(variant, opts, data, tmp / "split", 4).run()
        c.expect(
            second.resumed_from == 2 and second.steps == 4,
            f"resumed from step {second.resumed_from} to {second.steps}, expected 2 -> 4",
        )
        a, b = load_weights(straight.checkpoint), load_weights(second.checkpoint)
        c.expect(set(a) == set(b), f"checkpointed nets differ: {sorted(a)} vs {sorted(b)}")
        for net in a:
            for key in a[net]:
                c.expect(
                    torch.equal(a[net][key], b[net][key]),
                    f"4 steps straight and 2 + 2 resumed give different weights in "
                    f"{net}.{key}: the variant keeps state outside its nets, optimizers "
                    f"and ctx.state (keep it in ctx.state, which is checkpointed), or "
                    f"draws random numbers outside torch's global generator",
                )
        la, lb = (_losses(tmp / run / "metrics.jsonl") for run in ("straight", "split"))
        c.expect(la == lb, f"losses differ after resuming: {la} vs {lb}")


def _losses(path: Path) -> list[dict]:
    import json

    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in recs]
