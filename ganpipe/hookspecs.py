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

A function that is meant as a hook but lacks the marker, a misspelled hook name and an
argument a hook does not pass are caught when the plugin loads, each one line naming the
fix (:mod:`ganpipe.plugin_checks`); a plugin with any problem is skipped with a warning,
and ``ganpipe plugins --check`` fails on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # annotations only: ``ganpipe --help`` reads these specs, kept light
    import click

    from ganpipe.card_extensions import CardFieldsRegister
    from ganpipe.inputs import InputKindRegister
    from ganpipe.registry import DatasetRegister, StageRegister, VariantRegister
    from ganpipe.report.extensions import ReportSections

hookspec = pluggy.HookspecMarker("ganpipe")
#: Marks the hook functions of a plugin module; public as :data:`ganpipe.hookimpl`.
hookimpl = pluggy.HookimplMarker("ganpipe")


@hookspec
def ganpipe_register_variants(register: VariantRegister) -> None:
    """Register GAN variants: call ``register(variant)`` or ``register.lazy(...)``
    (:class:`ganpipe.VariantRegister`) for subclasses of :class:`ganpipe.Variant`, whose
    class is the contract (what is required, and since which version each method exists).
    """


@hookspec
def ganpipe_register_stages(register: StageRegister) -> None:
    """Register pipeline stages (each a ``[table]`` of pipeline.toml): call
    ``register(stage)`` or ``register.lazy(...)`` (:class:`ganpipe.StageRegister`) for
    subclasses of :class:`ganpipe.Stage`, whose class is the contract."""


@hookspec
def ganpipe_register_datasets(register: DatasetRegister) -> None:
    """Register dataset sources (``[data] dataset = "name"``): call ``register(source)``
    or ``register.lazy(...)`` (:class:`ganpipe.DatasetRegister`) for subclasses of
    :class:`ganpipe.DatasetSource`, whose class is the contract."""


# -- extension points beyond registration (since 0.3) -------------------------------------


@hookspec
def ganpipe_register_commands(cli: click.Group) -> None:
    """Add commands to the ``ganpipe`` command line (since 0.3), as llm's
    ``register_commands``: ``cli`` is a click group, so decorate with ``@cli.command()``
    (or ``@cli.group()``) or call ``cli.add_command(cmd)``; ``cli.lazy("pkg.module:cmd",
    name=..., help=...)`` imports the command only when it runs. Called when ``ganpipe
    --help`` lists the commands or an unknown command name is run, never for ganpipe's
    own commands; keep heavy imports inside the command. A name ganpipe or another plugin
    already uses is refused, naming the plugin."""


@hookspec
def ganpipe_report_sections(report: ReportSections) -> None:
    """Add sections to a run's ``report.html`` (since 0.3): ``report.run`` is the run
    (its manifest, recorded pipeline.toml, stages and outputs); call ``report.add(title,
    *blocks, note=...)`` with blocks made by ``report.text``, ``report.key_values``,
    ``report.table``, ``report.code`` and ``report.image`` (every text escaped). A hook
    that raises costs only its own section: a one-line note stands in its place."""


@hookspec
def ganpipe_model_card_fields(register: CardFieldsRegister) -> None:
    """Declare typed model-card extension fields (since 0.3): ``register("my-ns",
    MyFields)`` (a pydantic model) or ``register.lazy("pkg.module:MyFields",
    namespace="my-ns")``. A variant writes them as ``ExportSpec.metadata["extensions"]
    = {"my-ns": MyFields(...)}``; ``card.extension("my-ns")`` reads them back typed."""


@hookspec
def ganpipe_register_input_kinds(register: InputKindRegister) -> None:
    """Register generator input kinds with their samplers (since 0.3): ``register(name,
    sample, description=..., torch_sample=None)`` with ``sample(rng, n, shape) ->
    ndarray`` (numpy: ``ganpipe generate`` draws it without torch; training too, seeded
    from the run), or ``register.lazy("pkg.module:sample", name=..., ...)``."""
