"""ganpipe-old-stage: a pipeline stage (statistics of the training images) for ganpipe.

ganpipe loads the entry-point module
:mod:`ganpipe_old_stage.plugin`;
the stage itself lives in
:mod:`ganpipe_old_stage.stage`,
imported only when a pipeline uses it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
