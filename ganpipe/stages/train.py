"""The train stage: runs the shared training loop for the configured variant."""

from __future__ import annotations

import hashlib
import json
import shutil

from ganpipe.outputs import TrainData, TrainOutput
from ganpipe.stage import Stage, StageContext, StageResult
from ganpipe.training.options import TrainOptions

#: Train options that do not change the result of a step (changing them keeps resume valid).
NON_RESULT_KEYS = {
    "steps",
    "log_every",
    "sample_every",
    "checkpoint_every",
    "keep_checkpoints",
    "num_samples",
    "resume",
    "progress",
    "tensorboard",
}


def init_fingerprint(opts: TrainOptions) -> str | None:
    """Size and mtime of the ``init_from`` weights (None without them)."""
    if opts.init_from is None:
        return None
    path = opts.resolve_path(opts.init_from)
    path = path / "model.safetensors" if path.is_dir() else path
    try:
        st = path.stat()
    except OSError:
        return f"init_from {path} missing"
    return f"init_from {st.st_size} {st.st_mtime_ns}"


def resume_fingerprint(ctx: StageContext, opts: TrainOptions, vopts=None) -> str:
    """What a checkpoint must match to resume; ``vopts``: the resolved model options
    (:mod:`ganpipe.training.defaults`; as written when nothing was scaled)."""
    cfg = ctx.config
    relevant = {k: v for k, v in opts.model_dump(mode="json").items() if k not in NON_RESULT_KEYS}
    # a checkpoint resumes with any number of processes (devices, torchrun): 1 keeps the
    # fingerprints of checkpoints made before this rule valid
    relevant["devices"] = 1
    if opts.ema_decay == 0 or opts.ema_rampup == TrainOptions().ema_rampup:
        relevant.pop("ema_rampup")  # no key then: checkpoints made before it stay valid
    blob = {
        "variant": cfg.model.variant,
        "model": (vopts or cfg.variant_options).model_dump(mode="json"),
        "train": relevant,
        "seed": cfg.run.seed,
        "data": ctx.fingerprints.get("augment") or ctx.fingerprints.get("@data"),
        "image_size": cfg.data.image_size,
        "channels": cfg.data.channels,
    }
    if opts.init_from is not None:  # no key otherwise: existing checkpoints stay valid
        blob["init"] = init_fingerprint(opts)
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


class TrainStage(Stage):
    name = "train"
    description = "train the variant with the shared loop (checkpoints, samples, metrics)"
    Options = TrainOptions
    optional = ("augment",)
    uses = ("data", "model", "seed")
    #: under torchrun every process runs this stage (the others wait for process 0's word)
    all_ranks = True

    def check(self, config, opts: TrainOptions) -> None:
        """Before anything runs: the device and mixed precision; the variant's checks of
        the data (labels for conditional variants, image sizes, local weight files), with
        the class names when the dataset can tell them without decoding, else with none
        and with two placeholders (size rules still run; only labels go unchecked); and
        the memory the data and one batch take against what the machine has."""
        from ganpipe.data import memory
        from ganpipe.errors import ConfigError, DataError
        from ganpipe.training.devices import amp_dtype, resolve_device
        from ganpipe.training.distributed import check_devices
        from ganpipe.variant import DataInfo

        def located(exc: ConfigError) -> ConfigError:
            where = getattr(config, "located", None)  # a PipelineConfig from load_config
            return where(str(exc)) if where else ConfigError(f"{config.path}: {exc}")

        lister = getattr(config.dataset, "class_names", None)
        try:
            check_devices(opts.devices, config.run.device, opts.batch_size)
            if opts.tensorboard:
                from ganpipe.training.tensorboard import check_available

                check_available()
            if opts.init_from is not None and not opts.resolve_path(opts.init_from).exists():
                raise ConfigError(
                    f"train.init_from: {opts.resolve_path(opts.init_from)} does "
                    f"not exist; give a checkpoint folder or a weights file "
                    f"(relative to the pipeline.toml)"
                )
            device = resolve_device(config.run.device)
            amp_dtype(opts.amp, device)
            try:
                names = lister(config.data_options, config.base_dir) if callable(lister) else None
            except DataError:  # no data here (yet): said when training loads it, if it runs
                names = None
            size, channels = config.data.image_size, config.data.channels
            known = None if names is None else (tuple(names) if len(names) > 1 else ())
            problem = None
            for classes in [known] if known is not None else [(), ("?a", "?b")]:
                try:
                    config.variant.check_data(
                        config.variant_options, DataInfo(size, channels, classes)
                    )
                    problem = None
                    break
                except ConfigError as exc:
                    problem = exc
            if problem is not None:
                raise problem
            # defaults scaled to the data and device; schedules that cannot finish
            from ganpipe.training import defaults

            info = DataInfo(size, channels, known or ())
            vopts = defaults.resolve(
                config.variant, config.variant_options, info, device.type, opts.steps
            )
            defaults.check_schedule(config.variant, config.variant_options, vopts, info, opts.steps)
        except ConfigError as exc:
            raise located(exc) from None
        images = memory.image_count(config.data_options, config.base_dir)
        kept = memory.kept_size(config.data_options, size)  # patches: larger regions
        if images is not None and config.stage("augment") is not None:
            aug = config.stage("augment").options
            images *= getattr(aug, "copies", 0) + int(getattr(aug, "keep_original", True))
        from ganpipe.training.launch import from_env

        launched = from_env()  # torchrun: its processes on this machine, else train.devices
        world = launched.world if launched else opts.devices
        local = launched.local_world if launched else opts.devices
        if device.type == "cuda":  # each GPU: the whole set and its share of a batch
            import torch

            share = -(-opts.batch_size // world)
            need = memory.estimate(images, size, channels, share, kept=kept)
            try:
                available, where = torch.cuda.mem_get_info(device)[0], "GPU memory"
            except Exception:  # noqa: BLE001 - no answer from the driver: no check
                available, where = None, ""
        else:  # N processes, each with the whole set, share the batch
            share = opts.batch_size * local // world
            need = memory.estimate(images, size, channels, share, local, kept)
            available, where = memory.available_bytes(), "memory"
        refused = memory.refusal(need, available, opts.batch_size, size, where)
        if refused is not None:
            raise located(ConfigError(refused)) from None

    def fingerprint(self, config, opts: TrainOptions) -> str | None:
        """The ``init_from`` weights: other starting weights make another run."""
        return init_fingerprint(opts)

    def resolved_options(self, ctx: StageContext, data, opts: TrainOptions):
        """The model options with defaults scaled to the data, device and steps; prints
        what was scaled and the warnings about schedules set on purpose."""
        from ganpipe.training import defaults, ema
        from ganpipe.training.devices import resolve_device
        from ganpipe.variant import DataInfo

        cfg = ctx.config
        names = tuple(data.class_names) if data.labelled else ()
        info = DataInfo(data.image_size, data.channels, names)
        kind = resolve_device(cfg.run.device).type
        vopts = defaults.resolve(cfg.variant, cfg.variant_options, info, kind, opts.steps)
        scaled = defaults.describe(cfg.variant_options, vopts, info, kind)
        recommended = defaults.describe_train(cfg.train_defaults, cfg.model.variant)
        warnings = defaults.check_schedule(
            cfg.variant, cfg.variant_options, vopts, info, opts.steps
        )
        warnings += ema.warnings(opts)  # an EMA window the run cannot fill
        for line in [x for x in (recommended, scaled) if x] + warnings:
            ctx.log(f"[{self.name}] {line}")
        return vopts

    def run(self, ctx: StageContext, opts: TrainOptions) -> StageResult:
        from ganpipe.training import defaults
        from ganpipe.training.launch import from_env
        from ganpipe.training.loop import Trainer

        cfg = ctx.config
        data = ctx.load_data()
        folder = ctx.stage_dir(self.name)
        launched = from_env()  # under torchrun: one of its processes (process 0 writes)
        if ctx.force and (launched is None or launched.main):
            for sub in ("checkpoints", "samples"):  # start over: they belong to another run
                shutil.rmtree(folder / sub, ignore_errors=True)
            (folder / "metrics.jsonl").unlink(missing_ok=True)
        vopts = self.resolved_options(ctx, data, opts)
        job = {
            "variant": cfg.variant,
            "variant_opts": vopts,
            "opts": opts,
            "data": data,
            "out_dir": folder,
            "seed": cfg.run.seed,
            "device": cfg.run.device,
            "threads": cfg.run.threads,  # data-parallel workers size torch's pool by it
            "fingerprint": resume_fingerprint(ctx, opts, vopts),
        }
        if launched is not None:
            from ganpipe.training.distributed import train_process

            ctx.log(f"[{self.name}] {launched.world} data-parallel processes (torchrun)")
            result, device = train_process({**job, "log": ctx.log})
            device = f"{launched.world}x {device}"
        elif opts.devices > 1:
            from ganpipe.training.launch import launch_devices

            ctx.log(f"[{self.name}] {opts.devices} data-parallel processes")
            result, device = launch_devices(job, opts.devices)
            device = f"{opts.devices}x {device}"
        else:
            trainer = Trainer(
                cfg.variant,
                vopts,
                opts,
                data,
                folder,
                seed=cfg.run.seed,
                device=cfg.run.device,
                fingerprint=job["fingerprint"],
                log=ctx.log,
            )
            result = trainer.run()
            device = str(trainer.device)
        samples = sorted((folder / "samples").glob("step_*.png"))
        record = TrainOutput(
            checkpoint=result.checkpoint,
            metrics=folder / "metrics.jsonl",
            samples=samples[-1] if samples else None,
            steps=result.steps,
            device=device,
            data=TrainData(
                image_size=data.image_size,
                channels=data.channels,
                class_names=tuple(data.class_names) if data.labelled else (),
            ),
            images_per_s=round(result.images_per_second, 2),
            model_options=vopts.model_dump(mode="json"),
            scaled_defaults=defaults.scaled_values(cfg.variant_options, vopts),
        )
        resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
        if data.skipped:
            resumed += f", {len(data.skipped)} unreadable image(s) skipped"
        return ctx.result(
            record,
            f"{result.steps} steps of {cfg.model.variant} on {len(data)} images "
            f"({device}, {result.images_per_second:.0f} images/s{resumed})",
        )
