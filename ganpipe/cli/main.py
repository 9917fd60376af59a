"""The ``ganpipe`` command group and its error handling. Thin: parse, call the library, print.

Heavy modules (torch, onnxruntime) are imported inside the commands that need them, so
``ganpipe --help`` starts fast, and ``generate`` never imports torch.

Errors: a :class:`~ganpipe.errors.GanpipeError` is one line on stderr and the exit status
of its class (:mod:`ganpipe.errors` decides them, here they are only applied);
``--debug`` (or ``GANPIPE_DEBUG=1``) prints the traceback of what caused it first.
"""

from __future__ import annotations

import os
import sys

import click

from ganpipe import signals
from ganpipe.errors import GanpipeError, debugging


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: ``ganpipe.__version__``, read from the package metadata only when
    asked for (it costs every other command tens of milliseconds)."""
    if value and not ctx.resilient_parsing:
        import ganpipe

        click.echo(f"ganpipe, version {ganpipe.__version__}")
        ctx.exit()


def print_debug(exc: BaseException) -> None:
    """With :func:`debugging`: the traceback of ``exc`` and of its cause on stderr."""
    if debugging():
        import traceback

        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)


def _fail(exc: GanpipeError) -> None:
    print_debug(exc)
    click.echo(f"ganpipe: error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _exit_without_last_collection() -> None:
    """At exit, first move every object still alive out of the garbage collector's reach
    (:func:`gc.freeze`, an atexit handler, registered once): the interpreter's last
    collections walk them all (numpy, pydantic's schemas, ONNX Runtime), 60 of the 100 ms
    a short ``upscale`` took to exit (bench/cli_overhead.py). The process ends, so
    nothing is kept; ``__del__`` of objects still in reference cycles may not run, which
    Python never promises at exit anyway. In a long-lived caller (tests invoking
    :func:`main` in-process) it runs only when that process exits."""
    if not _FREEZE_AT_EXIT:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _FREEZE_AT_EXIT.append(True)


_FREEZE_AT_EXIT: list[bool] = []

#: command -> (module:function, short help). Commands are imported when run (or asked for
#: their --help), so ``ganpipe --help`` imports none of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("ganpipe.cli.run:run", "Run the stages of PIPELINE (a pipeline.toml) in order."),
    "generate": ("ganpipe.cli.generate:generate", "Generate images with an exported model."),
    "upscale": ("ganpipe.cli.upscale:upscale", "Upscale images with a super-resolution model."),
    "import": ("ganpipe.cli.imports:import_", "Convert released SR weights to ONNX."),
    "plugins": ("ganpipe.cli.plugins:plugins", "List installed plugins and what they provide."),
    "report": (
        "ganpipe.cli.report:report",
        "Write RUN_DIR/report.html, a one-file page about a run.",
    ),
    "new-plugin": ("ganpipe.cli.new_plugin:new_plugin", "Write a plugin package to start from."),
}


class _Group(click.Group):
    """Loads commands lazily (:data:`COMMANDS`; plugins' commands only for ``--help`` and
    names that are not ganpipe's) and turns user errors (GanpipeError, bad arguments) into
    one line on stderr and a non-zero exit."""

    def plugin_commands(self, ctx: click.Context, redirect: bool = True) -> dict:
        """The plugins' commands (:mod:`ganpipe.cli.plugin_commands`), loaded once per
        invocation; what was refused is a warning line each. ``redirect=False``: for
        ``--help``, what plugins print while they load is not moved to stderr."""
        root = ctx.find_root()
        if "ganpipe.plugin_commands" not in root.meta:
            from ganpipe.cli.plugin_commands import load_commands

            found = load_commands(
                {*COMMANDS, *self.commands},
                entry_points=not root.params.get("no_plugins"),
                redirect=redirect,
            )
            for problem in found.problems:
                click.echo(f"ganpipe: warning: {problem}", err=True)
            root.meta["ganpipe.plugin_commands"] = found.commands
        return root.meta["ganpipe.plugin_commands"]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx), *self.plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            import importlib

            module, _, attr = COMMANDS[name][0].partition(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name) or self.plugin_commands(ctx).get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        rows += [(n, c.get_short_help_str()) for n, c in sorted(self.commands.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        plugin = self.plugin_commands(ctx, redirect=False).items()
        plugin_rows = [(n, c.get_short_help_str()) for n, c in plugin]
        if plugin_rows:
            with formatter.section("Commands from plugins"):
                formatter.write_dl(sorted(plugin_rows))

    def main(self, args=None, prog_name=None, **extra):
        _exit_without_last_collection()
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("ganpipe: aborted", err=True)
            sys.exit(1)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `ganpipe`: show the help
                click.echo(exc.format_message())
                sys.exit(0)
            cmd = exc.ctx.command_path if exc.ctx else "ganpipe"
            click.echo(
                f"ganpipe: error: {exc.format_message().rstrip('.')}; see '{cmd} --help'", err=True
            )
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"ganpipe: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)

    def invoke(self, ctx):
        try:
            with signals.raising():  # SIGTERM / SIGINT: Interrupted, so cleanup runs
                return super().invoke(ctx)
        except GanpipeError as exc:
            _fail(exc)
        except OSError as exc:  # disk full, read-only, ... that no caller named: one line
            from ganpipe.fsutil import environment_error

            known = environment_error(exc)
            if known is None:
                raise
            known.__cause__ = known.__cause__ or exc  # what --debug shows
            _fail(known)
        except signals.Interrupted as exc:  # training names the checkpoint it wrote
            click.echo(f"ganpipe: {exc.message()}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(
                "ganpipe: interrupted; finished outputs and checkpoints are kept, "
                "run the same command again to resume",
                err=True,
            )
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
@click.option(
    "--no-plugins",
    is_flag=True,
    is_eager=True,  # before --help, which lists the plugins' commands
    help="Skip third-party plugins (entry points); built-ins still load.",
)
@click.option(
    "--debug",
    is_flag=True,
    help="On an error, print the traceback of its cause before its one line "
    "(also GANPIPE_DEBUG=1).",
)
@click.pass_context
def main(ctx: click.Context, no_plugins: bool, debug: bool) -> None:
    """Train GAN variants on image folders, export them to ONNX, generate and upscale.

    \b
    ganpipe run pipeline.toml          run the stages of a pipeline
    ganpipe generate -m model.onnx     images from an exported model
    ganpipe upscale -i IN -o OUT -m M  batch super-resolution of images
    ganpipe import weights.pth -o M    Real-ESRGAN-style weights to ONNX
    ganpipe report RUN_DIR             one-page HTML report of a run
    ganpipe plugins                    installed variants, stages, datasets
    """
    if debug:
        os.environ["GANPIPE_DEBUG"] = "1"
    ctx.obj = {"entry_points": not no_plugins}
