"""The variant contract: what a GAN variant plugin implements, and what the shared training
loop hands it.

A variant owns its nets and losses; the loop (:mod:`ganpipe.training`) owns devices,
checkpoints, EMA, logging and sampling. Subclass :class:`Variant`, set ``Options``,
implement :meth:`Variant.build` and :meth:`Variant.train_step`; the other methods have
documented defaults for latent-to-image GANs. ``name``, ``task`` and ``description`` come
from the plugin's ``register.lazy(...)`` (or the class, for ``register(obj)``).

:class:`Variant` is the contract, stated once: its methods are marked with
:func:`ganpipe.contract.hook` (required or not, the version they exist from, the fix to
name when they fail), and the conformance checks, the adapter of variants not derived
from it (:mod:`ganpipe.variant_adapter`), ``ganpipe.testing`` and the docs read those
marks. The variant's own checkpointed state lives in ``StepContext.state``; recommended
``[train]`` values in :attr:`Variant.train_defaults`.

Names the loop relies on are declared here, not assumed:

* :attr:`Variant.generator_net` (default ``"G"``): the net that makes images; the loop
  samples from it, keeps its EMA (checkpointed as ``"<generator_net>_ema"``) and the
  default :meth:`Variant.export_spec` exports it. Other nets are the variant's business.
* optimizer names are the keys :meth:`Variant.optimizers` returns; ``StepContext.update``
  takes one of them. The default makes ``"G"`` and ``"D"`` from the options ``lr_g``,
  ``lr_d`` and ``betas`` (:class:`GANOptions` has them); override it otherwise.
* the default :meth:`Variant.inputs` reads ``opts.latent_dim``; override it otherwise.

A training **step** is one generator update: a variant that updates D several times per G
update says so in :meth:`Variant.updates_per_step`, and the loop calls ``train_step`` that
many times per step. Options the user leaves unset may get defaults scaled to the data,
the device and the run length (:meth:`Variant.resolve_options`, the shared rule
:func:`default_scale`); the loop records the resolved options in the manifest and the
model card.

This module does not import torch: torch is imported by the methods that need it, so
loading the plugin registry stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from ganpipe.contract import Declared, Hook, hook
from ganpipe.errors import ConfigError
from ganpipe.modelcard import TASKS, InputSpec
from ganpipe.options import Options
from ganpipe.step import Batch, StepContext
from ganpipe.variant_defaults import (
    SMALL_RUN_SCALE,
    default_scale,
    fill_unset,
    require_power_of_two,
    scaled_defaults,
    scaled_width,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "TASKS",
    "Batch",
    "DataInfo",
    "ExportSpec",
    "GANOptions",
    "InputSpec",
    "StepContext",
    "Variant",
    "SMALL_RUN_SCALE",
    "default_scale",
    "fill_unset",
    "require_power_of_two",
    "scaled_defaults",
    "scaled_width",
]


@dataclass(frozen=True)
class DataInfo:
    """What a variant needs to know about the data to size its nets."""

    image_size: int
    channels: int
    class_names: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class ExportSpec:
    """What the export stage needs: an eval-mode module, its inputs (batch first) with
    example tensors, and the fields written into the ``.onnx``'s model card
    (:class:`ganpipe.modelcard.ModelCard`; keys that are not card fields are kept as
    ``extra``), so that inference needs only the file."""

    module: nn.Module
    inputs: list[InputSpec]
    example_inputs: tuple[torch.Tensor, ...]
    output_name: str = "image"
    value_range: tuple[float, float] = (-1.0, 1.0)
    metadata: dict[str, Any] = field(default_factory=dict)


class Variant:
    """Base class of variants, and the one statement of their contract (see the module
    docstring for the names the loop uses).

    Required: ``name`` (unique), ``task`` (one of :data:`TASKS`; default ``generate``),
    ``Options`` (a subclass of :class:`ganpipe.Options`), :meth:`build` and
    :meth:`train_step` (marked ``required``). Everything else has a default for
    latent-to-image GANs; each method says from which version it exists (``since``).
    ``name``, ``task`` and ``description`` may be left to the plugin's
    ``register.lazy(...)`` declaration (declared once, filled in on load).
    """

    name: ClassVar[str] = Declared()  # type: ignore[assignment]
    task: ClassVar[str] = Declared("generate")  # type: ignore[assignment]
    description: ClassVar[str] = Declared("")  # type: ignore[assignment]
    Options: ClassVar[type[Options]]
    #: Needs class labels from the data (subfolders) - checked before training.
    conditional: ClassVar[bool] = False
    #: The net that makes images: sampled, EMA'd (as ``<generator_net>_ema``), exported.
    generator_net: ClassVar[str] = "G"
    #: Options that make the nets tiny, used by :mod:`ganpipe.testing`.
    tiny_options: ClassVar[dict[str, Any]] = {}
    #: Image size :mod:`ganpipe.testing` trains the tiny nets at.
    test_image_size: ClassVar[int] = 16
    #: Train in channels-last memory format on the CPU by default (``train.channels_last``
    #: unset): set where ``bench/cpu_speed.py`` measured it faster for this variant.
    channels_last_on_cpu: ClassVar[bool] = False
    #: Recommended ``[train]`` values for the keys the user does not set (since 0.3), e.g.
    #: ``{"batch_size": 16, "ema_decay": 0.999}``: applied when the pipeline loads, shown
    #: in the run's defaults line and recorded with the train stage's options.
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: The attributes of the contract (its methods are marked with :func:`hook`).
    contract_attributes: ClassVar[dict[str, Hook]] = {
        "name": Hook("name", required=True),
        "task": Hook("task"),
        "description": Hook("description"),
        "Options": Hook("Options", required=True),
        "conditional": Hook("conditional"),
        "generator_net": Hook("generator_net"),
        "tiny_options": Hook("tiny_options"),
        "test_image_size": Hook("test_image_size"),
        "channels_last_on_cpu": Hook("channels_last_on_cpu"),
        "train_defaults": Hook("train_defaults", since="0.3"),
    }

    # -- nets ------------------------------------------------------------------------
    @hook(
        fix="check_data(opts, info) refuses data with a one-line ganpipe.ConfigError and returns None otherwise"
    )
    def check_data(self, opts: Any, info: DataInfo) -> None:
        """Refuse data the variant cannot train on (one line: what and how to fix). The
        default refuses unlabelled data for ``conditional`` variants."""
        if self.conditional and info.num_classes < 2:
            raise ConfigError(
                f"variant {self.name!r} is conditional and needs class labels, but the data "
                f"has {'one class' if info.num_classes == 1 else 'no class labels'}; put the "
                f"images in one subfolder per class (two or more)"
            )

    @hook(
        required=True,
        fix="build(opts, info) must return a dict of nets by name, e.g. {'G': generator, "
        "'D': discriminator}, with the key generator_net ('G' unless the variant sets it)",
    )
    def build(self, opts: Any, info: DataInfo) -> dict[str, nn.Module]:
        """Return the nets by name, e.g. ``{"G": generator, "D": discriminator}``; one of
        them is :attr:`generator_net`."""
        raise NotImplementedError

    @hook(
        fix="optimizers(nets, opts) must return {name: torch.optim.Optimizer}; the default "
        "makes 'G' and 'D' from opts.lr_g, opts.lr_d and opts.betas: override it when the "
        "nets or options are named otherwise"
    )
    def optimizers(self, nets: dict[str, nn.Module], opts: Any) -> dict[str, torch.optim.Optimizer]:
        """Default: Adam for ``G`` and ``D`` with ``opts.lr_g``, ``opts.lr_d``, ``opts.betas``."""
        import torch

        betas = tuple(opts.betas)
        return {
            "G": torch.optim.Adam(nets["G"].parameters(), lr=opts.lr_g, betas=betas),
            "D": torch.optim.Adam(nets["D"].parameters(), lr=opts.lr_d, betas=betas),
        }

    @hook(
        required=True,
        fix="train_step(ctx, batch) must call ctx.update(name, loss) with the names "
        "optimizers() returns and return {name: detached one-element tensor}",
    )
    def train_step(self, ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimisation step (call ``ctx.update`` per optimizer); returns detached
        scalar losses by name, which the loop logs and checks for NaN/inf."""
        raise NotImplementedError

    # -- defaults and schedules --------------------------------------------------------
    @hook(
        fix="resolve_options(opts, info, device, steps) must return options of the "
        "variant's Options class (use ganpipe.fill_unset)"
    )
    def resolve_options(self, opts: Any, info: DataInfo, device: str, steps: int) -> Any:
        """``opts`` with defaults scaled to the data (``info``), the device kind
        (``"cpu"``, ``"cuda"``, ``"mps"``) and the run length (``steps``: generator
        updates) for the options the user did not set; use :func:`fill_unset` so that
        values the user set are kept and resolving twice changes nothing. The loop builds
        the nets from the result and records it (manifest, model card). Default: ``g_width``
        and ``d_width``, when the options have them, at :func:`scaled_width` of their
        declared default with :func:`default_scale`."""
        fields = type(opts).model_fields
        keys = {
            k: 16
            for k in ("g_width", "d_width")
            if k in fields and isinstance(fields[k].default, int)
        }
        return fill_unset(opts, scaled_defaults(type(opts), default_scale(info, device), **keys))

    @hook(since="0.3", fix="train_flips(opts) must return a bool")
    def train_flips(self, opts: Any) -> bool:
        """Whether the loop flips and rotates each training patch at random (hflip, vflip,
        transpose: the super-resolution recipe, :class:`ganpipe.SRVariant`'s
        ``flip_rot``). Default: False."""
        return False

    @hook(fix="updates_per_step(opts) must return an int >= 1")
    def updates_per_step(self, opts: Any) -> int:
        """``train_step`` calls per training step, a step being one generator update:
        variants that update D ``n`` times per G update (on fresh batches) return ``n``;
        ``train.steps`` then counts G updates and the loop makes ``n * steps`` calls
        (``StepContext.step`` counts calls), G being updated on the last call of each step,
        after which the loop updates the EMA once. Default: 1."""
        return 1

    @hook(fix="schedule_problems(opts, info, steps) must return {option key: 'what; how to fix'}")
    def schedule_problems(self, opts: Any, info: DataInfo, steps: int) -> dict[str, str]:
        """Schedules in ``opts`` (resolved) that cannot complete within ``steps`` generator
        updates - growth phases, lazy regularisation intervals, warm-ups - as
        ``{option key: "what; how to fix"}``. At load, a problem with a key the user set is
        one loud warning (set on purpose); one with a default is refused. Default: none."""
        return {}

    # -- generation ------------------------------------------------------------------
    @hook(
        fix="inputs(opts, info) must return a list of ganpipe.InputSpec of known kinds; "
        "the default reads opts.latent_dim (override it otherwise)"
    )
    def inputs(self, opts: Any, info: DataInfo) -> list[InputSpec]:
        """The generator's inputs. Default: ``z`` (normal, ``opts.latent_dim``), plus
        ``label`` for conditional variants."""
        specs = [InputSpec("z", "normal", (opts.latent_dim,))]
        if self.conditional:
            specs.append(InputSpec("label", "label"))
        return specs

    @hook(
        fix="make_inputs(opts, info, n, device) must return one tensor per inputs() "
        "spec, batch first"
    )
    def make_inputs(
        self,
        opts: Any,
        info: DataInfo,
        n: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Random generator inputs for ``n`` samples (labels cycle through the classes;
        ``truncation`` inputs are 1, untruncated; other kinds drawn by their sampler in
        :mod:`ganpipe.inputs`, as ``ganpipe generate`` draws them, from ``generator``)."""
        import torch

        out = []
        for spec in self.inputs(opts, info):
            if spec.kind == "normal":
                out.append(torch.randn((n, *spec.shape), generator=generator).to(device))
            elif spec.kind == "label":
                lab = labels if labels is not None else torch.arange(n) % max(1, info.num_classes)
                out.append(lab.to(device=device, dtype=torch.long))
            elif spec.kind == "truncation":  # psi 1: untruncated
                out.append(torch.ones((n, *spec.shape), device=device))
            else:  # uniform, categorical, plugins' kinds: numpy sampler, or torch's declared
                from ganpipe.inputs import training_sample

                seed = int(torch.randint(0, 2**62, (), generator=generator))
                value = training_sample(spec, n, seed, generator)
                out.append(torch.as_tensor(value).to(device))
        return tuple(out)

    @hook(
        fix="fixed_inputs(opts, info, n, device, generator, real) must return one tensor "
        "per inputs() spec, batch first"
    )
    def fixed_inputs(
        self,
        opts: Any,
        info: DataInfo,
        n: int,
        device: torch.device,
        generator: torch.Generator | None,
        real: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Inputs of the loop's sample grids, made once per run. ``real``: ``n`` training
        images in [-1, 1] (image-to-image variants build their inputs from them); by
        default random inputs from ``generator``, as :meth:`make_inputs`."""
        return self.make_inputs(opts, info, n, device, generator)

    @hook(
        fix="generate(nets, inputs) must return images [n, C, H, W] in the model's value "
        "range; the default calls nets[generator_net](*inputs)"
    )
    def generate(
        self, nets: dict[str, nn.Module], inputs: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """Images in the model's value range from generator inputs (sample grids,
        diversity checks). Default: ``nets[generator_net](*inputs)``."""
        return nets[self.generator_net](*inputs)

    @hook(
        fix="export_spec(nets, opts, info) must return a ganpipe.ExportSpec; the default "
        "exports nets[generator_net] with inputs()"
    )
    def export_spec(self, nets: dict[str, nn.Module], opts: Any, info: DataInfo) -> ExportSpec:
        """What to export. Default: :attr:`generator_net` with :meth:`inputs`."""
        import torch

        g = nets[self.generator_net].eval()
        return ExportSpec(
            module=g,
            inputs=self.inputs(opts, info),
            example_inputs=self.make_inputs(
                opts, info, 2, torch.device("cpu"), torch.Generator().manual_seed(0)
            ),
            metadata={"latent_dim": getattr(opts, "latent_dim", 0)},
        )


class GANOptions(Options):
    """Hyper-parameters shared by the adversarial latent-to-image variants (and read by the
    default :meth:`Variant.optimizers` and :meth:`Variant.inputs`)."""

    latent_dim: int = Field(100, ge=1, le=4096, description="size of the noise vector z")
    g_width: int = Field(64, ge=1, description="channels of the generator's last block")
    d_width: int = Field(64, ge=1, description="channels of the discriminator's first block")
    lr_g: float = Field(2e-4, gt=0, description="learning rate of the generator (Adam)")
    lr_d: float = Field(2e-4, gt=0, description="learning rate of the discriminator (Adam)")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam's beta1 and beta2")
