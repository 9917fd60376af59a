"""``ganpipe new-plugin``: write a plugin package to start from (torch-free).

:func:`create` renders the templates of one kind (``variant``, ``stage`` or ``dataset``)
from ``templates/`` (package data, ``string.Template`` placeholders such as ``$name``) into
``<out_dir>/ganpipe-<name>/``: a pyproject with the ``ganpipe`` entry point and a
dependency on the ganpipe versions the code is written for (``ganpipe>=0.3,<0.5`` from
0.3.x: docs/plugins.md, "Compatibility"), the plugin module (registering its object lazily, so that ``ganpipe
plugins`` imports nothing of it), the object's module, a README and tests that call
:mod:`ganpipe.testing`. The generated code uses only the public API (``ganpipe``,
``ganpipe.nn``, ``ganpipe.testing``). It installs with ``pip install -e .`` and passes its
own tests unchanged.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from ganpipe._version import plugin_requirement
from ganpipe.errors import ConfigError

KINDS = ("variant", "stage", "dataset")
#: a plugin name: lower-case words of letters and digits joined by single hyphens; it is
#: the entry-point name, the object's name, and (as ganpipe_<name>) the module's
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_NAME = 24
#: pipeline.toml tables that are not stages
RESERVED_TABLES = ("run", "data", "model")

#: kind -> (template, output path); paths may use $module
FILES: dict[str, tuple[tuple[str, str], ...]] = {
    kind: (
        ("common/pyproject.toml.tmpl", "pyproject.toml"),
        ("common/README.md.tmpl", "README.md"),
        ("common/gitignore.tmpl", ".gitignore"),
        ("common/__init__.py.tmpl", "$module/__init__.py"),
        (f"{kind}/plugin.py.tmpl", "$module/plugin.py"),
        (f"{kind}/{kind}.py.tmpl", f"$module/{kind}.py"),
        (f"{kind}/test_plugin.py.tmpl", f"tests/test_{kind}.py"),
    )
    for kind in KINDS
}

#: per kind: the class, what it is in words, the hook, the README's usage section
KIND_TEXT = {
    "variant": {
        "what": "a GAN variant (hinge loss on ganpipe's DCGAN nets)",
        "hook": "ganpipe_register_variants",
        "usage": '[model]\nvariant = "$name"\nlatent_dim = 64\n',
    },
    "stage": {
        "what": "a pipeline stage (statistics of the training images)",
        "hook": "ganpipe_register_stages",
        "usage": "[$name]\nmax_images = 1000\n",
    },
    "dataset": {
        "what": "a dataset source (images listed in a text file)",
        "hook": "ganpipe_register_datasets",
        "usage": '[data]\ndataset = "$name"\npath = "images.txt"\nimage_size = 64\n',
    },
}


@dataclass(frozen=True)
class Plugin:
    """What the templates are rendered with."""

    name: str
    kind: str

    @property
    def dist(self) -> str:
        return f"ganpipe-{self.name}"

    @property
    def module(self) -> str:
        return "ganpipe_" + self.name.replace("-", "_")

    @property
    def cls(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("-"))

    def values(self) -> dict[str, str]:
        text = KIND_TEXT[self.kind]
        values = {
            "name": self.name,
            "kind": self.kind,
            "dist": self.dist,
            "module": self.module,
            "cls": self.cls,
            "what": text["what"],
            "hook": text["hook"],
            # this minor up to the first that may remove what the plugin uses
            "ganpipe_requirement": plugin_requirement(),
        }
        values["usage"] = Template(text["usage"]).substitute(values)
        return values


def check_name(name: str, kind: str) -> None:
    """Refuse a name that cannot be a plugin name or is taken by a built-in, in one line."""
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: use one of {', '.join(KINDS)}")
    if not NAME.match(name) or len(name) > MAX_NAME:
        raise ConfigError(
            f"plugin name {name!r} must be lower-case letters and digits, words joined by "
            f"single hyphens, starting with a letter, at most {MAX_NAME} characters "
            f"(e.g. 'my-gan')"
        )
    if name.startswith("ganpipe"):
        raise ConfigError(
            f"plugin name {name!r}: leave out the 'ganpipe' prefix; the package is "
            f"called ganpipe-<name> already"
        )
    if keyword.iskeyword(name.replace("-", "_")):
        raise ConfigError(f"plugin name {name!r} is a Python keyword; choose another")
    if kind == "stage" and name in RESERVED_TABLES:
        raise ConfigError(f"[{name}] is not a stage table in pipeline.toml; choose another name")
    from ganpipe.registry import load_registry

    taken = getattr(load_registry(entry_points=False), f"{kind}s")
    if name in taken:
        raise ConfigError(f"{kind} name {name!r} is taken by a built-in {kind}; choose another")


def render(template: str, values: dict[str, str]) -> str:
    text = (resources.files(__name__) / "templates" / template).read_text(encoding="utf-8")
    return Template(text).substitute(values)


def create(name: str, kind: str = "variant", out_dir: str | Path = ".") -> Path:
    """Write ``<out_dir>/ganpipe-<name>/`` for a plugin of ``kind``; return its path.
    A bad name or an existing target is a one-line :class:`ConfigError`; nothing is
    written then, nor half-written on any failure."""
    check_name(name, kind)
    plugin = Plugin(name, kind)
    out = Path(out_dir).expanduser()
    target = out / plugin.dist
    if target.exists() or target.is_symlink():
        raise ConfigError(f"{target} already exists; remove it or choose another -o folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: not a folder")
    values = plugin.values()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{plugin.dist}-", dir=out))
    try:
        for template, dest in FILES[kind]:
            path = tmp / Template(dest).substitute(values)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(template, values), encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
