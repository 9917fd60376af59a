"""The cheap checks of a variant: what ``ganpipe plugins --check`` runs on every variant
(imports torch; well under a second for tiny nets, no training loop, no files)."""

from __future__ import annotations

from typing import Any

import torch

from ganpipe.conformance import variant_problems
from ganpipe.contract import Hook, hooks
from ganpipe.errors import one_line
from ganpipe.modelcard import INPUT_KINDS
from ganpipe.variant import Batch, DataInfo, ExportSpec, StepContext, Variant
from ganpipe.variant_adapter import LegacyVariant, likely_fix, nets_problem

CPU = torch.device("cpu")


class _Stop(Exception):
    """The problem that ends the checks (later steps need what this one made)."""


def quick_check(variant: Any, *, options: dict[str, Any] | None = None) -> list[str]:
    """The cheap checks of :func:`check_variant` on ``variant`` (an object, not a name),
    as a list of problems, each one line naming the fix; empty when it passes.

    The variant's ``Options()`` defaults with its ``tiny_options`` (and ``options``) on
    top, at its ``test_image_size``, on data of its task (three classes for conditional
    variants, two domains for ``translate``): the structure (:mod:`ganpipe.conformance`);
    ``Options`` build; ``check_data``; ``build`` returns ``{name: nn.Module}`` holding
    ``generator_net``; ``optimizers`` returns ``{name: Optimizer}`` covering every
    trained parameter; ``inputs`` are of known kinds and ``make_inputs`` gives one tensor
    each; ``generate`` gives images of the data's shape; one ``train_step`` on a batch of
    four calls ``ctx.update`` with known optimizer names and returns detached scalar
    losses; ``export_spec`` returns an :class:`~ganpipe.ExportSpec`. Options the code
    reads but ``Options`` does not declare (``Options = GANOptions`` with extra fields)
    show up as the step that reads them. No training loop, no export, no files: for
    ``ganpipe plugins --check``; :func:`check_variant` adds them.
    """
    problems = variant_problems(variant)
    if problems:
        return problems
    if not isinstance(variant, Variant):
        variant = LegacyVariant(variant)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _steps(variant, options or {})
    except _Stop as stop:
        return [str(stop)]
    finally:
        torch.set_num_threads(threads)
    return []


def task_info(variant: Any, image_size: int, class_names: tuple[str, ...] | None) -> DataInfo:
    """The data a variant of its task is checked on: three classes for conditional
    variants, two domains for ``translate``, none otherwise (``class_names`` given: those)."""
    if class_names is None:
        if variant.task == "translate":
            class_names = ("a", "b")
        elif variant.conditional:
            class_names = ("a", "b", "c")
        else:
            class_names = ()
    return DataInfo(image_size, 3, tuple(class_names))


class _Calls:
    """Calls the variant's methods, turning an exception into the problem with its fix."""

    def __init__(self, variant: Variant):
        self.variant = variant
        self.hooks: dict[str, Hook] = hooks(Variant)

    def __call__(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.variant, method)(*args)
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raised, with the fix
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if cause is not exc and hasattr(exc, "method"):  # a guarded variant: its line
                raise _Stop(str(exc)) from exc
            text = one_line(cause)
            fix = likely_fix(self.hooks[method], cause, self.variant)
            if method == "check_data":
                fix = "set test_image_size and tiny_options to values check_data accepts"
            raise _Stop(
                f"Variant.{method} raised {type(cause).__name__}"
                + (f": {text}" if text else "")
                + (f"; {fix}" if fix else "")
            ) from exc

    def fail(self, method: str, what: str, fix: str | None = None) -> None:
        fix = self.hooks[method].fix if fix is None else fix
        raise _Stop(f"Variant.{method} {what}" + (f"; {fix}" if fix else ""))


def _steps(variant: Variant, options: dict[str, Any]) -> None:
    call = _Calls(variant)
    given = {**variant.tiny_options, **options}
    try:
        opts = variant.Options(**given)
    except Exception as exc:  # noqa: BLE001 - a ValidationError, or a broken class
        text = one_line(exc)
        raise _Stop(
            f"Options(**{given!r}) is refused: {text}; give every option a default that "
            f"validates, and tiny_options values for the checks"
        ) from exc
    info = task_info(variant, variant.test_image_size, None)
    call("check_data", opts, info)
    torch.manual_seed(0)
    nets = call("build", opts, info)
    problem = nets_problem(nets, variant.generator_net)
    if problem:
        call.fail("build", *problem)
    optimizers = call("optimizers", nets, opts)
    _check_optimizers(call, nets, optimizers)
    specs = call("inputs", opts, info)
    kinds = [getattr(s, "kind", None) for s in specs] if isinstance(specs, list) else None
    if kinds is None or None in kinds:
        call.fail("inputs", f"returned {specs!r}")
    unknown = [k for k in kinds if not _known_kind(k)]
    if unknown:
        call.fail("inputs", f"has the unknown input kind {unknown[0]!r}", _kinds_fix())
    for net in nets.values():
        net.eval()
    inputs = call("make_inputs", opts, info, 2, CPU, torch.Generator().manual_seed(0))
    if not isinstance(inputs, tuple | list) or len(inputs) != len(specs):
        call.fail("make_inputs", f"gave {_describe(inputs)} for the {len(specs)} inputs()")
    with torch.no_grad():
        out = call("generate", nets, tuple(inputs))
    size = info.image_size
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, info.channels, size, size):
        call.fail(
            "generate",
            f"gave {_describe(out)} for 2 samples, expected a tensor "
            f"{(2, info.channels, size, size)}",
        )
    _check_train_step(call, nets, optimizers, opts, info)
    spec = call("export_spec", nets, opts, info)
    if not isinstance(spec, ExportSpec):
        call.fail("export_spec", f"returned {type(spec).__name__}")


def _check_optimizers(call: _Calls, nets: dict, optimizers: Any) -> None:
    if not isinstance(optimizers, dict) or not all(
        isinstance(o, torch.optim.Optimizer) for o in optimizers.values()
    ):
        call.fail("optimizers", f"returned {_describe(optimizers)}")
    optimized = {id(p) for o in optimizers.values() for g in o.param_groups for p in g["params"]}
    for name, net in nets.items():
        left = [n for n, p in net.named_parameters() if p.requires_grad and id(p) not in optimized]
        if left:
            call.fail(
                "optimizers",
                f"leaves parameters of net {name!r} without an optimizer ({left[0]}, ...)",
                "give every trained net an optimizer, or freeze it (requires_grad_(False))",
            )


def _check_train_step(call: _Calls, nets: dict, optimizers: dict, opts: Any, info) -> None:
    for net in nets.values():
        net.train()
    n, size = 4, info.image_size
    images = torch.rand((n, info.channels, size, size), generator=torch.Generator()) * 2 - 1
    batch = Batch(images, torch.arange(n) % max(1, info.num_classes))
    ctx = StepContext(nets, optimizers, opts, info, CPU)
    losses = call("train_step", ctx, batch)
    if not isinstance(losses, dict) or not losses:
        call.fail("train_step", f"returned {_describe(losses)}")
    for name, value in losses.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or value.requires_grad:
            call.fail("train_step", f"returned the loss {name!r} as {_describe(value)}")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        grad = ", not detached" if value.requires_grad else ""
        return f"a tensor of shape {tuple(value.shape)}{grad}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _known_kind(kind: str) -> bool:
    try:
        from ganpipe.inputs import input_kind
    except ImportError:  # pragma: no cover - before plugin input kinds
        return kind in INPUT_KINDS
    return input_kind(kind) is not None


def _kinds_fix() -> str:
    return (
        f"use one of {', '.join(INPUT_KINDS)}, or a kind an installed plugin registers "
        f"(ganpipe_register_input_kinds)"
    )
