"""The plugin hooks of ganpipe.

A plugin is a module (or object) with one or more of these functions, marked with
:data:`ganpipe.hookimpl`, named by an entry point in the ``ganpipe`` group::

    [project.entry-points.ganpipe]
    my-gan = "my_gan.plugin"

Each hook receives a typed ``register`` object and calls it once per thing the plugin
provides: ``register(obj)``, or ``register.lazy("pkg.module:Name", name=..., ...)`` to
have the module imported only when a pipeline uses it (keeps ``ganpipe plugins`` and the
torch-free commands fast). Built-in variants, stages and datasets are registered through
these same hooks. Objects are checked against their contract (:class:`ganpipe.Variant`,
:class:`ganpipe.Stage`, :class:`ganpipe.DatasetSource`) when registered or first loaded;
a problem, or a name already taken, is an error naming the plugin and its distribution.
"""

from __future__ import annotations

import pluggy

from ganpipe.registry import DatasetRegister, StageRegister, VariantRegister

hookspec = pluggy.HookspecMarker("ganpipe")


@hookspec
def ganpipe_register_variants(register: VariantRegister) -> None:
    """Register GAN variants: call ``register(variant)`` (or ``register.lazy(...)``) for objects following :class:`ganpipe.Variant` (``name``,
    ``task``, ``Options``, ``build``, ``train_step``, and the methods with defaults there).
    """


@hookspec
def ganpipe_register_stages(register: StageRegister) -> None:
    """Register pipeline stages: call ``register(stage)`` (or ``register.lazy(...)``) for objects following :class:`ganpipe.Stage` (``name``, the
    ``[table]`` of pipeline.toml; ``Options``; ``run(ctx, opts) -> StageResult``; optional
    ``check`` and ``fingerprint``; ``requires``, ``optional`` and ``uses``)."""


@hookspec
def ganpipe_register_datasets(register: DatasetRegister) -> None:
    """Register dataset sources: call ``register(source)`` (or ``register.lazy(...)``) for objects following :class:`ganpipe.DatasetSource`
    (``name``, the ``data.dataset`` value; ``Options`` for its keys of ``[data]``;
    ``load(opts, image_size, channels, base_dir) -> ImageSet``; ``fingerprint(opts,
    base_dir)``; optional ``class_names(opts, base_dir)``)."""
