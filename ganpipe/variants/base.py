"""The variant contract and a base class for latent-to-image (``generate``) GANs.

A variant owns its nets and losses; the shared training loop (``ganpipe.training``) owns
devices, checkpoints, EMA, logging and sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from ganpipe.errors import ConfigError
from ganpipe.options import Options

TASKS = ("generate", "super_resolve", "translate")


@dataclass(frozen=True)
class DataInfo:
    """What a variant needs to know about the data to size its nets."""

    image_size: int
    channels: int
    class_names: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class InputSpec:
    """One input of an exported model. ``kind``: ``normal`` (standard normal noise of
    ``shape`` per sample), ``label`` (int64 class index per sample), ``image`` (float
    NCHW image, ``shape`` = (channels,); height and width are dynamic), ``categorical``
    (float one-hot along the last axis of ``shape``, each code uniform over its classes) or
    ``uniform`` (float U(-1, 1) of ``shape``); the last two are latent codes that
    ``ganpipe generate --code`` can fix (see :mod:`ganpipe.variants.infogan`)."""

    name: str
    kind: str
    shape: tuple[int, ...] = ()

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "shape": list(self.shape)}


@dataclass
class ExportSpec:
    """What the export stage needs: an eval-mode module, example inputs (batch first) and
    the metadata written into the ``.onnx`` so that inference needs only the file."""

    module: nn.Module
    inputs: list[InputSpec]
    example_inputs: tuple[torch.Tensor, ...]
    output_name: str = "image"
    value_range: tuple[float, float] = (-1.0, 1.0)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    images: torch.Tensor  # float [B, C, H, W] in [-1, 1] on the training device
    labels: torch.Tensor  # int64 [B]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class StepContext:
    """Handed to ``train_step``: nets, optimizers, options and helpers.

    * ``augment(x)``: the run's differentiable augmentation (DiffAugment); variants apply
      it to every image batch they give the discriminator, real and generated alike.
    * ``update(name, loss)``: zero grads, back-propagate (loss-scaled under fp16 AMP),
      average the gradients across processes in data-parallel runs (``reduce_grads``),
      step.
    """

    def __init__(
        self,
        nets: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        opts: Any,
        info: DataInfo,
        device: torch.device,
        *,
        augment=None,
        scalers: dict[str, torch.amp.GradScaler] | None = None,
    ):
        self.nets = nets
        self.optimizers = optimizers
        self.opts = opts
        self.info = info
        self.device = device
        self.step = 0
        self.augment = augment or _identity
        self.scalers = scalers or {}
        #: set by the loop in data-parallel runs: averages the gradients of a parameter list
        self.reduce_grads: Callable[[list[nn.Parameter]], None] | None = None

    def update(self, name: str, loss: torch.Tensor) -> None:
        """Zero the grads of optimizer ``name``, back-propagate ``loss``, step."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers.get(name)
        scaled = scaler is not None and scaler.is_enabled()
        (scaler.scale(loss) if scaled else loss).backward()
        if self.reduce_grads is not None:
            self.reduce_grads([p for group in opt.param_groups for p in group["params"]])
        if scaled:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()


class Variant:
    """Base class of variants. Subclasses set ``name``, ``Options`` and implement
    ``build`` and ``train_step``; the rest has defaults for latent-to-image GANs."""

    name: ClassVar[str]
    task: ClassVar[str] = "generate"
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]]
    #: Needs class labels from the data (subfolders) - checked before training.
    conditional: ClassVar[bool] = False
    #: Options that make the nets tiny, used by the contract tests.
    tiny_options: ClassVar[dict[str, Any]] = {}
    #: Image sizes the variant supports in the contract tests.
    test_image_size: ClassVar[int] = 16

    # -- nets ------------------------------------------------------------------------
    def check_data(self, opts: Any, info: DataInfo) -> None:
        if self.conditional and info.num_classes < 2:
            raise ConfigError(
                f"variant {self.name!r} is conditional and needs class labels, but the data "
                f"has {'one class' if info.num_classes == 1 else 'no class labels'}; put the "
                f"images in one subfolder per class (two or more)"
            )

    def build(self, opts: Any, info: DataInfo) -> dict[str, nn.Module]:
        """Return the nets, ``{"G": generator, "D": discriminator, ...}``."""
        raise NotImplementedError

    def optimizers(self, nets: dict[str, nn.Module], opts: Any) -> dict[str, torch.optim.Optimizer]:
        """Adam for ``G`` and ``D`` with ``opts.lr_g``, ``opts.lr_d``, ``opts.betas``."""
        return {
            "G": torch.optim.Adam(nets["G"].parameters(), lr=opts.lr_g, betas=tuple(opts.betas)),
            "D": torch.optim.Adam(nets["D"].parameters(), lr=opts.lr_d, betas=tuple(opts.betas)),
        }

    def train_step(self, ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalar losses by name."""
        raise NotImplementedError

    # -- generation ------------------------------------------------------------------
    def inputs(self, opts: Any, info: DataInfo) -> list[InputSpec]:
        specs = [InputSpec("z", "normal", (opts.latent_dim,))]
        if self.conditional:
            specs.append(InputSpec("label", "label"))
        return specs

    def make_inputs(
        self,
        opts: Any,
        info: DataInfo,
        n: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Random generator inputs for ``n`` samples (labels cycle through the classes)."""
        out = []
        for spec in self.inputs(opts, info):
            if spec.kind == "normal":
                out.append(torch.randn((n, *spec.shape), generator=generator).to(device))
            elif spec.kind == "label":
                lab = labels if labels is not None else torch.arange(n) % max(1, info.num_classes)
                out.append(lab.to(device=device, dtype=torch.long))
            else:
                raise ValueError(f"unknown input kind {spec.kind!r}")
        return tuple(out)

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

    def generate(
        self, nets: dict[str, nn.Module], inputs: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        return nets["G"](*inputs)

    def export_spec(self, nets: dict[str, nn.Module], opts: Any, info: DataInfo) -> ExportSpec:
        g = nets["G"].eval()
        return ExportSpec(
            module=g,
            inputs=self.inputs(opts, info),
            example_inputs=self.make_inputs(
                opts, info, 2, torch.device("cpu"), torch.Generator().manual_seed(0)
            ),
            metadata={"latent_dim": getattr(opts, "latent_dim", 0)},
        )


class GANOptions(Options):
    """Hyper-parameters shared by the adversarial latent-to-image variants."""

    latent_dim: int = Field(100, ge=1, le=4096)
    g_width: int = Field(64, ge=1, description="channels of the generator's last block")
    d_width: int = Field(64, ge=1, description="channels of the discriminator's first block")
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
