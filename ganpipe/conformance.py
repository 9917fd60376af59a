"""Structural checks of plugin objects against the contracts (torch-free).

Used when a plugin registers an object (or a lazily declared one is first loaded) and by
:mod:`ganpipe.testing`. Each check returns a list of problems, each a phrase such as
``"method build(opts, info) cannot be called with 2 arguments"``; empty means it conforms.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import BaseModel

from ganpipe.modelcard import TASKS
from ganpipe.stage import USES

#: names of variants, stages and datasets: what a TOML table name and a CLI value can hold
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

#: method -> its positional parameters, as documented on the base classes
VARIANT_METHODS: dict[str, tuple[str, ...]] = {
    "check_data": ("opts", "info"),
    "build": ("opts", "info"),
    "optimizers": ("nets", "opts"),
    "train_step": ("ctx", "batch"),
    "inputs": ("opts", "info"),
    "make_inputs": ("opts", "info", "n", "device"),
    "generate": ("nets", "inputs"),
    "export_spec": ("nets", "opts", "info"),
}
#: methods that must be the plugin's own (the base class only raises NotImplementedError)
VARIANT_OWN = ("build", "train_step")
STAGE_METHODS: dict[str, tuple[str, ...]] = {
    "run": ("ctx", "opts"),
    "check": ("config", "opts"),
    "fingerprint": ("config", "opts"),
}
DATASET_METHODS: dict[str, tuple[str, ...]] = {
    "load": ("opts", "image_size", "channels", "base_dir"),
    "fingerprint": ("opts", "base_dir"),
}
DATASET_OPTIONAL: dict[str, tuple[str, ...]] = {"class_names": ("opts", "base_dir")}


def _name(obj: Any) -> list[str]:
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        return [
            f"'name' must be a lower-case name such as 'my-gan' (letters, digits, - and _), "
            f"got {name!r}"
        ]
    return []


def _options(obj: Any) -> list[str]:
    opts = getattr(obj, "Options", None)
    if not (isinstance(opts, type) and issubclass(opts, BaseModel)):
        return [
            f"'Options' must be a pydantic model class (subclass ganpipe.Options), got {opts!r}"
        ]
    try:
        opts()
    except Exception:  # noqa: BLE001 - required keys are fine; a broken class is not
        pass
    return []


def _methods(obj: Any, spec: dict[str, tuple[str, ...]], optional: bool = False) -> list[str]:
    problems = []
    for meth, params in spec.items():
        fn = getattr(obj, meth, None)
        if fn is None:
            if not optional:
                problems.append(f"method {meth}({', '.join(params)}) is missing")
            continue
        if not callable(fn):
            problems.append(f"{meth!r} must be a method, got {type(fn).__name__}")
            continue
        try:
            inspect.signature(fn).bind(*params)
        except TypeError:
            problems.append(
                f"method {meth}{inspect.signature(fn)} cannot be called as "
                f"{meth}({', '.join(params)})"
            )
        except ValueError:  # no signature (a builtin): cannot tell
            pass
    return problems


def _not_base(obj: Any, base: type, names: tuple[str, ...]) -> list[str]:
    problems = []
    for meth in names:
        if getattr(type(obj), meth, None) is getattr(base, meth, object()):
            problems.append(f"method {meth} is not implemented (only the base class's)")
    return problems


def variant_problems(obj: Any) -> list[str]:
    from ganpipe.variant import Variant

    problems = _name(obj) + _options(obj)
    task = getattr(obj, "task", None)
    if task not in TASKS:
        problems.append(f"'task' must be one of {', '.join(TASKS)}, got {task!r}")
    if not isinstance(getattr(obj, "generator_net", "G"), str):
        problems.append("'generator_net' must be the name of a net (a string)")
    problems += _methods(obj, VARIANT_METHODS)
    problems += _not_base(obj, Variant, VARIANT_OWN)
    return problems


def stage_problems(obj: Any) -> list[str]:
    from ganpipe.stage import Stage

    problems = _name(obj) + _options(obj) + _methods(obj, {"run": STAGE_METHODS["run"]})
    problems += _methods(obj, {k: v for k, v in STAGE_METHODS.items() if k != "run"}, True)
    problems += _not_base(obj, Stage, ("run",))
    for attr in ("requires", "optional", "uses"):
        value = getattr(obj, attr, ())
        if not isinstance(value, tuple | list) or not all(isinstance(v, str) for v in value):
            problems.append(f"'{attr}' must be a tuple of names, got {value!r}")
    unknown = [u for u in getattr(obj, "uses", ()) if u not in USES]
    if unknown:
        problems.append(f"'uses' may hold {', '.join(USES)}, got {unknown[0]!r}")
    return problems


def dataset_problems(obj: Any) -> list[str]:
    from ganpipe.dataset import DatasetSource

    problems = _name(obj) + _options(obj) + _methods(obj, DATASET_METHODS)
    problems += _methods(obj, DATASET_OPTIONAL, optional=True)
    problems += _not_base(obj, DatasetSource, ("load", "fingerprint"))
    return problems


CHECKS = {"variants": variant_problems, "stages": stage_problems, "datasets": dataset_problems}
