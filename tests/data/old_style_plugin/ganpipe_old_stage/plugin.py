"""The module named by the ``ganpipe`` entry point: one hook, one stage.

The stage is declared lazily: its module is imported only when a pipeline has its
table, so that ``ganpipe plugins`` stays fast.
"""

import ganpipe


@ganpipe.hookimpl
def ganpipe_register_stages(register: ganpipe.StageRegister) -> None:
    register.lazy(
        "ganpipe_old_stage.stage:OldStage",
        name="old-stage",
        description="statistics of the training images (ganpipe-old-stage)",
    )
