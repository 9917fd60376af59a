"""Exceptions for mistakes a user can fix. The CLI prints them as one line, no traceback."""


class GanpipeError(Exception):
    """A user-facing error: the message says what, where and how to fix it."""

    exit_code = 1


class ConfigError(GanpipeError):
    """pipeline.toml (or an option) is invalid."""

    exit_code = 2


class PluginError(GanpipeError):
    """A plugin failed to load, or registered something invalid."""


class DataError(GanpipeError):
    """The data could not be read: missing folder, no images, unreadable file."""


class ModelFileError(GanpipeError):
    """A model file is missing, unreadable or not what ganpipe expects."""


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
