"""The module named by the ``ganpipe`` entry point: one hook, one dataset source.

The source is declared lazily: its module is imported only when a pipeline uses it,
so that ``ganpipe plugins`` stays fast.
"""

import ganpipe


@ganpipe.hookimpl
def ganpipe_register_datasets(register: ganpipe.DatasetRegister) -> None:
    register.lazy(
        "ganpipe_old_dataset.dataset:OldDataset",
        name="old-dataset",
        description="images listed in a text file, one per line (ganpipe-old-dataset)",
    )
