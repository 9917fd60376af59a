"""Input kinds: what each input of a generator is, and how a random value of it is drawn.

An :class:`~ganpipe.modelcard.InputSpec` names its ``kind``; this module says what the
kind means. Each kind that is drawn at random has a **numpy sampler**, ``sample(rng, n,
shape) -> array`` (``rng`` a :class:`numpy.random.Generator`, the result ``(n, *shape)``
float32, or int64 for indices), so that ``ganpipe generate`` draws it without torch, and
training's default :meth:`ganpipe.Variant.make_inputs` draws the same kind the same way
(from a seed taken from the run's torch generator, so a run is reproducible and resumes
exactly), unless the kind declares a torch sampler beside it (``torch_sample(generator,
n, shape) -> Tensor``). Kinds whose values are given, not drawn (``label``, ``image``,
``truncation``), have no sampler: generate and the loop fill them in.

Built-in kinds are listed in :data:`BUILTIN_KINDS`; plugins add theirs with the
``ganpipe_register_input_kinds(register)`` hook (since 0.3, :class:`InputKindRegister`),
looked up only when a model or variant uses a kind that is not built in, so generating
from a built-in model never loads the plugins. Torch-free.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ganpipe.errors import PluginError

__all__ = [
    "BUILTIN_KINDS",
    "InputKind",
    "InputKindRegister",
    "draw",
    "input_kind",
    "plugin_input_kinds",
    "training_sample",
]

#: what an input kind may be named: lower-case letters, digits, ``-`` and ``_``
KIND_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")

Sampler = Callable[[np.random.Generator, int, tuple[int, ...]], np.ndarray]


@dataclass
class InputKind:
    """One input kind: its name, a line saying what it is, its numpy sampler (``None``:
    the value is given, not drawn), an optional torch sampler used in training instead of
    the numpy one, and the plugin that provides it (``"ganpipe"`` for built-ins). A lazy
    kind (``target``: ``"pkg.module:function"``) imports its sampler on first draw."""

    name: str
    description: str
    sample: Sampler | None = None
    torch_sample: Callable[..., Any] | None = None
    owner: str = "ganpipe"
    target: str | None = None
    torch_target: str | None = None

    @property
    def drawn(self) -> bool:
        return self.sample is not None or self.target is not None

    def sampler(self) -> Sampler | None:
        """The numpy sampler, imported on first use for a lazy kind."""
        if self.sample is None and self.target is not None:
            self.sample = _load(self.target, self)
        return self.sample

    def torch_sampler(self) -> Callable[..., Any] | None:
        if self.torch_sample is None and self.torch_target is not None:
            self.torch_sample = _load(self.torch_target, self)
        return self.torch_sample


def _load(target: str, kind: InputKind) -> Callable[..., Any]:
    from ganpipe.plugins import plugin_code

    module, _, attr = target.partition(":")
    with plugin_code(
        f"plugin {kind.owner!r}: cannot load the sampler of input kind {kind.name!r} from {target}",
        f"fix or uninstall the plugin, or skip it with GANPIPE_DISABLE_PLUGINS={kind.owner}",
    ):
        found = getattr(importlib.import_module(module), attr)
    if not callable(found):
        raise PluginError(
            f"plugin {kind.owner!r}: the sampler {target} of input kind {kind.name!r} is "
            f"not callable; point it at a function sample(rng, n, shape)"
        )
    return found


# -- the built-in kinds (the draws generate has always made: a seed gives the same images)
def _normal(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal((n, *shape), dtype=np.float32)


def _uniform(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, (n, *shape)).astype(np.float32)


def _categorical(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    idx = rng.integers(0, shape[-1], (n, *shape[:-1]))
    return np.eye(shape[-1], dtype=np.float32)[idx]


#: the kinds ganpipe knows without plugins (the kinds :class:`ModelCard` always read)
BUILTIN_KINDS: dict[str, InputKind] = {
    k.name: k
    for k in (
        InputKind("normal", "standard normal noise of the input's shape", _normal),
        InputKind("uniform", "U(-1, 1) values of the input's shape (a continuous code)", _uniform),
        InputKind(
            "categorical",
            "one-hot along the last axis, each code uniform over its classes",
            _categorical,
        ),
        InputKind("label", "int64 class index per sample (given: --label, or cycled)"),
        InputKind("image", "float NCHW image (given: the image to translate or upscale)"),
        InputKind("truncation", "psi per style layer (given: --truncation; 1 in training)"),
    )
}


class InputKindRegister:
    """What ``ganpipe_register_input_kinds`` receives (since 0.3).

    * ``register("sphere", sample, description="...", torch_sample=None)``: a kind with
      its numpy sampler ``sample(rng, n, shape) -> ndarray`` (``(n, *shape)``, float32 or
      int64), and optionally a torch sampler ``torch_sample(generator, n, shape) ->
      Tensor`` for training;
    * ``register.lazy("pkg.module:sample", name="sphere", description="...",
      torch_sample="pkg.module:sample_torch")``: the same, the module imported on the
      first draw (keeps plugin loading light).
    """

    def __init__(self, kinds: dict[str, InputKind], owner: str, dist: str):
        self._kinds, self._owner, self._dist = kinds, owner, dist

    def _where(self) -> str:
        return f"plugin {self._owner!r} ({self._dist})"

    def _add(self, kind: InputKind) -> None:
        if not isinstance(kind.name, str) or not KIND_NAME.match(kind.name):
            raise PluginError(
                f"{self._where()}: input kind name {kind.name!r} must be lower-case letters, "
                f"digits, '-' or '_', such as 'sphere'"
            )
        if kind.name in BUILTIN_KINDS:
            raise PluginError(
                f"{self._where()}: input kind {kind.name!r} is built into ganpipe; "
                f"give yours another name"
            )
        first = self._kinds.get(kind.name)
        if first is not None:
            raise PluginError(
                f"input kind {kind.name!r} is registered twice: by plugin {first.owner!r} and "
                f"by {self._where()}; disable one with GANPIPE_DISABLE_PLUGINS"
            )
        self._kinds[kind.name] = kind

    def __call__(
        self,
        name: str,
        sample: Sampler,
        /,
        *,
        description: str = "",
        torch_sample: Callable[..., Any] | None = None,
    ) -> None:
        for what, fn in (("sample", sample), ("torch_sample", torch_sample)):
            if fn is not None and not callable(fn):
                raise PluginError(
                    f"{self._where()}: {what} of input kind {name!r} must be a function "
                    f"{what}({'generator' if what == 'torch_sample' else 'rng'}, n, shape), "
                    f"got {type(fn).__name__}"
                )
        self._add(InputKind(name, description, sample, torch_sample, owner=self._owner))

    def lazy(
        self, target: str, /, *, name: str, description: str = "", torch_sample: str | None = None
    ) -> None:
        for value in (target, torch_sample):
            module, sep, attr = (value or "").partition(":")
            if value is not None and (not sep or not module or not attr.isidentifier()):
                raise PluginError(
                    f"{self._where()}: lazy sampler {value!r} of input kind {name!r} must be "
                    f"'package.module:function'"
                )
        kind = InputKind(
            name, description, owner=self._owner, target=target, torch_target=torch_sample
        )
        self._add(kind)


def plugin_input_kinds(pm: Any = None) -> dict[str, InputKind]:
    """The input kinds the plugins of ``pm`` register (default: the installed plugins,
    loaded once per process). A plugin's mistake is a one-line :class:`PluginError`."""
    if pm is None:
        if _CACHE.get("kinds") is None:
            from ganpipe.plugins import get_plugin_manager, problems_of, report_problems

            pm = get_plugin_manager(strict=False)  # a broken plugin: said once, skipped
            report_problems(problems_of(pm).values())
            _CACHE["kinds"] = plugin_input_kinds(pm)
        return _CACHE["kinds"]
    from ganpipe.hookcall import calls

    kinds: dict[str, InputKind] = {}
    for call in calls(pm, "ganpipe_register_input_kinds"):
        call(register=InputKindRegister(kinds, call.owner, call.dist))
    return kinds


_CACHE: dict[str, dict[str, InputKind] | None] = {"kinds": None}


def input_kind(name: str) -> InputKind | None:
    """The kind named ``name``: built in, or registered by an installed plugin (the
    plugins are loaded only for a name that is not built in); ``None`` when unknown."""
    found = BUILTIN_KINDS.get(name)
    if found is None and isinstance(name, str) and KIND_NAME.match(name):
        found = plugin_input_kinds().get(name)
    return found


def draw(kind: InputKind, rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """``n`` values of ``kind`` from ``rng``, checked: a plugin sampler that returns
    something else than an ``(n, *shape)`` float32 or int64 array of finite values is a
    one-line :class:`PluginError` naming it."""
    sample = kind.sampler()
    if sample is None:
        raise ValueError(f"input kind {kind.name!r} is given, not drawn")
    where = f"input kind {kind.name!r} (plugin {kind.owner!r})"
    if kind.owner == "ganpipe":
        return sample(rng, n, tuple(shape))
    from ganpipe.plugins import plugin_code

    with plugin_code(f"{where}: its sampler failed", "fix the plugin's sampler"):
        values = sample(rng, n, tuple(shape))
    values = np.asarray(values)
    want = (n, *shape)
    if values.shape != want or values.dtype not in (np.float32, np.int64):
        raise PluginError(
            f"{where}: its sampler returned {values.dtype} {values.shape} for {n} samples of "
            f"shape {tuple(shape)}; return a float32 (or int64) array of shape {want}"
        )
    if values.dtype == np.float32 and not np.isfinite(values).all():
        raise PluginError(f"{where}: its sampler returned non-finite values; fix the sampler")
    return values


def training_sample(spec: Any, n: int, seed: int, generator: Any = None) -> Any:
    """``n`` values of the input ``spec`` for training (:meth:`ganpipe.Variant.make_inputs`):
    the kind's torch sampler with ``generator`` when it declares one, else its numpy
    sampler drawn from ``seed`` (which the caller takes from ``generator``, so the draw is
    reproducible from the run's seed) as an array. ``ValueError`` naming the fix for a
    kind that is unknown or given, not drawn."""
    kind = input_kind(spec.kind)
    if kind is None:
        raise ValueError(
            f"input {spec.name!r} has kind {spec.kind!r}, which neither ganpipe nor an "
            f"installed plugin provides; use a known kind "
            f"({', '.join(BUILTIN_KINDS)}) or register it with ganpipe_register_input_kinds"
        )
    if not kind.drawn:
        raise ValueError(
            f"input {spec.name!r} has kind {spec.kind!r}, whose values are given, not drawn; "
            f"override make_inputs (and fixed_inputs) to make them"
        )
    torch_sample = kind.torch_sampler()
    if torch_sample is not None:
        return torch_sample(generator, n, tuple(spec.shape))
    return draw(kind, np.random.default_rng(seed), n, tuple(spec.shape))
