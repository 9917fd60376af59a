"""ganpipe's one version number, and the range of ganpipe versions a plugin may declare.

The number is written once, in pyproject.toml; :data:`__version__` reads it from the
installed package's metadata (what pip, ``ganpipe --version``, ``ganpipe plugins`` and
the scaffold all see), or, in a source checkout that is not installed, from the
pyproject.toml beside the package. ``ganpipe.__version__`` imports this module on first
use only: reading metadata costs tens of milliseconds that ``import ganpipe`` does not pay.

:func:`plugin_requirement` is the compatibility policy of docs/plugins.md
("Compatibility") as a requirement string: the versions on which a plugin written against
this one keeps working without a change.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

DIST = "ganpipe"


def _from_source_checkout() -> str | None:
    """``[project].version`` of the pyproject.toml next to the package, if it is ganpipe's."""
    import tomllib

    path = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return project.get("version") if project.get("name") == DIST else None


def read_version() -> str:
    """The installed distribution's version; else the source checkout's; else ``0+unknown``."""
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return _from_source_checkout() or "0+unknown"


__version__ = read_version()


def minor_of(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string (``"0.3.0"``, ``"0.3.1.dev2"`` -> ``(0, 3)``)."""
    found = re.match(r"(\d+)(?:\.(\d+))?", version)
    if found is None:
        return 0, 0
    return int(found[1]), int(found[2] or 0)


def plugin_requirement(version: str = __version__) -> str:
    """The dependency a plugin written against ``version`` declares: from this minor on,
    up to (not including) the first version that may remove what it uses.

    In 0.x a name deprecated in one minor keeps working through the next one and may go
    in the one after, so code that is free of deprecation warnings on 0.3 runs on 0.3 and
    0.4: ``ganpipe>=0.3,<0.5``. From 1.0 on (semantic versioning) removals wait for the
    next major: ``ganpipe>=1.2,<2``.
    """
    major, minor = minor_of(version)
    if major == 0:
        return f"{DIST}>=0.{minor},<0.{minor + 2}"
    return f"{DIST}>={major}.{minor},<{major + 1}"
