"""ganpipe-old-dataset: a dataset source (images listed in a text file) for ganpipe.

ganpipe loads the entry-point module
:mod:`ganpipe_old_dataset.plugin`;
the dataset itself lives in
:mod:`ganpipe_old_dataset.dataset`,
imported only when a pipeline uses it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
