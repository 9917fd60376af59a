"""The module named by the ``ganpipe`` entry point: one hook, one variant."""

import ganpipe

from ganpipe_lsgan.variant import LSGAN


@ganpipe.hookimpl
def ganpipe_register_variants(register):
    register(LSGAN())
