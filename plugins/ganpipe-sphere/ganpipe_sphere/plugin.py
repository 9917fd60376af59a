"""The module named by the ``ganpipe`` entry point: a variant, the input kind it draws its
latent codes from, and the model-card fields it exports.

Everything is declared lazily: the variant (and torch) is imported when a pipeline says
``variant = "dcgan-sphere"``, the sampler (numpy only) at the first draw of a ``sphere``
input, the card fields (pydantic) when a card's ``sphere`` namespace is read typed; so
``ganpipe plugins``, ``ganpipe --help`` and ``ganpipe generate`` stay fast and torch-free.
"""

from __future__ import annotations  # unevaluated: `ganpipe --help` imports this module

import ganpipe


@ganpipe.hookimpl
def ganpipe_register_variants(register: ganpipe.VariantRegister) -> None:
    register.lazy(
        "ganpipe_sphere.variant:DCGANSphere",
        name="dcgan-sphere",
        task="generate",
        description="DCGAN with latent codes uniform on the hypersphere",
    )


@ganpipe.hookimpl
def ganpipe_register_input_kinds(register) -> None:
    register.lazy(
        "ganpipe_sphere.sampling:sphere",
        name="sphere",
        description="uniform on the sphere of radius sqrt(dim) (the last axis)",
    )


@ganpipe.hookimpl
def ganpipe_model_card_fields(register) -> None:
    register.lazy("ganpipe_sphere.card:SphereFields", namespace="sphere")
