"""The stage contract: what a stage plugin implements, and the context it runs in.

A stage is a table of ``pipeline.toml`` (``[name]``) with its own ``Options``; stages run
in the order of their tables inside the run folder, and the pipeline skips a stage whose
fingerprint (its options, the parts of the config it ``uses``, its upstream stages and its
own :meth:`Stage.fingerprint`) and outputs are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from ganpipe.contract import Declared, hook
from ganpipe.errors import ConfigError

if TYPE_CHECKING:  # no import cycle, and ``ganpipe plugins`` loads no more than it did
    from ganpipe.config import PipelineConfig
    from ganpipe.outputs import StageOutput
    from ganpipe.pipeline import Manifest

    R = TypeVar("R", bound=StageOutput)


class Log(Protocol):
    """How a stage says something: ``ctx.log(line)`` prints one line (a stage running in
    a process other than 0 under torchrun says nothing)."""

    def __call__(self, line: str, /) -> None: ...


@dataclass
class StageResult:
    """Outputs (paths relative to the run folder) and a one-line summary to print;
    ``info``: JSON values kept in the manifest. The built-in stages make theirs from a
    typed record (:meth:`StageContext.result`)."""

    outputs: dict[str, str]
    summary: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """What a stage runs in: the validated pipeline config, the run folder, the manifest of
    what earlier stages produced, and the log function (``ctx.log(line)``).

    Earlier stages' outputs: :meth:`output_of` gives a built-in stage's typed record
    (:mod:`ganpipe.outputs`, e.g. ``ctx.output_of(TrainOutput, needed_by="mystage")``),
    :meth:`output` one path of any stage by its key."""

    config: PipelineConfig
    run_dir: Path
    manifest: Manifest
    fingerprints: dict[str, str]  # fingerprints of the stages of this run
    force: bool = False
    log: Log = print

    def output_of(self, cls: type[R], *, needed_by: str, stage: str | None = None) -> R:
        """The record of an earlier stage (this run or a finished one) as ``cls``, e.g.
        :class:`~ganpipe.outputs.TrainOutput`; ``stage``: its table when it is not the one
        ``cls`` is for. A one-line ConfigError when it has not run, does not fit ``cls``
        or one of its output files is gone."""
        name = stage or cls.stage
        try:
            record = self.manifest.record(cls, name)
        except ValueError as exc:
            errors = getattr(exc, "errors", None)
            first = errors()[0] if callable(errors) else {"msg": str(exc), "loc": ()}
            where = ".".join(str(p) for p in first.get("loc", ())) or name
            raise ConfigError(
                f"[{needed_by}] cannot read what [{name}] recorded in "
                f"{self.manifest.path} ({where}: {first.get('msg')}); re-run with --from {name}"
            ) from None
        if record is None:
            raise self._not_run(name, needed_by)
        for path in record.paths().values():
            if not path.exists():
                raise self._gone(path, name, needed_by)
        return record

    def result(self, record: StageOutput, summary: str) -> StageResult:
        """The :class:`StageResult` of a typed record: its paths relative to the run
        folder in ``outputs``, its other fields in ``info``."""
        return StageResult(summary=summary, **record.to_dict(self.run_dir))

    def _not_run(self, stage: str, needed_by: str) -> ConfigError:
        return ConfigError(
            f"[{needed_by}] needs the output of [{stage}], which has not "
            f"run in {self.run_dir}; add a [{stage}] table before "
            f"[{needed_by}] in {self.config.path}"
        )

    @staticmethod
    def _gone(path: Path, stage: str, needed_by: str) -> ConfigError:
        return ConfigError(
            f"[{needed_by}] needs {path} (from [{stage}]), which is gone; "
            f"re-run with --from {stage}"
        )

    def stage_dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def output(self, stage: str, key: str, *, needed_by: str) -> Path:
        """Path of output ``key`` of an earlier ``stage`` (this run or a finished one)."""
        entry = self.manifest.stages.get(stage)
        if not entry or key not in entry.get("outputs", {}):
            raise self._not_run(stage, needed_by)
        path = self.run_dir / entry["outputs"][key]
        if not path.exists():
            raise self._gone(path, stage, needed_by)
        return path

    def has_output(self, stage: str) -> bool:
        """True when ``stage`` finished (in this run or an earlier one) with outputs."""
        return "outputs" in self.manifest.stages.get(stage, {})

    def load_source(self, split: str = "train"):
        """The dataset source's images: ``train`` (without the held-out images),
        ``holdout`` (the ``data.holdout`` fraction) or ``all``."""
        cfg = self.config
        data = cfg.dataset.load(
            cfg.data_options, cfg.data.image_size, cfg.data.channels, cfg.base_dir
        )
        if split == "all":
            return data
        train, held = data.split(cfg.data.holdout, cfg.run.seed)
        return train if split == "train" else held

    def load_data(self):
        """The training images: the augment stage's set when this pipeline has one, else
        the dataset source's training split."""
        from ganpipe.data.base import ImageSet
        from ganpipe.outputs import AugmentOutput

        if self.config.stage("augment") is not None and self.has_output("augment"):
            return ImageSet.load(self.output_of(AugmentOutput, needed_by="train").dataset)
        return self.load_source("train")


#: Parts of the config a stage may declare in :attr:`Stage.uses`.
USES = ("data", "model", "seed")


class Stage:
    """Base class of stages.

    Required: ``name`` (the table name), ``Options`` (a subclass of
    :class:`ganpipe.Options`) and :meth:`run`. ``requires``: stages whose outputs must
    exist; ``optional``: stages whose outputs are used when present. ``uses``: parts of the
    config (:data:`USES`) that feed the fingerprint besides the stage's own options; a
    pipeline needs a ``[model]`` table only when one of its stages uses ``model``.
    """

    name: ClassVar[str] = Declared()  # type: ignore[assignment]
    description: ClassVar[str] = Declared("")  # type: ignore[assignment]
    Options: ClassVar[type]
    requires: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    uses: ClassVar[tuple[str, ...]] = ()

    @hook(fix="check(config, opts) raises a one-line ganpipe.ConfigError or returns None")
    def check(self, config: Any, opts: Any) -> None:
        """Extra validation at load time (before any stage runs)."""

    @hook(fix="fingerprint(config, opts) must return a str (or None)")
    def fingerprint(self, config: Any, opts: Any) -> str | None:
        """What the stage reads from outside the run folder, as a string that changes when
        those files change (cheap: names, sizes, mtimes; no decoding), so that a re-run
        does not skip the stage after its input files changed. ``None``: its options and
        upstream stages cover all its inputs. Computed before any stage runs."""
        return None

    @hook(required=True, fix="run(ctx, opts) must return a ganpipe.StageResult")
    def run(self, ctx: StageContext, opts: Any) -> StageResult:
        """Do the work; outputs go under ``ctx.stage_dir(self.name)`` and are returned as
        paths relative to the run folder."""
        raise NotImplementedError
