"""The module named by the ``ganpipe`` entry point: a dataset source, a command and a
report section.

Everything is imported lazily: :mod:`ganpipe_zip.source` (with numpy and Pillow) only when
a pipeline says ``dataset = "zip"``, the command's module when the command runs (``ganpipe
--help`` lists it from its declaration), the report section's when a report is written;
so ``ganpipe plugins`` and ``ganpipe --help`` stay fast.
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


@ganpipe.hookimpl
def ganpipe_register_commands(cli) -> None:
    cli.lazy(  # ganpipe_zip.commands is imported only when the command runs
        "ganpipe_zip.commands:zip_info",
        name="zip-info",
        help='Classes and images of a .zip archive, as dataset = "zip" reads it.',
    )


@ganpipe.hookimpl
def ganpipe_report_sections(report) -> None:
    from ganpipe_zip.report import archive_section

    archive_section(report)
