"""Structural checks of plugin objects against their contracts (torch-free).

The contracts are the base classes :class:`ganpipe.Variant`, :class:`ganpipe.Stage` and
:class:`ganpipe.DatasetSource`: the methods to check, whether each is required and the
arguments ganpipe passes are read from them (:func:`ganpipe.contract.hooks`,
:func:`ganpipe.contract.call_params`), never copied here. Used when a plugin registers an
object (or a lazily declared one is first loaded), by ``ganpipe plugins --check`` and by
:mod:`ganpipe.testing`. Each check returns a list of problems, each a phrase that names
the fix, such as ``"method train_step(self) cannot be called as train_step(ctx, batch);
give it the parameters (self, ctx, batch)"``; empty means it conforms.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from ganpipe.contract import call_params, hooks, own
from ganpipe.errors import one_line
from ganpipe.modelcard import TASKS
from ganpipe.stage import USES

#: names of variants, stages and datasets: what a TOML table name and a CLI value can hold
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def _name(obj: Any) -> list[str]:
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        return [
            f"'name' must be a lower-case name such as 'my-gan' (letters, digits, - and _), "
            f"got {name!r}; declare it in register.lazy(..., name=...) or on the class"
        ]
    return []


def _options(obj: Any) -> list[str]:
    """``Options`` is a pydantic model class whose defaults validate (keys without a
    default are the user's to set: refused only when a default itself is invalid)."""
    opts = getattr(obj, "Options", None)
    if not (isinstance(opts, type) and issubclass(opts, BaseModel)):
        return [
            f"'Options' must be a pydantic model class (subclass ganpipe.Options), got {opts!r}"
        ]
    try:
        opts()
    except ValidationError as exc:
        bad = [e for e in exc.errors() if e.get("type") != "missing"]
        if bad:
            where = ".".join(str(p) for p in bad[0].get("loc", ())) or "?"
            return [
                f"'Options' default of {where!r} is invalid ({bad[0].get('msg')}); give it a "
                f"default that validates"
            ]
    except Exception as exc:  # noqa: BLE001 - a broken model class, named with the fix
        return [
            f"'Options()' raised {type(exc).__name__}: {one_line(exc)}; "
            f"fix the options class (it must build from its defaults)"
        ]
    return []


def _signature_problem(fn: Any, meth: str, params: tuple[str, ...]) -> str | None:
    try:
        inspect.signature(fn).bind(*params)
    except TypeError:
        return (
            f"method {meth}{inspect.signature(fn)} cannot be called as "
            f"{meth}({', '.join(params)}); give it the parameters (self, {', '.join(params)})"
        )
    except ValueError:  # no signature (a builtin): cannot tell
        return None
    return None


def methods_problems(obj: Any, base: type) -> list[str]:
    """The methods of ``base``'s contract on ``obj``: each present one callable with the
    arguments ganpipe passes; each required one present and not only the base's."""
    problems = []
    for meth, marker in hooks(base).items():
        params = call_params(base, meth)
        fn = getattr(obj, meth, None)
        if fn is None:
            if marker.required:
                problems.append(
                    f"method {meth}({', '.join(params)}) is missing; implement it "
                    f"(subclass ganpipe.{base.__name__})"
                )
            continue
        if not callable(fn):
            problems.append(f"{meth!r} must be a method, got {type(fn).__name__}")
            continue
        problem = _signature_problem(fn, meth, params)
        if problem:
            problems.append(problem)
        elif marker.required and isinstance(obj, base) and not own(obj, base, meth):
            problems.append(
                f"method {meth} is not implemented (only the base class's); implement "
                f"{meth}({', '.join(params)})"
            )
    return problems


def variant_problems(obj: Any) -> list[str]:
    from ganpipe.variant import Variant

    problems = _name(obj) + _options(obj)
    task = getattr(obj, "task", "generate")
    if task not in TASKS:
        problems.append(
            f"'task' must be one of {', '.join(TASKS)}, got {task!r}; declare it in "
            f"register.lazy(..., task=...) or on the class"
        )
    if not isinstance(getattr(obj, "generator_net", "G"), str):
        problems.append("'generator_net' must be the name of a net (a string), e.g. 'G'")
    problems += _train_defaults(getattr(obj, "train_defaults", {}))
    return problems + methods_problems(obj, Variant)


def _train_defaults(values: Any) -> list[str]:
    """A dict of ``[train]`` keys (the keys and values are checked against the train
    stage's options when a pipeline loads: :mod:`ganpipe.config`)."""
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        return [
            f"'train_defaults' must be a dict of [train] keys and values, e.g. "
            f"{{'batch_size': 16}}, got {values!r}"
        ]
    return []


def stage_problems(obj: Any) -> list[str]:
    from ganpipe.stage import Stage

    problems = _name(obj) + _options(obj) + methods_problems(obj, Stage)
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

    return _name(obj) + _options(obj) + methods_problems(obj, DatasetSource)


CHECKS = {"variants": variant_problems, "stages": stage_problems, "datasets": dataset_problems}
