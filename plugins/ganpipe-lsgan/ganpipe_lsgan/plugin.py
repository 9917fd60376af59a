"""The module named by the ``ganpipe`` entry point: one hook, one variant.

The variant is registered lazily: :mod:`ganpipe_lsgan.variant` (and torch) is imported only
when a pipeline uses ``variant = "lsgan"``, so ``ganpipe plugins`` stays fast. This
declaration is the variant's identity (name, task, description), stated once: the class
does not repeat it.
"""

from __future__ import annotations  # unevaluated: `ganpipe --help` imports this module

import ganpipe


@ganpipe.hookimpl
def ganpipe_register_variants(register: ganpipe.VariantRegister) -> None:
    register.lazy(
        "ganpipe_lsgan.variant:LSGAN",
        name="lsgan",
        task="generate",
        description="Least-squares GAN (Mao et al. 2017) on the DCGAN nets",
    )
