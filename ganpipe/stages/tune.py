"""The tune stage: hyper-parameter search with Optuna.

Each trial trains the configured variant from scratch for ``steps`` steps with values of
the ``[model]`` and ``[train]`` keys named in ``[tune.space]`` (the rest as configured),
then scores it on the held-out images (the training images without ``data.holdout``):

* generators: FID of ``count`` generated images (the EMA generator when there is one)
  against the real ones, on the offline random features of ``[evaluate]`` (lower is
  better); ``metric = "kid"`` for KID;
* super-resolution: PSNR against the HR images (higher is better); ``metric = "ssim"``.

Optuna's TPE sampler, seeded, picks the values. The study lives in ``tune/study.db``
(SQLite), so an interrupted search, or a re-run with more ``trials``, continues where it
stopped; a second search on the same study refuses while one runs (its lock,
:mod:`ganpipe.runlock`). ``tune/best.json`` and ``tune/best.toml`` (the best values as
``[model]`` / ``[train]`` tables to paste) and ``tune/trials.csv`` are written at the end;
each trial's run is in ``tune/trial_NNNN/``.

```toml
[tune]
trials = 20
steps = 500
[tune.space]
"model.lr_g" = {low = 1e-4, high = 1e-2, log = true}
"train.batch_size" = [16, 32, 64]
"train.ema_decay" = {low = 0.9, high = 0.999}
```

A range of two integers (and an optional integer ``step``) samples integers; a list
samples among its values. Needs Optuna: ``pip install 'ganpipe[tune]'``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ganpipe import progress, runlock
from ganpipe.errors import ConfigError, one_line
from ganpipe.fsutil import write_bytes
from ganpipe.options import Options
from ganpipe.outputs import TuneOutput
from ganpipe.stage import Stage, StageContext, StageResult

#: what each metric means: (higher is better, task)
METRICS = {
    "fid": (False, "generate"),
    "kid": (False, "generate"),
    "psnr": (True, "super_resolve"),
    "ssim": (True, "super_resolve"),
}


class Range(BaseModel):
    """A numeric range: floats, or integers when ``low`` and ``high`` are both integers."""

    model_config = ConfigDict(extra="forbid")
    low: float | int
    high: float | int
    log: bool = False
    step: float | int | None = None


class TuneOptions(Options):
    trials: int = Field(
        20, ge=1, le=10_000, description="trials in all (a re-run with more continues the study)"
    )
    steps: int | None = Field(
        None, ge=1, description="training steps per trial; default: train.steps"
    )
    metric: Literal["auto", "fid", "kid", "psnr", "ssim"] = Field(
        "auto", description="what to optimise; auto: fid (generators), psnr (SR)"
    )
    count: int = Field(500, ge=2, le=100_000, description="generated images per FID score")
    seed: int | None = Field(None, description="sampler seed; default: run.seed")
    space: dict[str, Range | list[Any]] = Field(
        description="'table.key' -> {low, high[, log, step]} or a list of values"
    )


def _apply(opts: Any, updates: dict[str, Any], table: str) -> Any:
    """A validated copy of options ``opts`` with ``updates`` (ConfigError names the key)."""
    from pydantic import ValidationError

    try:
        new = type(opts).model_validate({**opts.model_dump(), **updates})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ()))
        raise ConfigError(f"tune.space: {table}.{key}: {err.get('msg')}") from None
    new._base_dir = getattr(opts, "_base_dir", None)
    return new


def finished_trials(study) -> list:
    """The trials that count as done: finished, and not stopped by a signal."""
    return [
        t for t in study.trials if t.state.is_finished() and not t.user_attrs.get("interrupted")
    ]


def run_trial(study, objective, log) -> None:
    """One trial, ask and tell: a ValueError fails it and the search goes on; SIGTERM /
    SIGINT (:class:`~ganpipe.signals.Interrupted`, raised after the trial's training
    wrote a checkpoint) fail it marked ``interrupted`` (not done: a re-run does another
    trial in its place) and stop the search; the trials finished before are kept."""
    import optuna

    State = optuna.trial.TrialState
    trial = study.ask()
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=State.PRUNED)
    except ValueError as exc:
        study.tell(trial, state=State.FAIL)
        log(f"trial {trial.number} failed: {one_line(exc)}")
    except KeyboardInterrupt:
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=State.FAIL)
        raise
    else:
        study.tell(trial, value)


class TuneStage(Stage):
    name = "tune"
    description = "hyper-parameter search with Optuna (trains and scores each trial)"
    Options = TuneOptions
    optional = ("augment",)
    uses = ("data", "model", "seed")

    def check(self, config, opts: TuneOptions) -> None:
        from ganpipe.training.options import TrainOptions

        where = f"{config.path}: [tune]"
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError(f"{where} needs Optuna: pip install 'ganpipe[tune]'") from None
        if not opts.space:
            raise ConfigError(
                f'{where} space is empty; add e.g. "model.lr_g" = {{low = '
                f"1e-4, high = 1e-2, log = true}} under [tune.space]"
            )
        tables = {"model": type(config.variant_options), "train": TrainOptions}
        for key, spec in opts.space.items():
            table, _, field = key.partition(".")
            if table not in tables or field not in tables[table].model_fields:
                known = ", ".join(
                    f"{t}.{f}" for t, cls in tables.items() for f in list(cls.model_fields)[:6]
                )
                raise ConfigError(
                    f"{where} space key {key!r} is not a [model] or [train] "
                    f"option of this pipeline (e.g. {known}, ...)"
                )
            if isinstance(spec, list) and not spec:
                raise ConfigError(f"{where} space {key!r}: the list of values is empty")
            if isinstance(spec, Range) and not spec.low < spec.high:
                raise ConfigError(f"{where} space {key!r}: low must be below high")
            if isinstance(spec, Range) and spec.log and spec.low <= 0:
                raise ConfigError(f"{where} space {key!r}: a log range needs low > 0")
            base = (
                config.variant_options
                if table == "model"
                else (config.stage("train").options if config.stage("train") else TrainOptions())
            )
            for value in spec if isinstance(spec, list) else (spec.low, spec.high):
                try:  # every value the search may propose must be a valid option value
                    _apply(base, {field: value}, table)
                except ConfigError as exc:
                    raise ConfigError(f"{config.path}: [{self.name}] {exc}") from None
        metric = self.metric(config, opts)
        if METRICS[metric][1] != config.variant.task:
            raise ConfigError(
                f"{where} metric {metric!r} is for {METRICS[metric][1]} "
                f"models; {config.model.variant} is a {config.variant.task} "
                f"model"
            )

    @staticmethod
    def metric(config, opts: TuneOptions) -> str:
        if opts.metric != "auto":
            return opts.metric
        return "psnr" if config.variant.task == "super_resolve" else "fid"

    # -- one trial ---------------------------------------------------------------------
    @staticmethod
    def _suggest(trial, key: str, spec: Range | list[Any]) -> Any:
        if isinstance(spec, list):
            return trial.suggest_categorical(key, spec)
        ints = all(
            isinstance(v, int) and not isinstance(v, bool)
            for v in (spec.low, spec.high, spec.step or 1)
        )
        if ints:
            return trial.suggest_int(
                key, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
            )
        return trial.suggest_float(
            key,
            float(spec.low),
            float(spec.high),
            log=spec.log,
            step=None if spec.step is None else float(spec.step),
        )

    def _score(self, trainer, metric: str, real, opts: TuneOptions, seed: int) -> float:
        import torch

        from ganpipe.data.imageio import to_uint8
        from ganpipe.metrics.features import RandomFeatures, extract
        from ganpipe.metrics.scores import fid, kid
        from ganpipe.metrics.sr import sr_validation

        g = trainer.sampling_generator.eval()  # the EMA generator when there is one
        variant, info, name = trainer.variant, trainer.info, trainer.generator_net
        if metric in ("psnr", "ssim"):
            with torch.no_grad():
                scores = sr_validation(g, real.images, trainer.vopts.scale)
            return scores[metric]
        gen = torch.Generator().manual_seed(seed)
        fakes = []
        with torch.no_grad():
            for start in range(0, opts.count, 64):
                n = min(64, opts.count - start)
                inputs = variant.make_inputs(trainer.vopts, info, n, trainer.device, gen)
                out = variant.generate({**trainer.nets, name: g}, inputs).float().cpu()
                fakes.append(to_uint8(out.numpy()))
        extractor = RandomFeatures()
        f_real, f_fake = extract(extractor, real.images), extract(extractor, np.concatenate(fakes))
        return (
            fid(f_real, f_fake)
            if metric == "fid"
            else kid(f_real, f_fake, min(1000, len(f_real), len(f_fake)))[0]
        )

    def run(self, ctx: StageContext, opts: TuneOptions) -> StageResult:
        import optuna

        from ganpipe.training.loop import Trainer
        from ganpipe.training.options import TrainOptions

        cfg = ctx.config
        folder = ctx.stage_dir(self.name)
        metric = self.metric(cfg, opts)
        higher = METRICS[metric][0]
        data = ctx.load_data()
        real = ctx.load_source("holdout") if cfg.data.holdout > 0 else data
        train_sc = cfg.stage("train")
        base_train = train_sc.options if train_sc is not None else TrainOptions()
        steps = opts.steps or base_train.steps
        seed = cfg.run.seed if opts.seed is None else opts.seed

        def objective(trial) -> float:
            values = {key: self._suggest(trial, key, spec) for key, spec in opts.space.items()}
            model_up = {k.partition(".")[2]: v for k, v in values.items() if k.startswith("model.")}
            train_up = {k.partition(".")[2]: v for k, v in values.items() if k.startswith("train.")}
            vopts = _apply(cfg.variant_options, model_up, "model")
            topts = _apply(
                base_train,
                {
                    **train_up,
                    "steps": steps,
                    "sample_every": 0,
                    "checkpoint_every": 0,
                    "keep_checkpoints": 1,
                    "progress": False,
                    "devices": 1,
                },
                "train",
            )
            trainer = Trainer(
                cfg.variant,
                vopts,
                topts,
                data,
                folder / f"trial_{trial.number:04d}",
                seed=cfg.run.seed,
                device=cfg.run.device,
                fingerprint=json.dumps(values, sort_keys=True),
                log=lambda *_: None,
            )
            trainer.run()
            value = self._score(trainer, metric, real, opts, seed + 1)
            if not math.isfinite(value):
                raise optuna.TrialPruned(f"{metric} is {value}")
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
            ctx.log(f"[{self.name}] trial {trial.number}: {metric} {value:.4g} ({shown})")
            return value

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # one search per study: two would share study.db and trial folders
        with runlock.hold(folder, "tune study", log=ctx.log):
            return self._search(ctx, opts, folder, objective, metric, higher, seed)

    def _search(self, ctx, opts, folder, objective, metric, higher, seed) -> StageResult:
        """Create or continue the study, run the trials it lacks, write the best."""
        import optuna

        study = optuna.create_study(
            study_name="ganpipe",
            storage=f"sqlite:///{(folder / 'study.db').as_posix()}",
            load_if_exists=True,
            direction="maximize" if higher else "minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
        done = finished_trials(study)
        if len(done) < opts.trials:
            if done:
                ctx.log(
                    f"[{self.name}] continuing the study: {len(done)} of {opts.trials} trials done"
                )
            with progress.bar(opts.trials, "tune", "trial", initial=len(done)) as b:
                for _ in range(opts.trials - len(done)):
                    run_trial(study, objective, lambda m: ctx.log(f"[{self.name}] {m}"))
                    b.update(1)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise ConfigError(f"[{self.name}] no trial finished; see the messages above")
        best = study.best_trial
        self._write(folder, study, best, metric, opts)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        return ctx.result(
            TuneOutput(
                best_file=folder / "best.json",
                best_toml=folder / "best.toml",
                trials=folder / "trials.csv",
                metric=metric,
                best=best.value,
                params=best.params,
            ),
            f"best of {len(complete)} trials: {metric} {best.value:.4g} (trial "
            f"{best.number}: {shown}); see {folder / 'best.toml'}",
        )

    @staticmethod
    def _write(folder: Path, study, best, metric: str, opts: TuneOptions) -> None:
        write_bytes(
            folder / "best.json",
            json.dumps(
                {
                    "metric": metric,
                    "value": best.value,
                    "trial": best.number,
                    "params": best.params,
                },
                indent=2,
            ).encode(),
        )
        tables: dict[str, list[str]] = {}
        for key, value in best.params.items():
            table, _, field = key.partition(".")
            tables.setdefault(table, []).append(f"{field} = {_toml(value)}")
        text = f"# best {metric} {best.value:.6g} (trial {best.number} of the tune stage)\n"
        text += "\n".join(f"[{t}]\n" + "\n".join(lines) + "\n" for t, lines in tables.items())
        write_bytes(folder / "best.toml", text.encode())
        buf = io.StringIO()
        keys = list(opts.space)
        writer = csv.writer(buf)
        writer.writerow(["trial", "state", metric, *keys])
        for t in study.trials:
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.value is None else t.value,
                    *(t.params.get(k, "") for k in keys),
                ]
            )
        write_bytes(folder / "trials.csv", buf.getvalue().encode())


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
