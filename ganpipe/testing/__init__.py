"""Contract checks for plugin authors: run ganpipe's own contract tests on your variant,
stage or dataset source from your plugin's pytest suite.

Each check takes the object itself (not its name), runs it for real on tiny settings
(CPU, 16 px, a few steps; seconds) and raises :class:`ContractError`, an
``AssertionError`` whose message names the object, the step that broke and what was
expected. A passing check returns a :class:`CheckReport` (seconds per step)::

    # tests/test_contract.py of ganpipe-my-gan
    from ganpipe.testing import check_variant, registered
    from my_gan.variant import MyGAN

    def test_contract(tmp_path):
        check_variant(MyGAN(), tmp_path=tmp_path)

    def test_installed_entry_point():      # as `ganpipe run` finds it
        assert isinstance(registered("variant", "my-gan"), MyGAN)

:func:`check_variant`
    structure (:mod:`ganpipe.conformance`); ``Options(**tiny_options)`` valid, refusing
    unknown keys; ``check_data`` and ``build`` on data of its task (three classes for
    ``conditional``, two domains for ``translate``); ``generator_net`` among the nets;
    ``generate`` on ``make_inputs`` and ``fixed_inputs`` (shape, float32, finite, in
    [-1, 1]) and D's scores; every parameter optimized; ``train_step`` (detached finite
    losses; every net changes); exact resume in the real training loop (4 steps straight
    equal 2 + 2 resumed, bit for bit, EMA included); ONNX export, parity with torch on
    fresh inputs of other batch sizes (and another height and width for image inputs),
    output shape and value range, and the model card (variant, task, image size,
    channels, class names, inputs, value range, scale for super_resolve / translate);
    for ``generate`` models also ``ganpipe generate``'s path.
:func:`quick_check`
    the cheap part of :func:`check_variant` (no training loop, no export, no files;
    milliseconds for tiny nets) as a list of one-line problems, each naming its fix:
    ``Options()`` defaults with ``tiny_options`` build the nets, ``build`` returns
    ``{name: nn.Module}``, optimizer names, input kinds, one ``train_step``. ``ganpipe
    plugins --check`` runs it on every variant.
:func:`check_dataset`
    structure; options; ``load`` gives an :class:`ganpipe.ImageSet` of the asked size
    and channels, labels naming its classes, the same arrays twice; ``class_names``
    agrees with ``load``; ``fingerprint`` a stable str that changes with the data (pass
    ``change``); nothing under ``base_dir`` written. Pass ``options`` / ``base_dir``
    pointing at test data; :func:`make_image_folder` writes a folder of real images.
:func:`check_stage`
    structure; options; then a real pipeline in ``tmp_path`` (``[data]`` and
    ``[model]`` tiny, the stages it ``requires`` first): the stage runs, its outputs
    exist inside the run folder, a second run skips it, ``--from`` runs it again. Pass
    ``run=False`` for the checks without running.
:func:`registered`
    the object an installed plugin registers under a name, loaded as ``ganpipe run``
    loads it (lazy declarations imported and compared with the class).

Fixtures: add ``pytest_plugins = ["ganpipe.testing.pytest_plugin"]`` to your
``conftest.py`` for ``ganpipe_contract`` (the checks bound to the test's ``tmp_path``).
``ganpipe new-plugin NAME`` writes a plugin package whose tests use all this.

Importing this module is cheap; :func:`check_variant` imports torch when called.
"""

from typing import TYPE_CHECKING

_LAZY = {
    "CheckReport": "ganpipe.testing._checker",
    "ContractError": "ganpipe.testing._checker",
    "check_variant": "ganpipe.testing.variants",
    "check_dataset": "ganpipe.testing.datasets",
    "check_stage": "ganpipe.testing.stages",
    "make_image_folder": "ganpipe.testing.data",
    "make_image_set": "ganpipe.testing.data",
    "quick_check": "ganpipe.testing.quick",
    "registered": "ganpipe.testing.registered",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ganpipe.testing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from ganpipe.testing._checker import CheckReport, ContractError
    from ganpipe.testing.data import make_image_folder, make_image_set
    from ganpipe.testing.datasets import check_dataset
    from ganpipe.testing.quick import quick_check
    from ganpipe.testing.registered import registered
    from ganpipe.testing.stages import check_stage
    from ganpipe.testing.variants import check_variant

__all__ = [
    "CheckReport",
    "ContractError",
    "check_dataset",
    "check_stage",
    "check_variant",
    "make_image_folder",
    "make_image_set",
    "quick_check",
    "registered",
]
