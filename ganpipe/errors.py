"""Exceptions for mistakes a user can fix. The CLI prints them as one line, no traceback
(``ganpipe --debug`` adds the traceback of what caused them).

The exit status of every command is decided here, once, by the class of the error
(``exit_code``); commands raise these as they are and never re-wrap one into another to
change the status:

* 2 - a usage or configuration mistake: bad arguments or options, an invalid pipeline.toml,
  a file named on the command line or in the configuration that cannot be used
  (:class:`ConfigError`, :class:`ModelFileError`, ``RunFolderError``);
* 1 - the work failed: data, training, writing, a plugin, an interrupted batch
  (every other :class:`GanpipeError`);
* 130 / 143 - stopped by Ctrl-C / SIGTERM (:mod:`ganpipe.signals`).
"""

import os


def debugging() -> bool:
    """``ganpipe --debug`` or ``GANPIPE_DEBUG=1``: an error's one line comes after the
    traceback of what caused it (the flag sets the variable, so the processes a command
    starts inherit it)."""
    return os.environ.get("GANPIPE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


class GanpipeError(Exception):
    """A user-facing error: the message says what, where and how to fix it."""

    exit_code = 1


class ConfigError(GanpipeError):
    """pipeline.toml (or an option, a command-line argument) is invalid."""

    exit_code = 2


class PluginError(GanpipeError):
    """A plugin failed to load, or registered something invalid."""


class PluginCodeError(PluginError):
    """A plugin's code raised while ganpipe ran it (``Variant.build``, ``train_step``...):
    one line naming the plugin, its distribution, the method and the likely fix. The
    exception it raised is the ``__cause__`` (``ganpipe --debug`` / ``GANPIPE_DEBUG=1``
    print its traceback). ``plugin``, ``dist``, ``method``: who and where."""

    def __init__(self, message: str, *, plugin: str = "", dist: str = "", method: str = ""):
        super().__init__(message)
        self.plugin, self.dist, self.method = plugin, dist, method


class DataError(GanpipeError):
    """The data could not be read: missing folder, no images, unreadable file."""


class ModelFileError(GanpipeError):
    """A model file is missing, unreadable or not what ganpipe expects: the file named is
    unusable, a usage error like a bad option."""

    exit_code = 2


class TrainingError(GanpipeError):
    """Training stopped: non-finite loss, incompatible checkpoint..."""


class LockedError(GanpipeError):
    """Another ganpipe process holds the lock of a run folder, tune study or journal
    (:mod:`ganpipe.runlock`); the message names it. ``holder``: its
    :class:`~ganpipe.runlock.Holder` when known."""

    holder = None


class WriteError(GanpipeError, OSError):
    """A file could not be written (disk full, quota, read-only, permissions...). Also an
    :class:`OSError` with the original ``errno`` and ``filename``, so code that goes on
    after a failed write (a batch) still catches it as one. Made by
    :func:`ganpipe.fsutil.write_error`, whose message names the path and what to do."""

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None):
        OSError.__init__(self, errno, message)
        self.message = message
        self.filename = filename

    def __str__(self) -> str:
        return self.message


#: the most characters of another library's exception message quoted inside one of ours
MAX_QUOTED = 300


def one_line(exc: BaseException | str, limit: int = MAX_QUOTED) -> str:
    """An exception's message (or any text) fit to quote inside a one-line error: runs of
    whitespace and newlines (pluggy's and torch's messages span several lines) made one
    space, cut at ``limit`` characters with "..."."""
    text = " ".join(str(exc).split())
    return text[:limit] + "..." if len(text) > limit else text
