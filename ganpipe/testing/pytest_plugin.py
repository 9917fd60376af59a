"""Fixtures for a plugin's own pytest suite (opt in from its ``conftest.py``)::

    pytest_plugins = ["ganpipe.testing.pytest_plugin"]

    def test_contract(ganpipe_contract):
        ganpipe_contract.variant(MyGAN())

``ganpipe_contract`` holds :func:`~ganpipe.testing.check_variant`,
:func:`~ganpipe.testing.check_stage` and :func:`~ganpipe.testing.check_dataset` with the
test's ``tmp_path`` filled in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class Contract:
    """The checks of :mod:`ganpipe.testing`, writing under one test's ``tmp_path``
    (``tmp_path/variant``, ``tmp_path/stage``, ``tmp_path/dataset``)."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path

    def variant(self, variant: Any, **kwargs: Any):
        from ganpipe.testing.variants import check_variant  # imports torch

        return check_variant(variant, **{"tmp_path": self.tmp_path / "variant", **kwargs})

    def stage(self, stage: Any, **kwargs: Any):
        from ganpipe.testing.stages import check_stage

        return check_stage(stage, **{"tmp_path": self.tmp_path / "stage", **kwargs})

    def dataset(self, source: Any, **kwargs: Any):
        from ganpipe.testing.datasets import check_dataset

        return check_dataset(source, **{"tmp_path": self.tmp_path / "dataset", **kwargs})


@pytest.fixture
def ganpipe_contract(tmp_path: Path) -> Contract:
    return Contract(tmp_path)
