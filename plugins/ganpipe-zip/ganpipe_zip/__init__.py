"""ganpipe-zip: a ganpipe dataset source reading images from a .zip archive.

ganpipe loads :mod:`ganpipe_zip.plugin` through the ``ganpipe`` entry-point group; the
source itself lives in :mod:`ganpipe_zip.source`, imported when a pipeline uses it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
