"""The module named by the ``ganpipe`` entry point: one hook, one variant.

The variant is registered lazily: :mod:`ganpipe_old_lsgan.variant` (and torch) is imported only
when a pipeline uses ``variant = "old-lsgan"``, so ``ganpipe plugins`` stays fast.
"""

import ganpipe


@ganpipe.hookimpl
def ganpipe_register_variants(register: ganpipe.VariantRegister) -> None:
    register.lazy(
        "ganpipe_old_lsgan.variant:LSGAN",
        name="old-lsgan",
        task="generate",
        description="Least-squares GAN (Mao et al. 2017) on the DCGAN nets",
    )
