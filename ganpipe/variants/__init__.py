"""The built-in variants: ganpipe's own plugins, one per variant, declared here without
importing them (nor torch); each module is imported when a pipeline first names it.

This table is each built-in's identity (name, task, description), declared once: the
classes do not repeat it (a class that did would have to agree). Importing this package
records the table (:func:`ganpipe.contract.declare`), so a built-in class instantiated
directly - ``DCGAN()`` in a test - knows its name without loading the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import ganpipe
from ganpipe.contract import declare


@dataclass(frozen=True)
class BuiltinVariant:
    """A built-in variant plugin: registers its variant lazily, like any third party may."""

    plugin: str
    name: str
    target: str
    task: str
    description: str

    @ganpipe.hookimpl
    def ganpipe_register_variants(self, register: ganpipe.VariantRegister) -> None:
        register.lazy(self.target, name=self.name, task=self.task, description=self.description)


BUILTIN_VARIANTS: tuple[BuiltinVariant, ...] = (
    BuiltinVariant(
        "ganpipe.gan",
        "gan",
        "ganpipe.variants.gan:VanillaGAN",
        "generate",
        "original GAN (Goodfellow et al. 2014): MLPs, BCE loss",
    ),
    BuiltinVariant(
        "ganpipe.dcgan",
        "dcgan",
        "ganpipe.variants.dcgan:DCGAN",
        "generate",
        "Deep convolutional GAN (Radford et al. 2015), BCE loss",
    ),
    BuiltinVariant(
        "ganpipe.cgan",
        "cgan",
        "ganpipe.variants.cgan:CGAN",
        "generate",
        "conditional GAN: class labels (subfolders) steer G and D",
    ),
    BuiltinVariant(
        "ganpipe.wgan",
        "wgan-gp",
        "ganpipe.variants.wgan:WGANGP",
        "generate",
        "Wasserstein GAN with gradient penalty (or weight clipping)",
    ),
    BuiltinVariant(
        "ganpipe.vae",
        "vae",
        "ganpipe.variants.vae:VAE",
        "generate",
        "convolutional VAE: the non-adversarial baseline",
    ),
    BuiltinVariant(
        "ganpipe.infogan",
        "infogan",
        "ganpipe.variants.infogan:InfoGAN",
        "generate",
        "InfoGAN (Chen et al. 2016): DCGAN + latent codes learned via a Q head",
    ),
    BuiltinVariant(
        "ganpipe.biggan",
        "biggan",
        "ganpipe.variants.biggan:BigGAN",
        "generate",
        "compact class-conditional BigGAN: residual nets, conditional BN, spectral norm, projection D, hinge loss",
    ),
    BuiltinVariant(
        "ganpipe.stylegan",
        "stylegan",
        "ganpipe.variants.stylegan:StyleGAN",
        "generate",
        "StyleGAN2 (compact): mapping network, modulated convs, noise, R1, mixing",
    ),
    BuiltinVariant(
        "ganpipe.pggan",
        "pggan",
        "ganpipe.variants.pggan:PGGAN",
        "generate",
        "progressive growing GAN: 4x4 up to full size, new blocks faded in",
    ),
    BuiltinVariant(
        "ganpipe.srgan",
        "srgan",
        "ganpipe.variants.srgan:SRGAN",
        "super_resolve",
        "SRGAN: SRResNet generator, BCE adversarial + content (+ VGG) loss",
    ),
    BuiltinVariant(
        "ganpipe.esrgan",
        "esrgan",
        "ganpipe.variants.esrgan:ESRGAN",
        "super_resolve",
        "ESRGAN / Real-ESRGAN RRDBNet, relativistic GAN + L1 (+ VGG) loss",
    ),
    BuiltinVariant(
        "ganpipe.compact",
        "compact",
        "ganpipe.variants.compact:Compact",
        "super_resolve",
        "Real-ESRGAN SRVGGNetCompact: small, fast conv net (GAN loss optional)",
    ),
    BuiltinVariant(
        "ganpipe.espcn",
        "espcn",
        "ganpipe.variants.espcn:ESPCNVariant",
        "super_resolve",
        "ESPCN sub-pixel CNN (Shi et al. 2016), pixel loss (GAN optional)",
    ),
    BuiltinVariant(
        "ganpipe.cyclegan",
        "cyclegan",
        "ganpipe.variants.cyclegan:CycleGAN",
        "translate",
        "CycleGAN: unpaired translation between two image folders",
    ),
)

for _builtin in BUILTIN_VARIANTS:
    declare(
        _builtin.target,
        {"name": _builtin.name, "task": _builtin.task, "description": _builtin.description},
    )
