"""ganpipe-lsgan: the least-squares GAN (Mao et al. 2017) as a ganpipe plugin.

ganpipe loads :mod:`ganpipe_lsgan.plugin` through the ``ganpipe`` entry-point group; the
variant itself lives in :mod:`ganpipe_lsgan.variant`.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
