"""The plugin contract of ganpipe.

Every hook takes a ``register`` callback and calls it once per object the plugin
provides. Built-in variants, stages and datasets are registered through these same hooks,
so a third-party package is a first-class citizen: it declares an entry point in the
``ganpipe`` group pointing to a module that defines one or more of these hooks with
:data:`ganpipe.hookimpl`.

Registering a name that is already taken raises an error naming both plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("ganpipe")


@hookspec
def ganpipe_register_variants(register: Callable[[Any], None]) -> None:
    """Register GAN variants.

    Call ``register(variant)`` for each variant object. A variant has a unique ``name``,
    a ``task`` (``"generate"``, ``"super_resolve"`` or ``"translate"``), an ``Options``
    pydantic model of its hyper-parameters (unknown keys rejected), and the methods of
    :class:`ganpipe.variants.base.Variant`: ``build``, ``optimizers``, ``train_step``,
    ``sample`` and ``export_spec``.
    """


@hookspec
def ganpipe_register_stages(register: Callable[[Any], None]) -> None:
    """Register pipeline stages.

    Call ``register(stage)`` for each stage object. A stage has a unique ``name`` (the
    table name in ``pipeline.toml``), an ``Options`` pydantic model, a tuple ``requires``
    of stage names whose outputs it reads, and ``run(ctx, opts) -> dict[str, str]``
    returning its outputs (paths relative to the run folder); optionally
    ``check(config, opts)`` (load-time validation) and ``fingerprint(config, opts)`` (the
    files it reads from outside the run, so that changing them re-runs it). See
    :class:`ganpipe.stages.base.Stage`.
    """


@hookspec
def ganpipe_register_datasets(register: Callable[[Any], None]) -> None:
    """Register dataset sources.

    Call ``register(dataset)`` for each dataset source. A dataset source has a unique
    ``name`` (the ``data.dataset`` value in ``pipeline.toml``), an ``Options`` pydantic
    model for its own keys, ``load(opts, image_size, channels, base_dir) -> ImageSet``
    and ``fingerprint(opts, base_dir) -> str``. See :class:`ganpipe.data.base.DatasetSource`.
    """
