"""What the checks share: the failure type, per-step timing, a scratch folder."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganpipe.errors import one_line


class ContractError(AssertionError):
    """A plugin object broke its contract. The message names the object, the step of the
    check that failed and what was expected; the original exception, if any, is chained."""


@dataclass
class CheckReport:
    """What a passing check did: the object's kind and name, and seconds per step."""

    kind: str
    name: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(self.timings.values())

    def __str__(self) -> str:
        steps = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
        return f"{self.kind} {self.name!r}: passed in {self.seconds:.2f}s ({steps})"


class Checker:
    """Runs the named steps of one check: ``with checker.step("build"): ...`` times the
    step and turns any exception into a :class:`ContractError` naming the object and the
    step; :meth:`expect` fails the current step with a message."""

    def __init__(self, kind: str, obj: Any, explain: Any = None):
        name = getattr(obj, "name", None)
        self.report = CheckReport(kind, name if isinstance(name, str) else type(obj).__name__)
        self.current = "setup"
        #: ``explain(step, exc) -> fix`` (or ""): the fix named after what a step raised
        self.explain = explain

    @property
    def where(self) -> str:
        return f"{self.report.kind} {self.report.name!r}, step {self.current!r}"

    def fail(self, message: str) -> ContractError:
        return ContractError(f"{self.where}: {message}")

    def expect(self, condition: Any, message: str) -> None:
        if not condition:
            raise self.fail(message)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.current = name
        t0 = time.perf_counter()
        try:
            yield
        except ContractError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raised, named
            fix = self.explain(name, exc) if self.explain is not None else ""
            text = one_line(exc)
            raise self.fail(
                f"raised {type(exc).__name__}"
                + (f": {text}" if text else "")
                + (f"; {fix}" if fix else "")
            ) from exc
        finally:
            self.report.timings[name] = self.report.timings.get(name, 0.0) + (
                time.perf_counter() - t0
            )


@contextlib.contextmanager
def scratch(tmp_path: str | Path | None, prefix: str) -> Iterator[Path]:
    """``tmp_path`` (created if needed), or a temporary folder removed afterwards."""
    if tmp_path is not None:
        path = Path(tmp_path)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f"ganpipe-{prefix}-") as tmp:
        yield Path(tmp)


def check_options(checker: Checker, options_cls: type, given: dict[str, Any]) -> Any:
    """The options contract shared by variants, stages and datasets: ``Options(**given)``
    validates, its dump validates back to the same options (so the defaults are valid
    values), and an unknown key is refused. Returns the options object."""
    from pydantic import ValidationError

    with checker.step("options"):
        try:
            opts = options_cls(**given)
        except ValidationError as exc:
            raise checker.fail(
                f"Options(**{given!r}) is refused: {one_line(exc)}; give options that "
                f"validate (tiny_options for variants)"
            ) from exc
        again = options_cls.model_validate(opts.model_dump())
        checker.expect(
            again == opts,
            f"Options do not survive model_dump() -> model_validate(): {opts!r} became {again!r}",
        )
        unknown = "ganpipe_testing_unknown_key"
        try:
            options_cls(**given, **{unknown: 1})
        except ValidationError:
            pass
        else:
            raise checker.fail(
                f"Options accept the unknown key {unknown!r}; derive them from "
                f"ganpipe.Options (extra='forbid') so that typos in pipeline.toml are errors"
            )
    return opts


def check_conformance(checker: Checker, problems: list[str]) -> None:
    with checker.step("conformance"):
        checker.expect(not problems, "; ".join(problems))
