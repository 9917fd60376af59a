"""ganpipe-old-variant: a GAN variant (hinge loss on ganpipe's DCGAN nets) for ganpipe.

ganpipe loads the entry-point module
:mod:`ganpipe_old_variant.plugin`;
the variant itself lives in
:mod:`ganpipe_old_variant.variant`,
imported only when a pipeline uses it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
