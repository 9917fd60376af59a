"""The module named by the ``ganpipe`` entry point: one hook, one dataset source.

The source is declared lazily: :mod:`ganpipe_zip.source` (with numpy and Pillow) is
imported only when a pipeline says ``dataset = "zip"``, so ``ganpipe plugins`` stays fast.
"""

from __future__ import annotations  # unevaluated: `ganpipe --help` imports this module

import ganpipe


@ganpipe.hookimpl
def ganpipe_register_datasets(register: ganpipe.DatasetRegister) -> None:
    register.lazy(
        "ganpipe_zip.source:ZipSource",
        name="zip",
        description="images in a .zip archive (never extracted); top-level folders are labels",
    )
