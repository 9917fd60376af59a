"""ganpipe-sphere: a DCGAN whose latent codes lie on the hypersphere, as a ganpipe plugin.

ganpipe loads :mod:`ganpipe_sphere.plugin` through the ``ganpipe`` entry-point group; it
registers the variant ``dcgan-sphere``, the input kind ``sphere`` (its numpy sampler in
:mod:`ganpipe_sphere.sampling`) and the model-card fields of the namespace ``sphere``
(:mod:`ganpipe_sphere.card`), each imported only when used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
