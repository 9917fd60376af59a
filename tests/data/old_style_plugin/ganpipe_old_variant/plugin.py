"""The module named by the ``ganpipe`` entry point: one hook, one variant.

The variant is declared lazily: its module (and torch) is imported only when a pipeline
uses it, so that ``ganpipe plugins`` stays fast.
"""

import ganpipe


@ganpipe.hookimpl
def ganpipe_register_variants(register: ganpipe.VariantRegister) -> None:
    register.lazy(
        "ganpipe_old_variant.variant:OldVariant",
        name="old-variant",
        task="generate",
        description="hinge-loss GAN on the DCGAN nets (ganpipe-old-variant)",
    )
